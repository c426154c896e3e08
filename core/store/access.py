"""Who may do what, and what they did: users, API tokens, sign-in attempts, dashboard sessions, the
secrets that sign them, and the audit log of events."""
from __future__ import annotations

import json

import pandas as pd

from .engine import _equal, _next_ids, _row, now


# --- events -------------------------------------------------------------------------------

def add_event(con, user: str, action: str, model_id: int | None, details: dict) -> None:
    con.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                [_next_ids(con, "event_seq", 1)[0], now(), user, action, model_id,
                 json.dumps(details, ensure_ascii=False, default=str)])


def events(con, model_id: int | None = None, action: str | None = None, limit: int = 1000) -> pd.DataFrame:
    where, args = _equal(model_id=model_id, action=action)
    sql = f'SELECT event_id, "at", "user", action, model_id, details FROM events WHERE 1=1{where}'
    sql += ' ORDER BY "at" DESC, event_id DESC LIMIT ?'  # on DuckLake each process takes ids from its own block
    return con.execute(sql, args + [limit]).df()


# --- users and tokens ---------------------------------------------------------------------

def user_row(con, name: str) -> dict | None:
    return _row(con.execute("SELECT name, role, password_hash FROM users WHERE name = ?", [name]))


def user_count(con) -> int:
    return con.execute("SELECT count(*) FROM users").fetchone()[0]


def all_users(con) -> pd.DataFrame:
    return con.execute("SELECT name, role, created_at, created_by FROM users ORDER BY name").df()


def upsert_user(con, name: str, role: str, password_hash: str, by: str) -> None:
    """Add a user, or replace one's role and password: either ends every session they had."""
    con.execute("DELETE FROM sessions WHERE name = ?", [name])
    con.execute("DELETE FROM users WHERE name = ?", [name])
    con.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?)", [name, role, password_hash, now(), by])


def delete_user(con, name: str) -> int:
    n = con.execute("SELECT count(*) FROM users WHERE name = ?", [name]).fetchone()[0]
    con.execute("DELETE FROM api_tokens WHERE name = ?", [name])
    con.execute("DELETE FROM sessions WHERE name = ?", [name])  # a user added again later starts signed out
    con.execute("DELETE FROM users WHERE name = ?", [name])
    return n


def insert_token(con, token_hash: str, name: str, label: str, by: str) -> None:
    con.execute("INSERT INTO api_tokens VALUES (?, ?, ?, ?, ?)", [token_hash, name, label, now(), by])


def token_user(con, token_hash: str) -> dict | None:
    return _row(con.execute("""SELECT u.name, u.role FROM api_tokens t JOIN users u USING (name)
                               WHERE t.token_hash = ?""", [token_hash]))


# --- sign-in attempts, sessions and the secret that signs them -----------------------------

def add_attempt(con, subject: str, ok: bool, at=None) -> None:
    con.execute('INSERT INTO sign_in_attempts VALUES (?, ?, ?)', [subject, now() if at is None else at, ok])


def delete_attempt(con, subject: str, at) -> None:
    """Take back one attempt, known by its subject and time (a refused one: it was never checked)."""
    con.execute('DELETE FROM sign_in_attempts WHERE subject = ? AND "at" = ? AND NOT ok', [subject, at])


def failures_since_success(con, subject: str, since) -> list:
    """Times of `subject`'s failed attempts after its last success and after `since`, newest first."""
    return [r[0] for r in con.execute("""
        SELECT "at" FROM sign_in_attempts
        WHERE subject = ? AND NOT ok AND "at" >= ?
          AND "at" > coalesce((SELECT max("at") FROM sign_in_attempts WHERE subject = ? AND ok), ?)
        ORDER BY "at" DESC""", [subject, since, subject, since]).fetchall()]


def has_attempts_before(con, before) -> bool:
    return con.execute('SELECT count(*) FROM sign_in_attempts WHERE "at" < ?', [before]).fetchone()[0] > 0


def forget_attempts(con, before) -> None:
    con.execute('DELETE FROM sign_in_attempts WHERE "at" < ?', [before])


def app_secret(con, name: str) -> str | None:
    row = con.execute("SELECT value FROM app_secrets WHERE name = ? ORDER BY created_at, value LIMIT 1",
                      [name]).fetchone()
    return row[0] if row else None


def insert_app_secret(con, name: str, value: str) -> None:
    # no ON CONFLICT: DuckLake has no keys. Two processes may both insert; app_secret reads the first.
    con.execute("INSERT INTO app_secrets SELECT ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM app_secrets WHERE name = ?)",
                [name, value, now(), name])


def insert_session(con, session_hash: str, name: str, expires_at) -> None:
    con.execute("DELETE FROM sessions WHERE expires_at < ?", [now()])
    con.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)", [session_hash, name, now(), expires_at])


def session_user(con, session_hash: str) -> dict | None:
    """The user (name, role) of a live session; None if it ended, expired or the user is gone."""
    return _row(con.execute("""SELECT u.name, u.role FROM sessions s JOIN users u USING (name)
                               WHERE s.session_hash = ? AND s.expires_at > ?""", [session_hash, now()]))


def delete_session(con, session_hash: str) -> None:
    con.execute("DELETE FROM sessions WHERE session_hash = ?", [session_hash])


def insert_handoff(con, code_hash: str, token: str, expires_at) -> None:
    con.execute("DELETE FROM session_handoffs WHERE expires_at < ?", [now()])
    con.execute("INSERT INTO session_handoffs VALUES (?, ?, ?)", [code_hash, token, expires_at])


def take_handoff(con, code_hash: str) -> str | None:
    """The token a live one-time code stands for; the code is used up either way."""
    row = con.execute("SELECT token FROM session_handoffs WHERE code_hash = ? AND expires_at > ?",
                      [code_hash, now()]).fetchone()
    con.execute("DELETE FROM session_handoffs WHERE code_hash = ?", [code_hash])
    return row[0] if row else None
