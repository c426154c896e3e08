"""The prediction log's group-commit writer: rows from concurrent requests in one transaction.

A commit costs about the same for one row as for a thousand, so in the server a writer per store
logs every prediction: a request hands its rows over and waits on a future; a committer thread
takes all rows waiting when it is free (those that arrived while the last commit ran) and commits
them together. MMS_LOG_COMMITTERS=2 lets two committers take turns on the embedded file, so one
batch's statements run while the other's commit waits for its WAL sync (DuckDB appends of
concurrent transactions never conflict); on 2 busy cores that made commits smaller and each
prediction dearer, so one is the default, and a DuckLake store always has one. A request is answered only once its rows are committed, so a
crash loses no answered prediction. A batch that fails is written again one request at a time, so
an error reaches only the requests it belongs to, with its sentence. The server's serving owns the
writer (core/serving.py); without one (the CLI, scripts, tests) `write` logs in the caller's own transaction.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import pandas as pd

from . import auth, settings
from . import store as db
from .errors import Conflict, MMSError, StoreBusy, StoreError
from .store import Store

log = logging.getLogger("mms.logwriter")

CONFLICT_RETRIES = 5  # DuckLake: a batch whose commit lost to another process's compaction
MAX_ROWS = 50_000  # rows in one commit at most: a flood of large batches still commits in bounded steps


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
        """Columns without a created_at of their own: joined as lists, without pandas."""
        return isinstance(self.frame, dict) and all(c is None for c in self.frame["created_at"])


def write(store: Store, rows: Rows) -> list[int]:
    """Log one request's rows: through the store's running writer, else in a transaction of its own.

    Returns the prediction ids in the frame's order, once they are committed."""
    serving = store.serving
    if serving is None:
        with store.transaction() as con:
            return _insert(con, [rows], {})[0]
    return serving.writer.submit(rows).result()


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
    """The parts' rows as one table for insert_predictions: column lists when none has its own
    created_at (every API request: no pandas), else one DataFrame."""
    if all(rows.plain for rows in parts):
        return {name: [v for rows in parts for v in rows.frame[name]] for name in db.LOG_COLUMNS}
    frames = [rows.frame if isinstance(rows.frame, pd.DataFrame) else pd.DataFrame(rows.frame) for rows in parts]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


class LogWriter:
    """The threads that write a store's prediction log while the server runs."""

    def __init__(self, store: Store, committers: int | None = None):
        self.store = store
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._open = True
        # DuckLake: one, as two of this process's commits could conflict with each other
        n = committers or (1 if store.is_lake else max(1, int(settings.get("log_committers"))))
        self._threads = [threading.Thread(target=self._run, name=f"mms-log-writer-{i}", daemon=True) for i in range(n)]
        self.commits = 0  # transactions committed: the bench reports rows per commit

    def start(self) -> "LogWriter":
        for thread in self._threads:
            thread.start()
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
            self._queue.put(None)  # each committer passes it on to the next as it ends
        for thread in self._threads:
            thread.join()

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
        self._queue.put(None)  # the next committer ends too

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
        with self._lock:
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
