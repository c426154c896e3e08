"""Ordinal labels (graded texts, the model record's 排序): grade positions, the ordinal model and its metrics.

An ordinal model's label list IS its grade order, lowest first, fixed at creation; a grade's
position counts from 1. The model that learns grades is Frank & Hall's: one binary classifier
per threshold ("above grade k?"), their probabilities combined into a distribution over the
grades (`FrankHall`). This module needs only numpy at import (scikit-learn loads when a model is
fitted or judged). No store, registry or estimators here: they all use these names.
"""
from __future__ import annotations

import warnings

import numpy as np

from .wrapped import WrappedClassifier

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
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined on these rows: None below says so
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


class FrankHall(WrappedClassifier):
    """Ordinal classifier: a copy of `estimator` per threshold k learns P(grade > k); the
    distribution is P(1) = 1 - P(>1), P(k) = P(>k-1) - P(>k), P(n) = P(>n-1).

    The thresholds' probabilities are made non-increasing first (a running minimum), so every
    grade's probability is >= 0 and they sum to 1. `grades` is the order, lowest first; classes_
    is all of it even when training lacks a grade (a threshold with one side empty is a constant).
    Base estimators without predict_proba use the logistic of their decision function.

    A plain class with scikit-learn's estimator protocol (get_params, set_params, fit, predict,
    predict_proba, classes_), so this module loads without scikit-learn: the server's start and
    the registry need only the grade maths."""

    def __init__(self, estimator=None, grades=None):
        self.estimator = estimator
        self.grades = grades

    _PARAMS = ("estimator", "grades")

    def __repr__(self) -> str:
        return f"FrankHall({self.estimator!r}, grades={self.grades!r})"

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "thresholds_")

    def fit(self, X, y):
        from sklearn.base import clone  # scikit-learn is loaded when a model is fitted, not at start-up

        grades = list(self.grades)
        pos = positions(y, grades)
        self.classes_ = np.asarray(grades, dtype=object)
        self.seen_ = sorted(set(pos.tolist()))
        self.thresholds_ = []
        for k in range(1, len(grades)):
            above = (pos > k).astype(int)
            if above.min() == above.max():
                self.thresholds_.append(float(above[0]))  # every training row on one side
            else:
                self.thresholds_.append(clone(self.estimator).fit(X, above))
        return self

    def _above(self, X) -> np.ndarray:
        """P(grade > k) for each threshold k, rows x (n-1), non-increasing along k."""
        n_rows = X.shape[0] if hasattr(X, "shape") else len(X)
        columns = []
        for model in self.thresholds_:
            if isinstance(model, float):
                columns.append(np.full(n_rows, model))
            elif hasattr(model, "predict_proba"):
                proba = model.predict_proba(X)
                columns.append(proba[:, list(model.classes_).index(1)])
            else:
                columns.append(1 / (1 + np.exp(-model.decision_function(X))))
        return np.minimum.accumulate(np.column_stack(columns), axis=1)

    def predict_proba(self, X) -> np.ndarray:
        above = self._above(X)
        ones, zeros = np.ones((above.shape[0], 1)), np.zeros((above.shape[0], 1))
        return -np.diff(np.hstack([ones, above, zeros]), axis=1)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def partial_fit(self, X, y, classes=None):
        """Continue every threshold's model (each must be able to, e.g. SGD) on more rows; a
        threshold that was constant at fit cannot start learning here (ValueError: retrain fully)."""
        pos = positions(y, list(self.grades))
        for k, model in enumerate(self.thresholds_, start=1):
            above = (pos > k).astype(int)
            if isinstance(model, float):
                if (above != model).any():
                    raise ValueError(f"grade threshold {k} had rows on one side only when the parent version "
                                     f"was trained; an incremental update cannot learn it, run a full retrain")
                continue
            if hasattr(model, "calibrated_classifiers_"):  # files written before calibration.CalibratedScores
                model = model.calibrated_classifiers_[0].estimator
            model.partial_fit(X, above, classes=[0, 1])  # a calibrated one continues its one model
        self.seen_ = sorted(set(self.seen_) | set(pos.tolist()))
        return self
