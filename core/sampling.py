"""Hard examples: the predictions most worth a label, by a named query strategy.

A strategy is a score (higher = more worth labelling) plus one shared selector: the top k
predictions without feedback, one per normalised text. Every batch is recorded with the
strategy that chose it, so each label can be traced to the strategy behind it.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from . import auth, estimators, registry
from . import store as db
from .errors import EmptyPool, InvalidInput
from .store import Store

STRATEGIES = {
    "least_confidence": "lowest top probability first",
    "margin": "smallest gap between the two most likely labels first",
    "entropy": "most uncertain probability spread first",
    "random": "uniformly at random (a control)",
}


@dataclass(frozen=True)
class HardExamples:
    batch_id: int
    strategy: str
    examples: pd.DataFrame  # prediction_id, created_at, business_line, version, text, label, top_prob, p_*, score


def _filters(business_lines, since, until, version) -> dict:
    if isinstance(business_lines, str):
        business_lines = [business_lines]
    return {"business_lines": list(business_lines) if business_lines else None,
            "since": since, "until": until, "version": version}


def select_hard_examples(store: Store, name: str, k: int, user: str, strategy: str = "least_confidence",
                         business_lines=None, since=None, until=None, version: int | None = None,
                         seed: int = 0) -> HardExamples:
    """The k predictions to label next, recorded as one batch. EmptyPool when none is left."""
    if strategy not in STRATEGIES:
        raise InvalidInput(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if int(k) < 1:
        raise InvalidInput("k must be at least 1")
    filters = _filters(business_lines, since, until, version)
    with store.transaction() as con:
        auth.require(con, user, "sample")
        model = registry.find_model(con, name)
        found = db.hard_examples(con, model.model_id, strategy, int(k), seed=seed, **filters)
        if found.empty:
            raise EmptyPool(f"no unlabelled predictions of {name!r} match these filters")
        params = {"k": int(k), "seed": seed, **filters}
        batch_id = db.insert_batch(con, model.model_id, strategy, params, found["prediction_id"].tolist(), user)
    probs = estimators.proba_frame(found.pop("probs").tolist(), model.labels)
    return HardExamples(batch_id, strategy, pd.concat([found, probs], axis=1))


def queue_size(store: Store, name: str, business_lines=None, since=None, until=None,
               version: int | None = None) -> int:
    """How many distinct unlabelled texts the filters leave to label."""
    with store.connect() as con:
        model = registry.find_model(con, name)
        return db.unlabelled_count(con, model.model_id, **_filters(business_lines, since, until, version))
