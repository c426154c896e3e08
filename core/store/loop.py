"""The loop that runs itself: retraining policies and their runs, alert settings, alerts and their
webhook delivery attempts (issue 26)."""
from __future__ import annotations

import json

import pandas as pd

from .engine import _equal, _next_ids, _row, _rows, now


def new_event_id(con) -> int:
    """An id from the event sequence, for a row that an audit event of the same id starts."""
    return _next_ids(con, "event_seq", 1)[0]


def add_event_with_id(con, event_id: int, user: str, action: str, model_id: int | None, details: dict) -> None:
    con.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                [event_id, now(), user, action, model_id, json.dumps(details, ensure_ascii=False, default=str)])


# Policies and alert settings are alike: append-only rows per model, the newest of which holds.
_SETTINGS_TABLES = ("policies", "alert_settings")


def _insert_settings(con, table: str, model_id: int, settings_json: str, user: str) -> None:
    assert table in _SETTINGS_TABLES
    con.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?)", [model_id, settings_json, now(), user])


def _settings_row(con, table: str, model_id: int) -> dict | None:
    assert table in _SETTINGS_TABLES
    return _row(con.execute(f"SELECT settings, set_at, set_by FROM {table} WHERE model_id = ? "
                            "ORDER BY set_at DESC LIMIT 1", [model_id]))


def _models_with_settings(con, table: str) -> list[dict]:
    assert table in _SETTINGS_TABLES
    return _rows(con.execute(f"""
        SELECT s.model_id, m.name, s.settings, s.set_at, s.set_by FROM {table} s JOIN models m USING (model_id)
        QUALIFY row_number() OVER (PARTITION BY s.model_id ORDER BY s.set_at DESC) = 1 ORDER BY m.name"""))


def insert_policy(con, model_id: int, settings_json: str, user: str) -> None:
    _insert_settings(con, "policies", model_id, settings_json, user)


def policy_row(con, model_id: int) -> dict | None:
    """The model's newest policy: settings (JSON), set_at, set_by."""
    return _settings_row(con, "policies", model_id)


def models_with_policy(con) -> list[dict]:
    """Every model's newest policy with the model's name: model_id, name, settings, set_at, set_by."""
    return _models_with_settings(con, "policies")


_RUN_COLUMNS = ('run_id, model_id, "trigger", details, mode, state, version, result, worker, run_by, started_at, '
                'updated_at, finished_at')


def insert_run(con, run_id: int, model_id: int, trigger: str, details: str, mode: str, state: str,
               worker: str, user: str) -> None:
    con.execute(f"INSERT INTO policy_runs ({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, '', ?, ?, ?, ?, NULL)",
                [run_id, model_id, trigger, details, mode, state, worker, user, now(), now()])


def update_run(con, run_id: int, **fields) -> None:
    """Change a run's state, version, details, result or worker; a closed state sets finished_at."""
    allowed = {"state", "version", "details", "result", "worker", "finished_at"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"not a run field: {', '.join(sorted(unknown))}")
    fields["updated_at"] = now()
    assignments = ", ".join(f"{k} = ?" for k in fields)
    con.execute(f"UPDATE policy_runs SET {assignments} WHERE run_id = ?", [*fields.values(), run_id])


def run_row(con, run_id: int) -> dict | None:
    return _row(con.execute(f"SELECT {_RUN_COLUMNS} FROM policy_runs WHERE run_id = ?", [run_id]))


def run_rows(con, model_id: int, states: list[str] | None = None, limit: int = 1000) -> list[dict]:
    """A model's runs, newest first (only those in `states` when given)."""
    sql, args = f"SELECT {_RUN_COLUMNS} FROM policy_runs WHERE model_id = ?", [model_id]
    if states is not None:
        sql += " AND list_contains(?, state)"
        args.append(list(states))
    return _rows(con.execute(sql + " ORDER BY started_at DESC, run_id DESC LIMIT ?", args + [limit]))


def newest_max_example_id(con, model_id: int) -> int:
    """The newest example any version of the model could have seen (-1 without versions)."""
    return int(con.execute("SELECT coalesce(max(max_example_id), -1) FROM versions WHERE model_id = ?",
                           [model_id]).fetchone()[0])


def insert_alert_settings(con, model_id: int, settings_json: str, user: str) -> None:
    _insert_settings(con, "alert_settings", model_id, settings_json, user)


def alert_settings_row(con, model_id: int) -> dict | None:
    return _settings_row(con, "alert_settings", model_id)


def models_with_alert_settings(con) -> list[dict]:
    return _models_with_settings(con, "alert_settings")


_ALERT_COLUMNS = ("alert_id, model_id, kind, subject, message, details, raised_at, state, acknowledged_at, "
                  "acknowledged_by, delivery, url, attempts, next_attempt_at")


def alert_subjects(con, model_id: int) -> set[tuple[str, str]]:
    """(kind, subject) of every alert the model has raised: each is raised once."""
    return set(con.execute("SELECT DISTINCT kind, subject FROM alerts WHERE model_id = ?", [model_id]).fetchall())


def insert_alert(con, alert_id: int, model_id: int, kind: str, subject: str, message: str, details: str,
                 delivery: str, url: str) -> None:
    con.execute(f"INSERT INTO alerts ({_ALERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 'open', NULL, NULL, ?, ?, 0, ?)",
                [alert_id, model_id, kind, subject, message, details, now(), delivery, url,
                 now() if delivery == "pending" else None])


def alert_row(con, alert_id: int) -> dict | None:
    return _row(con.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE alert_id = ?", [alert_id]))


def alert_rows(con, model_id: int | None = None, state: str | None = None, limit: int = 1000) -> pd.DataFrame:
    """Alerts, newest first, with the model's name (one model's or all; one state or all)."""
    sql = f"SELECT m.name AS model, {', '.join('a.' + c for c in _ALERT_COLUMNS.split(', '))} " \
          f"FROM alerts a JOIN models m USING (model_id) WHERE 1=1"
    where, args = _equal(**{"a.model_id": model_id, "a.state": state})
    sql += where
    return con.execute(sql + " ORDER BY a.raised_at DESC, a.alert_id DESC LIMIT ?", args + [limit]).df()


def acknowledge_alert(con, alert_id: int, user: str) -> None:
    con.execute("UPDATE alerts SET state = 'acknowledged', acknowledged_at = ?, acknowledged_by = ? "
                "WHERE alert_id = ?", [now(), user, alert_id])


def due_deliveries(con, limit: int = 100) -> list[dict]:
    """Alerts whose webhook delivery is pending and due now, oldest first."""
    return _rows(con.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE delivery = 'pending' AND next_attempt_at <= ? "
                             "ORDER BY next_attempt_at, alert_id LIMIT ?", [now(), limit]))


def next_delivery_at(con):
    """When the earliest pending delivery is due (None: none pending)."""
    return con.execute("SELECT min(next_attempt_at) FROM alerts WHERE delivery = 'pending'").fetchone()[0]


def record_delivery(con, alert_id: int, attempt: int, url: str, ok: bool, status: int | None, error: str,
                    seconds: float, delivery: str, next_attempt_at) -> None:
    """One delivery attempt, and the alert's delivery state after it, in the caller's transaction."""
    con.execute("INSERT INTO alert_deliveries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [alert_id, attempt, now(), url, ok, status, error, seconds])
    con.execute("UPDATE alerts SET delivery = ?, attempts = ?, next_attempt_at = ? WHERE alert_id = ?",
                [delivery, attempt, next_attempt_at, alert_id])


def delivery_rows(con, alert_id: int) -> pd.DataFrame:
    return con.execute('SELECT attempt, "at", url, ok, status, error, seconds FROM alert_deliveries '
                       'WHERE alert_id = ? ORDER BY attempt', [alert_id]).df()


# Leases: work one process of a deployment does at a time (core.leases). Taking one first bumps the
# single row of lease_claims, so two takes at once conflict (DuckLake's appends alone never would)
# and the second is rolled back.

def lease_row(con, name: str) -> dict | None:
    """Who holds the lease `name` and until when (holder, until), or None: never taken."""
    return _row(con.execute('SELECT holder, "until" FROM leases WHERE name = ? ORDER BY "until" DESC LIMIT 1', [name]))


def put_lease(con, name: str, holder: str, until) -> None:
    """`holder` holds the lease `name` until `until` (in the caller's transaction, after its checks)."""
    con.execute("UPDATE lease_claims SET n = n + 1")
    con.execute("DELETE FROM leases WHERE name = ?", [name])
    con.execute("INSERT INTO leases VALUES (?, ?, ?, ?)", [name, holder, until, now()])


def renew_lease(con, name: str, holder: str, until) -> bool:
    """Extend `holder`'s lease `name` to `until`; False when it is not (or no longer) theirs."""
    return bool(con.execute('UPDATE leases SET "until" = ? WHERE name = ? AND holder = ?',
                            [until, name, holder]).fetchone()[0])
