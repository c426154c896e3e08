"""The DuckDB store: schema as numbered migrations, short-lived connections, and every SQL query.

This is the only module that speaks SQL. Functions take an open connection (from
`Store.connect()` or `Store.transaction()`) and return plain data: dicts, lists, DataFrames.
Batches go in through pandas (DuckDB's replacement scan), never row by row.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import duckdb
import pandas as pd
import pyarrow as pa

from . import objectstore, settings
from .errors import Conflict, DiskFull, InvalidInput, StoreBusy, StoreError, StoreUnavailable

log = logging.getLogger("mms.store")

MIGRATIONS = [
    ("create core tables", """
    CREATE SEQUENCE model_seq;
    CREATE SEQUENCE example_seq;
    CREATE SEQUENCE import_seq;
    CREATE SEQUENCE prediction_seq;
    CREATE SEQUENCE feedback_seq;
    CREATE SEQUENCE batch_seq;
    CREATE SEQUENCE event_seq;
    CREATE TABLE models (
        model_id INTEGER PRIMARY KEY,
        name VARCHAR NOT NULL UNIQUE,
        description VARCHAR NOT NULL DEFAULT '',
        task VARCHAR NOT NULL,
        labels VARCHAR[] NOT NULL,
        preprocess VARCHAR NOT NULL,      -- JSON
        model_config VARCHAR NOT NULL,    -- JSON
        active_version INTEGER,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    CREATE TABLE versions (
        model_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        parent_version INTEGER,
        mode VARCHAR NOT NULL,
        model_config VARCHAR NOT NULL,    -- JSON, with the random seed
        preprocess VARCHAR NOT NULL,      -- JSON
        data VARCHAR NOT NULL,            -- JSON: rows by source, fingerprint
        metrics VARCHAR NOT NULL,         -- JSON
        max_example_id BIGINT NOT NULL,   -- newest example this version could have seen
        artifact VARCHAR NOT NULL,        -- path relative to the store's folder
        sha256 VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL,
        PRIMARY KEY (model_id, version)
    );
    CREATE TABLE examples (
        example_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        text VARCHAR NOT NULL,
        label VARCHAR NOT NULL,
        business_line VARCHAR,
        split VARCHAR NOT NULL,           -- train | test
        source VARCHAR NOT NULL,          -- import | feedback
        prediction_id BIGINT,
        import_id BIGINT,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    CREATE TABLE example_tokens (
        example_id BIGINT NOT NULL,
        prep_hash VARCHAR NOT NULL,
        tokens VARCHAR[] NOT NULL
    );
    -- Append-only log, partitionable by (business_line, day): never updated in place.
    CREATE TABLE predictions (
        prediction_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        text VARCHAR NOT NULL,
        text_key UBIGINT NOT NULL,        -- hash of the normalised text
        business_line VARCHAR NOT NULL,
        label VARCHAR NOT NULL,
        top_prob DOUBLE NOT NULL,
        probs DOUBLE[] NOT NULL,          -- in the order of the model's labels
        created_at TIMESTAMP NOT NULL,
        logged_at TIMESTAMP NOT NULL,
        source VARCHAR NOT NULL,
        created_by VARCHAR NOT NULL
    );
    CREATE TABLE feedback (
        feedback_id BIGINT NOT NULL,
        prediction_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        text_key UBIGINT NOT NULL,
        label VARCHAR NOT NULL,           -- a model label, or skip | unclear
        batch_id BIGINT,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    CREATE TABLE sample_batches (
        batch_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        strategy VARCHAR NOT NULL,
        params VARCHAR NOT NULL,          -- JSON: k and filters
        prediction_ids BIGINT[] NOT NULL,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    CREATE TABLE events (
        event_id BIGINT NOT NULL,
        "at" TIMESTAMP NOT NULL,
        "user" VARCHAR NOT NULL,
        action VARCHAR NOT NULL,
        model_id INTEGER,
        details VARCHAR NOT NULL          -- JSON
    );
    """),
]

MIGRATIONS.append(("users and API tokens", """
    CREATE TABLE users (
        name VARCHAR PRIMARY KEY,
        role VARCHAR NOT NULL,            -- analyst | labeller | owner
        password_hash VARCHAR NOT NULL,   -- bcrypt
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    CREATE TABLE api_tokens (
        token_hash VARCHAR PRIMARY KEY,   -- sha256 of a random token; the token itself is never stored
        name VARCHAR NOT NULL,            -- the user the token acts as
        label VARCHAR NOT NULL DEFAULT '',
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    """))

MIGRATIONS.append(("one label per prediction", """
    CREATE UNIQUE INDEX feedback_one_per_prediction ON feedback (prediction_id);
    """))

MIGRATIONS.append(("dashboard sessions and sign-in attempts", """
    CREATE TABLE app_secrets (
        name VARCHAR PRIMARY KEY,         -- e.g. the key that signs dashboard session cookies
        value VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL
    );
    CREATE TABLE sessions (
        session_hash VARCHAR PRIMARY KEY, -- sha256 of the session id; the id itself is only in the cookie
        name VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        expires_at TIMESTAMP NOT NULL
    );
    CREATE TABLE session_handoffs (       -- one-time codes that put a session into a browser cookie
        code_hash VARCHAR PRIMARY KEY,
        token VARCHAR NOT NULL,           -- the signed session token, kept for at most a minute
        expires_at TIMESTAMP NOT NULL
    );
    CREATE TABLE sign_in_attempts (       -- what sign-in backoff counts; kept here so every process agrees
        subject VARCHAR NOT NULL,         -- a user name, or token@ADDRESS for an API token
        "at" TIMESTAMP NOT NULL,
        ok BOOLEAN NOT NULL
    );
    """))

# Statistics read rollups instead of the log. A prediction counts in the row of its model, version,
# business line, day, predicted label and confidence bucket b (b/100 <= top_prob < (b+1)/100, as
# floats compare), so a low-confidence threshold of whole hundredths counts exactly. Every written
# batch appends its own rows, summed when read and merged by compact_rollups: DuckLake has no keys
# to upsert on, and appends from several writers never conflict where upserts of one row would.
_BUCKET = ("(CAST(floor(top_prob * 100) AS INTEGER) - CAST(top_prob < floor(top_prob * 100) / 100 AS INTEGER)"
           " + CAST(top_prob >= (floor(top_prob * 100) + 1) / 100 AS INTEGER))")
_PREDICTION_ROLLUP = f"""
    SELECT model_id, version, business_line, CAST(created_at AS DATE) AS day, label, {_BUCKET} AS bucket,
           count(*) AS n, sum(top_prob) AS sum_top_prob
    FROM {{source}} GROUP BY ALL"""
# Labels count in the row of the labelled prediction's keys; an undo appends the same row negated.
_LABEL_ROLLUP = """
    SELECT p.model_id, p.version, p.business_line, CAST(p.created_at AS DATE) AS day, f.label AS truth,
           p.label AS predicted, {sign} * count(*) AS n
    FROM {feedback} f JOIN predictions p USING (prediction_id) GROUP BY ALL"""

MIGRATIONS.append(("statistics rollups", f"""
    CREATE TABLE prediction_rollups (
        model_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        business_line VARCHAR NOT NULL,
        day DATE NOT NULL,                -- of created_at
        label VARCHAR NOT NULL,           -- predicted
        bucket INTEGER NOT NULL,          -- top_prob in [bucket / 100, (bucket + 1) / 100)
        n BIGINT NOT NULL,
        sum_top_prob DOUBLE NOT NULL
    );
    CREATE TABLE label_rollups (
        model_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        business_line VARCHAR NOT NULL,
        day DATE NOT NULL,                -- of the labelled prediction's created_at
        truth VARCHAR NOT NULL,           -- the label given, skip and unclear included
        predicted VARCHAR NOT NULL,
        n BIGINT NOT NULL                 -- negative for an undo
    );
    INSERT INTO prediction_rollups {_PREDICTION_ROLLUP.format(source="predictions")};
    INSERT INTO label_rollups {_LABEL_ROLLUP.format(sign=1, feedback="feedback")};
    """))

# Drift measures of a business line x period cost a text sample and a small classifier: kept here
# per (model, reference version, reference, line, period) and the volume they were computed on, so
# a finished period is measured once. Append-only (no keys, as DuckLake needs); the newest row wins.
MIGRATIONS.append(("drift cache", """
    CREATE TABLE drift_cells (
        model_id INTEGER NOT NULL,
        version INTEGER NOT NULL,         -- the reference version
        reference VARCHAR NOT NULL,       -- 'training' or a window 'since..until'
        business_line VARCHAR NOT NULL,
        period VARCHAR NOT NULL,          -- day | week | month
        period_start TIMESTAMP NOT NULL,
        n BIGINT NOT NULL,                -- predictions in the cell when measured
        measures VARCHAR NOT NULL,        -- JSON
        computed_at TIMESTAMP NOT NULL
    );
    """))

# A version's note and tags, and the model each user last worked on. Append-only like the drift
# cache (DuckLake has no keys to upsert on): the newest row per version, or per user, wins, and
# the older rows are the history of the note.
MIGRATIONS.append(("version notes and tags; each user's last model", """
    CREATE TABLE version_notes (
        model_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        note VARCHAR NOT NULL,
        tags VARCHAR[] NOT NULL,
        updated_at TIMESTAMP NOT NULL,
        updated_by VARCHAR NOT NULL
    );
    CREATE TABLE last_models (
        name VARCHAR NOT NULL,            -- the user
        model_id INTEGER NOT NULL,
        chosen_at TIMESTAMP NOT NULL
    );
    """))

_migrated: set[str] = set()
_migrate_lock = threading.Lock()
_PID = re.compile(r"PID (\d+)")

# --- two backends: the embedded file, and DuckLake --------------------------------------------
# DuckLake has no primary keys, unique constraints, indexes or sequences. The migrations above are
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
        request opens or closes the file (that cost ~80 ms of a ~100 ms prediction)."""
        _shared_for(self.key).hold(self)

    def unhold(self) -> None:
        _shared_for(self.key).unhold()

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
        for number, (name, sql) in enumerate(MIGRATIONS, start=1):
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


# --- events -------------------------------------------------------------------------------

def add_event(con, user: str, action: str, model_id: int | None, details: dict) -> None:
    con.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                [_next_ids(con, "event_seq", 1)[0], now(), user, action, model_id,
                 json.dumps(details, ensure_ascii=False, default=str)])


def events(con, model_id: int | None = None, action: str | None = None, limit: int = 1000) -> pd.DataFrame:
    sql = 'SELECT event_id, "at", "user", action, model_id, details FROM events WHERE 1=1'
    args: list = []
    if model_id is not None:
        sql += " AND model_id = ?"
        args.append(model_id)
    if action is not None:
        sql += " AND action = ?"
        args.append(action)
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


# --- examples -----------------------------------------------------------------------------

def insert_examples(con, model_id: int, frame: pd.DataFrame, split: str, source: str, user: str,
                    import_id: int | None = None) -> int:
    """Append labelled rows (columns text, label, business_line, created_at) in one batch."""
    batch = frame[["text", "label", "business_line", "created_at"]].copy()
    batch["example_id"] = _next_ids(con, "example_seq", len(batch))
    con.register("_examples_batch", batch)
    try:
        con.execute("""
            INSERT INTO examples
            SELECT example_id, ?, text, label, business_line, ?, ?, NULL, ?,
                   coalesce(CAST(created_at AS TIMESTAMP), ?), ?
            FROM _examples_batch""", [model_id, split, source, import_id, now(), user])
    finally:
        con.unregister("_examples_batch")
    return len(batch)


def new_import_id(con) -> int:
    return _next_ids(con, "import_seq", 1)[0]


def examples_with_tokens(con, model_id: int, split: str, prep_hash: str,
                         after_example_id: int = -1, labels: list[str] | None = None,
                         example_ids: list[int] | None = None) -> pd.DataFrame:
    """Examples of one split (newer than `after_example_id`; only `example_ids` when given) with
    cached tokens, or NULL where none."""
    only = "" if example_ids is None else " AND {} IN (SELECT unnest(?::BIGINT[]))"  # filters both sides
    sql = f"""
        SELECT e.example_id, e.text, e.label, e.business_line, e.source, t.tokens
        FROM examples e
        LEFT JOIN (SELECT example_id, any_value(tokens) AS tokens FROM example_tokens  -- two trainings
                   WHERE prep_hash = ?{only.format("example_id")} GROUP BY example_id) t
                  ON t.example_id = e.example_id  -- may cache twice
        WHERE e.model_id = ? AND e.split = ? AND e.example_id > ?{only.format("e.example_id")}
          AND {_TRAINABLE_EXAMPLE}"""
    ids = [] if example_ids is None else [list(map(int, example_ids))]
    args = [prep_hash, *ids, model_id, split, after_example_id, *ids]
    if labels is not None:
        sql += " AND list_contains(?, e.label)"
        args.append(labels)
    return con.execute(sql + " ORDER BY e.example_id", args).df()


def sample_example_ids(con, model_id: int, split: str, up_to_example_id: int, n: int, seed: int,
                       labels: list[str] | None = None) -> list[int]:
    """At most `n` ids of a split's examples up to `up_to_example_id`, in a seeded hash order:
    the same draw for the same seed, without reading any text or tokens."""
    sql = f"SELECT example_id FROM examples e WHERE model_id = ? AND split = ? AND example_id <= ? AND {_TRAINABLE_EXAMPLE}"
    args = [model_id, split, up_to_example_id]
    if labels is not None:
        sql += " AND list_contains(?, label)"
        args.append(labels)
    rows = con.execute(sql + " ORDER BY hash(example_id + ?), example_id LIMIT ?", args + [seed, n]).fetchall()
    return [r[0] for r in rows]


def insert_tokens(con, prep_hash: str, frame: pd.DataFrame) -> None:
    """Cache tokens (columns example_id, tokens) for one preprocessing config."""
    if frame.empty:
        return
    batch = frame[["example_id", "tokens"]]
    con.register("_tokens_batch", batch)
    try:
        con.execute("INSERT INTO example_tokens SELECT example_id, ?, tokens FROM _tokens_batch", [prep_hash])
    finally:
        con.unregister("_tokens_batch")


def example_summary(con, model_id: int) -> pd.DataFrame:
    return con.execute(f"""
        SELECT split, source, label, coalesce(business_line, '') AS business_line, count(*) AS rows
        FROM examples e WHERE model_id = ? AND {_TRAINABLE_EXAMPLE}
        GROUP BY ALL ORDER BY split, source, label, business_line""", [model_id]).df()


def examples_since(con, model_id: int, after_example_id: int) -> dict[str, int]:
    """Training rows added after `after_example_id`, counted by source."""
    rows = con.execute(f"""
        SELECT source, count(*) FROM examples e
        WHERE model_id = ? AND split = 'train' AND example_id > ? AND {_TRAINABLE_EXAMPLE} GROUP BY source""",
                       [model_id, after_example_id]).fetchall()
    return {source: n for source, n in rows}


# --- predictions --------------------------------------------------------------------------

LOG_COLUMNS = ("text", "norm_text", "business_line", "label", "top_prob", "probs", "created_at")
_LOG_SCHEMA = pa.schema([("text", pa.string()), ("norm_text", pa.string()), ("business_line", pa.string()),
                         ("label", pa.string()), ("top_prob", pa.float64()), ("probs", pa.list_(pa.float64())),
                         ("created_at", pa.timestamp("us"))])
_LOG_VALUE = "(" + ", ".join(f"CAST(? AS {t})" for t in ("VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "DOUBLE",
                                                          "DOUBLE[]", "TIMESTAMP", "BIGINT")) + ")"
# Up to this many rows go in as parameters of a VALUES list: a registered Arrow table costs ~1 ms of
# CPU per statement that scans it (and its registration a catalog change), more than a few rows do.
VALUES_ROWS = 16


def insert_predictions(con, model_id: int, version: int, frame, source: str, user: str) -> list[int]:
    """Log a batch of predictions (columns LOG_COLUMNS) and their rollup rows, in the caller's
    transaction, and return their ids in the frame's order. The frame is a DataFrame, a pyarrow
    Table, or a dict of column lists (the group-commit writer's: no pandas per request)."""
    ids = _next_ids(con, "prediction_seq", len(frame["text"]) if isinstance(frame, dict) else len(frame))
    logged = now()
    small = isinstance(frame, dict) and len(ids) <= VALUES_ROWS
    with _log_batch(con, frame, ids, small) as (batch, args):
        con.execute(f"""
            INSERT INTO predictions
            SELECT prediction_id, ?, ?, text, hash(norm_text), business_line, label, top_prob,
                   CAST(probs AS DOUBLE[]), coalesce(CAST(created_at AS TIMESTAMP), ?), ?, ?, ?
            FROM {batch}""", [model_id, version, logged, logged, source, user] + args)
        if small:  # its GROUP BY over the VALUES list again cost 2.6 ms of a small commit's ~6 ms of CPU
            rollups = _small_batch_rollups(model_id, version, frame, logged)
            con.execute(f"INSERT INTO prediction_rollups ({_ROLLUP_COLUMNS}) VALUES "
                        f"{', '.join([_ROLLUP_VALUE] * len(rollups))}", [v for row in rollups for v in row])
            return ids
        rows = ("(SELECT ? AS model_id, ? AS version, business_line, label, top_prob, probs, "
                f"coalesce(CAST(created_at AS TIMESTAMP), ?) AS created_at FROM {batch})")
        con.execute(f"INSERT INTO prediction_rollups {_GRADED_ROLLUP.format(source=rows)}",
                    [model_id, version, logged] + args)
    return ids


_ROLLUP_COLUMNS = "model_id, version, business_line, day, label, bucket, n, sum_top_prob, sum_expected_grade"
_ROLLUP_VALUE = "(?, ?, ?, CAST(? AS DATE), ?, ?, ?, ?, ?)"


def _small_batch_rollups(model_id: int, version: int, frame: dict, logged) -> list[tuple]:
    """A few rows' prediction rollup rows, grouped as _GRADED_ROLLUP groups them: the same bucket
    (_BUCKET's float comparisons), day and expected grade (positions from 1) on the same doubles;
    tests/test_serving.py checks the two against each other at the buckets' float edges."""
    groups: dict[tuple, list] = {}
    for line, label, p, probs, created in zip(frame["business_line"], frame["label"], frame["top_prob"],
                                              frame["probs"], frame["created_at"]):
        day = (logged if created is None or pd.isna(created) else pd.Timestamp(created)).date()
        floor = math.floor(p * 100)
        bucket = floor - (p < floor / 100) + (p >= (floor + 1) / 100)
        group = groups.setdefault((line, day, label, bucket), [0, 0.0, 0.0])
        group[0] += 1
        group[1] += p
        group[2] += sum(q * i for i, q in enumerate(probs, start=1))
    return [(model_id, version, line, day, label, bucket, *sums) for (line, day, label, bucket), sums in groups.items()]


@contextmanager
def _log_batch(con, frame, ids: list[int], small: bool):
    """The batch with its ids as a FROM clause and the parameters it takes: a few rows of column
    lists (`small`) as a VALUES list, anything else as a registered Arrow table or DataFrame."""
    if small:
        columns = [frame[c] for c in LOG_COLUMNS] + [ids]
        args = [column[i] for i in range(len(ids)) for column in columns]
        yield (f"(VALUES {', '.join([_LOG_VALUE] * len(ids))}) AS b({', '.join(LOG_COLUMNS)}, prediction_id)",
               args)
        return
    if isinstance(frame, dict):
        frame = pa.table({c: pa.array(frame[c], _LOG_SCHEMA.field(c).type) for c in LOG_COLUMNS}, schema=_LOG_SCHEMA)
    if isinstance(frame, pd.DataFrame):
        batch = frame[list(LOG_COLUMNS)].copy()
        batch["prediction_id"] = ids
    else:
        batch = frame.select(list(LOG_COLUMNS)).append_column("prediction_id", pa.array(ids, pa.int64()))
    con.register("_predictions_batch", batch)
    try:
        yield "_predictions_batch", []
    finally:
        con.unregister("_predictions_batch")


def predictions_by_id(con, model_id: int, prediction_ids: list[int]) -> pd.DataFrame:
    return con.execute("""
        SELECT p.prediction_id, p.text, p.text_key, p.business_line, p.label, p.version,
               f.label AS feedback_label
        FROM predictions p LEFT JOIN feedback f USING (prediction_id)
        WHERE p.model_id = ? AND p.prediction_id BETWEEN ? AND ?  -- lets zone maps skip most of the log
          AND list_contains(?, p.prediction_id)""",
                       [model_id, min(prediction_ids, default=0), max(prediction_ids, default=0),
                        prediction_ids]).df()


def business_lines(con, model_id: int) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT DISTINCT business_line FROM prediction_rollups WHERE model_id = ? ORDER BY 1",
        [model_id]).fetchall()]


def prediction_day_range(con, model_id: int) -> tuple:
    """The first and last day with predictions (dates), or (None, None)."""
    return con.execute("SELECT min(day), max(day) FROM prediction_rollups WHERE model_id = ?",
                       [model_id]).fetchone()


def _prediction_filters(model_id, business_lines=None, since=None, until=None, version=None,
                        alias="p", at="created_at", text=None) -> tuple[str, list]:
    """A WHERE clause for a slice whose fields are already checked (slices.Slice.filters());
    `at` is the column the time bounds apply to (a rollup's `day`); `text`, on the predictions
    log only, keeps texts that contain it (letters in any case)."""
    sql = f"{alias}.model_id = ?"
    args: list = [model_id]
    if business_lines:
        sql += f" AND list_contains(?, {alias}.business_line)"
        args.append(list(business_lines))
    if since is not None:
        sql += f" AND {alias}.{at} >= ?"
        args.append(since)
    if until is not None:
        sql += f" AND {alias}.{at} < ?"
        args.append(until)
    if version is not None:
        sql += f" AND {alias}.version = ?"
        args.append(version)
    if text:
        sql += f" AND contains(lower({alias}.text), lower(?))"
        args.append(text)
    return sql, args


# --- hard examples ------------------------------------------------------------------------

# Higher score = more worth labelling. Probabilities are in the model's label order.
STRATEGY_SCORES = {
    "least_confidence": "1 - p.top_prob",
    "margin": "-(list_sort(p.probs, 'DESC')[1] - coalesce(list_sort(p.probs, 'DESC')[2], 0))",
    "entropy": "list_sum(list_transform(p.probs, lambda q: CASE WHEN q > 0 THEN -q * ln(q) ELSE 0 END))",
    "random": "hash(p.prediction_id + ?) / 18446744073709551615.0",
}


def hard_examples(con, model_id: int, strategy: str, k: int, seed: int = 0, **filters) -> pd.DataFrame:
    """The k highest-scoring predictions without feedback, one per normalised text.

    The slice is read first and alone, so DuckDB's zone maps skip the row groups outside its time
    range (the log is appended in time order); labelled texts are removed from these candidates
    only, and grouping by text (arg_max) instead of a window keeps this one pass. The final lookup
    repeats the slice's filter, which lets its scan skip the same row groups."""
    where, args = _prediction_filters(model_id, **filters)
    score = STRATEGY_SCORES[strategy]
    score_args = [seed] if "?" in score else []
    return con.execute(f"""
        WITH candidates AS (
            SELECT p.prediction_id, p.text_key, {score} AS score FROM predictions p WHERE {where}),
        best AS (
            SELECT arg_max(c.prediction_id, (c.score, -c.prediction_id)) AS prediction_id, max(c.score) AS score
            FROM candidates c ANTI JOIN (SELECT text_key FROM feedback WHERE model_id = ?) f USING (text_key)
            GROUP BY c.text_key
            ORDER BY score DESC, prediction_id
            LIMIT ?)
        SELECT p.prediction_id, p.created_at, p.business_line, p.version, p.text, p.label,
               p.top_prob, p.probs, b.score
        FROM best b JOIN predictions p USING (prediction_id)
        WHERE {where}
        ORDER BY b.score DESC, p.prediction_id""", score_args + args + [model_id, k] + args).df()


def hard_example_pool(con, model_id: int, limit: int, **filters) -> pd.DataFrame:
    """The newest `limit` distinct unlabelled texts of the slice, each as its newest prediction
    (prediction_id, created_at, business_line, text, and the version and probs it was logged with):
    what the chosen version re-scores.

    Read like hard_examples: the slice alone first (zone maps), grouped by text before labelled
    texts are removed (the anti join then probes one row per text, not every prediction: a quarter
    less time at 10M), and the lookup repeating the slice's filter."""
    where, args = _prediction_filters(model_id, **filters)
    return con.execute(f"""
        WITH texts AS (
            SELECT p.text_key, max(p.prediction_id) AS prediction_id FROM predictions p WHERE {where}
            GROUP BY p.text_key),
        newest AS (
            SELECT t.prediction_id
            FROM texts t ANTI JOIN (SELECT text_key FROM feedback WHERE model_id = ?) f USING (text_key)
            ORDER BY t.prediction_id DESC
            LIMIT ?)
        SELECT p.prediction_id, p.created_at, p.business_line, p.text, p.version AS logged_by, p.probs
        FROM newest n JOIN predictions p USING (prediction_id)
        WHERE {where}
        ORDER BY p.prediction_id DESC""", args + [model_id, int(limit)] + args).df()


def insert_batch(con, model_id: int, strategy: str, params: dict, prediction_ids: list[int], user: str) -> int:
    batch_id = _next_ids(con, "batch_seq", 1)[0]
    con.execute("INSERT INTO sample_batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                [batch_id, model_id, strategy, json.dumps(params, ensure_ascii=False, default=str),
                 prediction_ids, now(), user])
    return batch_id


def unlabelled_count(con, model_id: int, **filters) -> int:
    """Predictions in the slice that no one has labelled yet (distinct normalised texts)."""
    where, args = _prediction_filters(model_id, **filters)
    return con.execute(f"""
        SELECT count(DISTINCT p.text_key) FROM predictions p
        WHERE {where} AND p.text_key NOT IN (SELECT text_key FROM feedback WHERE model_id = ?)""",
                       args + [model_id]).fetchone()[0]


# --- feedback -----------------------------------------------------------------------------

def insert_feedback(con, model_id: int, frame: pd.DataFrame, user: str, batch_id: int | None,
                    not_training: list[str]) -> list[int]:
    """Record labels (columns prediction_id, text_key, label) and turn those not in `not_training`
    into training examples with source 'feedback'. Returns the feedback ids."""
    batch = frame[["prediction_id", "text_key", "label"]].copy()
    batch["feedback_id"] = _next_ids(con, "feedback_seq", len(batch))
    at = now()
    con.register("_feedback_batch", batch)
    try:
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
    finally:
        con.unregister("_feedback_batch")
    if not trainable.empty:
        trainable["example_id"] = _next_ids(con, "example_seq", len(trainable))
        con.register("_feedback_examples", trainable)
        try:
            con.execute("""
                INSERT INTO examples
                SELECT example_id, ?, text, label, business_line, 'train', 'feedback', prediction_id,
                       NULL, ?, ? FROM _feedback_examples""", [model_id, at, user])
        finally:
            con.unregister("_feedback_examples")
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


# --- statistics ---------------------------------------------------------------------------

def line_period_statistics(con, model_id: int, period: str, low_confidence: float, labels: list[str],
                           not_training: list[str], **filters) -> pd.DataFrame:
    """Per business line and period, and per period over all lines (business_line NULL), in one
    query: n, sum_top_prob, n_low (top_prob below `low_confidence`), versions (that answered), n_0,
    n_1 … per predicted label in `labels`' order, and over labelled predictions (labels in `not_training` left out):
    labelled, correct and macro_f1 (over the labels seen there; NULL with fewer than two true labels).
    `period` is one of slices.PERIODS."""
    predicted = _prediction_parts(model_id, period, low_confidence, filters)
    judged = _label_parts(model_id, period, not_training, filters)
    per_label = ", ".join(f"sum(n) FILTER (WHERE label = ?) AS n_{i}" for i in range(len(labels)))
    sql = f"""
        WITH agg AS ({" UNION ALL ".join(q for q, _ in predicted)}),
        conf AS ({" UNION ALL ".join(q for q, _ in judged)}),
        a AS (SELECT business_line, period, sum(n) AS n, sum(sum_top_prob) AS sum_top_prob, sum(n_low) AS n_low,
                     list(DISTINCT version ORDER BY version) AS versions, {per_label}
              FROM agg GROUP BY GROUPING SETS ((business_line, period), (period))),
        per_label AS (
            SELECT business_line, period, label, sum(tp) AS tp, sum(t) AS t, sum(p) AS p
            FROM (SELECT business_line, period, truth AS label, CASE WHEN truth = predicted THEN n ELSE 0 END AS tp,
                         n AS t, 0 AS p FROM conf
                  UNION ALL SELECT business_line, period, predicted, 0, 0, n FROM conf)
            GROUP BY GROUPING SETS ((business_line, period, label), (period, label))),
        l AS (SELECT business_line, period, sum(t) AS labelled, sum(tp) AS correct,
                     CASE WHEN count(*) FILTER (WHERE t > 0) >= 2 THEN avg(2 * tp / (t + p)) END AS macro_f1
              FROM per_label GROUP BY business_line, period)
        SELECT a.*, coalesce(l.labelled, 0) AS labelled, coalesce(l.correct, 0) AS correct, l.macro_f1
        FROM a LEFT JOIN l ON a.period = l.period AND a.business_line IS NOT DISTINCT FROM l.business_line"""
    args = [a for _, part in predicted + judged for a in part] + list(labels)
    return con.execute(sql, args).df()


def _prediction_parts(model_id: int, period: str, low_confidence: float, filters: dict) -> list[tuple[str, list]]:
    """Queries whose rows (business_line, period, label, version, n, sum_top_prob, n_low) add up to the slice:
    whole days from the rollups; the part of a day that a since/until bound cuts, and every day when
    the threshold is not whole hundredths (the buckets' edges), from the log."""
    bucket = round(low_confidence * 100)
    if bucket / 100 != low_confidence:
        return [_logged_part(model_id, period, low_confidence, filters)]
    days, edges = _day_split(filters.get("since"), filters.get("until"))
    parts = [_logged_part(model_id, period, low_confidence, {**filters, "since": a, "until": b}) for a, b in edges]
    if days is not None:
        where, args = _prediction_filters(model_id, **{**filters, "since": days[0], "until": days[1]},
                                          alias="r", at="day")
        parts.append((f"""
            SELECT r.business_line, CAST(date_trunc(?, r.day) AS TIMESTAMP) AS period, r.label, r.version,
                   CAST(sum(r.n) AS BIGINT) AS n, sum(r.sum_top_prob) AS sum_top_prob,
                   CAST(coalesce(sum(r.n) FILTER (WHERE r.bucket < ?), 0) AS BIGINT) AS n_low
            FROM prediction_rollups r WHERE {where} GROUP BY ALL""",
                      [period, min(max(bucket, 0), 101)] + args))
    return parts


def _logged_part(model_id: int, period: str, low_confidence: float, filters: dict) -> tuple[str, list]:
    where, args = _prediction_filters(model_id, **filters)
    return (f"""
        SELECT p.business_line, date_trunc(?, p.created_at) AS period, p.label, p.version,
               count(*) AS n, sum(p.top_prob) AS sum_top_prob,
               count(*) FILTER (WHERE p.top_prob < ?) AS n_low
        FROM predictions p WHERE {where} GROUP BY ALL""", [period, low_confidence] + args)


def confidence_histogram(con, model_id: int, period: str, **filters) -> pd.DataFrame:
    """Per business line, period, version and confidence bucket (top_prob in [bucket / 100, (bucket + 1) / 100)):
    n and sum_top_prob, so a version's reliability curve can map confidence to accuracy (estimated
    accuracy). Whole days from the rollups, the part of a day that a since/until bound cuts from the log."""
    days, edges = _day_split(filters.get("since"), filters.get("until"))
    parts = []
    for a, b in edges:
        where, args = _prediction_filters(model_id, **{**filters, "since": a, "until": b})
        parts.append((f"""
            SELECT p.business_line, date_trunc(?, p.created_at) AS period, p.version,
                   {_BUCKET.replace("top_prob", "p.top_prob")} AS bucket, count(*) AS n, sum(p.top_prob) AS sum_top_prob
            FROM predictions p WHERE {where} GROUP BY ALL""", [period] + args))
    if days is not None:
        where, args = _prediction_filters(model_id, **{**filters, "since": days[0], "until": days[1]},
                                          alias="r", at="day")
        parts.append((f"""
            SELECT r.business_line, CAST(date_trunc(?, r.day) AS TIMESTAMP) AS period, r.version, r.bucket,
                   CAST(sum(r.n) AS BIGINT) AS n, sum(r.sum_top_prob) AS sum_top_prob
            FROM prediction_rollups r WHERE {where} GROUP BY ALL""", [period] + args))
    sql = f"""SELECT business_line, period, version, bucket, CAST(sum(n) AS BIGINT) AS n, sum(sum_top_prob) AS sum_top_prob
              FROM ({" UNION ALL ".join(q for q, _ in parts)}) GROUP BY ALL"""
    return con.execute(sql, [a for _, part in parts for a in part]).df()


def _label_parts(model_id: int, period: str, not_training: list[str], filters: dict) -> list[tuple[str, list]]:
    """Queries whose rows (business_line, period, truth, predicted, n) count the slice's labelled
    predictions, leaving out decisions in `not_training` (skip, unclear): whole days from the
    rollups, the part of a day that a since/until bound cuts from the labels joined to their predictions."""
    days, edges = _day_split(filters.get("since"), filters.get("until"))
    parts = []
    for a, b in edges:
        where, args = _prediction_filters(model_id, **{**filters, "since": a, "until": b})
        parts.append((f"""
            SELECT p.business_line, date_trunc(?, p.created_at) AS period, f.label AS truth,
                   p.label AS predicted, count(*) AS n
            FROM {_DECIDED} f JOIN predictions p USING (prediction_id)
            WHERE f.model_id = ? AND NOT list_contains(?, f.label) AND {where} GROUP BY ALL""",
                      [period, model_id, list(not_training)] + args))
    if days is not None:
        where, args = _prediction_filters(model_id, **{**filters, "since": days[0], "until": days[1]},
                                          alias="r", at="day")
        parts.append((f"""
            SELECT r.business_line, CAST(date_trunc(?, r.day) AS TIMESTAMP) AS period, r.truth, r.predicted,
                   CAST(sum(r.n) AS BIGINT) AS n
            FROM label_rollups r WHERE {where} AND NOT list_contains(?, r.truth)
            GROUP BY ALL HAVING sum(r.n) > 0""", [period] + args + [list(not_training)]))
    return parts


def _day_split(since, until) -> tuple[tuple | None, list[tuple]]:
    """[since, until) as whole days for the rollups ((first day, end day), or None when no day is
    whole) and the cut parts of days at either end for the log ([(since, until), ...])."""
    first = None if since is None else pd.Timestamp(since).ceil("D")
    end = None if until is None else pd.Timestamp(until).floor("D")
    if first is not None and end is not None and first >= end:
        return None, [(since, until)]  # inside one day, or two part-days that meet at midnight
    edges = []
    if first is not None and first != pd.Timestamp(since):
        edges.append((since, first.to_pydatetime()))
    if end is not None and end != pd.Timestamp(until):
        edges.append((end.to_pydatetime(), until))
    days = (None if first is None else first.date(), None if end is None else end.date())
    return days, edges


def rebuild_rollups(con) -> None:
    """Compute both rollups again from the whole log and its labels, with the SQL insert_predictions
    and insert_feedback use, and copy the labelled predictions' slice fields that are missing: for
    rows that reached the log or the labels without insert_predictions or insert_feedback (a bulk load)."""
    con.execute("DELETE FROM prediction_rollups; DELETE FROM label_rollups")
    con.execute(f"INSERT INTO prediction_rollups {_GRADED_ROLLUP.format(source='predictions')}")
    con.execute(f"INSERT INTO label_rollups {_LABEL_ROLLUP.format(sign=1, feedback=_DECIDED)}")
    insert_labelled_predictions(con, "feedback")


# Each rollup's key, and how its rows merge.
_ROLLUPS = {"prediction_rollups": ("model_id, version, business_line, day, label, bucket",
                                    "sum(n), sum(sum_top_prob), sum(sum_expected_grade)"),
            "label_rollups": ("model_id, version, business_line, day, truth, predicted", "sum(n)")}


def compact_rollups(con) -> int:
    """Merge the rollup rows that batches appended into one per key, on the days that have several,
    and drop label rows that undos brought to zero. Returns how many rows fewer the rollups hold.

    Rows a concurrent writer appends meanwhile are not in this transaction's snapshot, so they
    are neither deleted nor merged: they wait for the next compaction."""
    before = after = 0
    for table, (keys, sums) in _ROLLUPS.items():
        before += con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _rollup_days AS
                        SELECT DISTINCT model_id, day FROM (SELECT model_id, day FROM {table} GROUP BY {keys}
                                                           HAVING count(*) > 1 OR sum(n) = 0)""")
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _rollup_merged AS
                        SELECT {keys}, {sums} FROM {table} t SEMI JOIN _rollup_days d USING (model_id, day)
                        GROUP BY {keys} HAVING sum(n) <> 0""")
        con.execute(f"DELETE FROM {table} t USING _rollup_days d WHERE t.model_id = d.model_id AND t.day = d.day")
        con.execute(f"INSERT INTO {table} SELECT * FROM _rollup_merged")
        con.execute("DROP TABLE _rollup_days; DROP TABLE _rollup_merged")
        after += con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return before - after


# --- audit sample and drift ---------------------------------------------------------------

# The audit sample: a prediction is in it when a hash of its id falls below the share, so every
# line x period holds a random share of its predictions, whatever their confidence, drawn once
# and for good (a larger share keeps the smaller share's items).
_AUDIT = "hash(p.prediction_id, 'mms-audit') < ? * 18446744073709551615.0"


def audit_statistics(con, model_id: int, period: str, share: float, not_training: list[str],
                     **filters) -> pd.DataFrame:
    """Per business line and period, and per period over all lines (business_line NULL): audited
    (audit-sample predictions with a label, skip/unclear left out) and audit_correct. Read from the
    labels' side (few) joined to their predictions' slice fields (labelled_predictions), so it costs
    what the labels do, not the log."""
    where, args = _prediction_filters(model_id, **filters)
    return con.execute(f"""
        WITH f AS (SELECT f.prediction_id, f.label AS truth FROM {_DECIDED} f
                   WHERE f.model_id = ? AND NOT list_contains(?, f.label)
                     AND {_AUDIT.replace("p.prediction_id", "f.prediction_id")}),
        judged AS (SELECT p.business_line, date_trunc(?, p.created_at) AS period, p.label, f.truth
                   FROM f JOIN labelled_predictions p USING (prediction_id) WHERE {where})
        SELECT business_line, period, count(*) AS audited, count(*) FILTER (WHERE truth = label) AS audit_correct
        FROM judged GROUP BY GROUPING SETS ((business_line, period), (period))""",
                       [model_id, list(not_training), share, period] + args).df()


def hard_example_statistics(con, model_id: int, period: str, strategies: list[str], not_training: list[str],
                            **filters) -> pd.DataFrame:
    """Per business line and period, and per period over all lines (business_line NULL): hard_labelled
    (labelled predictions that a recorded batch of one of `strategies` drew, skip/unclear left out) and
    hard_correct. A label counts only when its own batch drew its prediction: imported labels (no
    batch), the demo's, an audit or random batch's never do. Read from the labels' side as
    audit_statistics is (the batch a label came with is not in the label rollups)."""
    where, args = _prediction_filters(model_id, **filters)
    return con.execute(f"""
        WITH f AS (SELECT d.prediction_id, d.label AS truth FROM {_DECIDED} d
                   JOIN feedback l USING (prediction_id) JOIN sample_batches b ON b.batch_id = l.batch_id
                   WHERE d.model_id = ? AND NOT list_contains(?, d.label) AND list_contains(?, b.strategy)
                     AND b.model_id = d.model_id AND list_contains(b.prediction_ids, d.prediction_id)),
        judged AS (SELECT p.business_line, date_trunc(?, p.created_at) AS period, p.label, f.truth
                   FROM f JOIN labelled_predictions p USING (prediction_id) WHERE {where})
        SELECT business_line, period, count(*) AS hard_labelled, count(*) FILTER (WHERE truth = label) AS hard_correct
        FROM judged GROUP BY GROUPING SETS ((business_line, period), (period))""",
                       [model_id, list(not_training), list(strategies), period] + args).df()


def audit_queue(con, model_id: int, share: float, k: int, **filters) -> pd.DataFrame:
    """Up to k unlabelled predictions of the audit sample in the slice, in a random order (the
    hash's), with the columns hard_examples gives (score: the random key)."""
    where, args = _prediction_filters(model_id, **filters)
    return con.execute(f"""
        SELECT p.prediction_id, p.created_at, p.business_line, p.version, p.text, p.label, p.top_prob, p.probs,
               hash(p.prediction_id, 'mms-audit') / 18446744073709551615.0 AS score
        FROM predictions p ANTI JOIN feedback f USING (prediction_id)
        WHERE {where} AND {_AUDIT}
        ORDER BY score LIMIT ?""", args + [share, k]).df()


def prediction_sample(con, model_id: int, k: int, **filters) -> pd.DataFrame:
    """Up to k predictions of the slice chosen at random (by a hash of the id): text, top_prob, label."""
    where, args = _prediction_filters(model_id, **filters)
    return con.execute(f"""
        SELECT p.text, p.top_prob, p.label FROM predictions p WHERE {where}
        ORDER BY hash(p.prediction_id, 'mms-drift') LIMIT ?""", args + [k]).df()


def example_line_counts(con, model_id: int, max_example_id: int, split: str) -> dict:
    """Examples of a split a version could have seen, per business line (None: rows without one)."""
    return dict(con.execute(f"""
        SELECT business_line, count(*) FROM examples e
        WHERE model_id = ? AND split = ? AND example_id <= ? AND {_TRAINABLE_EXAMPLE} GROUP BY 1""",
                            [model_id, split, max_example_id]).fetchall())


def example_sample(con, model_id: int, max_example_id: int, split: str, k: int,
                   business_line: str | None = None) -> pd.DataFrame:
    """Up to k examples (text, label) of a split a version could have seen, at random, of one line or all."""
    sql = f"SELECT text, label FROM examples e WHERE model_id = ? AND split = ? AND example_id <= ? AND {_TRAINABLE_EXAMPLE}"
    args: list = [model_id, split, max_example_id]
    if business_line is not None:
        sql += " AND business_line = ?"
        args.append(business_line)
    return con.execute(sql + " ORDER BY hash(example_id, 'mms-drift') LIMIT ?", args + [k]).df()


def training_vocabulary(con, model_id: int, max_example_id: int, prep_hash: str) -> set[str]:
    """Every token of the training examples a version could have seen, as its tokenizer cut them."""
    rows = con.execute("""
        SELECT DISTINCT unnest(t.tokens) FROM example_tokens t JOIN examples e USING (example_id)
        WHERE e.model_id = ? AND e.split = 'train' AND e.example_id <= ? AND t.prep_hash = ?""",
                       [model_id, max_example_id, prep_hash]).fetchall()
    return {r[0] for r in rows}


def drift_cells(con, model_id: int, version: int, reference: str, period: str) -> pd.DataFrame:
    """The newest cached drift measures per business line and period start (measures as JSON text),
    with when they were measured."""
    return con.execute("""
        SELECT business_line, period_start, arg_max(n, computed_at) AS n, arg_max(measures, computed_at) AS measures,
               max(computed_at) AS computed_at
        FROM drift_cells WHERE model_id = ? AND version = ? AND reference = ? AND period = ?
        GROUP BY ALL""", [model_id, version, reference, period]).df()


def insert_drift_cells(con, model_id: int, version: int, reference: str, period: str, frame: pd.DataFrame) -> None:
    """Cache drift measures (columns business_line, period_start, n, measures)."""
    if frame.empty:
        return
    con.register("_drift_batch", frame[["business_line", "period_start", "n", "measures"]])
    try:
        con.execute("""INSERT INTO drift_cells SELECT ?, ?, ?, business_line, ?, period_start, n, measures, ?
                       FROM _drift_batch""", [model_id, version, reference, period, now()])
    finally:
        con.unregister("_drift_batch")


def revision(con) -> tuple:
    """Changes whenever anything a page shows could have changed: a cache key for page data.
    On DuckLake, the latest snapshot: other processes' ids do not grow in order with this one's."""
    if id(con) in _lake_cursors:
        return tuple(con.execute(f"SELECT id FROM {LAKE}.current_snapshot()").fetchone())
    return con.execute("""SELECT (SELECT max(event_id) FROM events), (SELECT max(prediction_id) FROM predictions),
                                 (SELECT max(feedback_id) FROM feedback), (SELECT count(*) FROM feedback)""").fetchone()


# --- backup ---------------------------------------------------------------------------------

# Not carried by a backup: who is signed in, sign-in attempts, and the secrets (the session key, and
# the backup key itself, which would let whoever reads a backup sign an altered one).
NOT_BACKED_UP = ("sessions", "session_handoffs", "sign_in_attempts", "app_secrets")
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
        ours = MIGRATIONS[number - 1][0] if 1 <= number <= len(MIGRATIONS) else None
        if ours != name:
            raise InvalidInput(f"the backup has migration {number} '{name}', which this version of MMS "
                               + (f"knows as '{ours}'" if ours else "does not know (a newer MMS made it?)")
                               + ": restore it with the MMS version that made it")


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


def _check_recorded(where, done: dict[int, str]) -> None:
    """Refuse a store whose applied migrations are not this code's, by number and name: migrations
    are matched by position, so one inserted above another would skip or misapply them silently."""
    for number, name in sorted(done.items()):
        ours = MIGRATIONS[number - 1][0] if number <= len(MIGRATIONS) else None
        if ours != name:
            raise StoreError(f"{where} has migration {number} '{name}', which this version of MMS "
                             + (f"knows as '{ours}'" if ours else "does not know (a newer MMS wrote it?)")
                             + ": run the MMS version that wrote the store")


def create_schema(con, lake: bool, upto: int | None = None) -> list[str]:
    """Every migration (the first `upto`), recorded as applied, on the open transaction; returns the
    tables to copy."""
    table = "schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)"
    con.execute(f"CREATE TABLE {lake_sql(table) if lake else table}")
    for number, (name, sql) in enumerate(MIGRATIONS[:upto], start=1):
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


def _quote(path: str) -> str:
    return str(path).replace("'", "''")


# --- DuckLake's small files -------------------------------------------------------------------

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


# --- version notes and tags; each user's last model (issue 16) --------------------------------

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


# --- ordinal models: the expected grade in the rollups (issue 15) -----------------------------

# An ordinal model's labels are its grades, lowest first, and probs are in that order, so a
# prediction's expected grade is sum_i i * probs[i] (positions from 1, as core.ordinal counts).
# The prediction rollups carry its sum, so the Monitor's mean expected grade per line x period
# reads them as confidence does. Computed for every model (one list sum per row); only an ordinal
# model's figure means anything. Rows written before this column existed are NULL: they are all
# classification models' (an ordinal model's rows are rebuilt from the log by the migration).
_EXPECTED_GRADE = "list_sum(list_transform(CAST({probs} AS DOUBLE[]), lambda q, i: q * i))"
_GRADED_ROLLUP = f"""
    SELECT model_id, version, business_line, CAST(created_at AS DATE) AS day, label, {_BUCKET} AS bucket,
           count(*) AS n, sum(top_prob) AS sum_top_prob, sum({_EXPECTED_GRADE.format(probs="probs")}) AS sum_expected_grade
    FROM {{source}} GROUP BY ALL"""
_ORDINAL_PREDICTIONS = "(SELECT * FROM predictions WHERE model_id IN (SELECT model_id FROM models WHERE task = 'ordinal'))"

MIGRATIONS.append(("expected grade in the prediction rollups", f"""
    ALTER TABLE prediction_rollups ADD COLUMN sum_expected_grade DOUBLE;
    DELETE FROM prediction_rollups WHERE model_id IN (SELECT model_id FROM models WHERE task = 'ordinal');
    INSERT INTO prediction_rollups {_GRADED_ROLLUP.format(source=_ORDINAL_PREDICTIONS)};
    """))


def grade_statistics(con, model_id: int, period: str, **filters) -> pd.DataFrame:
    """Per business line and period, and per period over all lines (business_line NULL): n and
    sum_expected_grade of an ordinal model's predictions. Whole days from the rollups, the part
    of a day that a since/until bound cuts from the log (as confidence_histogram)."""
    days, edges = _day_split(filters.get("since"), filters.get("until"))
    parts = []
    for a, b in edges:
        where, args = _prediction_filters(model_id, **{**filters, "since": a, "until": b})
        parts.append((f"""
            SELECT p.business_line, date_trunc(?, p.created_at) AS period, count(*) AS n,
                   sum({_EXPECTED_GRADE.format(probs="p.probs")}) AS sum_expected_grade
            FROM predictions p WHERE {where} GROUP BY ALL""", [period] + args))
    if days is not None:
        where, args = _prediction_filters(model_id, **{**filters, "since": days[0], "until": days[1]},
                                          alias="r", at="day")
        parts.append((f"""
            SELECT r.business_line, CAST(date_trunc(?, r.day) AS TIMESTAMP) AS period, CAST(sum(r.n) AS BIGINT) AS n,
                   sum(r.sum_expected_grade) AS sum_expected_grade
            FROM prediction_rollups r WHERE {where} GROUP BY ALL""", [period] + args))
    sql = f"""SELECT business_line, period, CAST(sum(n) AS BIGINT) AS n, sum(sum_expected_grade) AS sum_expected_grade
              FROM ({" UNION ALL ".join(q for q, _ in parts)})
              GROUP BY GROUPING SETS ((business_line, period), (period))"""
    return con.execute(sql, [a for _, part in parts for a in part]).df()


def grade_label_errors(con, model_id: int, period: str, grades: list[str], not_training: list[str],
                       **filters) -> pd.DataFrame:
    """Per business line and period, and per period over all lines (business_line NULL): how many
    labelled predictions of an ordinal model (graded_labels) and the sum of their distances in grades
    between the label given and the grade predicted (sum_abs_error), from the label rollups."""
    judged = _label_parts(model_id, period, not_training, filters)
    sql = f"""
        SELECT business_line, period, CAST(sum(n) AS BIGINT) AS graded_labels,
               sum(n * abs(list_position(?, truth) - list_position(?, predicted))) AS sum_abs_error
        FROM ({" UNION ALL ".join(q for q, _ in judged)}) WHERE list_contains(?, truth)
        GROUP BY GROUPING SETS ((business_line, period), (period))"""
    return con.execute(sql, [list(grades), list(grades)] + [a for _, part in judged for a in part]
                       + [list(grades)]).df()


# --- team labelling: overlap, second labels, review decisions (issue 16) ----------------------

# A share of labelled items (chosen by a hash of the prediction id, so every process agrees) is
# labelled again, blind, by a second labeller; where the two differ, or the first said unclear,
# an owner's review decides. second_labels has feedback's columns (its ids come from feedback_seq,
# so an undo takes either kind); reviews take ids from feedback_seq too, which makes two owners
# deciding at once on DuckLake conflict at commit. All three tables are append-only.
MIGRATIONS.append(("labelling overlap and review", """
    CREATE TABLE overlap_settings (
        model_id INTEGER NOT NULL,
        share DOUBLE NOT NULL,            -- of labelled items that a second labeller labels again
        set_at TIMESTAMP NOT NULL,
        set_by VARCHAR NOT NULL
    );
    CREATE TABLE second_labels (
        feedback_id BIGINT NOT NULL,
        prediction_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        text_key UBIGINT NOT NULL,
        label VARCHAR NOT NULL,           -- a model label, unclear, or skip (passed over: no opinion)
        batch_id BIGINT,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    CREATE TABLE reviews (
        review_id BIGINT NOT NULL,
        prediction_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        label VARCHAR NOT NULL,           -- the label decided
        reason VARCHAR NOT NULL,          -- disagreement | unclear
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    """))

_OVERLAP = "hash({id}, 'mms-overlap') < ? * 18446744073709551615.0"
# Items whose two labels differ and that no review has decided yet: never trained on, never counted.
_UNDECIDED = """(SELECT s.prediction_id FROM second_labels s JOIN feedback f USING (prediction_id)
                 WHERE s.label <> 'skip' AND s.label <> f.label
                   AND s.prediction_id NOT IN (SELECT prediction_id FROM reviews))"""
# Each labelled item's label as training and statistics count it (columns prediction_id, model_id,
# label): the review's where one decided, else the first label, undecided disagreements left out.
_DECIDED = f"""(SELECT f.prediction_id, f.model_id, coalesce(r.label, f.label) AS label FROM feedback f
                LEFT JOIN (SELECT prediction_id, arg_max(label, review_id) AS label FROM reviews GROUP BY ALL) r
                          USING (prediction_id)
                WHERE f.prediction_id NOT IN {_UNDECIDED})"""
_TRAINABLE_EXAMPLE = f"(e.prediction_id IS NULL OR e.prediction_id NOT IN {_UNDECIDED})"


def insert_overlap_share(con, model_id: int, share: float, user: str) -> None:
    con.execute("INSERT INTO overlap_settings VALUES (?, ?, ?, ?)", [model_id, float(share), now(), user])


def overlap_share(con, model_id: int) -> float:
    """The newest share set for the model (0: no overlap)."""
    row = con.execute("SELECT arg_max(share, set_at) FROM overlap_settings WHERE model_id = ?", [model_id]).fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0


# Who counts as a person in team labelling: a labeller or owner of the store (in open mode, with no
# users, any name), never the demo builder, whose sample labels stand in for data and are nobody's
# judgement. Overlap items are items a person labelled; agreement pairs persons only.
_PERSON = """({who} NOT IN (SELECT "user" FROM events WHERE action = 'build_demo')
              AND ({who} IN (SELECT name FROM users WHERE role IN ('labeller', 'owner'))
                   OR NOT EXISTS (SELECT 1 FROM users)))"""


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
    con.register("_second_batch", batch)
    try:
        con.execute("""INSERT INTO second_labels
                       SELECT feedback_id, prediction_id, ?, text_key, label, ?, ?, ? FROM _second_batch""",
                    [model_id, batch_id, now(), user])
    finally:
        con.unregister("_second_batch")
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


# --- the Label page: skips and guidelines (issue 16) -------------------------------------------
# A skip on the Label page is no label: the item stays in the queue, behind the ones not skipped,
# and the skip is kept so the counters (and an undo) read it from the store. Guidelines are an
# owner's markdown per model. Both tables are append-only (DuckLake has no keys); the newest
# guideline row wins.
MIGRATIONS.append(("label skips and guidelines", """
    CREATE TABLE label_skips (
        prediction_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        batch_id BIGINT,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    CREATE TABLE guidelines (
        model_id INTEGER NOT NULL,
        text VARCHAR NOT NULL,            -- markdown, shown as text (never as HTML)
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    """))


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


# One decision per reviewed item: two owners deciding the same item at once must not both be
# stored (the embedded file's appends never conflict otherwise; on DuckLake the ids' sequence
# table already makes the second commit fail).
MIGRATIONS.append(("one review per item", """
    CREATE UNIQUE INDEX reviews_one_per_item ON reviews (prediction_id);
    """))


# Each labelled prediction's slice fields (model, version, line, created_at, predicted label), copied
# from the log when it is first labelled: the audited accuracy counts the audit sample's labels per
# line x period from these few rows. Joined to the log instead, it read the log's ids, lines and
# times (10M predictions: 0.09 s warm, 0.16 s cold, most of a statistics call, growing with the log).
# Rows are facts about a prediction, which never changes: an undone label leaves its row (the
# statistics join the labels that stand), and a prediction labelled again is not copied twice.
_LABELLED_SELECT = """
    SELECT p.prediction_id, p.model_id, p.version, p.business_line, p.created_at, p.label
    FROM predictions p SEMI JOIN {labels} f USING (prediction_id)"""
MIGRATIONS.append(("labelled predictions' slice fields", f"""
    CREATE TABLE labelled_predictions (
        prediction_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        business_line VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        label VARCHAR NOT NULL            -- predicted
    );
    INSERT INTO labelled_predictions {_LABELLED_SELECT.format(labels="feedback")};
    """))


def insert_labelled_predictions(con, labels: str) -> None:
    """Copy the slice fields of the predictions in `labels` (a table or view with prediction_id)
    that have none yet."""
    con.execute(f"""INSERT INTO labelled_predictions {_LABELLED_SELECT.format(labels=labels)}
                    WHERE p.prediction_id NOT IN (SELECT prediction_id FROM labelled_predictions)""")


# A labeller's reason beside a decision ("unclear: two products in one review", "skip: not Chinese"),
# kept with it: written in the decision's transaction, gone with its undo, read on the Review page.
MIGRATIONS.append(("comments on decisions", """
    CREATE TABLE decision_comments (
        model_id INTEGER NOT NULL,
        prediction_id BIGINT NOT NULL,
        decision VARCHAR NOT NULL,        -- the label given, or skip
        comment VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    """))


# --- imports recognised when retried (issue 27) -----------------------------------------------
# An import's key is the sha256 of its model, split and rows: a retry of an import that committed
# (its answer lost when a server died) is recognised and writes nothing twice.
MIGRATIONS.append(("import keys", """
    CREATE TABLE import_keys (
        import_key VARCHAR NOT NULL,      -- sha256 of the model, the split and the rows
        model_id INTEGER NOT NULL,
        import_id BIGINT NOT NULL,
        split VARCHAR NOT NULL,
        rows BIGINT NOT NULL,
        file VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL
    );
    """))


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


def import_by_key(con, import_key: str) -> dict | None:
    """The first import written with this key: import_id, rows, file, created_at, created_by."""
    return _row(con.execute("""SELECT import_id, rows, file, created_at, created_by FROM import_keys
                               WHERE import_key = ? ORDER BY created_at LIMIT 1""", [import_key]))


def insert_import_key(con, import_key: str, model_id: int, import_id: int, split: str, rows: int, file: str,
                      user: str) -> None:
    con.execute("INSERT INTO import_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [import_key, model_id, import_id, split, rows, file, now(), user])


# --- Parquet files no snapshot references (issue 27) -------------------------------------------

def orphan_files(con, older_than_seconds: float, delete: bool = False) -> list[str]:
    """Parquet files under the DuckLake's data path that no snapshot references (a writer killed before
    its commit leaves them), older than `older_than_seconds` (younger ones may be a running writer's);
    deleted when `delete`. Model files are not Parquet and never listed."""
    cutoff = f"now() - to_seconds({float(older_than_seconds)})"
    rows = con.execute(f"SELECT * FROM ducklake_delete_orphaned_files('{LAKE}', dry_run => {str(not delete).lower()}, "
                       f"older_than => {cutoff})").fetchall()
    return [str(r[0]) for r in rows if str(r[0]).endswith(".parquet")]


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


# --- hard examples: the pool as a sample of all history, and scores kept per version (issues 24, 25) ---
# Moves to core/store/ (schema and a topic module) once that package lands.

MIGRATIONS.append(("stored hard-example scores", """
    CREATE TABLE version_scores (
        model_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        sha256 VARCHAR NOT NULL,          -- the scoring model file's: a restored store's other file scores anew
        text_key UBIGINT NOT NULL,
        probs DOUBLE[] NOT NULL,          -- in the order of the model's labels
        created_at TIMESTAMP NOT NULL
    );
    """))


def hard_example_sample(con, model_id: int, limit: int, salt: int, scored_by: tuple[int, str] | None = None,
                        **filters) -> pd.DataFrame:
    """The slice's distinct unlabelled texts, each as its newest prediction, or when there are more
    than `limit` a uniform sample of `limit` of them over all its history: those first in a hash
    order of (text, `salt`), so one salt gives the same sample draw after draw and another salt
    another one. Columns: prediction_id, created_at, business_line, text, text_key, logged_by, probs,
    and `stored`, the probabilities `scored_by` = (version, sha256) kept for the text (None if none).

    Read like hard_example_pool: the slice alone, grouped by text before labelled texts are removed."""
    where, args = _prediction_filters(model_id, **filters)
    version, sha256 = scored_by if scored_by else (-1, "")
    return con.execute(f"""
        WITH texts AS (
            SELECT p.text_key, max(p.prediction_id) AS prediction_id FROM predictions p WHERE {where}
            GROUP BY p.text_key),
        sampled AS (
            SELECT t.prediction_id, t.text_key
            FROM texts t ANTI JOIN (SELECT text_key FROM feedback WHERE model_id = ?) f USING (text_key)
            ORDER BY hash(t.text_key, ?::BIGINT), t.text_key
            LIMIT ?),
        kept AS (
            SELECT s.text_key, any_value(s.probs) AS probs FROM version_scores s SEMI JOIN sampled USING (text_key)
            WHERE s.model_id = ? AND s.version = ? AND s.sha256 = ? GROUP BY s.text_key)
        SELECT p.prediction_id, p.created_at, p.business_line, p.text, p.text_key, p.version AS logged_by,
               p.probs, k.probs AS stored
        FROM sampled n JOIN predictions p USING (prediction_id) LEFT JOIN kept k ON k.text_key = n.text_key
        WHERE {where}
        ORDER BY p.prediction_id DESC""",
                       args + [model_id, int(salt), int(limit), model_id, int(version), sha256] + args).df()


def insert_version_scores(con, model_id: int, version: int, sha256: str, frame: pd.DataFrame) -> None:
    """Keep a version's probabilities per text (columns text_key, probs), those not kept yet."""
    if frame.empty:
        return
    con.register("_scores_batch", frame[["text_key", "probs"]].drop_duplicates("text_key"))
    try:
        con.execute("""
            INSERT INTO version_scores
            SELECT ?, ?, ?, b.text_key::UBIGINT, b.probs::DOUBLE[], ? FROM _scores_batch b
            WHERE b.text_key::UBIGINT NOT IN (SELECT text_key FROM version_scores
                                              WHERE model_id = ? AND version = ? AND sha256 = ?)""",
                    [model_id, version, sha256, now(), model_id, version, sha256])
    finally:
        con.unregister("_scores_batch")


def stored_score_count(con, model_id: int, version: int | None = None) -> int:
    """Probabilities kept for the model's versions (one version's with `version`)."""
    sql, args = "SELECT count(*) FROM version_scores WHERE model_id = ?", [model_id]
    if version is not None:
        sql, args = sql + " AND version = ?", args + [version]
    return con.execute(sql, args).fetchone()[0]


# --- shadow versions (issue 26) ---------------------------------------------------------------
# A version in shadow scores the live predictions in the background, never answering. `shadows` is
# append-only (DuckLake has no keys): the newest row per model says which version is in shadow, a
# row with version NULL that none is. The shadow's answers go to their own table with the slice
# fields and the answering version's label and confidence copied from the log, so the evidence (per
# line x period: agreement, both estimates, who was right where they differ) reads these rows only.
MIGRATIONS.append(("shadow versions", """
    CREATE TABLE shadows (
        model_id INTEGER NOT NULL,
        version INTEGER,                  -- NULL: no version in shadow from then on
        "at" TIMESTAMP NOT NULL,
        "by" VARCHAR NOT NULL
    );
    CREATE TABLE shadow_predictions (
        prediction_id BIGINT NOT NULL,
        model_id INTEGER NOT NULL,
        version INTEGER NOT NULL,         -- the shadow version that scored it
        active_version INTEGER NOT NULL,  -- the version that answered it
        text_key UBIGINT NOT NULL,        -- the prediction's (its normalised text's hash)
        business_line VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,    -- the prediction's
        logged_at TIMESTAMP NOT NULL,     -- the prediction's
        label VARCHAR NOT NULL,           -- the shadow's
        top_prob DOUBLE NOT NULL,
        probs DOUBLE[] NOT NULL,          -- the shadow's, in the order of the model's labels
        active_label VARCHAR NOT NULL,
        active_top_prob DOUBLE NOT NULL,
        scored_at TIMESTAMP NOT NULL
    );
    """))


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
    con.register("_shadow_batch", batch)
    try:
        con.execute(f"INSERT INTO shadow_predictions ({', '.join(_SHADOW_COLUMNS)}) "
                    f"SELECT {', '.join(_SHADOW_COLUMNS[:10])}, CAST(probs AS DOUBLE[]), "
                    f"{', '.join(_SHADOW_COLUMNS[11:])} FROM _shadow_batch b "
                    "WHERE b.prediction_id NOT IN (SELECT prediction_id FROM shadow_predictions "
                    "WHERE model_id = ? AND version = ? AND prediction_id BETWEEN ? AND ?)",
                    [int(batch["model_id"].iloc[0]), int(batch["version"].iloc[0]),
                     int(batch["prediction_id"].min()), int(batch["prediction_id"].max())])
    finally:
        con.unregister("_shadow_batch")
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
