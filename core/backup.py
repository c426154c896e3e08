"""Backup and restore of a whole store: the database (DuckDB EXPORT/IMPORT DATABASE) and its model files.

A backup is a folder: `database/` (schema.sql, load.sql and Parquet files) and `artifacts/`.
A restore builds the new store beside the old one and swaps it in only when complete; the old
file is kept as `<store>.before-restore-<time>`.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from . import auth
from . import store as db
from .errors import InvalidInput
from .store import Store


def backup(store: Store, dest, user: str) -> Path:
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise InvalidInput(f"{dest} is not empty; choose a new folder for the backup")
    if not store.exists():
        raise InvalidInput(f"there is no store at {store.path} to back up")
    dest.mkdir(parents=True, exist_ok=True)
    with store.connect() as con:
        auth.require(con, user, "admin")
        db.export_database(con, str(dest / "database"))
        db.add_event(con, user, "backup", None, {"dest": str(dest)})
    if store.artifacts_dir.exists():
        shutil.copytree(store.artifacts_dir, dest / "artifacts")
    return dest


def restore(store: Store, src, user: str) -> Path:
    src = Path(src)
    if not (src / "database" / "schema.sql").exists():
        raise InvalidInput(f"{src} is not an MMS backup (no database/schema.sql)")
    if store.exists():
        with store.connect() as con:
            auth.require(con, user, "admin")
    tmp = store.path.with_name(store.path.name + ".restoring")
    tmp.unlink(missing_ok=True)
    try:
        db.import_database_file(tmp, str(src / "database"))
    except Exception as e:  # DuckDB raises several types for a damaged export
        tmp.unlink(missing_ok=True)
        raise InvalidInput(f"{src} could not be restored: {e}") from None
    if (src / "artifacts").exists():
        shutil.copytree(src / "artifacts", store.artifacts_dir, dirs_exist_ok=True)
    kept = store.path.with_name(f"{store.path.name}.before-restore-{time.strftime('%Y%m%d-%H%M%S')}")
    if store.exists():
        store.path.replace(kept)
        wal = store.path.with_name(store.path.name + ".wal")
        if wal.exists():
            wal.replace(kept.with_name(kept.name + ".wal"))
    tmp.replace(store.path)
    db._migrated.discard(str(store.path))  # an older backup may need newer migrations
    with store.transaction() as con:
        db.add_event(con, user, "restore", None, {"src": str(src), "previous": str(kept)})
    return kept
