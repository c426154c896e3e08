"""The ordinal model: Frank & Hall's cumulative binary classifiers, one per grade threshold.

A scikit-learn classifier, so pipelines, calibration, model files and partial_fit work as for
classification; `ordinal` holds the grade maths it shares with metrics, prediction and sampling.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from .ordinal import positions


class FrankHall(ClassifierMixin, BaseEstimator):
    """Ordinal classifier: a copy of `estimator` per threshold k learns P(grade > k); the
    distribution is P(1) = 1 - P(>1), P(k) = P(>k-1) - P(>k), P(n) = P(>n-1).

    The thresholds' probabilities are made non-increasing first (a running minimum), so every
    grade's probability is >= 0 and they sum to 1. `grades` is the order, lowest first; classes_
    is all of it even when training lacks a grade (a threshold with one side empty is a constant).
    Base estimators without predict_proba use the logistic of their decision function."""

    def __init__(self, estimator=None, grades=None):
        self.estimator = estimator
        self.grades = grades

    def fit(self, X, y):
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
            core = model.calibrated_classifiers_[0].estimator if hasattr(model, "calibrated_classifiers_") else model
            core.partial_fit(X, above, classes=[0, 1])
        self.seen_ = sorted(set(self.seen_) | set(pos.tolist()))
        return self
