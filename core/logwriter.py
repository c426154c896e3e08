"""The prediction log's group-commit writer: rows from concurrent requests in one transaction.

A commit costs the same for one row as for a thousand, so in the server one thread per store
writes every prediction: a request hands its rows over and waits on a future, the thread takes
all rows waiting when it is free (those that arrived while the previous commit ran) and commits
them together. A request is answered only once its rows are committed, so a crash loses no
answered prediction. A batch that fails is written again one request at a time, so an error
reaches only the requests it belongs to, with its sentence. Without a running writer (the CLI,
scripts, tests) `write` logs in the caller's own transaction.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from . import auth
from . import store as db
from .errors import Conflict, MMSError, StoreBusy, StoreError
from .store import Store

log = logging.getLogger("mms.logwriter")

CONFLICT_RETRIES = 5  # DuckLake: a batch whose commit lost to another process's compaction
MAX_ROWS = 50_000  # rows in one commit at most: a flood of large batches still commits in bounded steps
# insert_predictions' columns as Arrow types: rows without created_at go in as one Arrow table per commit
_SCHEMA = pa.schema([("text", pa.string()), ("norm_text", pa.string()), ("business_line", pa.string()),
                     ("label", pa.string()), ("top_prob", pa.float64()), ("probs", pa.list_(pa.float64())),
                     ("created_at", pa.timestamp("us"))])


@dataclass
class Rows:
    """One request's predictions (insert_predictions' columns: a DataFrame, or a dict of lists as
    predict makes them, which skips pandas) and who made them with what."""
    model_id: int
    version: int
    frame: pd.DataFrame | dict
    source: str
    user: str
    answer: Future = field(default_factory=Future)

    def __len__(self) -> int:
        return len(self.frame["text"])

    @property
    def plain(self) -> bool:
        """Columns without a created_at of their own: the Arrow path, without pandas."""
        return isinstance(self.frame, dict) and all(c is None for c in self.frame["created_at"])


def write(store: Store, rows: Rows) -> list[int]:
    """Log one request's rows: through the store's running writer, else in a transaction of its own.

    Returns the prediction ids in the frame's order, once they are committed."""
    writer = running(store)
    if writer is None:
        with store.transaction() as con:
            return _insert(con, [rows], {})[0]
    return writer.submit(rows).result()


def _insert(con, batch: list[Rows], checked: dict[str, Exception | None]) -> list[list[int]]:
    """Insert every request's rows on `con` (grouped by what they share); their ids, per request.

    `checked` remembers each user's permission for the batch; a refused user raises its sentence."""
    for rows in batch:
        if rows.user not in checked:
            try:
                auth.require(con, rows.user, "predict")
                checked[rows.user] = None
            except MMSError as e:
                checked[rows.user] = e
        if checked[rows.user] is not None:
            raise checked[rows.user]
    groups: dict[tuple, list[int]] = {}
    for i, rows in enumerate(batch):
        groups.setdefault((rows.model_id, rows.version, rows.source, rows.user), []).append(i)
    ids: list[list[int]] = [[] for _ in batch]
    for (model_id, version, source, user), members in groups.items():
        new = db.insert_predictions(con, model_id, version, _joined([batch[i] for i in members]), source, user)
        start = 0
        for i in members:
            ids[i] = new[start:start + len(batch[i])]
            start += len(batch[i])
    return ids


def _joined(parts: list[Rows]):
    """The parts' rows as one table for insert_predictions: Arrow when none has its own created_at
    (every API request: no pandas), else one DataFrame."""
    if all(rows.plain for rows in parts):
        columns = {name: [v for rows in parts for v in rows.frame[name]] for name in _SCHEMA.names[:-1]}
        n = len(columns["text"])
        return pa.table({**columns, "created_at": pa.nulls(n, pa.timestamp("us"))}, schema=_SCHEMA)
    frames = [rows.frame if isinstance(rows.frame, pd.DataFrame) else pd.DataFrame(rows.frame) for rows in parts]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


class LogWriter:
    """The one thread that writes a store's prediction log while the server runs."""

    def __init__(self, store: Store):
        self.store = store
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._open = True
        self._thread = threading.Thread(target=self._run, name="mms-log-writer", daemon=True)
        self.commits = 0  # transactions committed: the bench reports rows per commit

    def start(self) -> "LogWriter":
        self._thread.start()
        return self

    def submit(self, rows: Rows) -> Future:
        """Queue a request's rows; the future gives their ids after the commit, or the error."""
        with self._lock:
            if not self._open:
                raise StoreBusy("the server is shutting down and no longer logs predictions; try again when "
                                "it is back")
            self._queue.put(rows)
        return rows.answer

    def close(self) -> None:
        """Commit what is queued, then end the thread; later submissions are refused with a sentence."""
        with self._lock:
            if not self._open:
                return
            self._open = False
            self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        ending = False
        while not ending:
            batch = [self._queue.get()]
            size = 0 if batch[0] is None else len(batch[0])
            while size < MAX_ROWS:  # everything that arrived while the last commit ran
                try:
                    rows = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(rows)
                size += 0 if rows is None else len(rows)
            ending = None in batch
            batch = [rows for rows in batch if rows is not None]
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[Rows]) -> None:
        try:
            ids = self._transaction(batch)
        except BaseException as e:
            if len(batch) > 1:  # find the request at fault; the others are written on their own
                for rows in batch:
                    self._commit([rows])
                return
            batch[0].answer.set_exception(_sentence(e))
            return
        self.commits += 1
        for rows, answer_ids in zip(batch, ids):
            rows.answer.set_result(answer_ids)

    def _transaction(self, batch: list[Rows]) -> list[list[int]]:
        """Insert the batch in one transaction, again after a Conflict: on DuckLake a compaction in
        another process that commits first makes this commit fail, and nothing of it was written."""
        for attempt in range(CONFLICT_RETRIES):
            try:
                with self.store.transaction() as con:
                    return _insert(con, batch, {})
            except Conflict:
                if attempt == CONFLICT_RETRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))


def _sentence(error: BaseException) -> BaseException:
    """A named error as it is; anything else (a database fault) as a sentence that says nothing was logged."""
    if isinstance(error, MMSError):
        return error
    log.error("logging predictions failed", exc_info=error)
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    failed = StoreError(f"the predictions could not be logged, so none were answered ({first}); try again")
    failed.__cause__ = error
    return failed


_running: dict[str, LogWriter] = {}
_running_lock = threading.Lock()


def start(store: Store) -> LogWriter:
    """Start the store's writer (the server does, once); predictions in this process then go through it."""
    with _running_lock:
        writer = _running.get(str(store.path))
        if writer is None:
            writer = _running[str(store.path)] = LogWriter(store).start()
        return writer


def stop(store: Store) -> None:
    """Commit what is queued and stop the store's writer; predictions then log on their own again."""
    with _running_lock:
        writer = _running.pop(str(store.path), None)
    if writer is not None:
        writer.close()


def running(store: Store) -> LogWriter | None:
    return _running.get(str(store.path))
