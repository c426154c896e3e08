"""The `disagreement` hard-example strategy: the texts the version in shadow (core.shadow) labels
otherwise than the version the labels are for. One of the two has each of them wrong, so a label
there is what tells the two apart; the pair whose probabilities lie furthest apart (Jensen-Shannon
divergence, as query-by-committee measures a committee's disagreement) comes first.

The shadow's answers are read from what it scored in the background (by text: a version's answer
to a text never changes); texts it has not scored are never drawn."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import store as db
from .errors import EmptyPool

NAME = "disagreement"
DESCRIPTION = ("texts the version in shadow labels otherwise than the scoring version first, the two versions' "
               "probabilities furthest apart first (Jensen-Shannon divergence); then the texts they agree on, "
               "furthest apart first; then texts the shadow has not scored, least confident first")


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (natural log, 0..ln 2) between the rows of p and q."""
    m = (p + q) / 2

    def kl(a):
        safe = np.where(a > 0, a, 1.0)
        return (a * np.log(safe / np.where(m > 0, m, 1.0))).sum(axis=1)

    return (kl(p) + kl(q)) / 2


def order(draw) -> np.ndarray:
    """Every pool position, the most informative first: the texts the shadow labels otherwise than
    the scoring version, furthest apart first; then those it labels alike, furthest apart first;
    then those it has not scored, by the scoring version's score (ties: the newer prediction first).
    `draw` is sampling's Draw: its store, model, pool (prediction_id per text), the scoring version's
    probabilities (proba) and scores. EmptyPool with a sentence when no version is in shadow."""
    pool = draw.pool
    with draw.store.connect() as con:
        shadows = db.current_shadows(con, draw.model.model_id)
        if not shadows:
            raise EmptyPool(f"no version of {draw.model.name!r} is in shadow: put one in shadow (Versions page, "
                            "`python -m core shadow`) to draw the texts it disagrees on")
        theirs = db.shadow_probabilities(con, draw.model.model_id, int(shadows[0]["version"]),
                                         pool["prediction_id"].tolist())
    rows = pd.Index(pool["prediction_id"]).get_indexer(theirs["prediction_id"])
    shadow = np.asarray(theirs["probs"].tolist(), dtype=float).reshape(len(rows), -1)
    mine = np.asarray(draw.proba, dtype=float)[rows]
    group = np.full(len(pool), 2)  # 0: they disagree, 1: they agree, 2: not scored by the shadow
    group[rows] = np.where(shadow.argmax(axis=1) != mine.argmax(axis=1), 0, 1)
    key = np.asarray(draw.scores, dtype=float).copy()
    key[rows] = js_divergence(mine, shadow)
    return np.lexsort((-pool["prediction_id"].to_numpy(), -key, group))
