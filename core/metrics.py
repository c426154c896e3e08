"""Metrics of a fitted pipeline on a labelled test frame: what a version is judged by."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import ordinal
from .estimators import predict_proba


def reliability_curve(top_prob: np.ndarray, correct: np.ndarray, bins: int = 10) -> list[dict]:
    """Per equal-width confidence bin with predictions in it: its bounds, mean confidence, accuracy
    and count. A calibrated model's points lie on the diagonal."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(top_prob, edges[1:-1]), 0, bins - 1)
    return [{"low": round(float(edges[b]), 2), "high": round(float(edges[b + 1]), 2),
             "confidence": float(top_prob[which == b].mean()), "accuracy": float(correct[which == b].mean()),
             "count": int((which == b).sum())} for b in range(bins) if (which == b).any()]


def expected_calibration_error(top_prob: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Mean gap between confidence and accuracy over equal-width confidence bins, weighted by size."""
    curve = reliability_curve(top_prob, correct, bins)
    return float(sum(b["count"] * abs(b["confidence"] - b["accuracy"]) for b in curve) / max(len(top_prob), 1))


def sorted_log_loss(y_true, proba: np.ndarray, labels: list[str]) -> float:
    """Log loss of probabilities whose columns are in `labels`' order: scikit-learn takes the
    columns to be in sorted order, which a grade order (低, 中, 高) or any unsorted label set is not."""
    from sklearn.metrics import log_loss

    order = np.argsort(np.asarray(labels, dtype=object))
    return float(log_loss(y_true, np.asarray(proba)[:, order], labels=[labels[i] for i in order]))


def evaluate(pipeline, test: pd.DataFrame, labels: list[str], graded: bool = False) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1, confusion matrix, log loss, ECE, accuracy per business line;
    for an ordinal model (`graded`, `labels` the grade order) also "ordinal" and "ordinal_by_line"
    (ordinal.ordinal_metrics overall and per line). The confusion matrix is in `labels`' order.

    `test` has columns tokens, label and business_line."""
    # scikit-learn loads here, not at start-up: the dashboard's first page and the API's health
    # answer import training's modules but need none of it.
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    proba = predict_proba(pipeline, test["tokens"].tolist(), labels)
    y_true = test["label"].to_numpy()
    y_pred = np.asarray(labels)[proba.argmax(axis=1)]
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    correct = y_true == y_pred
    clipped = np.clip(proba, 1e-15, 1)
    metrics = {
        "n_test": int(len(test)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                            "support": int(s[i])} for i, lab in enumerate(labels)},
        "confusion": {"labels": labels, "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()},
        "log_loss": sorted_log_loss(y_true, clipped / clipped.sum(axis=1, keepdims=True), labels),
        "ece": expected_calibration_error(proba.max(axis=1), correct),
        "reliability": reliability_curve(proba.max(axis=1), correct),
    }
    lines = test["business_line"].fillna("")
    top = proba.max(axis=1)
    metrics["by_business_line"] = {  # each line's own reliability curve sharpens its estimated accuracy
        line: {"n": int(mask.sum()), "accuracy": float(correct[mask].mean()),
               "reliability": reliability_curve(top[mask], correct[mask])}
        for line, mask in ((line, (lines == line).to_numpy()) for line in sorted(set(lines)) if line)
    }
    if graded:
        metrics["ordinal"] = ordinal.ordinal_metrics(y_true, y_pred, proba, labels)
        metrics["ordinal_by_line"] = ordinal.metrics_by_line(y_true, y_pred, proba, labels, lines.to_numpy())
    return metrics
