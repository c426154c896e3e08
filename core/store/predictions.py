"""The predictions log: writing batches with their rollup rows, reading predictions back, the slice
filter every log query uses, and the pools of unlabelled predictions that labelling draws from."""
from __future__ import annotations

import json
import math
from contextlib import contextmanager

import pandas as pd
import pyarrow as pa

from .engine import _next_ids, now, registered
from .schema import _AUDIT, _GRADED_ROLLUP


# --- predictions --------------------------------------------------------------------------

LOG_COLUMNS = ("text", "norm_text", "business_line", "label", "top_prob", "probs", "created_at")
_LOG_SCHEMA = pa.schema([("text", pa.string()), ("norm_text", pa.string()), ("business_line", pa.string()),
                         ("label", pa.string()), ("top_prob", pa.float64()), ("probs", pa.list_(pa.float64())),
                         ("created_at", pa.timestamp("us"))])
_LOG_VALUE = "(" + ", ".join(f"CAST(? AS {t})" for t in ("VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "DOUBLE",
                                                          "DOUBLE[]", "TIMESTAMP", "BIGINT")) + ")"
# Up to this many rows go in as parameters of a VALUES list: a registered Arrow table costs ~1 ms of
# CPU per statement that scans it (and its registration a catalog change), more than a few rows do.
VALUES_ROWS = 16


def insert_predictions(con, model_id: int, version: int, frame, source: str, user: str) -> list[int]:
    """Log a batch of predictions (columns LOG_COLUMNS) and their rollup rows, in the caller's
    transaction, and return their ids in the frame's order. The frame is a DataFrame, a pyarrow
    Table, or a dict of column lists (the group-commit writer's: no pandas per request)."""
    ids = _next_ids(con, "prediction_seq", len(frame["text"]) if isinstance(frame, dict) else len(frame))
    logged = now()
    small = isinstance(frame, dict) and len(ids) <= VALUES_ROWS
    with _log_batch(con, frame, ids, small) as (batch, args):
        con.execute(f"""
            INSERT INTO predictions
            SELECT prediction_id, ?, ?, text, hash(norm_text), business_line, label, top_prob,
                   CAST(probs AS DOUBLE[]), coalesce(CAST(created_at AS TIMESTAMP), ?), ?, ?, ?
            FROM {batch}""", [model_id, version, logged, logged, source, user] + args)
        if small:  # its GROUP BY over the VALUES list again cost 2.6 ms of a small commit's ~6 ms of CPU
            rollups = _small_batch_rollups(model_id, version, frame, logged)
            con.execute(f"INSERT INTO prediction_rollups ({_ROLLUP_COLUMNS}) VALUES "
                        f"{', '.join([_ROLLUP_VALUE] * len(rollups))}", [v for row in rollups for v in row])
            return ids
        rows = ("(SELECT ? AS model_id, ? AS version, business_line, label, top_prob, probs, "
                f"coalesce(CAST(created_at AS TIMESTAMP), ?) AS created_at FROM {batch})")
        con.execute(f"INSERT INTO prediction_rollups {_GRADED_ROLLUP.format(source=rows)}",
                    [model_id, version, logged] + args)
    return ids


_ROLLUP_COLUMNS = "model_id, version, business_line, day, label, bucket, n, sum_top_prob, sum_expected_grade"
_ROLLUP_VALUE = "(?, ?, ?, CAST(? AS DATE), ?, ?, ?, ?, ?)"


def _small_batch_rollups(model_id: int, version: int, frame: dict, logged) -> list[tuple]:
    """A few rows' prediction rollup rows, grouped as _GRADED_ROLLUP groups them: the same bucket
    (_BUCKET's float comparisons), day and expected grade (positions from 1) on the same doubles;
    tests/test_serving.py checks the two against each other at the buckets' float edges."""
    groups: dict[tuple, list] = {}
    for line, label, p, probs, created in zip(frame["business_line"], frame["label"], frame["top_prob"],
                                              frame["probs"], frame["created_at"]):
        day = (logged if created is None or pd.isna(created) else pd.Timestamp(created)).date()
        floor = math.floor(p * 100)
        bucket = floor - (p < floor / 100) + (p >= (floor + 1) / 100)
        group = groups.setdefault((line, day, label, bucket), [0, 0.0, 0.0])
        group[0] += 1
        group[1] += p
        group[2] += sum(q * i for i, q in enumerate(probs, start=1))
    return [(model_id, version, line, day, label, bucket, *sums) for (line, day, label, bucket), sums in groups.items()]


@contextmanager
def _log_batch(con, frame, ids: list[int], small: bool):
    """The batch with its ids as a FROM clause and the parameters it takes: a few rows of column
    lists (`small`) as a VALUES list, anything else as a registered Arrow table or DataFrame."""
    if small:
        columns = [frame[c] for c in LOG_COLUMNS] + [ids]
        args = [column[i] for i in range(len(ids)) for column in columns]
        yield (f"(VALUES {', '.join([_LOG_VALUE] * len(ids))}) AS b({', '.join(LOG_COLUMNS)}, prediction_id)",
               args)
        return
    if isinstance(frame, dict):
        frame = pa.table({c: pa.array(frame[c], _LOG_SCHEMA.field(c).type) for c in LOG_COLUMNS}, schema=_LOG_SCHEMA)
    if isinstance(frame, pd.DataFrame):
        batch = frame[list(LOG_COLUMNS)].copy()
        batch["prediction_id"] = ids
    else:
        batch = frame.select(list(LOG_COLUMNS)).append_column("prediction_id", pa.array(ids, pa.int64()))
    with registered(con, "_predictions_batch", batch) as name:
        yield name, []


def predictions_by_id(con, model_id: int, prediction_ids: list[int]) -> pd.DataFrame:
    return con.execute("""
        SELECT p.prediction_id, p.text, p.text_key, p.business_line, p.label, p.version,
               f.label AS feedback_label
        FROM predictions p LEFT JOIN feedback f USING (prediction_id)
        WHERE p.model_id = ? AND p.prediction_id BETWEEN ? AND ?  -- lets zone maps skip most of the log
          AND list_contains(?, p.prediction_id)""",
                       [model_id, min(prediction_ids, default=0), max(prediction_ids, default=0),
                        prediction_ids]).df()


def business_lines(con, model_id: int) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT DISTINCT business_line FROM prediction_rollups WHERE model_id = ? ORDER BY 1",
        [model_id]).fetchall()]


def prediction_day_range(con, model_id: int) -> tuple:
    """The first and last day with predictions (dates), or (None, None)."""
    return con.execute("SELECT min(day), max(day) FROM prediction_rollups WHERE model_id = ?",
                       [model_id]).fetchone()


def _prediction_filters(model_id, business_lines=None, since=None, until=None, version=None,
                        alias="p", at="created_at", text=None) -> tuple[str, list]:
    """A WHERE clause for a slice whose fields are already checked (slices.Slice.filters());
    `at` is the column the time bounds apply to (a rollup's `day`); `text`, on the predictions
    log only, keeps texts that contain it (letters in any case)."""
    sql = f"{alias}.model_id = ?"
    args: list = [model_id]
    if business_lines:
        sql += f" AND list_contains(?, {alias}.business_line)"
        args.append(list(business_lines))
    if since is not None:
        sql += f" AND {alias}.{at} >= ?"
        args.append(since)
    if until is not None:
        sql += f" AND {alias}.{at} < ?"
        args.append(until)
    if version is not None:
        sql += f" AND {alias}.version = ?"
        args.append(version)
    if text:
        sql += f" AND contains(lower({alias}.text), lower(?))"
        args.append(text)
    return sql, args


# --- hard examples ------------------------------------------------------------------------

# Higher score = more worth labelling. Probabilities are in the model's label order.
STRATEGY_SCORES = {
    "least_confidence": "1 - p.top_prob",
    "margin": "-(list_sort(p.probs, 'DESC')[1] - coalesce(list_sort(p.probs, 'DESC')[2], 0))",
    "entropy": "list_sum(list_transform(p.probs, lambda q: CASE WHEN q > 0 THEN -q * ln(q) ELSE 0 END))",
    "random": "hash(p.prediction_id + ?) / 18446744073709551615.0",
}


def hard_examples(con, model_id: int, strategy: str, k: int, seed: int = 0, **filters) -> pd.DataFrame:
    """The k highest-scoring predictions without feedback, one per normalised text.

    The slice is read first and alone, so DuckDB's zone maps skip the row groups outside its time
    range (the log is appended in time order); labelled texts are removed from these candidates
    only, and grouping by text (arg_max) instead of a window keeps this one pass. The final lookup
    repeats the slice's filter, which lets its scan skip the same row groups."""
    where, args = _prediction_filters(model_id, **filters)
    score = STRATEGY_SCORES[strategy]
    score_args = [seed] if "?" in score else []
    return con.execute(f"""
        WITH candidates AS (
            SELECT p.prediction_id, p.text_key, {score} AS score FROM predictions p WHERE {where}),
        best AS (
            SELECT arg_max(c.prediction_id, (c.score, -c.prediction_id)) AS prediction_id, max(c.score) AS score
            FROM candidates c ANTI JOIN (SELECT text_key FROM feedback WHERE model_id = ?) f USING (text_key)
            GROUP BY c.text_key
            ORDER BY score DESC, prediction_id
            LIMIT ?)
        SELECT p.prediction_id, p.created_at, p.business_line, p.version, p.text, p.label,
               p.top_prob, p.probs, b.score
        FROM best b JOIN predictions p USING (prediction_id)
        WHERE {where}
        ORDER BY b.score DESC, p.prediction_id""", score_args + args + [model_id, k] + args).df()


def hard_example_pool(con, model_id: int, limit: int, **filters) -> pd.DataFrame:
    """The newest `limit` distinct unlabelled texts of the slice, each as its newest prediction
    (prediction_id, created_at, business_line, text, and the version and probs it was logged with):
    what the chosen version re-scores.

    Read like hard_examples: the slice alone first (zone maps), grouped by text before labelled
    texts are removed (the anti join then probes one row per text, not every prediction: a quarter
    less time at 10M), and the lookup repeating the slice's filter."""
    where, args = _prediction_filters(model_id, **filters)
    return con.execute(f"""
        WITH texts AS (
            SELECT p.text_key, max(p.prediction_id) AS prediction_id FROM predictions p WHERE {where}
            GROUP BY p.text_key),
        newest AS (
            SELECT t.prediction_id
            FROM texts t ANTI JOIN (SELECT text_key FROM feedback WHERE model_id = ?) f USING (text_key)
            ORDER BY t.prediction_id DESC
            LIMIT ?)
        SELECT p.prediction_id, p.created_at, p.business_line, p.text, p.version AS logged_by, p.probs
        FROM newest n JOIN predictions p USING (prediction_id)
        WHERE {where}
        ORDER BY p.prediction_id DESC""", args + [model_id, int(limit)] + args).df()


def insert_batch(con, model_id: int, strategy: str, params: dict, prediction_ids: list[int], user: str) -> int:
    batch_id = _next_ids(con, "batch_seq", 1)[0]
    con.execute("INSERT INTO sample_batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                [batch_id, model_id, strategy, json.dumps(params, ensure_ascii=False, default=str),
                 prediction_ids, now(), user])
    return batch_id


def unlabelled_count(con, model_id: int, **filters) -> int:
    """Predictions in the slice that no one has labelled yet (distinct normalised texts)."""
    where, args = _prediction_filters(model_id, **filters)
    return con.execute(f"""
        SELECT count(DISTINCT p.text_key) FROM predictions p
        WHERE {where} AND p.text_key NOT IN (SELECT text_key FROM feedback WHERE model_id = ?)""",
                       args + [model_id]).fetchone()[0]


def audit_queue(con, model_id: int, share: float, k: int, **filters) -> pd.DataFrame:
    """Up to k unlabelled predictions of the audit sample in the slice, in a random order (the
    hash's), with the columns hard_examples gives (score: the random key)."""
    where, args = _prediction_filters(model_id, **filters)
    return con.execute(f"""
        SELECT p.prediction_id, p.created_at, p.business_line, p.version, p.text, p.label, p.top_prob, p.probs,
               hash(p.prediction_id, 'mms-audit') / 18446744073709551615.0 AS score
        FROM predictions p ANTI JOIN feedback f USING (prediction_id)
        WHERE {where} AND {_AUDIT}
        ORDER BY score LIMIT ?""", args + [share, k]).df()


def prediction_sample(con, model_id: int, k: int, **filters) -> pd.DataFrame:
    """Up to k predictions of the slice chosen at random (by a hash of the id): text, top_prob, label."""
    where, args = _prediction_filters(model_id, **filters)
    return con.execute(f"""
        SELECT p.text, p.top_prob, p.label FROM predictions p WHERE {where}
        ORDER BY hash(p.prediction_id, 'mms-drift') LIMIT ?""", args + [k]).df()


# --- hard examples: the pool as a sample of all history, and scores kept per version (issues 24, 25) ---


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
    con.register("_scores_batch", frame[["text_key", "probs"]].drop_duplicates("text_key"))
    try:
        con.execute("""
            INSERT INTO version_scores
            SELECT ?, ?, ?, b.text_key::UBIGINT, b.probs::DOUBLE[], ? FROM _scores_batch b
            WHERE b.text_key::UBIGINT NOT IN (SELECT text_key FROM version_scores
                                              WHERE model_id = ? AND version = ? AND sha256 = ?)""",
                    [model_id, version, sha256, now(), model_id, version, sha256])
    finally:
        con.unregister("_scores_batch")


def stored_score_count(con, model_id: int, version: int | None = None) -> int:
    """Probabilities kept for the model's versions (one version's with `version`)."""
    sql, args = "SELECT count(*) FROM version_scores WHERE model_id = ?", [model_id]
    if version is not None:
        sql, args = sql + " AND version = ?", args + [version]
    return con.execute(sql, args).fetchone()[0]
