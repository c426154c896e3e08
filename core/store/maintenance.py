"""Keeping a store: backups (tables out to Parquet and back), a whole store copied to the other
backend (migrate), and DuckLake's file upkeep (compaction, orphaned files)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb

from .. import objectstore
from ..errors import InvalidInput, StoreBusy
from . import schema
from .engine import (_EXTENSIONS, _ID_COLUMNS, _LAKE_START, LAKE, SEQUENCES, Store, _extension_file, _lake_cursors,
                     _probe_s3, _quote, _s3_secret, lake_sql, now, unknown_migration)


# --- backup ---------------------------------------------------------------------------------

# Not carried by a backup: who is signed in, sign-in attempts, and the secrets (the session key, and
# the backup key itself, which would let whoever reads a backup sign an altered one), and leases (held by
# processes that a restore outlives).
NOT_BACKED_UP = ("sessions", "session_handoffs", "sign_in_attempts", "app_secrets", "leases", "lease_claims")
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def export_tables(con, folder) -> dict[str, int]:
    """Every table a backup carries, as one Parquet file each in `folder`; rows per table. Data
    only: a restore rebuilds the schema from this code's migrations, never from the backup."""
    if id(con) in _lake_cursors:
        raise InvalidInput("backup copies the embedded store; a DuckLake store is backed up with its catalog "
                           "(pg_dump) and its data path, or copied out with `python -m core migrate --to FILE`")
    tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = "
                                        "current_database() AND schema_name = 'main' ORDER BY table_name").fetchall()]
    rows = {}
    for table in tables:
        if table == "schema_migrations" or table in NOT_BACKED_UP or not _TABLE_NAME.match(table):
            continue
        path = Path(folder) / f"{table}.parquet"
        con.execute(f'COPY (SELECT * FROM "{table}") TO \'{_quote(path)}\' (FORMAT parquet)')
        rows[table] = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    return rows


def applied_migrations(con) -> list[list]:
    return [[n, name] for n, name in con.execute("SELECT version, name FROM schema_migrations ORDER BY version"
                                                 ).fetchall()]


def sequence_counters(con) -> dict[str, int]:
    """The next id each of this database's sequences would give."""
    rows = con.execute("SELECT sequence_name, last_value FROM duckdb_sequences() WHERE database_name = "
                       "current_database()").fetchall()
    return {name: (last or 0) + 1 for name, last in rows}


def check_backup_migrations(done: list) -> None:
    """Refuse a backup whose migrations are not the first ones of this code, by number and name."""
    for number, name in done:
        if (unknown := unknown_migration(number, name)) is not None:
            raise InvalidInput(f"the backup has {unknown}: restore it with the MMS version that made it")


def load_table(con, table: str, path) -> int:
    """A backed-up table's rows from its Parquet file into the new store's table of that name."""
    return con.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM read_parquet(\'{_quote(path)}\')'
                       ).fetchone()[0]


# --- a whole store copied to the other backend (migrate) ------------------------------------
# The target is built through a bare connection (no automatic migrations) in one transaction: the
# schema, every table's rows and the id counters commit together, or nothing of the store exists.
SOURCE = "mms_source"  # the source store's name when attached to the target's connection


def open_bare(store: "Store", path=None) -> duckdb.DuckDBPyConnection:
    """The target's database without migrations: a DuckLake, or the embedded file at `path`."""
    return store._open() if store.is_lake else duckdb.connect(str(path or store.path))


def attach_source(con, source: "Store") -> None:
    """Attach the source store read-only as SOURCE (a file another process writes is StoreBusy)."""
    try:
        if not source.is_lake:
            con.execute(f"ATTACH '{_quote(source.path)}' AS {SOURCE} (READ_ONLY)")
            return
        for name in _EXTENSIONS:  # a no-op where the target's connection has them already
            con.execute(f"LOAD '{_quote(_extension_file(name))}'")
        if objectstore.is_s3(source.data_path):
            _s3_secret(con)
            _probe_s3(con, source.data_path)
        con.execute(f"ATTACH '{_quote(source.url)}' AS {SOURCE} (DATA_PATH '{_quote(source.data_path)}', READ_ONLY)")
    except (duckdb.IOException, duckdb.HTTPException) as e:
        if source.is_lake:
            raise source._unreachable(e) from None
        raise StoreBusy(f"{source.path} is being written by another process (a server?): stop it, then "
                        f"migrate") from None


def create_schema(con, lake: bool, upto: int | None = None) -> list[str]:
    """Every migration (the first `upto`), recorded as applied, on the open transaction; returns the
    tables to copy."""
    table = "schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)"
    con.execute(f"CREATE TABLE {lake_sql(table) if lake else table}")
    for number, (name, sql) in enumerate(schema.MIGRATIONS[:upto], start=1):
        con.execute(lake_sql(sql) + (_LAKE_START if number == 1 else "") if lake else sql)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [number, name, now()])
    tables = con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                         "AND schema_name = 'main' ORDER BY table_name").fetchall()
    return [t for (t,) in tables if t != "schema_migrations" and not t.startswith("id_")]


def copy_table(con, table: str) -> int:
    """The source's rows of `table` into the target's; how many."""
    return con.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM {SOURCE}.main."{table}"').fetchone()[0]


def source_counters(con, source_is_lake: bool) -> dict[str, int]:
    """The next id each of the source's sequences (or DuckLake counters) would give."""
    if source_is_lake:
        return {s: con.execute(f"SELECT next_id FROM {SOURCE}.main.id_{s}").fetchone()[0] for s in SEQUENCES}
    rows = con.execute("SELECT sequence_name, last_value FROM duckdb_sequences() WHERE database_name = ?",
                       [SOURCE]).fetchall()
    return {name: (last or 0) + 1 for name, last in rows}


def set_counters(con, lake: bool, floor: dict[str, int]) -> None:
    """Every id counter past both the largest id copied and the source's own counter (ids a deleted
    row once had are never given again)."""
    for sequence, (table, column) in _ID_COLUMNS.items():
        top = con.execute(f"SELECT coalesce(max({column}), 0) + 1 FROM {table}").fetchone()[0]
        start = max(int(top), int(floor.get(sequence, 1)))
        if lake:
            con.execute(f"UPDATE id_{sequence} SET next_id = ?", [start])
        else:
            con.execute(f"DROP SEQUENCE {sequence}; CREATE SEQUENCE {sequence} START WITH {start}")


def add_bare_event(con, lake: bool, user: str, action: str, details: dict) -> None:
    """An audit event on a bare connection (migrate's target), in its open transaction: the event
    commits with the rows it reports, or neither does."""
    if lake:
        event_id = con.execute("SELECT next_id FROM id_event_seq").fetchone()[0]
        con.execute("UPDATE id_event_seq SET next_id = ?", [event_id + 1])
    else:
        event_id = con.execute("SELECT nextval('event_seq')").fetchone()[0]
    con.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                [event_id, now(), user, action, None, json.dumps(details, ensure_ascii=False, default=str)])


# --- DuckLake's files: small ones merged, orphaned ones found ---------------------------------

def compact_lake_files(con, keep_hours: float = 1.0) -> dict[str, int]:
    """Write rows inlined in the catalog out to Parquet, merge small adjacent files, and delete
    files no snapshot newer than `keep_hours` needs (readers of older snapshots keep theirs).
    Returns how many rows were flushed, files merged and files deleted."""
    flushed = con.execute(f"SELECT coalesce(sum(rows_flushed), 0) FROM ducklake_flush_inlined_data('{LAKE}')"
                          ).fetchone()[0]
    merged = con.execute(f"SELECT coalesce(sum(files_processed), 0) FROM ducklake_merge_adjacent_files('{LAKE}')"
                         ).fetchone()[0]
    cutoff = f"now() - to_seconds({float(keep_hours) * 3600})"
    con.execute(f"SELECT count(*) FROM ducklake_expire_snapshots('{LAKE}', older_than => {cutoff})").fetchone()
    deleted = con.execute(f"SELECT count(*) FROM ducklake_cleanup_old_files('{LAKE}', older_than => {cutoff})"
                          ).fetchone()[0]
    return {"rows_flushed": int(flushed), "files_merged": int(merged), "files_deleted": int(deleted)}


def lake_file_count(con) -> int:
    """Parquet data files the DuckLake's current snapshot reads, over all tables."""
    tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = ?",
                                        [LAKE]).fetchall()]
    return sum(con.execute(f"SELECT count(*) FROM ducklake_list_files('{LAKE}', ?)", [t]).fetchone()[0]
               for t in tables)


def orphan_files(con, older_than_seconds: float, delete: bool = False) -> list[str]:
    """Parquet files under the DuckLake's data path that no snapshot references (a writer killed before
    its commit leaves them), older than `older_than_seconds` (younger ones may be a running writer's);
    deleted when `delete`. Model files are not Parquet and never listed."""
    cutoff = f"now() - to_seconds({float(older_than_seconds)})"
    rows = con.execute(f"SELECT * FROM ducklake_delete_orphaned_files('{LAKE}', dry_run => {str(not delete).lower()}, "
                       f"older_than => {cutoff})").fetchall()
    return [str(r[0]) for r in rows if str(r[0]).endswith(".parquet")]
