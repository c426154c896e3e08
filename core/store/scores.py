"""Hard examples' pool as a sample of the whole history, and the scores a version gave kept per text."""
from __future__ import annotations

import pandas as pd

from .engine import now, registered
from .predictions import _prediction_filters


def hard_example_sample(con, model_id: int, limit: int, salt: int, scored_by: tuple[int, str] | None = None,
                        **filters) -> pd.DataFrame:
    """The slice's distinct unlabelled texts, each as its newest prediction, or when there are more
    than `limit` a uniform sample of `limit` of them over all its history: those first in a hash
    order of (text, `salt`), so one salt gives the same sample draw after draw and another salt
    another one. Columns: prediction_id, created_at, business_line, text, text_key, logged_by, probs,
    and `stored`, the probabilities `scored_by` = (version, sha256) kept for the text (None if none).

    Read like hard_example_pool: the slice alone, grouped by text before labelled texts are removed."""
    where, args = _prediction_filters(model_id, **filters)
    version, sha256 = scored_by if scored_by else (-1, "")
    return con.execute(f"""
        WITH texts AS (
            SELECT p.text_key, max(p.prediction_id) AS prediction_id FROM predictions p WHERE {where}
            GROUP BY p.text_key),
        sampled AS (
            SELECT t.prediction_id, t.text_key
            FROM texts t ANTI JOIN (SELECT text_key FROM feedback WHERE model_id = ?) f USING (text_key)
            ORDER BY hash(t.text_key, ?::BIGINT), t.text_key
            LIMIT ?),
        kept AS (
            SELECT s.text_key, any_value(s.probs) AS probs FROM version_scores s SEMI JOIN sampled USING (text_key)
            WHERE s.model_id = ? AND s.version = ? AND s.sha256 = ? GROUP BY s.text_key)
        SELECT p.prediction_id, p.created_at, p.business_line, p.text, p.text_key, p.version AS logged_by,
               p.probs, k.probs AS stored
        FROM sampled n JOIN predictions p USING (prediction_id) LEFT JOIN kept k ON k.text_key = n.text_key
        WHERE {where}
        ORDER BY p.prediction_id DESC""",
                       args + [model_id, int(salt), int(limit), model_id, int(version), sha256] + args).df()


def insert_version_scores(con, model_id: int, version: int, sha256: str, frame: pd.DataFrame) -> None:
    """Keep a version's probabilities per text (columns text_key, probs), those not kept yet."""
    if frame.empty:
        return
    with registered(con, "_scores_batch", frame[["text_key", "probs"]].drop_duplicates("text_key")):
        con.execute("""
            INSERT INTO version_scores
            SELECT ?, ?, ?, b.text_key::UBIGINT, b.probs::DOUBLE[], ? FROM _scores_batch b
            WHERE b.text_key::UBIGINT NOT IN (SELECT text_key FROM version_scores
                                              WHERE model_id = ? AND version = ? AND sha256 = ?)""",
                    [model_id, version, sha256, now(), model_id, version, sha256])

