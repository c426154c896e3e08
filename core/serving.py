"""The serving mode: what a server process does differently from a script, as one object.

A server (core/server.py) makes a `Serving` for its store and starts it once it holds the store; from
then on the store carries it (`store.serving`; None in a script, a test or a command line that opened
the store itself), and everything that predicts in this process asks the store:

- the group-commit writer (`logwriter.LogWriter`) logs every prediction; a request is answered once
  its rows are committed;
- the batcher gathers concurrent small requests (what arrived while the last batch was predicted, or
  within BATCH_WAIT_SECONDS while requests overlap) into one tokenising pass, one `predict_proba` and
  one handing-over to the writer, which commits them in one transaction;
- model lookups are kept for predict.LOOKUP_SECONDS at most, and dropped by an activation in this process
  (`activated`): no other process writes an embedded file while this one holds it, and a DuckLake
  store's other writers are seen within the bound;
- a request of predict.SERVE_IN_WORKER texts or more is tokenised in the worker processes, off this
  process's GIL, which the request threads need.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from . import logwriter, predict, registry
from .errors import StoreBusy
from .store import Store
from .workers import serve_map, split_map

log = logging.getLogger("mms.serving")

BATCH_TEXTS = 256  # texts predicted together at most
BATCH_WAIT_SECONDS = 0.002  # longest a request waits for others, and only while requests overlap


@dataclass
class Ask:
    """One request's texts waiting in the batcher; `answer` gives its `predict.Predicted`."""
    name: str
    texts: list[str]
    lines: list[str]
    user: str
    source: str
    version: int | None
    answer: Future = field(default_factory=Future)


class Serving:
    """One server's serving of one store: its writer, its batcher and its model lookups."""

    def __init__(self, store: Store, committers: int | None = None):
        self.store = store
        self.writer = logwriter.LogWriter(store, committers)
        self._asks: queue.SimpleQueue = queue.SimpleQueue()
        self._batcher = threading.Thread(target=self._batches, name="mms-batcher", daemon=True)
        self._lock = threading.Lock()
        self._open = False
        self._lookups: dict[tuple, tuple[float, registry.Model, registry.Version]] = {}
        self._activated_at = float("-inf")
        self.last_request = float("-inf")  # time.monotonic() of the newest prediction asked
        self.batches = 0  # predict_proba calls of the batcher, and the requests they answered: the bench's
        self.batched = 0  # requests per batch

    def start(self) -> "Serving":
        """Start the writer and the batcher, then let the store carry this object."""
        self.writer.start()
        self._batcher.start()
        self._open = True
        self.store.serve(self)
        return self

    def stop(self) -> None:
        """Answer what is queued, commit it, and stop; the store then predicts and logs on its own."""
        with self._lock:
            if not self._open:
                return
            self._open = False
            self._asks.put(None)
        self.store.serve(None)
        self._batcher.join()
        self.writer.close()

    # --- model lookups ---------------------------------------------------------------------

    def lookup(self, name: str, version: int | None) -> tuple[registry.Model, registry.Version]:
        """`predict.read_lookup`'s answer, kept for predict.LOOKUP_SECONDS. A lookup that began before an
        activation's commit could have read the old version, so lookups begun within the bound
        after an activation are not reused. The file's inode is in the key: a restore replaces the
        file under the holder."""
        key = (_inode(self.store), name, version)
        began, bound = time.monotonic(), predict.LOOKUP_SECONDS
        hit = self._lookups.get(key)
        if hit is not None and began - hit[0] < bound and hit[0] > self._activated_at + bound:
            return hit[1], hit[2]
        model, found = predict.read_lookup(self.store, name, version)
        with self._lock:
            if len(self._lookups) > 1000:  # names nobody asks for again (e.g. many models): start over
                self._lookups.clear()
            self._lookups[key] = (began, model, found)
        return model, found

    def wait_idle(self, seconds: float) -> None:
        """Return once no prediction has been asked for `seconds` (or the serving has stopped): for
        background work that would otherwise take the GIL from requests."""
        while self._open and time.monotonic() - self.last_request < seconds:
            time.sleep(min(seconds, 0.2))

    def activated(self) -> None:
        """An activation in this process is about to commit: lookups read from now on are not kept."""
        self._activated_at = time.monotonic()

    # --- predicting ------------------------------------------------------------------------

    def probabilities(self, texts: list[str], args: tuple, workers: int | None) -> list:
        """`predict.probabilities` over `texts`: a large request in the worker processes."""
        if workers is None and len(texts) >= predict.SERVE_IN_WORKER:
            return serve_map(predict.probabilities, texts, args, predict.SERVE_IN_WORKER)
        return split_map(predict.probabilities, texts, args, workers)

    def predict(self, name: str, texts: list[str], lines: list[str], user: str, source: str,
                version: int | None = None) -> Future:
        """Queue a request's checked texts (`predict.check_batch`; fewer than predict.SERVE_IN_WORKER);
        the future gives its `predict.Predicted` once its rows are committed, or the error that
        concerns it."""
        ask = Ask(name, texts, lines, user, source, version)
        self.last_request = time.monotonic()
        with self._lock:
            if not self._open:
                raise StoreBusy("the server is shutting down and no longer logs predictions; try again when "
                                "it is back")
            self._asks.put(ask)
        return ask.answer

    def _batches(self) -> None:
        overlapping = False
        while True:
            first = self._asks.get()
            if first is None:
                return
            batch, size = [first], len(first.texts)
            deadline = time.monotonic() + (BATCH_WAIT_SECONDS if overlapping else 0.0)
            ending = False
            while size < BATCH_TEXTS:
                try:
                    left = deadline - time.monotonic()
                    ask = self._asks.get(timeout=left) if left > 0 else self._asks.get_nowait()
                except queue.Empty:
                    break
                if ask is None:
                    ending = True
                    break
                batch.append(ask)
                size += len(ask.texts)
            overlapping = len(batch) > 1
            groups: dict[tuple, list[Ask]] = {}
            for ask in batch:
                groups.setdefault((ask.name, ask.version), []).append(ask)
            for asks in groups.values():
                self._answer(asks)
            if ending:
                return

    def _answer(self, asks: list[Ask]) -> None:
        """One group's texts predicted together, then each request's rows handed to the writer; a
        request's future is answered when its rows are committed. An error reaches the requests it
        concerns (the model, its version or its file: all of them) and never ends the batcher."""
        try:
            model, version = self.lookup(asks[0].name, asks[0].version)
            results = predict.probabilities([t for ask in asks for t in ask.texts], self.store, version, model.labels)
        except BaseException as e:
            for ask in asks:
                ask.answer.set_exception(e)
            return
        with self._lock:
            self.batches += 1
            self.batched += len(asks)
        start = 0
        for ask in asks:
            part = results[start:start + len(ask.texts)]
            start += len(ask.texts)
            try:
                rows, answered = predict.logged(model, version, ask.texts, ask.lines, [None] * len(ask.texts), part,
                                                ask.source, ask.user)
                self.writer.submit(rows).add_done_callback(_passed_on(ask.answer, answered))
            except BaseException as e:
                ask.answer.set_exception(e)


def _passed_on(answer: Future, answered):
    def done(committed: Future) -> None:
        error = committed.exception()
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(answered(committed.result()))
    return done


def _inode(store: Store) -> int:
    try:
        return os.stat(store.path).st_ino
    except OSError:
        return 0
