"""Backup and restore of a whole store: the database (DuckDB EXPORT/IMPORT DATABASE) and its model files.

A backup is a folder: `database/` (schema.sql, load.sql and Parquet files) and `artifacts/`.
Every model file copied is checked against the registry's sha256, so a backup never carries an
altered model silently. A restore builds the new store beside the old one and swaps it in only
when complete; an old store file, if there was one, is kept as `<store>.before-restore-<time>`.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from . import artifacts, auth
from . import store as db
from .errors import InvalidInput
from .store import Store


def backup(store: Store, dest, user: str) -> Path:
    """Copy the store into a new folder; refused, with nothing left behind, if a model file is missing or altered."""
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidInput(f"{dest} is not empty; choose a new or empty folder for the backup")
    if not store.exists():
        raise InvalidInput(f"there is no store at {store.path} to back up")
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with store.connect() as con:
            auth.require(con, user, "admin")
            files = model_files(con)
            db.export_database(con, str(dest / "database"))
        if store.artifacts_dir.exists():
            shutil.copytree(store.artifacts_dir, dest / "artifacts")
        problem = artifacts.first_bad(files, lambda rel: _bytes_or_none(dest / rel))
        if problem:
            raise InvalidInput(f"nothing was backed up: {problem}")
    except BaseException:
        for made in [dest] if created else [dest / "database", dest / "artifacts"]:
            shutil.rmtree(made, ignore_errors=True)
        raise
    with store.connect() as con:
        db.add_event(con, user, "backup", None, {"dest": str(dest), "model_files": len(files)})
    return dest


def _bytes_or_none(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def model_files(con) -> list[tuple[str, int, str, str]]:
    """(model name, version, file path relative to the store's folder, sha256) of every version."""
    return [(m["name"], v["version"], v["artifact"], v["sha256"])
            for m in db.all_models(con) for v in db.version_rows(con, m["model_id"])]


def restore(store: Store, src, user: str) -> Path | None:
    """Replace the store with a backup; returns where the previous store file was kept, or None if there was none."""
    src = Path(src)
    if not (src / "database" / "schema.sql").exists():
        raise InvalidInput(f"{src} is not an MMS backup (no database/schema.sql)")
    if store.exists():
        with store.connect() as con:
            auth.require(con, user, "admin")
    _make_folder(store.path.parent)
    tmp = store.path.with_name(store.path.name + ".restoring")
    tmp.unlink(missing_ok=True)
    try:
        db.import_database_file(tmp, str(src / "database"))
    except Exception as e:  # DuckDB raises several types for a damaged export
        tmp.unlink(missing_ok=True)
        raise InvalidInput(f"{src} could not be restored: {e}") from None
    if (src / "artifacts").exists():
        shutil.copytree(src / "artifacts", store.artifacts_dir, dirs_exist_ok=True)
    with store.closed():  # a server holding the store reopens it once the new file is in place
        kept = _keep_previous(store) if store.exists() else None
        tmp.replace(store.path)
        db._migrated.discard(str(store.path))  # an older backup may need newer migrations
    with store.transaction() as con:
        db.add_event(con, user, "restore", None, {"src": str(src), "previous": str(kept) if kept else None})
    return kept


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidInput(f"the store's folder {folder} cannot be created ({e.strerror})") from None


def _keep_previous(store: Store) -> Path:
    """Move the current store file (and its write-ahead log) aside, named by the time of the restore."""
    kept = store.path.with_name(f"{store.path.name}.before-restore-{time.strftime('%Y%m%d-%H%M%S')}")
    store.path.replace(kept)
    wal = store.path.with_name(store.path.name + ".wal")
    if wal.exists():
        wal.replace(kept.with_name(kept.name + ".wal"))
    return kept
