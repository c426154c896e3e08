"""A labeller's queue on the Label page, as a plain object kept in the page's session.

A batch of hard examples (or of the audit sample) is drawn once per filter choice and kept; it is
replaced when the filters change or when nothing but examples skipped in it is left. A decision
moves the queue at once (`decide`); the store is written by `flush`, in the order decided, so that a
page can show the next example before it writes. A decision counts once it is written. `undo` takes
back the last decision: one not yet written is dropped, a written one is undone in the store.
Every write goes through core.feedback; what happened is said in `notices` for the page to show."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from . import feedback, monitoring, sampling
from .errors import EmptyPool, InvalidInput, MMSError, StoreBusy
from .registry import NOT_TRAINING_LABELS, SKIP, UNCLEAR
from .slices import Slice
from .store import Store

BATCH_SIZE = 20
UNDO_DEPTH = 50
BULK = "bulk"  # the label of an undo entry for a page of the bulk table (several labels)


@dataclass(frozen=True)
class Query:
    """What the filters select: a strategy (or monitoring.AUDIT), a slice, and an optional text search."""
    model: str
    strategy: str
    slice: Slice
    text: str | None = None


@dataclass
class Batch:
    query: Query
    batch_id: int
    strategy: str  # the strategy that chose the batch, as the store recorded it
    examples: pd.DataFrame
    queue: list[int]  # prediction ids still to decide, in the order shown
    done: list[int] = field(default_factory=list)  # labelled or unclear
    skipped: set[int] = field(default_factory=set)  # skipped in this batch: they wait at the end of the queue

    def used_up(self) -> bool:
        """Nothing left but examples already skipped in this batch: time for a new draw."""
        return all(pid in self.skipped for pid in self.queue)

    def remaining(self) -> pd.DataFrame:
        """The examples still to decide, in the queue's order."""
        return self.examples.set_index("prediction_id", drop=False).loc[self.queue].reset_index(drop=True)

    def requeue(self, pid: int, front: bool) -> None:
        """Put an example back in the queue (an undo, or a write that failed)."""
        if pid in self.done:
            self.done.remove(pid)
        if pid in self.queue:
            self.queue.remove(pid)
        self.queue.insert(0 if front else len(self.queue), pid)


@dataclass
class Notice:
    kind: str  # "success", "warning", "error" or "toast"
    text: str


class LabelQueue:
    def __init__(self) -> None:
        self.batch: Batch | None = None
        self.pending: list[dict] = []  # decided, not written yet, in order
        self.written: list[dict] = []  # the undo stack, newest last
        self.counts: dict | None = None  # today's decisions and what is left; None: read them again
        self.notices: list[Notice] = []
        self.round = 0  # moves with every new batch and bulk submit: a bulk table then starts empty
        self._failed = False

    # --- the batch ------------------------------------------------------------------------------

    def batch_for(self, store: Store, query: Query, user: str, size: int = BATCH_SIZE) -> Batch | None:
        """The batch for `query`: the one kept, or a new draw (after writing the decisions waiting, so
        that it leaves their examples out). None when nothing is left to label there."""
        batch = self.batch
        if batch is not None and batch.query == query and not batch.used_up():
            return batch
        if not self._write(store, user):
            return self.batch  # the example whose write failed is shown again first
        self.batch = None
        try:
            if query.strategy == monitoring.AUDIT:
                found = monitoring.select_audit_batch(store, query.model, size, user, **query.slice.filters())
            else:
                found = sampling.select_hard_examples(store, query.model, size, user, strategy=query.strategy,
                                                      text=query.text, **query.slice.filters())
        except EmptyPool:
            return None
        ids = found.examples["prediction_id"].astype(int).tolist()
        before = feedback.skipped(store, query.model, user, ids)
        self.batch = Batch(query, found.batch_id, found.strategy, found.examples,
                           [p for p in ids if p not in before] + [p for p in ids if p in before])
        self.round += 1
        return self.batch

    # --- decisions --------------------------------------------------------------------------------

    def decide(self, prediction_id: int, label: str, comment: str | None = None) -> bool:
        """Decide the example shown first (a comment goes with skip and unclear only). False for any
        other example: a double click, or a key pressed twice before the next example showed."""
        batch = self.batch
        if batch is None or not batch.queue or batch.queue[0] != prediction_id:
            return False
        batch.queue.pop(0)
        if label == SKIP:
            batch.queue.append(prediction_id)
            batch.skipped.add(prediction_id)
        else:
            batch.done.append(prediction_id)
        comment = (comment or "").strip() if label in NOT_TRAINING_LABELS else ""
        self.pending.append({"model": batch.query.model, "batch_id": batch.batch_id, "prediction_id": prediction_id,
                             "label": label, "comment": comment or None})
        return True

    def flush(self, store: Store, user: str) -> bool:
        """Write the decisions waiting, in order. A refused one (someone else labelled the example
        meanwhile) is dropped with a warning; one that could not be written (a busy store) goes back to
        the front of the queue with the rest and an error. False when a write failed since the last
        flush: the page then draws again, so that the example shows again."""
        ok = self._write(store, user) and not self._failed
        self._failed = False
        return ok

    def _write(self, store: Store, user: str) -> bool:
        while self.pending:
            decision = self.pending[0]
            try:
                entry = _write_one(store, user, decision)
            except InvalidInput as e:
                self.pending.pop(0)
                self.notices.append(Notice("warning", f"That example could not be labelled ({e}); moved on to the "
                                                      "next one."))
                continue
            except MMSError as e:
                self.pending.clear()
                if self.batch is not None and self.batch.batch_id == decision["batch_id"]:
                    self.batch.requeue(decision["prediction_id"], front=True)
                self.notices.append(Notice("error", f"{e}: the example is shown again."))
                self._failed = True
                return False
            self.pending.pop(0)
            self._remember(entry)
            self._count(decision, +1)
        return True

    def submit_bulk(self, store: Store, user: str, labels: pd.DataFrame) -> int:
        """Record a page of the bulk table (prediction_id, label) in one write, after the decisions
        waiting; returns how many (0 when those could not be written: `flush` then says so)."""
        batch = self.batch
        if not self._write(store, user):
            return 0
        ids = feedback.record_labels(store, batch.query.model, labels, user, batch.batch_id)
        done = labels["prediction_id"].astype(int).tolist()
        batch.done.extend(done)
        batch.queue = [p for p in batch.queue if p not in done]
        self._remember({"model": batch.query.model, "batch_id": batch.batch_id, "prediction_id": done[0],
                        "prediction_ids": done, "label": BULK, "feedback_ids": ids, "what": f"{len(ids)} labels"})
        self.counts = None  # several labels at once: read them again
        self.round += 1
        self.notices.append(Notice("success", f"Recorded {len(ids)} labels."))
        return len(ids)

    # --- undo -------------------------------------------------------------------------------------

    def last(self) -> str | None:
        """What an undo would take back ("正面", "skip", "12 labels"), or None."""
        stack = self.pending or self.written
        return (stack[-1].get("what") or stack[-1]["label"]) if stack else None

    def undo(self, store: Store, user: str) -> None:
        """Take back the last decision, and put its example(s) back at the front of the queue."""
        if self.pending:
            last = self.pending.pop()
        elif not self.written:
            return
        else:
            last = self.written[-1]
            try:
                if last["label"] == SKIP and not last["feedback_ids"]:
                    feedback.undo_skip(store, last["model"], last["prediction_id"], user)
                else:
                    feedback.undo_labels(store, last["model"], last["feedback_ids"], user)
            except MMSError as e:
                if not isinstance(e, StoreBusy):  # it cannot be undone: a busy store may let it later
                    self.written.pop()
                self.notices.append(Notice("error", f"Could not undo: {e}"))
                return
            self.written.pop()
            self._count(last, -1)
        what = last.get("what") or last["label"]
        batch = self.batch
        if batch is not None and batch.batch_id == last["batch_id"]:
            if last["label"] == SKIP:
                batch.skipped.discard(last["prediction_id"])
            for pid in (last.get("prediction_ids") or [last["prediction_id"]])[::-1]:
                batch.requeue(pid, front=True)
            self.notices.append(Notice("toast", f"Took back {what}."))
        else:
            self.notices.append(Notice("toast", f"Took back {what}; the example is back in the queue."))

    def _remember(self, entry: dict) -> None:
        self.written.append(entry)
        del self.written[:-UNDO_DEPTH]

    # --- counters ---------------------------------------------------------------------------------

    def read_counts(self, store: Store, user: str, query: Query) -> dict:
        """Today's decisions of `user` on the model and what is left in the query's queue, from the store."""
        mine = feedback.labelled_today(store, query.model, user)
        where = query.slice.filters()
        left = (monitoring.audit_left(store, query.model, **where) if query.strategy == monitoring.AUDIT
                else sampling.queue_size(store, query.model, **where, text=query.text))
        skipped, unclear = mine.pop(SKIP, 0), mine.pop(UNCLEAR, 0)
        self.counts = {"labelled": sum(mine.values()), "skipped": skipped, "unclear": unclear, "left": left}
        return self.counts

    def _count(self, decision: dict, sign: int) -> None:
        if self.counts is None:
            return
        if "prediction_ids" in decision:  # a page of the bulk table
            self.counts = None
            return
        kind = {SKIP: "skipped", UNCLEAR: "unclear"}.get(decision["label"], "labelled")
        self.counts[kind] += sign
        if decision["label"] != SKIP:
            self.counts["left"] = max(self.counts["left"] - sign, 0)

    def take_notices(self) -> list[Notice]:
        notices, self.notices = self.notices, []
        return notices


def _write_one(store: Store, user: str, decision: dict) -> dict:
    """Write one decision to the store; returns its undo entry."""
    if decision["label"] == SKIP:
        feedback.skip_prediction(store, decision["model"], decision["prediction_id"], user, decision["batch_id"],
                                 comment=decision.get("comment"))
        return {**decision, "feedback_ids": []}
    feedback_id = feedback.label_prediction(store, decision["model"], decision["prediction_id"], decision["label"],
                                            user, decision["batch_id"], comment=decision.get("comment"))
    return {**decision, "feedback_ids": [feedback_id]}
