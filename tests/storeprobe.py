"""Looks into a store that only tests need: what a failed write must leave unchanged, and what a
batch recorded. The product's SQL stays in core/store/; these read-only queries are the tests' own."""
from __future__ import annotations

TABLES = ("models", "versions", "examples", "predictions", "feedback", "sample_batches", "events")


def table_counts(con) -> dict[str, int]:
    """Row counts of every table: what a failed import or a crash must leave unchanged."""
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def schema_version(con) -> int:
    return con.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] or 0


def prediction_count(con, model_id: int | None = None) -> int:
    if model_id is None:
        return con.execute("SELECT count(*) FROM predictions").fetchone()[0]
    return con.execute("SELECT count(*) FROM predictions WHERE model_id = ?", [model_id]).fetchone()[0]


def batch_row(con, batch_id: int) -> dict | None:
    """A recorded hard-example batch as a dict (strategy, prediction_ids, params, ...)."""
    cur = con.execute("SELECT * FROM sample_batches WHERE batch_id = ?", [batch_id])
    rows = cur.fetchall()
    return dict(zip([d[0] for d in cur.description], rows[0])) if rows else None


def prediction_rollup_sums(con, business_line: str) -> list[tuple]:
    """(day, label, bucket, n, sum_top_prob, sum_expected_grade) per key of one business line's prediction rollups."""
    return con.execute("""SELECT day, label, bucket, sum(n), sum(sum_top_prob), sum(sum_expected_grade)
                          FROM prediction_rollups WHERE business_line = ? GROUP BY ALL ORDER BY ALL""",
                       [business_line]).fetchall()


def prediction_rollup_rows(con, business_line: str) -> list[tuple]:
    """(rows, predictions) per key of one business line's prediction rollups: several rows per key until compacted."""
    return con.execute("""SELECT count(*), sum(n) FROM prediction_rollups WHERE business_line = ?
                          GROUP BY model_id, version, day, label, bucket ORDER BY ALL""", [business_line]).fetchall()
