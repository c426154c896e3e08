"""The Label page's queue (core.labelqueue) without a page: decide moves the queue at once, flush
writes in order, undo takes back, and the counters move once a decision is written."""
import pandas as pd
import pytest

from core import feedback, labelqueue, monitoring, sampling
from core.errors import StoreBusy
from core.labelqueue import LabelQueue, Query
from core.slices import Slice

MODEL = "评论情感"
USER = "tester"


def query(strategy: str = "least_confidence", text: str | None = None) -> Query:
    return Query(MODEL, strategy, Slice.of([], None, None, None), text)


@pytest.fixture
def q(seeded_store):
    queue = LabelQueue()
    queue.batch_for(seeded_store, query(), USER)
    queue.read_counts(seeded_store, USER, query())
    return queue


def mine(store) -> dict:
    return feedback.labelled_counts(store, MODEL, user=USER)


def test_a_decision_moves_the_queue_at_once_and_is_written_by_flush(seeded_store, q):
    first, second = q.batch.queue[:2]
    left = q.counts["left"]
    assert q.decide(first, "正面")
    assert q.batch.queue[0] == second and q.batch.done == [first]
    assert mine(seeded_store) == {} and q.counts["labelled"] == 0  # counted once written
    assert q.flush(seeded_store, USER)
    assert mine(seeded_store) == {"正面": 1}
    assert (q.counts["labelled"], q.counts["left"]) == (1, left - 1)
    assert q.last() == "正面"


def test_only_the_example_shown_first_can_be_decided(seeded_store, q):
    first, second = q.batch.queue[:2]
    assert not q.decide(second, "正面")  # a key pressed twice before the next example showed
    assert q.decide(first, "负面")
    assert not q.decide(first, "负面")  # a double click
    q.flush(seeded_store, USER)
    assert mine(seeded_store) == {"负面": 1}


def test_decisions_are_written_in_the_order_taken(seeded_store, q):
    ids = q.batch.queue[:3]
    for pid, label in zip(ids, ["正面", "unclear", "负面"]):
        q.decide(pid, label, comment="two products in one" if label == "unclear" else "ignored")
    q.flush(seeded_store, USER)
    assert [e["prediction_id"] for e in q.written] == ids
    said = feedback.comments(seeded_store, MODEL, ids)
    assert said["comment"].tolist() == ["two products in one"]  # a comment goes with skip and unclear only
    assert q.counts["unclear"] == 1 and q.counts["labelled"] == 2


def test_a_skip_goes_to_the_end_and_a_batch_of_skips_only_is_replaced(seeded_store, q):
    batch = q.batch
    skipped = batch.queue[0]
    q.decide(skipped, "skip")
    assert batch.queue[-1] == skipped and skipped in batch.skipped
    for pid in list(batch.queue[:-1]):
        q.decide(pid, "正面")
    assert batch.used_up()
    fresh = q.batch_for(seeded_store, query(), USER)  # writes the decisions before drawing
    assert fresh is not batch and fresh.batch_id != batch.batch_id
    assert mine(seeded_store) == {"skip": 1, "正面": len(batch.examples) - 1}
    assert skipped not in fresh.queue or fresh.queue[-1] == skipped  # a skipped example waits behind the rest


def test_the_batch_is_kept_for_the_same_query_and_drawn_again_for_another(seeded_store, q):
    batch = q.batch
    assert q.batch_for(seeded_store, query(), USER) is batch
    other = q.batch_for(seeded_store, query("margin"), USER)
    assert other is not batch and other.strategy == "margin"
    assert q.batch_for(seeded_store, query(monitoring.AUDIT), USER).query.strategy == monitoring.AUDIT


def test_undo_drops_a_decision_not_written_and_takes_back_a_written_one(seeded_store, q):
    first, second = q.batch.queue[:2]
    q.decide(first, "正面")
    q.undo(seeded_store, USER)  # not written yet: just dropped
    assert q.batch.queue[0] == first and q.pending == [] and q.last() is None
    q.decide(first, "skip")
    q.decide(second, "负面")
    q.flush(seeded_store, USER)
    assert mine(seeded_store) == {"skip": 1, "负面": 1}
    q.undo(seeded_store, USER)
    q.undo(seeded_store, USER)
    assert mine(seeded_store) == {}
    assert q.batch.queue[:2] == [first, second] and first not in q.batch.skipped
    assert q.counts["labelled"] == 0 and q.counts["skipped"] == 0
    assert [n.text for n in q.take_notices()] == ["Took back 正面.", "Took back 负面.", "Took back skip."]
    q.undo(seeded_store, USER)  # nothing left to take back
    assert q.take_notices() == []


def test_a_write_the_store_refuses_puts_the_example_back_first(seeded_store, q, monkeypatch):
    first = q.batch.queue[0]

    def busy(*args, **kwargs):
        raise StoreBusy("store is busy: try again in a moment")

    monkeypatch.setattr(feedback, "record_labels", busy)
    q.decide(first, "正面")
    assert not q.flush(seeded_store, USER)
    assert q.batch.queue[0] == first and q.pending == [] and q.counts["labelled"] == 0
    assert [(n.kind, n.text) for n in q.take_notices()] == \
        [("error", "store is busy: try again in a moment: the example is shown again.")]
    monkeypatch.undo()
    q.decide(first, "正面")
    assert q.flush(seeded_store, USER)
    assert mine(seeded_store) == {"正面": 1}


def test_an_example_someone_else_labelled_meanwhile_is_moved_past(seeded_store, q):
    first, second = q.batch.queue[:2]
    feedback.label_prediction(seeded_store, MODEL, first, "正面", "someone else")
    q.decide(first, "负面")
    q.decide(second, "负面")
    assert q.flush(seeded_store, USER)
    assert mine(seeded_store) == {"负面": 1}
    assert [n.kind for n in q.take_notices()] == ["warning"]


def test_a_bulk_page_is_one_write_and_one_undo(seeded_store, q):
    ids = q.batch.queue[:3]
    q.decide(ids[0], "skip")  # waiting: written before the page
    page = pd.DataFrame({"prediction_id": ids[1:], "label": ["正面", "unclear"]})
    assert q.submit_bulk(seeded_store, USER, page) == 2
    assert mine(seeded_store) == {"skip": 1, "正面": 1, "unclear": 1}
    assert q.counts is None  # several labels at once: read again
    assert q.last() == "2 labels"
    q.undo(seeded_store, USER)
    assert mine(seeded_store) == {"skip": 1}
    assert q.batch.queue[:2] == ids[1:]


def test_an_exhausted_queue_gives_no_batch(seeded_store):
    rest = sampling.select_hard_examples(seeded_store, MODEL, 10_000, "someone else").examples
    feedback.record_labels(seeded_store, MODEL, pd.DataFrame({"prediction_id": rest["prediction_id"],
                                                              "label": "skip"}), "someone else")
    q = LabelQueue()
    assert q.batch_for(seeded_store, query(), USER) is None
    assert q.read_counts(seeded_store, USER, query())["left"] == 0


def test_the_undo_stack_keeps_the_latest_decisions(seeded_store, q, monkeypatch):
    monkeypatch.setattr(labelqueue, "UNDO_DEPTH", 2)
    decided = []
    for _ in range(3):
        decided.append(q.batch.queue[0])
        q.decide(decided[-1], "skip")
    q.flush(seeded_store, USER)
    assert [e["prediction_id"] for e in q.written] == decided[1:]
