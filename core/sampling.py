"""Hard examples: the predictions most worth a label, by a named query strategy.

A strategy is a score (higher = more worth labelling) plus one shared selector: the top k
predictions without feedback, one per normalised text. The store computes each score in SQL,
keyed by the strategy's name; `Strategy.score` is the same score on a probability matrix, the
reference the contract tests hold the SQL to. Every batch is recorded with the strategy that
chose it, so each label can be traced to the strategy behind it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import auth, registry
from . import store as db
from .errors import EmptyPool, InvalidInput
from .estimators import proba_frame
from .slices import Slice
from .store import Store


@dataclass(frozen=True)
class Strategy:
    """A query strategy: `str(strategy)` is its name, as recorded with every batch it chooses."""
    name: str
    description: str
    score: Callable[[np.ndarray], np.ndarray] | None  # rows x labels -> one score per row; None: no order

    def __str__(self) -> str:
        return self.name


def _least_confidence(proba: np.ndarray) -> np.ndarray:
    return 1 - proba.max(axis=1)


def _margin(proba: np.ndarray) -> np.ndarray:
    ordered = -np.sort(-proba, axis=1)
    second = ordered[:, 1] if proba.shape[1] > 1 else 0
    return -(ordered[:, 0] - second)


def _entropy(proba: np.ndarray) -> np.ndarray:
    safe = np.where(proba > 0, proba, 1.0)
    return -(proba * np.log(safe)).sum(axis=1)


STRATEGIES = {s.name: s for s in (
    Strategy("least_confidence", "lowest top probability first", _least_confidence),
    Strategy("margin", "smallest gap between the two most likely labels first", _margin),
    Strategy("entropy", "most uncertain probability spread first", _entropy),
    Strategy("random", "uniformly at random (a control)", None),  # a seeded hash of the prediction id
)}


@dataclass(frozen=True)
class HardExamples:
    batch_id: int
    strategy: str
    examples: pd.DataFrame  # prediction_id, created_at, business_line, version, text, label, top_prob, p_*, score


def _strategy(strategy: str | Strategy) -> Strategy:
    if str(strategy) not in STRATEGIES:
        raise InvalidInput(f"strategy must be one of {', '.join(STRATEGIES)}, not {str(strategy)!r}")
    return STRATEGIES[str(strategy)]


def select_hard_examples(store: Store, name: str, k: int, user: str, strategy: str | Strategy = "least_confidence",
                         business_lines=None, since=None, until=None, version: int | None = None,
                         seed: int = 0) -> HardExamples:
    """The k predictions to label next, recorded as one batch. EmptyPool when none is left.

    The slice's fields are given loose (a line or a list, dates as text) and checked by Slice.of."""
    chosen = _strategy(strategy)
    if int(k) < 1:
        raise InvalidInput("k must be at least 1")
    filters = Slice.of(business_lines, since, until, version).filters()
    with store.transaction() as con:
        auth.require(con, user, "sample")
        model = registry.find_model(con, name)
        found = db.hard_examples(con, model.model_id, chosen.name, int(k), seed=seed, **filters)
        if found.empty:
            raise EmptyPool(f"no unlabelled predictions of {name!r} match these filters")
        params = {"k": int(k), "seed": seed, **filters}
        batch_id = db.insert_batch(con, model.model_id, chosen.name, params, found["prediction_id"].tolist(), user)
    probs = proba_frame(found.pop("probs").tolist(), model.labels)
    return HardExamples(batch_id, chosen.name, pd.concat([found, probs], axis=1))


def queue_size(store: Store, name: str, business_lines=None, since=None, until=None,
               version: int | None = None) -> int:
    """How many distinct unlabelled texts the filters leave to label."""
    filters = Slice.of(business_lines, since, until, version).filters()
    with store.connect() as con:
        model = registry.find_model(con, name)
        return db.unlabelled_count(con, model.model_id, **filters)
