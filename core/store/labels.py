"""Labels: first labels (feedback) and the training examples they make, team labelling (overlap,
second labels, reviews), the Label page's skips, guidelines and comments, and each label's history.

Every change to what is decided keeps the label rollups on decided labels (_recount_labels)."""
from __future__ import annotations

import pandas as pd

from .engine import _next_ids, _row, insert_frame, now, registered
from .predictions import _prediction_filters
from .schema import _AUDIT, _DECIDED, _LABEL_ROLLUP, _LABELLED_SELECT, _OVERLAP, _PERSON, _UNDECIDED


# --- feedback -----------------------------------------------------------------------------

def insert_feedback(con, model_id: int, frame: pd.DataFrame, user: str, batch_id: int | None,
                    not_training: list[str]) -> list[int]:
    """Record labels (columns prediction_id, text_key, label) and turn those not in `not_training`
    into training examples with source 'feedback'. Returns the feedback ids."""
    batch = frame[["prediction_id", "text_key", "label"]].copy()
    batch["feedback_id"] = _next_ids(con, "feedback_seq", len(batch))
    at = now()
    with registered(con, "_feedback_batch", batch):
        con.execute("""
            INSERT INTO feedback
            SELECT feedback_id, prediction_id, ?, text_key, label, ?, ?, ? FROM _feedback_batch""",
                    [model_id, batch_id, at, user])
        con.execute(f"INSERT INTO label_rollups {_LABEL_ROLLUP.format(sign=1, feedback='_feedback_batch')}")
        insert_labelled_predictions(con, "_feedback_batch")
        trainable = con.execute("""
            SELECT b.prediction_id, p.text, b.label, p.business_line
            FROM _feedback_batch b JOIN predictions p USING (prediction_id)
            WHERE NOT list_contains(?, b.label)""", [list(not_training)]).df()
    if not trainable.empty:
        trainable["example_id"] = _next_ids(con, "example_seq", len(trainable))
        insert_frame(con, "_feedback_examples", trainable, """
            INSERT INTO examples
            SELECT example_id, ?, text, label, business_line, 'train', 'feedback', prediction_id,
                   NULL, ?, ? FROM _feedback_examples""", [model_id, at, user])
    return batch["feedback_id"].tolist()


def feedback_rows(con, feedback_ids: list[int]) -> pd.DataFrame:
    """Labels by id, first and second labels alike (both take their ids from feedback_seq)."""
    return con.execute("""SELECT * FROM feedback WHERE list_contains(?, feedback_id)
                          UNION ALL SELECT * FROM second_labels WHERE list_contains(?, feedback_id)""",
                       [feedback_ids, feedback_ids]).df()


def delete_feedback(con, feedback_ids: list[int]) -> None:
    """Remove feedback and the training examples it created (an undo), and count it out of the rollups."""
    taken = "(SELECT * FROM feedback WHERE list_contains(?, feedback_id))"
    con.execute(f"INSERT INTO label_rollups {_LABEL_ROLLUP.format(sign=-1, feedback=taken)}", [feedback_ids])
    con.execute("""
        DELETE FROM examples WHERE source = 'feedback' AND prediction_id IN
            (SELECT prediction_id FROM feedback WHERE list_contains(?, feedback_id))""", [feedback_ids])
    con.execute("DELETE FROM feedback WHERE list_contains(?, feedback_id)", [feedback_ids])


def feedback_counts(con, model_id: int, user: str | None = None, since=None) -> dict[str, int]:
    """Labels given per label, second labels (team overlap) included: each is a labeller's decision."""
    sql = """SELECT label, count(*) FROM (SELECT model_id, label, created_by, created_at FROM feedback UNION ALL
             SELECT model_id, label, created_by, created_at FROM second_labels) WHERE model_id = ?"""
    sql, args = _by_whom_since(sql, [model_id], user, since)
    return dict(con.execute(sql + " GROUP BY label", args).fetchall())


def _by_whom_since(sql: str, args: list, user: str | None, since) -> tuple[str, list]:
    """A decisions query narrowed to one user's (None: anyone's) and to those from `since` on."""
    if user is not None:
        sql, args = sql + " AND created_by = ?", [*args, user]
    if since is not None:
        sql, args = sql + " AND created_at >= ?", [*args, pd.Timestamp(since).to_pydatetime()]
    return sql, args


# --- team labelling: overlap, second labels, review decisions ---------------------------------


def insert_overlap_share(con, model_id: int, share: float, user: str) -> None:
    con.execute("INSERT INTO overlap_settings VALUES (?, ?, ?, ?)", [model_id, float(share), now(), user])


def overlap_share(con, model_id: int) -> float:
    """The newest share set for the model (0: no overlap)."""
    row = con.execute("SELECT arg_max(share, set_at) FROM overlap_settings WHERE model_id = ?", [model_id]).fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0


def _open_for_second(user: str, share: float, labels: list[str]) -> tuple[str, list]:
    """Labelled items (alias f) another person decided with a model label, in the overlap share,
    without a second label or review yet, and not passed over by `user` before."""
    return (f"""f.created_by <> ? AND {_PERSON.format(who="f.created_by")}
        AND list_contains(?, f.label) AND {_OVERLAP.format(id="f.prediction_id")}
        AND f.prediction_id NOT IN (SELECT prediction_id FROM second_labels WHERE label <> 'skip' OR created_by = ?)
        AND f.prediction_id NOT IN (SELECT prediction_id FROM reviews)""", [user, list(labels), share, user])


def overlap_pool(con, model_id: int, user: str, share: float, labels: list[str], k: int, seed: int,
                 **filters) -> pd.DataFrame:
    """Up to k items of the slice open for `user`'s second label, in a seeded random order of
    their own (labellers at work together are not all handed the same items), with
    hard_example_pool's columns (never the first label: the second is given blind)."""
    where, args = _prediction_filters(model_id, **filters)
    open_sql, open_args = _open_for_second(user, share, labels)
    # as hard_example_pool: the slice's ids first (few columns), the k rows' texts and probs after
    return con.execute(f"""
        WITH open AS (SELECT f.prediction_id FROM feedback f WHERE f.model_id = ? AND {open_sql}),
        chosen AS (SELECT p.prediction_id FROM predictions p SEMI JOIN open USING (prediction_id) WHERE {where}
                   ORDER BY hash(p.prediction_id, ?, ?), p.prediction_id LIMIT ?)
        SELECT p.prediction_id, p.created_at, p.business_line, p.text, p.version AS logged_by, p.probs
        FROM chosen c JOIN predictions p USING (prediction_id)
        WHERE {where}
        ORDER BY hash(p.prediction_id, ?, ?), p.prediction_id""",
                       [model_id, *open_args, *args, int(seed), user, int(k), *args, int(seed), user]).df()


def open_for_second_label(con, model_id: int, prediction_ids: list[int], user: str, share: float,
                          labels: list[str]) -> set[int]:
    """Which of these labelled predictions `user` may now label a second time."""
    open_sql, open_args = _open_for_second(user, share, labels)
    rows = con.execute(f"SELECT f.prediction_id FROM feedback f WHERE f.model_id = ? AND "
                       f"list_contains(?, f.prediction_id) AND {open_sql}",
                       [model_id, list(map(int, prediction_ids)), *open_args]).fetchall()
    return {r[0] for r in rows}


def _recount_labels(con, prediction_ids: list[int], sign: int) -> None:
    """Count these items' decided labels into (sign 1) or out of (-1) the label rollups: called
    around a change of what is decided, so statistics see decided labels only."""
    decided = f"(SELECT * FROM {_DECIDED} WHERE list_contains(?, prediction_id))"
    con.execute(f"INSERT INTO label_rollups {_LABEL_ROLLUP.format(sign=sign, feedback=decided)}",
                [list(map(int, prediction_ids))])


def insert_second_labels(con, model_id: int, frame: pd.DataFrame, user: str, batch_id: int | None) -> list[int]:
    """Record second labels (columns prediction_id, text_key, label), keeping the label rollups on
    decided labels; returns their ids (from feedback's sequence, so undo takes them)."""
    batch = frame[["prediction_id", "text_key", "label"]].copy()
    batch["feedback_id"] = _next_ids(con, "feedback_seq", len(batch))
    ids = batch["prediction_id"].tolist()
    _recount_labels(con, ids, -1)
    insert_frame(con, "_second_batch", batch, """INSERT INTO second_labels
                 SELECT feedback_id, prediction_id, ?, text_key, label, ?, ?, ? FROM _second_batch""",
                 [model_id, batch_id, now(), user])
    _recount_labels(con, ids, 1)
    return batch["feedback_id"].tolist()


def delete_second_labels(con, feedback_ids: list[int]) -> list[int]:
    """Take second labels back (an undo); returns the predictions they were for."""
    ids = [r[0] for r in con.execute("SELECT prediction_id FROM second_labels WHERE list_contains(?, feedback_id)",
                                     [list(map(int, feedback_ids))]).fetchall()]
    if ids:
        _recount_labels(con, ids, -1)
        con.execute("DELETE FROM second_labels WHERE list_contains(?, feedback_id)", [list(map(int, feedback_ids))])
        _recount_labels(con, ids, 1)
    return ids


def relabelled(con, feedback_ids: list[int]) -> list[int]:
    """Predictions of these (first) labels that a second labeller or a review has since judged."""
    return [r[0] for r in con.execute("""
        SELECT DISTINCT f.prediction_id FROM feedback f
        WHERE list_contains(?, f.feedback_id)
          AND (f.prediction_id IN (SELECT prediction_id FROM second_labels WHERE label <> 'skip')
               OR f.prediction_id IN (SELECT prediction_id FROM reviews))""",
                                      [list(map(int, feedback_ids))]).fetchall()]


def review_queue(con, model_id: int) -> pd.DataFrame:
    """Items waiting for an owner's decision, oldest first: disagreements and first labels of
    unclear, with both labels, who gave them, and the prediction."""
    return con.execute(f"""
        SELECT f.prediction_id, p.business_line, p.text, p.label AS predicted, p.top_prob,
               f.label AS first_label, f.created_by AS first_by, s.label AS second_label, s.created_by AS second_by,
               CASE WHEN f.label = 'unclear' OR s.label = 'unclear' THEN 'unclear' ELSE 'disagreement' END AS reason,
               greatest(f.created_at, coalesce(s.created_at, f.created_at)) AS waiting_since
        FROM feedback f JOIN predictions p USING (prediction_id)
        LEFT JOIN (SELECT * FROM second_labels WHERE label <> 'skip') s USING (prediction_id)
        WHERE f.model_id = ? AND f.prediction_id NOT IN (SELECT prediction_id FROM reviews)
          AND (f.label = 'unclear' OR f.prediction_id IN {_UNDECIDED})
        ORDER BY waiting_since, f.prediction_id""", [model_id]).df()


def insert_review(con, model_id: int, prediction_id: int, label: str, reason: str, trainable: bool,
                  user: str) -> None:
    """An owner's decision on one item: the review row, its training example replaced by one with
    the decided label (none when not `trainable`), and the label rollups moved to it."""
    review_id = _next_ids(con, "feedback_seq", 1)[0]
    _recount_labels(con, [prediction_id], -1)
    at = now()
    con.execute("INSERT INTO reviews VALUES (?, ?, ?, ?, ?, ?, ?)",
                [review_id, prediction_id, model_id, label, reason, at, user])
    con.execute("DELETE FROM examples WHERE model_id = ? AND prediction_id = ? AND source IN ('feedback', 'review')",
                [model_id, prediction_id])
    if trainable:
        example_id = _next_ids(con, "example_seq", 1)[0]
        con.execute("""INSERT INTO examples
                       SELECT ?, ?, text, ?, business_line, 'train', 'review', prediction_id, NULL, ?, ?
                       FROM predictions WHERE prediction_id = ?""",
                    [example_id, model_id, label, at, user, prediction_id])
    _recount_labels(con, [prediction_id], 1)


def double_labelled(con, model_id: int, audit_share: float) -> pd.DataFrame:
    """Every item labelled twice by two persons (second label not a skip; "unclear" kept, as its own
    outcome): business line, both labels and who gave them, the review's decision if any, and
    whether the item is in the audit sample."""
    return con.execute(f"""
        SELECT f.prediction_id, p.business_line, f.label AS first_label, f.created_by AS first_by,
               s.label AS second_label, s.created_by AS second_by, r.label AS reviewed,
               {_AUDIT.replace("p.prediction_id", "f.prediction_id")} AS audit
        FROM feedback f JOIN predictions p USING (prediction_id)
        JOIN second_labels s USING (prediction_id)
        LEFT JOIN (SELECT prediction_id, arg_max(label, review_id) AS label FROM reviews GROUP BY ALL) r
                  USING (prediction_id)
        WHERE f.model_id = ? AND s.label <> 'skip'
          AND {_PERSON.format(who="f.created_by")} AND {_PERSON.format(who="s.created_by")}
        ORDER BY f.prediction_id""", [audit_share, model_id]).df()


def decision_times(con, model_id: int) -> pd.DataFrame:
    """When each person decided (first and second labels, and the Label page's skips): user,
    created_at, and kind: labelled (a model label), skipped (skip, or passed over) or unclear."""
    kind = "CASE label WHEN 'skip' THEN 'skipped' WHEN 'unclear' THEN 'unclear' ELSE 'labelled' END"
    return con.execute(f"""
        SELECT * FROM (
            SELECT created_by AS "user", created_at, {kind} AS kind FROM feedback WHERE model_id = ?
            UNION ALL SELECT created_by, created_at, {kind} FROM second_labels WHERE model_id = ?
            UNION ALL SELECT created_by, created_at, 'skipped' FROM label_skips WHERE model_id = ?)
        WHERE {_PERSON.format(who='"user"')}
        ORDER BY 1, 2""", [model_id, model_id, model_id]).df()


def label_history(con, model_id: int, prediction_id: int) -> pd.DataFrame:
    """Everything that happened to one prediction, oldest first: its logging, first and second labels,
    skips, undone labels (from the audit events) and reviews; columns at, user, step, label, detail."""
    args = [model_id, prediction_id]
    return con.execute("""
        SELECT * FROM (
            SELECT created_at AS "at", created_by AS "user", 'predicted' AS step, label,
                   'version ' || version || ', probability ' || round(top_prob, 3) || ', ' || business_line
                   || ' (' || source || ')' AS detail, 0 AS ord
            FROM predictions WHERE model_id = ? AND prediction_id = ?
            UNION ALL SELECT created_at, created_by, 'label', label, NULL, 1
            FROM feedback WHERE model_id = ? AND prediction_id = ?
            UNION ALL SELECT created_at, created_by, 'second label', label, NULL, 2
            FROM second_labels WHERE model_id = ? AND prediction_id = ?
            UNION ALL SELECT created_at, created_by, 'skipped', NULL, NULL, 3
            FROM label_skips WHERE model_id = ? AND prediction_id = ?
            UNION ALL SELECT "at", "user", 'label undone', NULL, NULL, 4
            FROM events WHERE model_id = ? AND action = 'undo_label'
              AND list_contains(CAST(json_extract(details, '$.prediction_ids') AS BIGINT[]), ?)
            UNION ALL SELECT created_at, created_by, 'review', label, reason, 5
            FROM reviews WHERE model_id = ? AND prediction_id = ?)
        ORDER BY "at", ord""", args * 6).df().drop(columns="ord")


# --- the Label page: skips, guidelines and comments on decisions -------------------------------

def insert_skip(con, model_id: int, prediction_id: int, user: str, batch_id: int | None) -> None:
    con.execute("INSERT INTO label_skips VALUES (?, ?, ?, ?, ?)", [prediction_id, model_id, batch_id, now(), user])


def delete_skip(con, model_id: int, prediction_id: int, user: str) -> int:
    """Remove `user`'s newest skip of the prediction (an undo); returns how many rows went (0 or 1)."""
    newest = con.execute("""SELECT max(created_at) FROM label_skips
                            WHERE model_id = ? AND prediction_id = ? AND created_by = ?""",
                         [model_id, prediction_id, user]).fetchone()[0]
    if newest is None:
        return 0
    con.execute("""DELETE FROM label_skips WHERE model_id = ? AND prediction_id = ? AND created_by = ?
                   AND created_at = ?""", [model_id, prediction_id, user, newest])
    return 1


def skipped_predictions(con, model_id: int, user: str, prediction_ids: list[int] | None = None) -> set[int]:
    """Which of these predictions (None: any) `user` has skipped on the Label page."""
    sql, args = "SELECT DISTINCT prediction_id FROM label_skips WHERE model_id = ? AND created_by = ?", [model_id, user]
    if prediction_ids is not None:
        sql += " AND list_contains(?, prediction_id)"
        args.append(list(map(int, prediction_ids)))
    return {r[0] for r in con.execute(sql, args).fetchall()}


def skip_count(con, model_id: int, user: str | None = None, since=None) -> int:
    sql, args = _by_whom_since("SELECT count(*) FROM label_skips WHERE model_id = ?", [model_id], user, since)
    return con.execute(sql, args).fetchone()[0]


def insert_guidelines(con, model_id: int, text: str, user: str) -> None:
    con.execute("INSERT INTO guidelines VALUES (?, ?, ?, ?)", [model_id, text, now(), user])


def latest_guidelines(con, model_id: int) -> dict | None:
    """The newest guidelines of the model (text, created_at, created_by), or None."""
    return _row(con.execute("""SELECT text, created_at, created_by FROM guidelines WHERE model_id = ?
                               ORDER BY created_at DESC LIMIT 1""", [model_id]))


def insert_comment(con, model_id: int, prediction_id: int, decision: str, comment: str, user: str) -> None:
    con.execute("INSERT INTO decision_comments VALUES (?, ?, ?, ?, ?, ?)",
                [model_id, int(prediction_id), decision, comment, now(), user])


def delete_comment(con, model_id: int, prediction_id: int, decision: str, user: str) -> None:
    """Remove `user`'s newest comment on that decision (its undo)."""
    con.execute("""DELETE FROM decision_comments WHERE model_id = ? AND prediction_id = ? AND decision = ?
                   AND created_by = ? AND created_at = (
                       SELECT max(created_at) FROM decision_comments
                       WHERE model_id = ? AND prediction_id = ? AND decision = ? AND created_by = ?)""",
                [model_id, int(prediction_id), decision, user] * 2)


def decision_comments(con, model_id: int, prediction_ids: list[int]) -> pd.DataFrame:
    """The comments on these predictions' decisions, oldest first."""
    return con.execute("""SELECT prediction_id, decision, comment, created_by, created_at FROM decision_comments
                          WHERE model_id = ? AND list_contains(?, prediction_id)
                          ORDER BY created_at, prediction_id""", [model_id, list(map(int, prediction_ids))]).df()


def insert_labelled_predictions(con, labels: str) -> None:
    """Copy the slice fields of the predictions in `labels` (a table or view with prediction_id)
    that have none yet."""
    con.execute(f"""INSERT INTO labelled_predictions {_LABELLED_SELECT.format(labels=labels)}
                    WHERE p.prediction_id NOT IN (SELECT prediction_id FROM labelled_predictions)""")
