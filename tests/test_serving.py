"""The serving path: the store held open by the server, predictions logged by the group-commit
writer (nothing lost, nothing answered before its commit), and the command line working through a
running server, also while it answers predictions and when it is killed."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from core import demo, forward, logwriter, predict
from core import store as db
from core.errors import InvalidInput, StoreError
from core.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
import storeprobe  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
M = demo.MODEL


@pytest.fixture
def serving(seeded_store):
    """The seeded store as the server keeps it: held open, its predictions logged by the writer."""
    seeded_store.hold()
    writer = logwriter.start(seeded_store)
    yield seeded_store, writer
    logwriter.stop(seeded_store)
    seeded_store.unhold()


def _logged(store, ids) -> set[int]:
    with store.connect() as con:
        model_id = db.model_by_name(con, M)["model_id"]
        return set(db.predictions_by_id(con, model_id, list(ids))["prediction_id"].tolist())


def test_concurrent_predictions_are_all_logged_and_each_is_committed_before_it_is_answered(serving):
    store, writer = serving
    with store.connect() as con:
        before = storeprobe.prediction_count(con)

    def client(n: int) -> list[int]:
        ids = []
        for i in range(25):
            texts = ["质量很好，物流也快"] if i % 5 else ["太差了，不会再买", "还行吧", "非常满意"]
            answered = predict.predict_texts(store, M, texts, "tester", business_line=f"line{n}")
            new = answered["prediction_id"].tolist()
            # answered means committed: another connection sees the rows at once
            assert _logged(store, new) == set(new)
            ids += new
        return ids

    with ThreadPoolExecutor(8) as pool:
        ids = [i for part in pool.map(client, range(8)) for i in part]
    assert len(ids) == len(set(ids)) == 8 * (20 + 5 * 3)
    assert _logged(store, ids) == set(ids)
    with store.connect() as con:
        assert storeprobe.prediction_count(con) == before + len(ids)


def test_without_a_server_a_prediction_logs_in_its_own_transaction(seeded_store):
    assert logwriter.running(seeded_store) is None
    ids = predict.predict_texts(seeded_store, M, ["不错"], "tester")["prediction_id"].tolist()
    assert _logged(seeded_store, ids) == set(ids)


def test_a_request_that_fails_validation_logs_nothing(serving):
    store, _ = serving
    with store.connect() as con:
        before = storeprobe.table_counts(con)
    for texts in ([], ["好", "  "], ["a" * 20001]):
        with pytest.raises(InvalidInput):
            predict.predict_texts(store, M, texts, "tester")
    with store.connect() as con:
        assert storeprobe.table_counts(con) == before


def _rows(store, text: str) -> logwriter.Rows:
    frame = pd.DataFrame({
        "text": [text], "norm_text": [text], "business_line": ["default"], "label": ["正面"], "top_prob": [0.9],
        "probs": [[0.9, 0.1]], "created_at": [None]})
    with store.connect() as con:
        model_id = db.model_by_name(con, M)["model_id"]
    return logwriter.Rows(model_id, 1, frame, "test", "tester")


def test_a_failing_commit_answers_errors_with_a_sentence_never_ids(seeded_store, monkeypatch):
    def broken(*args, **kwargs):
        raise duckdb.IOException("IO Error: could not write to the write-ahead log: No space left on device")

    monkeypatch.setattr(db, "insert_predictions", broken)
    seeded_store.hold()
    writer = logwriter.start(seeded_store)
    try:
        with seeded_store.connect() as con:
            before = storeprobe.prediction_count(con)
        with ThreadPoolExecutor(4) as pool:
            answers = [pool.submit(predict.predict_texts, seeded_store, M, ["好"], "tester") for _ in range(12)]
        for answer in answers:
            with pytest.raises(StoreError, match="could not be logged, so none were answered.*No space left"):
                answer.result()
        with seeded_store.connect() as con:
            assert storeprobe.prediction_count(con) == before
        assert writer.commits == 0
    finally:
        logwriter.stop(seeded_store)
        seeded_store.unhold()


def test_one_bad_request_in_a_batch_fails_alone_and_the_others_are_logged(seeded_store, monkeypatch):
    insert = db.insert_predictions

    def refuses_one(con, model_id, version, frame, source, user):
        if "坏" in frame["text"].tolist():
            raise duckdb.ConversionException("Conversion Error: a value the table refuses")
        return insert(con, model_id, version, frame, source, user)

    monkeypatch.setattr(db, "insert_predictions", refuses_one)
    writer = logwriter.LogWriter(seeded_store)  # not started: the three requests queue into one batch
    futures = [writer.submit(_rows(seeded_store, text)) for text in ("好", "坏", "妙")]
    writer.start()
    try:
        good = futures[0].result() + futures[2].result()
        with pytest.raises(StoreError, match="a value the table refuses"):
            futures[1].result()
    finally:
        writer.close()
    assert _logged(seeded_store, good) == set(good) and len(good) == 2


def test_a_closed_writer_refuses_with_a_sentence(seeded_store):
    writer = logwriter.LogWriter(seeded_store).start()
    writer.close()
    with pytest.raises(Exception, match="shutting down"):
        writer.submit(_rows(seeded_store, "好"))
