"""Shadow versions: which version of a model is in shadow, its answers to the logged predictions, and
the sums its evidence is computed from. A version in shadow scores the live predictions in the
background and never answers; its answers carry the slice fields and the answering version's label
and confidence copied from the log, so the evidence (per line x period: agreement, both estimates,
who was right where they differ) reads these rows only."""
from __future__ import annotations

import pandas as pd

from .engine import _rows, insert_frame, now
from .schema import _AUDIT, _BUCKET, _DECIDED


def insert_shadow(con, model_id: int, version: int | None, user: str) -> None:
    con.execute("INSERT INTO shadows VALUES (?, ?, ?, ?)", [model_id, version, now(), user])


def current_shadows(con, model_id: int | None = None) -> list[dict]:
    """The version in shadow (model_id, version, at, by) of every model (or the one given) that has one:
    its newest shadows row names a version, which is not the active one and was not activated since
    (once it answers, there is nothing left to shadow; a rollback does not bring its shadow back)."""
    where, args = ("WHERE model_id = ?", [model_id]) if model_id is not None else ("", [])
    return _rows(con.execute(f"""
        WITH newest AS (SELECT model_id, version, "at", "by" FROM shadows {where}
                        QUALIFY row_number() OVER (PARTITION BY model_id ORDER BY "at" DESC) = 1)
        SELECT n.model_id, n.version, n."at", n."by" FROM newest n JOIN models m USING (model_id)
        WHERE n.version IS NOT NULL AND n.version IS DISTINCT FROM m.active_version
          AND NOT EXISTS (SELECT 1 FROM events e WHERE e.model_id = n.model_id AND e.action = 'activate'
                            AND e."at" >= n."at"
                            AND TRY_CAST(json_extract_string(e.details, '$.to_version') AS INTEGER) = n.version)
        ORDER BY n.model_id""", args))


def shadow_watermark(con, model_id: int, version: int):
    """The newest logged_at among the predictions this version scored in shadow (None: none yet)."""
    return con.execute("SELECT max(logged_at) FROM shadow_predictions WHERE model_id = ? AND version = ?",
                       [model_id, version]).fetchone()[0]


def shadow_pending(con, model_id: int, version: int, since, limit: int) -> pd.DataFrame:
    """Up to `limit` predictions of the model logged at or after `since` that `version` has not scored
    in shadow (answered by another version), oldest first: prediction_id, version, text, text_key,
    business_line, label, top_prob, created_at, logged_at. The log is read from `since` on, so its
    zone maps skip the rest; the scored side of the anti join is cut at the same time."""
    return con.execute("""
        SELECT p.prediction_id, p.version, p.text, p.text_key, p.business_line, p.label, p.top_prob, p.created_at,
               p.logged_at
        FROM predictions p
        ANTI JOIN (SELECT prediction_id FROM shadow_predictions
                   WHERE model_id = ? AND version = ? AND logged_at >= ?) s USING (prediction_id)
        WHERE p.model_id = ? AND p.logged_at >= ? AND p.version <> ?
        ORDER BY p.logged_at, p.prediction_id LIMIT ?""",
                       [model_id, version, since, model_id, since, version, int(limit)]).df()


def shadow_pending_count(con, model_id: int, version: int, since) -> int:
    """How many predictions logged at or after `since` (by another version) the shadow has not scored."""
    return con.execute("""
        SELECT count(*) FROM predictions p
        ANTI JOIN (SELECT prediction_id FROM shadow_predictions
                   WHERE model_id = ? AND version = ? AND logged_at >= ?) s USING (prediction_id)
        WHERE p.model_id = ? AND p.logged_at >= ? AND p.version <> ?""",
                       [model_id, version, since, model_id, since, version]).fetchone()[0]


_SHADOW_COLUMNS = ("prediction_id", "model_id", "version", "active_version", "text_key", "business_line",
                   "created_at", "logged_at", "label", "top_prob", "probs", "active_label", "active_top_prob",
                   "scored_at")


def insert_shadow_predictions(con, frame: pd.DataFrame) -> int:
    """Append the shadow's answers (of one model and version; columns _SHADOW_COLUMNS but scored_at),
    leaving out any it has already (two catch-ups at once); how many were given."""
    if frame.empty:
        return 0
    batch = frame.assign(scored_at=now())[list(_SHADOW_COLUMNS)]
    insert_frame(con, "_shadow_batch", batch,
                 f"INSERT INTO shadow_predictions ({', '.join(_SHADOW_COLUMNS)}) "
                 f"SELECT {', '.join(_SHADOW_COLUMNS[:10])}, CAST(probs AS DOUBLE[]), {', '.join(_SHADOW_COLUMNS[11:])} "
                 "FROM _shadow_batch b WHERE b.prediction_id NOT IN (SELECT prediction_id FROM shadow_predictions "
                 "WHERE model_id = ? AND version = ? AND prediction_id BETWEEN ? AND ?)",
                 [int(batch["model_id"].iloc[0]), int(batch["version"].iloc[0]), int(batch["prediction_id"].min()),
                  int(batch["prediction_id"].max())])
    return len(batch)


def shadow_scored_count(con, model_id: int, version: int, since=None) -> int:
    """Predictions `version` scored in shadow, of those logged at or after `since` (None: all)."""
    return con.execute("""SELECT count(*) FROM shadow_predictions WHERE model_id = ? AND version = ?
                          AND (CAST(? AS TIMESTAMP) IS NULL OR logged_at >= ?)""",
                       [model_id, version, since, since]).fetchone()[0]


def shadow_versions_scored(con, model_id: int) -> list[int]:
    """The versions that have scored predictions in shadow, newest version first."""
    return [r[0] for r in con.execute("SELECT DISTINCT version FROM shadow_predictions WHERE model_id = ? "
                                      "ORDER BY version DESC", [model_id]).fetchall()]


def shadow_counts(con, model_id: int, version: int, period: str, share: float, not_training: list[str]) -> pd.DataFrame:
    """Per business line and period of the predictions `version` scored in shadow: n, agree (same
    label as the answer), active_versions, and over the decided labels (skip/unclear left out):
    disagree_labelled with active_right and shadow_right among them; audited (labelled audit-sample
    items) with active_audit_correct and shadow_audit_correct."""
    audit = _AUDIT.replace("p.prediction_id", "s.prediction_id")
    return con.execute(f"""
        WITH s AS (SELECT * FROM shadow_predictions WHERE model_id = ? AND version = ?),
        l AS (SELECT d.prediction_id, d.label AS truth FROM {_DECIDED} d
              WHERE d.model_id = ? AND NOT list_contains(?, d.label))
        SELECT s.business_line, date_trunc(?, s.created_at) AS period, count(*) AS n,
               count(*) FILTER (WHERE s.label = s.active_label) AS agree,
               list(DISTINCT s.active_version ORDER BY s.active_version) AS active_versions,
               count(l.truth) FILTER (WHERE s.label <> s.active_label) AS disagree_labelled,
               count(*) FILTER (WHERE s.label <> s.active_label AND l.truth = s.active_label) AS active_right,
               count(*) FILTER (WHERE s.label <> s.active_label AND l.truth = s.label) AS shadow_right,
               count(l.truth) FILTER (WHERE {audit}) AS audited,
               count(*) FILTER (WHERE {audit} AND l.truth = s.active_label) AS active_audit_correct,
               count(*) FILTER (WHERE {audit} AND l.truth = s.label) AS shadow_audit_correct
        FROM s LEFT JOIN l USING (prediction_id)
        GROUP BY ALL ORDER BY period, business_line""",
                       [model_id, version, model_id, list(not_training), period, share, share, share]).df()


def shadow_histogram(con, model_id: int, version: int, period: str) -> pd.DataFrame:
    """Per side ('active': the answering version, 'shadow'), business line, period, version and
    confidence bucket of the predictions `version` scored in shadow: n and sum_top_prob, the rows
    monitoring.estimate turns into an estimated accuracy (both sides over the same predictions)."""
    bucket = {side: _BUCKET.replace("top_prob", column) for side, column in
              (("active", "active_top_prob"), ("shadow", "top_prob"))}
    return con.execute(f"""
        SELECT 'active' AS side, business_line, date_trunc(?, created_at) AS period, active_version AS version,
               {bucket["active"]} AS bucket, count(*) AS n, sum(active_top_prob) AS sum_top_prob
        FROM shadow_predictions WHERE model_id = ? AND version = ? GROUP BY ALL
        UNION ALL
        SELECT 'shadow', business_line, date_trunc(?, created_at), version, {bucket["shadow"]}, count(*),
               sum(top_prob)
        FROM shadow_predictions WHERE model_id = ? AND version = ? GROUP BY ALL""",
                       [period, model_id, version, period, model_id, version]).df()


def shadow_probabilities(con, model_id: int, version: int, prediction_ids: list[int]) -> pd.DataFrame:
    """The shadow's probabilities (prediction_id, probs) for these predictions, where it scored their
    text (any prediction of the same normalised text: a version's answer to a text never changes)."""
    ids = [int(i) for i in prediction_ids]
    return con.execute("""
        WITH asked AS (SELECT prediction_id, text_key FROM predictions
                       WHERE model_id = ? AND prediction_id BETWEEN ? AND ? AND list_contains(?, prediction_id)),
        scored AS (SELECT text_key, arg_max(probs, prediction_id) AS probs FROM shadow_predictions
                   WHERE model_id = ? AND version = ? GROUP BY text_key)
        SELECT a.prediction_id, s.probs FROM asked a JOIN scored s USING (text_key)""",
                       [model_id, min(ids, default=0), max(ids, default=0), ids, model_id, version]).df()
