"""Ordinal labels (graded texts, the model record's 排序): grade positions, the ordinal model and its metrics.

An ordinal model's label list IS its grade order, lowest first, fixed at creation; a grade's
position counts from 1. The model that learns grades is `ordinal_model.FrankHall` (it needs
scikit-learn, which the server does not load at start-up; this module needs only numpy). No
store, registry or estimators here: they all use these names.
"""
from __future__ import annotations

import numpy as np

MIN_GRADES = 3  # two grades are a classification; an order needs at least three


def positions(values, grades: list[str]) -> np.ndarray:
    """Each value's grade position (1 = lowest); ValueError for a value that is not a grade."""
    index = {grade: i + 1 for i, grade in enumerate(grades)}
    try:
        return np.asarray([index[v] for v in values], dtype=int)
    except KeyError as e:
        raise ValueError(f"{e.args[0]!r} is not one of the grades {', '.join(grades)}") from None


def expected_grade(proba) -> np.ndarray:
    """The distribution's mean grade position (1..n) per row: a finer sort key than the most likely grade."""
    proba = np.asarray(proba, dtype=float)
    return proba @ np.arange(1, proba.shape[1] + 1)


def most_likely(proba) -> np.ndarray:
    """The most likely grade's position (1..n) per row."""
    return np.asarray(proba).argmax(axis=1) + 1


def expected_absolute_error(proba) -> np.ndarray:
    """How many grades the most likely grade is expected to be off, if the distribution is right:
    sum over grades of p(g) * |g - most likely|."""
    proba = np.asarray(proba, dtype=float)
    grades = np.arange(1, proba.shape[1] + 1)
    return (proba * np.abs(grades[None, :] - most_likely(proba)[:, None])).sum(axis=1)


def spread(proba) -> np.ndarray:
    """The distribution's standard deviation in grades: wide when the model hesitates across far grades."""
    proba = np.asarray(proba, dtype=float)
    grades = np.arange(1, proba.shape[1] + 1)
    mean = expected_grade(proba)
    return np.sqrt(np.clip((proba * (grades[None, :] - mean[:, None]) ** 2).sum(axis=1), 0, None))


def _number(value) -> float | None:
    """A float, or None where a measure is undefined (e.g. Spearman of a constant prediction)."""
    value = float(value)
    return None if np.isnan(value) else value


def ordinal_metrics(y_true_labels, y_pred_labels, proba, labels: list[str]) -> dict:
    """mae (in grades, of the most likely grade), qwk (quadratic weighted kappa), spearman (true
    grade against the expected grade, or against the predicted grade when `proba` is None), exact
    and within_one (shares of predictions off by 0 and by at most 1 grade), and n.

    A measure that is undefined on these rows (a constant column) is None."""
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    true = positions(y_true_labels, labels)
    pred = positions(y_pred_labels, labels)
    if len(true) == 0:
        return {"n": 0, "mae": None, "qwk": None, "spearman": None, "exact": None, "within_one": None}
    off = np.abs(true - pred)
    ranked = expected_grade(proba) if proba is not None else pred
    with np.errstate(divide="ignore", invalid="ignore"):
        qwk = cohen_kappa_score(true, pred, labels=list(range(1, len(labels) + 1)), weights="quadratic")
        rho = spearmanr(true, ranked).statistic if len(set(true)) > 1 and len(set(ranked)) > 1 else np.nan
    return {"n": int(len(true)), "mae": float(off.mean()), "qwk": _number(qwk), "spearman": _number(rho),
            "exact": float((off == 0).mean()), "within_one": float((off <= 1).mean())}


def metrics_by_line(y_true_labels, y_pred_labels, proba, labels: list[str], lines) -> dict:
    """`ordinal_metrics` per business line ({line: {...}}), lines without a name left out."""
    lines = np.asarray(lines, dtype=object)
    y_true, y_pred = np.asarray(y_true_labels, dtype=object), np.asarray(y_pred_labels, dtype=object)
    proba = None if proba is None else np.asarray(proba)
    out = {}
    for line in sorted({line for line in lines if isinstance(line, str) and line}):
        mask = lines == line
        out[line] = ordinal_metrics(y_true[mask], y_pred[mask], None if proba is None else proba[mask], labels)
    return out
