"""Statistics per business line x period, read from the rollups (whole days) and the log (cut days):
volume and confidence, labelled accuracy, the audit sample, hard examples, grades; keeping the
rollups; drift measures cached per cell; and the revision pages key their caches on."""
from __future__ import annotations

import pandas as pd

from .engine import _lake_cursors, LAKE, insert_frame, now
from .labels import insert_labelled_predictions
from .predictions import _prediction_filters
from .schema import _AUDIT, _BUCKET, _DECIDED, _EXPECTED_GRADE, _GRADED_ROLLUP, _LABEL_ROLLUP


# --- statistics ---------------------------------------------------------------------------

def line_period_statistics(con, model_id: int, period: str, low_confidence: float, labels: list[str],
                           not_training: list[str], **filters) -> pd.DataFrame:
    """Per business line and period, and per period over all lines (business_line NULL), in one
    query: n, sum_top_prob, n_low (top_prob below `low_confidence`), versions (that answered), n_0,
    n_1 … per predicted label in `labels`' order, and over labelled predictions (labels in `not_training` left out):
    labelled, correct and macro_f1 (over the labels seen there; NULL with fewer than two true labels).
    `period` is one of slices.PERIODS."""
    predicted = _prediction_parts(model_id, period, low_confidence, filters)
    judged = _label_parts(model_id, period, not_training, filters)
    per_label = ", ".join(f"sum(n) FILTER (WHERE label = ?) AS n_{i}" for i in range(len(labels)))
    sql = f"""
        WITH agg AS ({" UNION ALL ".join(q for q, _ in predicted)}),
        conf AS ({" UNION ALL ".join(q for q, _ in judged)}),
        a AS (SELECT business_line, period, sum(n) AS n, sum(sum_top_prob) AS sum_top_prob, sum(n_low) AS n_low,
                     list(DISTINCT version ORDER BY version) AS versions, {per_label}
              FROM agg GROUP BY GROUPING SETS ((business_line, period), (period))),
        per_label AS (
            SELECT business_line, period, label, sum(tp) AS tp, sum(t) AS t, sum(p) AS p
            FROM (SELECT business_line, period, truth AS label, CASE WHEN truth = predicted THEN n ELSE 0 END AS tp,
                         n AS t, 0 AS p FROM conf
                  UNION ALL SELECT business_line, period, predicted, 0, 0, n FROM conf)
            GROUP BY GROUPING SETS ((business_line, period, label), (period, label))),
        l AS (SELECT business_line, period, sum(t) AS labelled, sum(tp) AS correct,
                     CASE WHEN count(*) FILTER (WHERE t > 0) >= 2 THEN avg(2 * tp / (t + p)) END AS macro_f1
              FROM per_label GROUP BY business_line, period)
        SELECT a.*, coalesce(l.labelled, 0) AS labelled, coalesce(l.correct, 0) AS correct, l.macro_f1
        FROM a LEFT JOIN l ON a.period = l.period AND a.business_line IS NOT DISTINCT FROM l.business_line"""
    args = [a for _, part in predicted + judged for a in part] + list(labels)
    return con.execute(sql, args).df()


def _prediction_parts(model_id: int, period: str, low_confidence: float, filters: dict) -> list[tuple[str, list]]:
    """Queries whose rows (business_line, period, label, version, n, sum_top_prob, n_low) add up to the slice:
    whole days from the rollups; the part of a day that a since/until bound cuts, and every day when
    the threshold is not whole hundredths (the buckets' edges), from the log."""
    bucket = round(low_confidence * 100)
    if bucket / 100 != low_confidence:
        return [_logged_part(model_id, period, low_confidence, filters)]
    days, edges = _day_split(filters.get("since"), filters.get("until"))
    parts = [_logged_part(model_id, period, low_confidence, {**filters, "since": a, "until": b}) for a, b in edges]
    if days is not None:
        where, args = _prediction_filters(model_id, **{**filters, "since": days[0], "until": days[1]},
                                          alias="r", at="day")
        parts.append((f"""
            SELECT r.business_line, CAST(date_trunc(?, r.day) AS TIMESTAMP) AS period, r.label, r.version,
                   CAST(sum(r.n) AS BIGINT) AS n, sum(r.sum_top_prob) AS sum_top_prob,
                   CAST(coalesce(sum(r.n) FILTER (WHERE r.bucket < ?), 0) AS BIGINT) AS n_low
            FROM prediction_rollups r WHERE {where} GROUP BY ALL""",
                      [period, min(max(bucket, 0), 101)] + args))
    return parts


def _logged_part(model_id: int, period: str, low_confidence: float, filters: dict) -> tuple[str, list]:
    where, args = _prediction_filters(model_id, **filters)
    return (f"""
        SELECT p.business_line, date_trunc(?, p.created_at) AS period, p.label, p.version,
               count(*) AS n, sum(p.top_prob) AS sum_top_prob,
               count(*) FILTER (WHERE p.top_prob < ?) AS n_low
        FROM predictions p WHERE {where} GROUP BY ALL""", [period, low_confidence] + args)


def confidence_histogram(con, model_id: int, period: str, **filters) -> pd.DataFrame:
    """Per business line, period, version and confidence bucket (top_prob in [bucket / 100, (bucket + 1) / 100)):
    n and sum_top_prob, so a version's reliability curve can map confidence to accuracy (estimated
    accuracy). Whole days from the rollups, the part of a day that a since/until bound cuts from the log."""
    days, edges = _day_split(filters.get("since"), filters.get("until"))
    parts = []
    for a, b in edges:
        where, args = _prediction_filters(model_id, **{**filters, "since": a, "until": b})
        parts.append((f"""
            SELECT p.business_line, date_trunc(?, p.created_at) AS period, p.version,
                   {_BUCKET.replace("top_prob", "p.top_prob")} AS bucket, count(*) AS n, sum(p.top_prob) AS sum_top_prob
            FROM predictions p WHERE {where} GROUP BY ALL""", [period] + args))
    if days is not None:
        where, args = _prediction_filters(model_id, **{**filters, "since": days[0], "until": days[1]},
                                          alias="r", at="day")
        parts.append((f"""
            SELECT r.business_line, CAST(date_trunc(?, r.day) AS TIMESTAMP) AS period, r.version, r.bucket,
                   CAST(sum(r.n) AS BIGINT) AS n, sum(r.sum_top_prob) AS sum_top_prob
            FROM prediction_rollups r WHERE {where} GROUP BY ALL""", [period] + args))
    sql = f"""SELECT business_line, period, version, bucket, CAST(sum(n) AS BIGINT) AS n, sum(sum_top_prob) AS sum_top_prob
              FROM ({" UNION ALL ".join(q for q, _ in parts)}) GROUP BY ALL"""
    return con.execute(sql, [a for _, part in parts for a in part]).df()


def _label_parts(model_id: int, period: str, not_training: list[str], filters: dict) -> list[tuple[str, list]]:
    """Queries whose rows (business_line, period, truth, predicted, n) count the slice's labelled
    predictions, leaving out decisions in `not_training` (skip, unclear): whole days from the
    rollups, the part of a day that a since/until bound cuts from the labels joined to their predictions."""
    days, edges = _day_split(filters.get("since"), filters.get("until"))
    parts = []
    for a, b in edges:
        where, args = _prediction_filters(model_id, **{**filters, "since": a, "until": b})
        parts.append((f"""
            SELECT p.business_line, date_trunc(?, p.created_at) AS period, f.label AS truth,
                   p.label AS predicted, count(*) AS n
            FROM {_DECIDED} f JOIN predictions p USING (prediction_id)
            WHERE f.model_id = ? AND NOT list_contains(?, f.label) AND {where} GROUP BY ALL""",
                      [period, model_id, list(not_training)] + args))
    if days is not None:
        where, args = _prediction_filters(model_id, **{**filters, "since": days[0], "until": days[1]},
                                          alias="r", at="day")
        parts.append((f"""
            SELECT r.business_line, CAST(date_trunc(?, r.day) AS TIMESTAMP) AS period, r.truth, r.predicted,
                   CAST(sum(r.n) AS BIGINT) AS n
            FROM label_rollups r WHERE {where} AND NOT list_contains(?, r.truth)
            GROUP BY ALL HAVING sum(r.n) > 0""", [period] + args + [list(not_training)]))
    return parts


def _day_split(since, until) -> tuple[tuple | None, list[tuple]]:
    """[since, until) as whole days for the rollups ((first day, end day), or None when no day is
    whole) and the cut parts of days at either end for the log ([(since, until), ...])."""
    first = None if since is None else pd.Timestamp(since).ceil("D")
    end = None if until is None else pd.Timestamp(until).floor("D")
    if first is not None and end is not None and first >= end:
        return None, [(since, until)]  # inside one day, or two part-days that meet at midnight
    edges = []
    if first is not None and first != pd.Timestamp(since):
        edges.append((since, first.to_pydatetime()))
    if end is not None and end != pd.Timestamp(until):
        edges.append((end.to_pydatetime(), until))
    days = (None if first is None else first.date(), None if end is None else end.date())
    return days, edges


def rebuild_rollups(con) -> None:
    """Compute both rollups again from the whole log and its labels, with the SQL insert_predictions
    and insert_feedback use, and copy the labelled predictions' slice fields that are missing: for
    rows that reached the log or the labels without insert_predictions or insert_feedback (a bulk load)."""
    con.execute("DELETE FROM prediction_rollups; DELETE FROM label_rollups")
    con.execute(f"INSERT INTO prediction_rollups {_GRADED_ROLLUP.format(source='predictions')}")
    con.execute(f"INSERT INTO label_rollups {_LABEL_ROLLUP.format(sign=1, feedback=_DECIDED)}")
    insert_labelled_predictions(con, "feedback")


# Each rollup's key, and how its rows merge.
_ROLLUPS = {"prediction_rollups": ("model_id, version, business_line, day, label, bucket",
                                    "sum(n), sum(sum_top_prob), sum(sum_expected_grade)"),
            "label_rollups": ("model_id, version, business_line, day, truth, predicted", "sum(n)")}


def compact_rollups(con) -> int:
    """Merge the rollup rows that batches appended into one per key, on the days that have several,
    and drop label rows that undos brought to zero. Returns how many rows fewer the rollups hold.

    Rows a concurrent writer appends meanwhile are not in this transaction's snapshot, so they
    are neither deleted nor merged: they wait for the next compaction."""
    before = after = 0
    for table, (keys, sums) in _ROLLUPS.items():
        before += con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _rollup_days AS
                        SELECT DISTINCT model_id, day FROM (SELECT model_id, day FROM {table} GROUP BY {keys}
                                                           HAVING count(*) > 1 OR sum(n) = 0)""")
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _rollup_merged AS
                        SELECT {keys}, {sums} FROM {table} t SEMI JOIN _rollup_days d USING (model_id, day)
                        GROUP BY {keys} HAVING sum(n) <> 0""")
        con.execute(f"DELETE FROM {table} t USING _rollup_days d WHERE t.model_id = d.model_id AND t.day = d.day")
        con.execute(f"INSERT INTO {table} SELECT * FROM _rollup_merged")
        con.execute("DROP TABLE _rollup_days; DROP TABLE _rollup_merged")
        after += con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return before - after


# --- the audit sample and hard examples, labelled ---------------------------------------------


def audit_statistics(con, model_id: int, period: str, share: float, not_training: list[str],
                     **filters) -> pd.DataFrame:
    """Per business line and period, and per period over all lines (business_line NULL): audited
    (audit-sample predictions with a label, skip/unclear left out) and audit_correct. Read from the
    labels' side (few) joined to their predictions' slice fields (labelled_predictions), so it costs
    what the labels do, not the log."""
    where, args = _prediction_filters(model_id, **filters)
    return con.execute(f"""
        WITH f AS (SELECT f.prediction_id, f.label AS truth FROM {_DECIDED} f
                   WHERE f.model_id = ? AND NOT list_contains(?, f.label)
                     AND {_AUDIT.replace("p.prediction_id", "f.prediction_id")}),
        judged AS (SELECT p.business_line, date_trunc(?, p.created_at) AS period, p.label, f.truth
                   FROM f JOIN labelled_predictions p USING (prediction_id) WHERE {where})
        SELECT business_line, period, count(*) AS audited, count(*) FILTER (WHERE truth = label) AS audit_correct
        FROM judged GROUP BY GROUPING SETS ((business_line, period), (period))""",
                       [model_id, list(not_training), share, period] + args).df()


def hard_example_statistics(con, model_id: int, period: str, strategies: list[str], not_training: list[str],
                            **filters) -> pd.DataFrame:
    """Per business line and period, and per period over all lines (business_line NULL): hard_labelled
    (labelled predictions that a recorded batch of one of `strategies` drew, skip/unclear left out) and
    hard_correct. A label counts only when its own batch drew its prediction: imported labels (no
    batch), the demo's, an audit or random batch's never do. Read from the labels' side as
    audit_statistics is (the batch a label came with is not in the label rollups)."""
    where, args = _prediction_filters(model_id, **filters)
    return con.execute(f"""
        WITH f AS (SELECT d.prediction_id, d.label AS truth FROM {_DECIDED} d
                   JOIN feedback l USING (prediction_id) JOIN sample_batches b ON b.batch_id = l.batch_id
                   WHERE d.model_id = ? AND NOT list_contains(?, d.label) AND list_contains(?, b.strategy)
                     AND b.model_id = d.model_id AND list_contains(b.prediction_ids, d.prediction_id)),
        judged AS (SELECT p.business_line, date_trunc(?, p.created_at) AS period, p.label, f.truth
                   FROM f JOIN labelled_predictions p USING (prediction_id) WHERE {where})
        SELECT business_line, period, count(*) AS hard_labelled, count(*) FILTER (WHERE truth = label) AS hard_correct
        FROM judged GROUP BY GROUPING SETS ((business_line, period), (period))""",
                       [model_id, list(not_training), list(strategies), period] + args).df()


# --- ordinal models: the expected grade ---------------------------------------------------------

def grade_statistics(con, model_id: int, period: str, **filters) -> pd.DataFrame:
    """Per business line and period, and per period over all lines (business_line NULL): n and
    sum_expected_grade of an ordinal model's predictions. Whole days from the rollups, the part
    of a day that a since/until bound cuts from the log (as confidence_histogram)."""
    days, edges = _day_split(filters.get("since"), filters.get("until"))
    parts = []
    for a, b in edges:
        where, args = _prediction_filters(model_id, **{**filters, "since": a, "until": b})
        parts.append((f"""
            SELECT p.business_line, date_trunc(?, p.created_at) AS period, count(*) AS n,
                   sum({_EXPECTED_GRADE.format(probs="p.probs")}) AS sum_expected_grade
            FROM predictions p WHERE {where} GROUP BY ALL""", [period] + args))
    if days is not None:
        where, args = _prediction_filters(model_id, **{**filters, "since": days[0], "until": days[1]},
                                          alias="r", at="day")
        parts.append((f"""
            SELECT r.business_line, CAST(date_trunc(?, r.day) AS TIMESTAMP) AS period, CAST(sum(r.n) AS BIGINT) AS n,
                   sum(r.sum_expected_grade) AS sum_expected_grade
            FROM prediction_rollups r WHERE {where} GROUP BY ALL""", [period] + args))
    sql = f"""SELECT business_line, period, CAST(sum(n) AS BIGINT) AS n, sum(sum_expected_grade) AS sum_expected_grade
              FROM ({" UNION ALL ".join(q for q, _ in parts)})
              GROUP BY GROUPING SETS ((business_line, period), (period))"""
    return con.execute(sql, [a for _, part in parts for a in part]).df()


def grade_label_errors(con, model_id: int, period: str, grades: list[str], not_training: list[str],
                       **filters) -> pd.DataFrame:
    """Per business line and period, and per period over all lines (business_line NULL): how many
    labelled predictions of an ordinal model (graded_labels) and the sum of their distances in grades
    between the label given and the grade predicted (sum_abs_error), from the label rollups."""
    judged = _label_parts(model_id, period, not_training, filters)
    sql = f"""
        SELECT business_line, period, CAST(sum(n) AS BIGINT) AS graded_labels,
               sum(n * abs(list_position(?, truth) - list_position(?, predicted))) AS sum_abs_error
        FROM ({" UNION ALL ".join(q for q, _ in judged)}) WHERE list_contains(?, truth)
        GROUP BY GROUPING SETS ((business_line, period), (period))"""
    return con.execute(sql, [list(grades), list(grades)] + [a for _, part in judged for a in part]
                       + [list(grades)]).df()


# --- drift measures, and the pages' cache key -------------------------------------------------

def drift_cells(con, model_id: int, version: int, reference: str, period: str) -> pd.DataFrame:
    """The newest cached drift measures per business line and period start (measures as JSON text),
    with when they were measured."""
    return con.execute("""
        SELECT business_line, period_start, arg_max(n, computed_at) AS n, arg_max(measures, computed_at) AS measures,
               max(computed_at) AS computed_at
        FROM drift_cells WHERE model_id = ? AND version = ? AND reference = ? AND period = ?
        GROUP BY ALL""", [model_id, version, reference, period]).df()


def insert_drift_cells(con, model_id: int, version: int, reference: str, period: str, frame: pd.DataFrame) -> None:
    """Cache drift measures (columns business_line, period_start, n, measures)."""
    if frame.empty:
        return
    insert_frame(con, "_drift_batch", frame[["business_line", "period_start", "n", "measures"]],
                 """INSERT INTO drift_cells SELECT ?, ?, ?, business_line, ?, period_start, n, measures, ?
                    FROM _drift_batch""", [model_id, version, reference, period, now()])


def revision(con) -> tuple:
    """Changes whenever anything a page shows could have changed: a cache key for page data.
    On DuckLake, the latest snapshot: other processes' ids do not grow in order with this one's."""
    if id(con) in _lake_cursors:
        return tuple(con.execute(f"SELECT id FROM {LAKE}.current_snapshot()").fetchone())
    return con.execute("""SELECT (SELECT max(event_id) FROM events), (SELECT max(prediction_id) FROM predictions),
                                 (SELECT max(feedback_id) FROM feedback), (SELECT count(*) FROM feedback)""").fetchone()
