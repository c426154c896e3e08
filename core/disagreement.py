"""The `disagreement` hard-example strategy: the texts the version in shadow (core.shadow) labels
otherwise than the version the labels are for. One of the two has each of them wrong, so a label
there is what tells the two apart; the pair whose probabilities lie furthest apart (Jensen-Shannon
divergence, as query-by-committee measures a committee's disagreement) comes first.

The shadow's answers are read from what it scored in the background (by text: a version's answer
to a text never changes); texts it has not scored are never drawn."""
from __future__ import annotations

import numpy as np

from . import store as db
from .errors import EmptyPool

NAME = "disagreement"
DESCRIPTION = ("texts the version in shadow labels otherwise than the scoring version, the two versions' "
               "probabilities furthest apart first (Jensen-Shannon divergence); only texts the shadow scored")


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (natural log, 0..ln 2) between the rows of p and q."""
    m = (p + q) / 2

    def kl(a):
        safe = np.where(a > 0, a, 1.0)
        return (a * np.log(safe / np.where(m > 0, m, 1.0))).sum(axis=1)

    return (kl(p) + kl(q)) / 2


def order(draw) -> np.ndarray:
    """Pool positions of the texts the shadow labels otherwise than the scoring version, furthest
    apart first (the newer prediction first on ties). `draw` is sampling's Draw: its store, model,
    pool (prediction_id per text) and the scoring version's probabilities (proba). EmptyPool with a
    sentence when no version is in shadow, or it agrees on every pool text it scored."""
    pool = draw.pool
    with draw.store.connect() as con:
        shadows = db.current_shadows(con, draw.model.model_id)
        if not shadows:
            raise EmptyPool(f"no version of {draw.model.name!r} is in shadow: put one in shadow (Versions page, "
                            "`python -m core shadow`) to draw the texts it disagrees on")
        version = int(shadows[0]["version"])
        theirs = db.shadow_probabilities(con, draw.model.model_id, version, pool["prediction_id"].tolist())
    at = pool.reset_index(drop=True).reset_index().set_index("prediction_id")["index"]
    rows = at.reindex(theirs["prediction_id"]).to_numpy()
    shadow = np.asarray(theirs["probs"].tolist(), dtype=float).reshape(len(rows), -1)
    mine = np.asarray(draw.proba, dtype=float)[rows]
    differ = shadow.argmax(axis=1) != mine.argmax(axis=1)
    if not differ.any():
        raise EmptyPool(f"version {version} in shadow agrees with the scoring version on every unlabelled text "
                        f"it scored here ({len(rows)}): no disagreement to label")
    rows, apart = rows[differ], js_divergence(mine[differ], shadow[differ])
    newer = pool["prediction_id"].to_numpy()[rows]
    return rows[np.lexsort((-newer, -apart))]
