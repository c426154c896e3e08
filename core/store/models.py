"""Models and their versions: the model records, each version's row, notes and tags, and which
model a user last worked on."""
from __future__ import annotations

import json

from .engine import _next_ids, _row, _rows, now


# --- models -------------------------------------------------------------------------------

_MODEL_COLS = ("model_id, name, description, task, labels, preprocess, model_config, "
               "active_version, created_at, created_by")


def insert_model(con, name, description, task, labels, preprocess, model_config, user) -> int:
    model_id = _next_ids(con, "model_seq", 1)[0]
    con.execute(f"INSERT INTO models ({_MODEL_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                [model_id, name, description, task, list(labels), json.dumps(preprocess, ensure_ascii=False),
                 json.dumps(model_config, ensure_ascii=False), now(), user])
    return model_id


def model_by_name(con, name: str) -> dict | None:
    return _row(con.execute(f"SELECT {_MODEL_COLS} FROM models WHERE name = ?", [name]))


def all_models(con) -> list[dict]:
    return _rows(con.execute(f"SELECT {_MODEL_COLS} FROM models ORDER BY name"))


def update_model(con, model_id: int, **fields) -> None:
    """Update description, preprocess or model_config (dicts are stored as JSON)."""
    for field, value in fields.items():
        if field not in ("description", "preprocess", "model_config"):
            raise ValueError(f"cannot update models.{field}")
        if not isinstance(value, str):
            value = json.dumps(value, ensure_ascii=False)
        con.execute(f"UPDATE models SET {field} = ? WHERE model_id = ?", [value, model_id])


def set_active_version(con, model_id: int, version: int) -> None:
    con.execute("UPDATE models SET active_version = ? WHERE model_id = ?", [version, model_id])


# --- versions -----------------------------------------------------------------------------

_VERSION_COLS = ("model_id, version, parent_version, mode, model_config, preprocess, data, metrics, "
                 "max_example_id, artifact, sha256, created_at, created_by")


def next_version_number(con, model_id: int) -> int:
    return con.execute("SELECT coalesce(max(version), 0) + 1 FROM versions WHERE model_id = ?",
                       [model_id]).fetchone()[0]


def insert_version(con, row: dict) -> None:
    cols = _VERSION_COLS.split(", ")
    values = [json.dumps(row[c], ensure_ascii=False) if isinstance(row[c], dict) else row[c] for c in cols]
    con.execute(f"INSERT INTO versions ({_VERSION_COLS}) VALUES ({', '.join('?' * len(cols))})", values)


def version_row(con, model_id: int, version: int) -> dict | None:
    return _row(con.execute(f"SELECT {_VERSION_COLS} FROM versions WHERE model_id = ? AND version = ?",
                            [model_id, version]))


def version_rows(con, model_id: int) -> list[dict]:
    return _rows(con.execute(f"SELECT {_VERSION_COLS} FROM versions WHERE model_id = ? ORDER BY version",
                             [model_id]))


def artifact_paths(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT artifact FROM versions").fetchall()}


# --- version notes and tags; each user's last model ------------------------------------------

def insert_version_note(con, model_id: int, version: int, note: str, tags: list[str], user: str) -> None:
    con.execute("INSERT INTO version_notes VALUES (?, ?, ?, ?, ?, ?)",
                [model_id, version, note, list(tags), now(), user])


def version_notes(con, model_id: int) -> list[dict]:
    """The newest note and tags of each of the model's versions that has any."""
    return _rows(con.execute("""
        SELECT version, note, tags, updated_at, updated_by FROM version_notes WHERE model_id = ?
        QUALIFY row_number() OVER (PARTITION BY version ORDER BY updated_at DESC) = 1
        ORDER BY version""", [model_id]))


def insert_last_model(con, name: str, model_id: int) -> None:
    con.execute("INSERT INTO last_models VALUES (?, ?, ?)", [name, model_id, now()])


def last_model_name(con, name: str) -> str | None:
    """The model `name` last chose, if it still exists."""
    row = con.execute("""SELECT m.name FROM last_models l JOIN models m USING (model_id) WHERE l.name = ?
                         ORDER BY l.chosen_at DESC LIMIT 1""", [name]).fetchone()
    return row[0] if row else None


def busiest_model_name(con) -> str | None:
    """The model with the most predictions (from the rollups), if any model has one."""
    row = con.execute("""SELECT m.name FROM prediction_rollups r JOIN models m USING (model_id)
                         GROUP BY m.name HAVING sum(r.n) > 0 ORDER BY sum(r.n) DESC, m.name LIMIT 1""").fetchone()
    return row[0] if row else None
