"""Labelled examples, the training and test data: imports (and their retry keys), cached tokens,
and the reads that training and the drift reference make of them."""
from __future__ import annotations

import pandas as pd

from .engine import _next_ids, _row, insert_frame, now
from .schema import _TRAINABLE_EXAMPLE


def insert_examples(con, model_id: int, frame: pd.DataFrame, split: str, source: str, user: str,
                    import_id: int | None = None) -> int:
    """Append labelled rows (columns text, label, business_line, created_at) in one batch."""
    batch = frame[["text", "label", "business_line", "created_at"]].copy()
    batch["example_id"] = _next_ids(con, "example_seq", len(batch))
    insert_frame(con, "_examples_batch", batch, """
        INSERT INTO examples
        SELECT example_id, ?, text, label, business_line, ?, ?, NULL, ?,
               coalesce(CAST(created_at AS TIMESTAMP), ?), ?
        FROM _examples_batch""", [model_id, split, source, import_id, now(), user])
    return len(batch)


def new_import_id(con) -> int:
    return _next_ids(con, "import_seq", 1)[0]


def examples_with_tokens(con, model_id: int, split: str, prep_hash: str,
                         after_example_id: int = -1, labels: list[str] | None = None,
                         example_ids: list[int] | None = None) -> pd.DataFrame:
    """Examples of one split (newer than `after_example_id`; only `example_ids` when given) with
    cached tokens, or NULL where none."""
    only = "" if example_ids is None else " AND {} IN (SELECT unnest(?::BIGINT[]))"  # filters both sides
    sql = f"""
        SELECT e.example_id, e.text, e.label, e.business_line, e.source, t.tokens
        FROM examples e
        LEFT JOIN (SELECT example_id, any_value(tokens) AS tokens FROM example_tokens  -- two trainings
                   WHERE prep_hash = ?{only.format("example_id")} GROUP BY example_id) t
                  ON t.example_id = e.example_id  -- may cache twice
        WHERE e.model_id = ? AND e.split = ? AND e.example_id > ?{only.format("e.example_id")}
          AND {_TRAINABLE_EXAMPLE}"""
    ids = [] if example_ids is None else [list(map(int, example_ids))]
    args = [prep_hash, *ids, model_id, split, after_example_id, *ids]
    if labels is not None:
        sql += " AND list_contains(?, e.label)"
        args.append(labels)
    return con.execute(sql + " ORDER BY e.example_id", args).df()


def sample_example_ids(con, model_id: int, split: str, up_to_example_id: int, n: int, seed: int,
                       labels: list[str] | None = None) -> list[int]:
    """At most `n` ids of a split's examples up to `up_to_example_id`, in a seeded hash order:
    the same draw for the same seed, without reading any text or tokens."""
    sql = f"SELECT example_id FROM examples e WHERE model_id = ? AND split = ? AND example_id <= ? AND {_TRAINABLE_EXAMPLE}"
    args = [model_id, split, up_to_example_id]
    if labels is not None:
        sql += " AND list_contains(?, label)"
        args.append(labels)
    rows = con.execute(sql + " ORDER BY hash(example_id + ?), example_id LIMIT ?", args + [seed, n]).fetchall()
    return [r[0] for r in rows]


def insert_tokens(con, prep_hash: str, frame: pd.DataFrame) -> None:
    """Cache tokens (columns example_id, tokens) for one preprocessing config."""
    if frame.empty:
        return
    insert_frame(con, "_tokens_batch", frame[["example_id", "tokens"]],
                 "INSERT INTO example_tokens SELECT example_id, ?, tokens FROM _tokens_batch", [prep_hash])


def example_summary(con, model_id: int) -> pd.DataFrame:
    return con.execute(f"""
        SELECT split, source, label, coalesce(business_line, '') AS business_line, count(*) AS rows
        FROM examples e WHERE model_id = ? AND {_TRAINABLE_EXAMPLE}
        GROUP BY ALL ORDER BY split, source, label, business_line""", [model_id]).df()


def examples_since(con, model_id: int, after_example_id: int) -> dict[str, int]:
    """Training rows added after `after_example_id`, counted by source."""
    rows = con.execute(f"""
        SELECT source, count(*) FROM examples e
        WHERE model_id = ? AND split = 'train' AND example_id > ? AND {_TRAINABLE_EXAMPLE} GROUP BY source""",
                       [model_id, after_example_id]).fetchall()
    return {source: n for source, n in rows}


def example_line_counts(con, model_id: int, max_example_id: int, split: str) -> dict:
    """Examples of a split a version could have seen, per business line (None: rows without one)."""
    return dict(con.execute(f"""
        SELECT business_line, count(*) FROM examples e
        WHERE model_id = ? AND split = ? AND example_id <= ? AND {_TRAINABLE_EXAMPLE} GROUP BY 1""",
                            [model_id, split, max_example_id]).fetchall())


def example_sample(con, model_id: int, max_example_id: int, split: str, k: int,
                   business_line: str | None = None) -> pd.DataFrame:
    """Up to k examples (text, label) of a split a version could have seen, at random, of one line or all."""
    sql = f"SELECT text, label FROM examples e WHERE model_id = ? AND split = ? AND example_id <= ? AND {_TRAINABLE_EXAMPLE}"
    args: list = [model_id, split, max_example_id]
    if business_line is not None:
        sql += " AND business_line = ?"
        args.append(business_line)
    return con.execute(sql + " ORDER BY hash(example_id, 'mms-drift') LIMIT ?", args + [k]).df()


def training_vocabulary(con, model_id: int, max_example_id: int, prep_hash: str) -> set[str]:
    """Every token of the training examples a version could have seen, as its tokenizer cut them."""
    rows = con.execute("""
        SELECT DISTINCT unnest(t.tokens) FROM example_tokens t JOIN examples e USING (example_id)
        WHERE e.model_id = ? AND e.split = 'train' AND e.example_id <= ? AND t.prep_hash = ?""",
                       [model_id, max_example_id, prep_hash]).fetchall()
    return {r[0] for r in rows}


def import_by_key(con, import_key: str) -> dict | None:
    """The first import written with this key: import_id, rows, file, created_at, created_by."""
    return _row(con.execute("""SELECT import_id, rows, file, created_at, created_by FROM import_keys
                               WHERE import_key = ? ORDER BY created_at LIMIT 1""", [import_key]))


def insert_import_key(con, import_key: str, model_id: int, import_id: int, split: str, rows: int, file: str,
                      user: str) -> None:
    con.execute("INSERT INTO import_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [import_key, model_id, import_id, split, rows, file, now(), user])
