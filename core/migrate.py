"""Migrate a whole store to the other backend: an embedded file into a DuckLake, or a DuckLake into a file.

All or nothing: the target is built in one transaction on the target (schema, every table's rows,
id counters), its model files are copied first and checked against the registry's sha256, and a
failure anywhere removes what was copied and leaves no store at the target. The source is only read.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import artifacts, auth, backup
from . import store as db
from .errors import InvalidInput, StoreError
from .store import Store


@dataclass
class Migration:
    """What was copied: rows per table and model files."""
    target: str
    rows: dict[str, int] = field(default_factory=dict)
    model_files: int = 0


def migrate(source: Store, target: Store, user: str) -> Migration:
    """Copy `source` into the new store `target` (refused if it holds one); returns what was copied."""
    _refuse_bad_pair(source, target)
    with source.connect() as con:  # also brings the source's schema up to date before it is read
        auth.require(con, user, "admin")
        files = backup.model_files(con)
    made = _copy_model_files(source, target, files)
    try:
        done = _copy_database(source, target, user, len(files))
    except BaseException:
        _remove(target, made)
        raise
    return done


def _refuse_bad_pair(source: Store, target: Store) -> None:
    if source.is_lake == target.is_lake:
        kind = "DuckLake" if source.is_lake else "embedded file"
        raise InvalidInput(f"the store is already an {kind}; migrate copies an embedded file into a DuckLake "
                           f"(--to ducklake:postgres:...) or a DuckLake into a file (--to path/to/mms.duckdb)")
    if target.exists():
        raise InvalidInput(f"{target} already holds a store; migrate only into a new one (nothing was copied)")
    if not target.is_lake and target.path.is_dir():
        raise InvalidInput(f"--to {target.path} is a folder; give the new store's file, e.g. "
                           f"{target.path / 'mms.duckdb'}")


def _copy_model_files(source: Store, target: Store, files) -> list[str]:
    """Every version's model file copied to the target (a folder or S3), each checked against its sha256
    before and after; returns the files this copy created (removed again if the migration fails)."""
    problem = artifacts.first_bad_file(source, files)
    if problem:
        raise InvalidInput(f"nothing was migrated: {problem}")
    made: list[str] = []
    try:
        for _, _, rel, _ in files:
            if artifacts.copy_file(source, target, rel):
                made.append(rel)
        problem = artifacts.first_bad_file(target, files)
        if problem:
            raise InvalidInput(f"nothing was migrated: the copy at the target differs: {problem}")
    except OSError as e:
        _remove(target, made)
        raise StoreError(f"model files could not be copied to {target} ({e}); nothing was migrated") from None
    except BaseException:
        _remove(target, made)
        raise
    return made


def _remove(target: Store, made: list[str]) -> None:
    for rel in made:
        artifacts.remove(target, rel)


def _copy_database(source: Store, target: Store, user: str, model_files: int) -> Migration:
    """Schema, rows, id counters and the migration's audit event in one transaction on the target; an
    embedded target is built beside its place and moved in once committed."""
    building = target.path.with_name(target.path.name + ".migrating") if not target.is_lake else None
    if building is not None:
        target.path.parent.mkdir(parents=True, exist_ok=True)
        building.unlink(missing_ok=True)
    done = Migration(str(target), model_files=model_files)
    try:
        with source.closed():  # an embedded source is attached read-only by the target's connection
            con = db.open_bare(target, building)
            try:
                db.attach_source(con, source)
                con.begin()
                for table in db.create_schema(con, target.is_lake):
                    done.rows[table] = db.copy_table(con, table)
                db.set_counters(con, target.is_lake, db.source_counters(con, source.is_lake))
                db.add_bare_event(con, target.is_lake, user, "migrate", {"from": str(source), "rows": done.rows,
                                                                         "model_files": model_files})
                con.commit()
            finally:
                con.close()
        if building is not None:
            building.replace(target.path)
    except BaseException:
        if building is not None:
            building.unlink(missing_ok=True)
            building.with_name(building.name + ".wal").unlink(missing_ok=True)
        raise
    return done
