"""The store's engine: the two backends (an embedded DuckDB file, or DuckLake), one open database
shared per store per process, migrations applied on first open, and id allocation.

Query modules take a connection from `Store.connect()` or `Store.transaction()`; the helpers at the
end (`_next_ids`, `registered`, `_row`, `_rows`) are what they share.
"""
from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import duckdb
import pandas as pd

from .. import objectstore, settings
from ..errors import Conflict, DiskFull, StoreBusy, StoreError, StoreUnavailable
from . import schema

log = logging.getLogger("mms.store")

_migrated: set[str] = set()  # stores this process has migrated (their keys)
_migrate_lock = threading.Lock()
_PID = re.compile(r"PID (\d+)")

# --- two backends: the embedded file, and DuckLake --------------------------------------------
# DuckLake has no primary keys, unique constraints, indexes or sequences. The migrations (schema) are
# written once, for the embedded file; on DuckLake the statements and clauses below are left out,
# ids come from counter tables (see _next_ids) and the invariants the constraints keep are checked
# inside the writing transaction, where DuckLake's conflict detection makes concurrent writers of
# the same counter or row fail at commit (store.Conflict) instead of both succeeding.
LAKE = "mms_lake"  # the attached DuckLake's name in every connection
_EMBEDDED_ONLY = [
    (re.compile(r"^\s*CREATE (UNIQUE )?(SEQUENCE|INDEX)\b[^;]*;", re.M | re.I), ""),
    (re.compile(r",\s*PRIMARY KEY\s*\([^)]*\)", re.I), ""),
    (re.compile(r"\s+(PRIMARY KEY|UNIQUE)\b", re.I), ""),
]
SEQUENCES = ("model_seq", "example_seq", "import_seq", "prediction_seq", "feedback_seq", "batch_seq", "event_seq")
# Allocated inside the writer's transaction: ids follow commit order (training's "examples newer
# than the version" needs that), and two transactions taking the same counter conflict, which is
# what keeps one model per name and one label per prediction with several writers.
SERIAL_IDS = {"model_seq", "example_seq", "feedback_seq"}
ID_BLOCK = 4096  # other ids come in blocks per process, taken in a short transaction of their own
_EXTENSIONS = ("postgres_scanner", "ducklake", "httpfs")


def lake_sql(sql: str) -> str:
    """A migration's statements as DuckLake takes them: no sequences, indexes or key constraints."""
    for pattern, replacement in _EMBEDDED_ONLY:
        sql = pattern.sub(replacement, sql)
    return sql


def is_lake_url(where) -> bool:
    return str(where).startswith("ducklake:")


def _extension_file(name: str) -> str:
    """The signed extension binary that the duckdb-extension-<name> package installed (never INSTALL)."""
    import importlib.util

    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        raise StoreError(f"the DuckLake backend needs the Python package duckdb-extension-{name.replace('_', '-')}"
                         f"=={duckdb.__version__} (pip install -r requirements.txt)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "extensions" / f"v{duckdb.__version__}"
    files = sorted(folder.glob("*.duckdb_extension"))
    if not files:
        raise StoreError(f"duckdb-extension-{name.replace('_', '-')} has no extension for DuckDB "
                         f"{duckdb.__version__} in {folder}")
    return str(files[0])


def _catalog_name(url: str) -> str:
    """The catalog as a sentence may show it: the connection string without a password."""
    return re.sub(r"password=\S+", "password=…", url)


def now() -> pd.Timestamp:
    """The current time as a naive timestamp (the store keeps naive TIMESTAMPs in local time)."""
    return pd.Timestamp.now().floor("us")


class Store:
    """A store and its model files: a DuckDB file with `artifacts/` beside it (the default), or a
    DuckLake (`ducklake:postgres:...` catalog, Parquet and model files under a data path).

    Connections are shared per store per process."""

    def __init__(self, path: str | os.PathLike | None = None, data_path: str | None = None):
        where = str(path or settings.get("store"))
        self.url = where if is_lake_url(where) else None
        if self.url is None:
            self.data_path = None
            self.path = Path(where).resolve()
            self.key = str(self.path)
            return
        self.data_path = str(data_path or settings.get("data_path"))
        if objectstore.is_s3(self.data_path):
            # only a name here (a key for caches, never opened): model files go to the bucket (core.artifacts)
            self.path = PurePosixPath(self.data_path.rstrip("/")) / "mms.ducklake"
        else:  # model files live in the data folder, under artifacts/ beside this name
            files = Path(self.data_path).resolve() if self.data_path else Path.cwd() / "lake-data-path-unset"
            self.path = files / "mms.ducklake"
        self.key = f"{self.url} {self.data_path}"

    def __repr__(self) -> str:
        return f"Store({self.url or str(self.path)!r})"

    def __str__(self) -> str:
        return f"{_catalog_name(self.url)} (data {self.data_path})" if self.url else str(self.path)

    @property
    def is_lake(self) -> bool:
        return self.url is not None

    @property
    def artifacts_dir(self) -> Path:
        return self.path.parent / "artifacts"

    def exists(self) -> bool:
        """Whether the store has been created (a DuckLake store: its catalog has the schema)."""
        if not self.is_lake:
            return self.path.exists()
        if self.key in _migrated:
            return True
        con = self._open()
        try:
            return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND "
                                    "table_name = 'schema_migrations'", [LAKE]).fetchone()[0])
        finally:
            con.close()

    @contextmanager
    def connect(self):
        """A connection for the length of one operation; retries while another process holds the lock.

        Threads of one process share one open database (DuckDB allows a file to be attached
        once per process); the file is closed, and its lock released for other processes, as
        soon as no operation in this process is using it."""
        shared = _shared_for(self.key)
        try:
            con = shared.acquire(self)
        except duckdb.Error as e:
            if not self.is_lake and isinstance(e, duckdb.IOException) and not _disk_full(e):
                raise  # a file that is no DuckDB database, or not ours to open: the caller names the path
            raise self._failure(e, shared) from None
        try:
            yield con
        except duckdb.Error as e:
            raise self._failure(e, shared) from None
        finally:
            shared.release(con)

    @contextmanager
    def transaction(self):
        """A connection inside one transaction: committed on success, rolled back on any error."""
        with self.connect() as con:
            con.begin()
            try:
                yield con
                con.commit()
            except (duckdb.IOException, duckdb.HTTPException) as e:
                _rollback(con)
                if not self.is_lake or _disk_full(e):
                    raise  # connect() says what it means
                raise self._unreachable(e) from None
            except duckdb.Error as e:
                _rollback(con)
                # DuckDB says "Failed to commit: ..." with a TransactionException for a full disk, and for a
                # catalog that went away mid-commit: neither is a conflict, and connect() says what they are
                if _disk_full(e) or (self.is_lake and not _shared_for(self.key).catalog_answers()):
                    raise
                if not isinstance(e, duckdb.ConstraintException) and not _catalog_conflict(e):
                    raise
                raise Conflict("another change to the same rows was made at the same moment; nothing was "
                               "written, try again") from e
            except BaseException:
                _rollback(con)
                raise

    def hold(self) -> None:
        """Keep the database open until `unhold`: the server holds its store for its life, so no
        request opens or closes the file (that would be most of a prediction's time)."""
        _shared_for(self.key).hold(self)

    def unhold(self) -> None:
        _shared_for(self.key).unhold()

    @property
    def serving(self):
        """The server's serving of this store in this process (core/serving.py: its writer, batcher and
        lookups), or None: a script, a test or a command line that opened the store itself."""
        return _shared_for(self.key).serving

    def serve(self, serving) -> None:
        """Let every Store of this store in this process carry `serving` (None: no longer served)."""
        _shared_for(self.key).serving = serving

    @contextmanager
    def closed(self):
        """The file closed in this process for the block, even while held (a restore replaces it)."""
        with _shared_for(self.key).closed(self):
            yield

    def _open(self) -> duckdb.DuckDBPyConnection:
        return self._open_lake() if self.is_lake else self._open_file()

    def _open_file(self) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + float(settings.get("lock_timeout"))
        delay = 0.02
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as e:
                if "lock" not in str(e).lower():
                    raise
                if time.monotonic() >= deadline:
                    pid = _PID.search(str(e))
                    holder = f" (held by PID {pid.group(1)})" if pid else ""
                    raise StoreBusy(f"store is busy{holder}: {self.path} is being written by another "
                                    f"process; try again in a moment") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.25)

    def _open_lake(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB with the DuckLake attached as LAKE and in use."""
        if not self.data_path:
            raise StoreError("a DuckLake store needs MMS_DATA_PATH: the folder (or s3://bucket/prefix) that "
                             "holds its Parquet and model files")
        con = duckdb.connect()
        try:
            for name in _EXTENSIONS:
                con.execute(f"LOAD '{_quote(_extension_file(name))}'")
            if objectstore.is_s3(self.data_path):
                _s3_secret(con)
                _probe_s3(con, self.data_path)
            else:
                Path(self.data_path).mkdir(parents=True, exist_ok=True)
            con.execute(f"ATTACH '{_quote(self.url)}' AS {LAKE} (DATA_PATH '{_quote(self.data_path)}')")
            con.execute(f"USE {LAKE}")
            return con
        except (duckdb.Error, OSError) as e:
            con.close()
            raise self._unreachable(e) from None
        except BaseException:
            con.close()
            raise

    def _unreachable(self, error: BaseException) -> StoreError:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        if objectstore.is_s3(self.data_path) and ("s3://" in first or "HTTP" in first):
            return objectstore.failure(error, self.data_path)
        if isinstance(error, OSError) or "s3://" in first or "HTTP" in first or self.data_path in first:
            where = f"the DuckLake data path {self.data_path}"
        else:
            where = f"the DuckLake catalog {_catalog_name(self.url)}"
        return StoreUnavailable(f"{where} cannot be reached ({first}); nothing was changed")

    def _failure(self, error: duckdb.Error, shared: "_SharedDatabase") -> Exception:
        """A database error as the named error it means: a full disk, a database DuckDB invalidated
        (closed here, so the next operation reopens it), an unreachable catalog; else the error itself."""
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        invalid = isinstance(error, (duckdb.InternalException, duckdb.FatalException)) or "invalidated" in str(error)
        if invalid:  # every later statement on it would fail too: the next operation opens it afresh
            shared.invalidate()
        if _disk_full(error):
            log.error("MMS: the disk holding %s is full: %s", self, first)
            return DiskFull(f"the disk holding the store is full ({first}); nothing was written: free some "
                            f"space and try again")
        if invalid:
            log.error("MMS: %s was invalidated by an internal error, reopening it: %s", self, first)
            return StoreUnavailable(f"the store hit an internal error ({first}) and is being reopened; nothing "
                                    f"was changed, try again in a moment")
        if self.is_lake and (isinstance(error, (duckdb.IOException, duckdb.HTTPException, duckdb.ConnectionException))
                             or not shared.catalog_answers()):
            return self._unreachable(error)
        if self.is_lake and _catalog_conflict(error):  # another process's change to the same catalog rows
            return Conflict("another change to the same rows was made at the same moment; nothing was written, "
                            "try again")
        if not self.is_lake and isinstance(error, duckdb.IOException):
            log.error("MMS: %s cannot be read or written: %s", self, first)
            return StoreUnavailable(f"the store {self.path} cannot be read or written ({first}); nothing was "
                                    f"changed, try again")
        return error

    def _cursor(self, root) -> duckdb.DuckDBPyConnection:
        cur = root.cursor()
        if self.is_lake:
            cur.execute(f"USE {LAKE}")  # a cursor starts in the in-memory database
        return cur

    def _migrate(self, con) -> None:
        if self.key in _migrated:
            return
        with _migrate_lock:
            for attempt in range(20):  # two processes creating one new DuckLake: the second one's commit conflicts
                try:
                    self._apply_migrations(con)
                    break
                except duckdb.Error as e:
                    if attempt == 19 or not _catalog_conflict(e):
                        raise
                    time.sleep(0.05 * (attempt + 1))
            _migrated.add(self.key)

    def _apply_migrations(self, con) -> None:
        table = "schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)"
        con.execute(f"CREATE TABLE IF NOT EXISTS {lake_sql(table) if self.is_lake else table}")
        done = dict(con.execute("SELECT version, name FROM schema_migrations").fetchall())
        _check_recorded(self.path, done)
        for number, (name, sql) in enumerate(schema.MIGRATIONS, start=1):
            if number in done:
                continue
            if self.is_lake:
                sql = lake_sql(sql) + (_LAKE_START if number == 1 else "")
            con.begin()
            try:
                con.execute(sql)
                con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [number, name, now()])
                con.commit()
            except BaseException:
                _rollback(con)
                raise
        if self.is_lake:
            rows = int(settings.get("lake_inline_rows"))
            current = con.execute(f"SELECT value FROM {LAKE}.options() WHERE option_name = 'data_inlining_row_limit'"
                                  ).fetchone()
            if current is None or current[0] != str(rows):  # processes starting together need not all write it
                con.execute(f"CALL {LAKE}.set_option('data_inlining_row_limit', ?)", [rows])


# On DuckLake: one counter table per id (a table each, so taking one id never conflicts with another).
_LAKE_START = "".join(f"CREATE TABLE id_{s} (next_id BIGINT NOT NULL); INSERT INTO id_{s} VALUES (1);"
                      for s in SEQUENCES)


def _s3_secret(con) -> None:
    """DuckDB's S3 secret from the usual AWS variables, the same credentials model files use (core.objectstore)."""
    given = ", ".join(f"{k} '{_quote(v)}'" for k, v in objectstore.duckdb_secret_options().items())
    con.execute(f"CREATE OR REPLACE SECRET mms_s3 (TYPE s3{', ' + given if given else ''})")


def _probe_s3(con, data_path: str) -> None:
    """One listing of a key that is never there: a wrong endpoint, bucket or credentials fails here, at
    open, naming the setting, not at the first write (small inserts reach S3 only when compacted)."""
    con.execute(f"SELECT count(*) FROM glob('{_quote(data_path.rstrip('/'))}/.mms-probe*')").fetchone()


def _catalog_conflict(e: duckdb.Error) -> bool:
    """Two processes changed the same catalog rows at once: DuckLake's own conflict, or PostgreSQL's
    serialization failure passed through as a plain error (seen when three servers started together)."""
    return isinstance(e, duckdb.TransactionException) or "could not serialize access" in str(e)


def _disk_full(e: BaseException) -> bool:
    return "No space left on device" in str(e) or "Disk quota exceeded" in str(e)


def _rollback(con) -> None:
    try:
        con.rollback()
    except duckdb.Error:
        pass  # a failed commit has already ended the transaction


class _SharedDatabase:
    """One open database per store per process, counted by the operations using it.

    A holder (the server, for its whole life) counts as a user that never leaves, so the file
    stays open and every operation is a cursor of the open root: no open or close per request."""

    def __init__(self):
        self.lock = threading.Condition()
        self.root: duckdb.DuckDBPyConnection | None = None
        self.users = 0
        self.held = 0
        self.swapping = False
        self.is_lake = False
        # this process's unused ids per sequence: DuckLake's, and the prediction ids of a held file
        self.blocks: dict[str, list[int]] = {}
        self.blocks_lock = threading.Lock()
        self.serving = None  # the server's serving of this store in this process (core/serving.py)

    def acquire(self, store: "Store") -> duckdb.DuckDBPyConnection:
        with self.lock:
            self.lock.wait_for(lambda: not self.swapping)
            self._open_root(store)
            self.users += 1
            try:
                cur = store._cursor(self.root)
            except BaseException:
                self.users -= 1
                self._close_if_unused()
                raise
            if store.is_lake:
                _lake_cursors[id(cur)] = self
            elif self.held:
                _held_cursors[id(cur)] = self
            return cur

    def release(self, con) -> None:
        _lake_cursors.pop(id(con), None)
        _held_cursors.pop(id(con), None)
        con.close()
        with self.lock:
            self.users -= 1
            self._close_if_unused()

    def hold(self, store: "Store") -> None:
        with self.lock:
            self.lock.wait_for(lambda: not self.swapping)
            self._open_root(store)
            self.users += 1
            self.held += 1

    def unhold(self) -> None:
        with self.lock:
            self.held -= 1
            self.users -= 1
            self._close_if_unused()

    @contextmanager
    def closed(self, store: "Store"):
        """The file closed for the block (a restore replaces it), then reopened for its holders;
        new operations wait, running ones finish first."""
        with self.lock:
            self.lock.wait_for(lambda: not self.swapping)
            self.swapping = True
            self.lock.wait_for(lambda: self.users == self.held)
            if self.root is not None:
                self.root.close()
                self.root = None
            self.blocks.clear()  # a restored file's sequences are behind the ids taken from the old one
        try:
            yield
        finally:
            with self.lock:
                try:
                    if self.held:
                        self._open_root(store)
                finally:
                    self.swapping = False
                    self.lock.notify_all()

    def invalidate(self) -> None:
        """Close a database DuckDB has invalidated (every statement on it fails until it is reopened);
        the next operation opens it again. Operations still running on it fail and may be retried."""
        with self.lock:
            if self.root is not None:
                try:
                    self.root.close()
                except duckdb.Error:
                    pass
                self.root = None
            self.blocks.clear()

    def catalog_answers(self) -> bool:
        """Whether the DuckLake's catalog answers a query now (asked after an error that may be its absence);
        without an open database (an error while opening it) there is nothing to ask, and no evidence against it."""
        root = self.root
        if root is None:
            return True
        try:
            cur = root.cursor()
            try:
                cur.execute(f"SELECT * FROM ducklake_current_snapshot('{LAKE}')").fetchall()
            finally:
                cur.close()
            return True
        except duckdb.Error:
            return False

    def block_ids(self, sequence: str, n: int) -> list[int]:
        """`n` ids from this process's block of `sequence`, taking a new block when it runs out
        (what is left of the old one is dropped, so ids keep growing)."""
        with self.blocks_lock:
            free = self.blocks.get(sequence, [])
            if len(free) < n:
                free = self._take(sequence, max(n, ID_BLOCK))
            ids, self.blocks[sequence] = free[:n], free[n:]
        return ids

    def _take(self, sequence: str, size: int) -> list[int]:
        if self.is_lake:
            start = _take_block(self.root, sequence, size)
            return list(range(start, start + size))
        cur = self.root.cursor()  # its own transaction, committed at once
        try:
            return _nextval(cur, sequence, size)
        finally:
            cur.close()

    def _open_root(self, store: "Store") -> None:
        self.is_lake = store.is_lake
        if self.root is None:
            root = store._open()
            try:
                store._migrate(root)
            except BaseException:
                root.close()
                raise
            self.root = root

    def _close_if_unused(self) -> None:
        if self.users == 0 and self.root is not None:
            self.root.close()
            self.root = None
            self.blocks.clear()
        self.lock.notify_all()


_shared: dict[str, _SharedDatabase] = {}
_shared_lock = threading.Lock()
_lake_cursors: dict[int, _SharedDatabase] = {}  # DuckLake cursors in use, to their store's shared database
_held_cursors: dict[int, _SharedDatabase] = {}  # cursors of a held embedded file (the server's), likewise


def _shared_for(key: str) -> _SharedDatabase:
    with _shared_lock:
        return _shared.setdefault(key, _SharedDatabase())


def _next_ids(con, sequence: str, n: int) -> list[int]:
    """`n` new ids of `sequence`: from the sequence on the embedded file; on DuckLake from its
    counter table, in the caller's transaction for SERIAL_IDS, else from this process's block.
    A held file (the server's) takes prediction ids in blocks too: a statement fewer per commit
    of the group-commit writer."""
    if n == 0:
        return []
    shared = _lake_cursors.get(id(con))
    if shared is None:
        held = _held_cursors.get(id(con))
        if held is not None and sequence == "prediction_seq":
            return held.block_ids(sequence, n)
        return _nextval(con, sequence, n)
    if sequence not in SERIAL_IDS:
        return shared.block_ids(sequence, n)
    start = con.execute(f"SELECT next_id FROM id_{sequence}").fetchone()[0]
    con.execute(f"UPDATE id_{sequence} SET next_id = ?", [start + n])
    return list(range(start, start + n))


def _nextval(con, sequence: str, n: int) -> list[int]:
    return con.execute(f"SELECT nextval('{sequence}') AS id FROM range(?)", [n]).fetchnumpy()["id"].tolist()


def _take_block(root, sequence: str, size: int) -> int:
    """The first id of a block of `size` taken from a DuckLake counter in a transaction of its own,
    retried while other processes take theirs."""
    for attempt in range(100):
        cur = root.cursor()
        try:
            cur.execute(f"USE {LAKE}")
            cur.begin()
            start = cur.execute(f"SELECT next_id FROM id_{sequence}").fetchone()[0]
            cur.execute(f"UPDATE id_{sequence} SET next_id = ?", [start + size])
            cur.commit()
            return start
        except duckdb.Error as e:
            _rollback(cur)
            if not _catalog_conflict(e):
                raise
            time.sleep(random.uniform(0.005, 0.05) * min(attempt + 1, 10))
        finally:
            cur.close()
    raise Conflict(f"no block of {sequence} ids could be taken: other processes kept taking theirs; try again")


_ID_COLUMNS = {"model_seq": ("models", "model_id"), "example_seq": ("examples", "example_id"),
               "import_seq": ("examples", "import_id"), "prediction_seq": ("predictions", "prediction_id"),
               "feedback_seq": ("feedback", "feedback_id"), "batch_seq": ("sample_batches", "batch_id"),
               "event_seq": ("events", "event_id")}


def _row(cur) -> dict | None:
    rows = cur.fetchall()  # not fetchone: DuckDB keeps a half-read result open on the cursor
    if not rows:
        return None
    return dict(zip([d[0] for d in cur.description], rows[0]))


def _rows(cur) -> list[dict]:
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _equal(**columns) -> tuple[str, list]:
    """` AND column = ?` for each column given a value (None: any), and the values, for a WHERE 1=1."""
    given = {c: v for c, v in columns.items() if v is not None}
    return "".join(f" AND {c} = ?" for c in given), list(given.values())


def _check_recorded(where, done: dict[int, str]) -> None:
    """Refuse a store whose applied migrations are not this code's, by number and name: migrations
    are matched by position, so one inserted above another would skip or misapply them silently."""
    for number, name in sorted(done.items()):
        if (unknown := unknown_migration(number, name)) is not None:
            raise StoreError(f"{where} has {unknown}: run the MMS version that wrote the store")


def unknown_migration(number: int, name: str) -> str | None:
    """None when this code's migration `number` is `name`; else what a refusal says of it."""
    ours = schema.MIGRATIONS[number - 1][0] if 1 <= number <= len(schema.MIGRATIONS) else None
    if ours == name:
        return None
    return (f"migration {number} '{name}', which this version of MMS "
            + (f"knows as '{ours}'" if ours else "does not know (a newer MMS wrote it?)"))


def _quote(path: str) -> str:
    return str(path).replace("'", "''")


@contextmanager
def registered(con, name: str, frame):
    """`frame` (a DataFrame or Arrow table) readable as the table `name` for the block, scanned in
    place by DuckDB: how a batch goes in (INSERT ... SELECT ... FROM name), never row by row."""
    con.register(name, frame)
    try:
        yield name
    finally:
        con.unregister(name)


def insert_frame(con, name: str, frame, sql: str, args: list | None = None) -> None:
    """One INSERT ... SELECT ... FROM `name` over `frame` (see registered)."""
    with registered(con, name, frame):
        con.execute(sql, args or [])
