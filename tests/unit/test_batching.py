"""The serving's batcher: concurrent small requests predicted together in one predict_proba and
committed together, each answered exactly as alone, only after its rows are committed; an activation
under load answers the next prediction; the lean predict path answers as the full route does."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette

from core import api, demo, predict, registry, train
from core import store as db
from core.serving import Serving

import storeprobe

M = demo.MODEL
TEXTS = ["质量很好，物流也快", "太差了，不会再买", "还行吧", "房间干净，早餐丰富", "书的印刷很差", "宝宝很喜欢",
         "客服态度一般", "非常满意，推荐"]


@pytest.fixture
def serving(seeded_store):
    """The seeded store as the server keeps it: held open and served (writer, batcher, lookups)."""
    seeded_store.hold()
    serving = Serving(seeded_store).start()
    yield serving
    serving.stop()
    seeded_store.unhold()


def _answers(frame) -> list[tuple]:
    columns = [c for c in frame.columns if c.startswith("p_")]
    return [(row["text"], row["label"], row["version"], tuple(row[c] for c in columns))
            for row in frame.to_dict("records")]


def _logged(store, ids) -> set[int]:
    with store.connect() as con:
        model_id = db.model_by_name(con, M)["model_id"]
        return set(db.predictions_by_id(con, model_id, list(ids))["prediction_id"].tolist())


def test_queued_requests_are_predicted_in_one_batch_and_answered_as_alone_after_their_commit(seeded_store,
                                                                                                monkeypatch):
    alone = [_answers(predict.predict_texts(seeded_store, M, [t], "tester", business_line="alone"))[0] for t in TEXTS]
    seeded_store.hold()
    serving = Serving(seeded_store).start()
    first_call, release = threading.Event(), threading.Event()
    probabilities = predict.probabilities

    def held_once(*args, **kwargs):  # the batcher's first batch waits, so that the others queue behind it
        if not first_call.is_set():
            first_call.set()
            release.wait(60)
        return probabilities(*args, **kwargs)

    monkeypatch.setattr(predict, "probabilities", held_once)
    try:
        with seeded_store.connect() as con:
            before = storeprobe.prediction_count(con)
        with ThreadPoolExecutor(len(TEXTS) + 1) as pool:
            head = pool.submit(predict.predict_texts, seeded_store, M, ["第一条"], "tester", business_line="batched")
            first_call.wait(60)
            rest = [pool.submit(predict.predict_texts, seeded_store, M, [t], "tester", business_line="batched")
                    for t in TEXTS]
            deadline = time.monotonic() + 60  # a bound, not a timing
            while serving._asks.qsize() < len(TEXTS) and time.monotonic() < deadline:  # all queued behind it
                time.sleep(0.01)
            release.set()
            frames = [f.result() for f in rest]
            head.result()
        assert (serving.batches, serving.batched) == (2, 1 + len(TEXTS))  # the eight in one predict_proba
        assert [_answers(f)[0] for f in frames] == alone
        ids = [int(f["prediction_id"].iloc[0]) for f in frames]
        assert len(set(ids)) == len(TEXTS) and _logged(seeded_store, ids) == set(ids)  # answered = logged
        with seeded_store.connect() as con:
            assert storeprobe.prediction_count(con) == before + 1 + len(TEXTS)
    finally:
        release.set()
        serving.stop()
        seeded_store.unhold()
    assert seeded_store.serving is None


def test_concurrent_clients_get_every_answer_logged_once(serving):
    store = serving.store
    with store.connect() as con:
        before = storeprobe.prediction_count(con)

    def client(n: int) -> list[int]:
        ids = []
        for i in range(10):
            texts = [TEXTS[(n + i) % len(TEXTS)]] if i % 4 else TEXTS[:3]
            answered = predict.predict_batch(store, M, texts, "tester", business_line=f"line{n}", source="api")
            assert answered.texts == texts and len(answered.prediction_ids) == len(texts)
            ids += answered.prediction_ids
        return ids

    with ThreadPoolExecutor(8) as pool:
        ids = [i for part in pool.map(client, range(8)) for i in part]
    assert len(ids) == len(set(ids))
    assert _logged(store, ids) == set(ids)
    with store.connect() as con:
        assert storeprobe.prediction_count(con) == before + len(ids)


def test_a_bad_request_among_batched_ones_is_refused_alone(serving):
    store = serving.store
    with ThreadPoolExecutor(4) as pool:
        good = [pool.submit(predict.predict_batch, store, M, [t], "tester", source="api") for t in TEXTS[:3]]
        unknown = pool.submit(predict.predict_batch, store, "没有这个模型", ["好"], "tester", source="api")
        with pytest.raises(Exception, match="没有这个模型"):
            unknown.result()
        assert all(len(f.result().prediction_ids) == 1 for f in good)


def test_an_activation_under_load_answers_the_next_prediction(serving):
    store = serving.store
    train.train_version(store, M, "owner", model_config={"estimator": "complement_nb"}, activate=False)
    stop = threading.Event()

    def load():
        while not stop.is_set():
            predict.predict_batch(store, M, [TEXTS[0]], "tester", source="api")

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for version in (2, 1, 2, 1):
            registry.activate_version(store, M, version, "owner", "switching under load", force=True)
            assert predict.predict_batch(store, M, ["不错"], "tester", source="api").version == version
    finally:
        stop.set()
        for t in threads:
            t.join()


def test_the_lean_predict_path_in_front_answers_as_the_full_route(serving, monkeypatch):
    store = serving.store
    monkeypatch.setenv("MMS_STORE", str(store.path))
    full = TestClient(Starlette(routes=[api.mount(store)]), client=("127.0.0.1", 50000))
    front = TestClient(Starlette(routes=[api.mount()], middleware=[api.front()]), client=("127.0.0.1", 50000))
    path = f"/api/models/{M}/predict"
    bodies = [{"texts": TEXTS[:2], "business_line": "数码"}, {"texts": [TEXTS[3]], "version": 1},
              {"texts": []}, {"texts": ["  "]}, {"texts": ["好"], "business_line": "a\x1bb"},
              {"texts": ["好"], "version": "1"}, {"texts": ["好"], "extra": 1}, {"texts": ["好"], "version": 9},
              {"texts": ["好\x00"]}, {"texts": ["好"], "business_line": " 前后空格 "}, [1, 2]]
    for body in bodies:
        a, b = full.post(path, json=body), front.post(path, json=body)
        assert (a.status_code, a.headers["content-type"]) == (b.status_code, b.headers["content-type"]), body
        if a.status_code == 200:
            strip = lambda r: [{k: v for k, v in p.items() if k != "prediction_id"} for p in r.json()["predictions"]]
            assert strip(a) == strip(b) and a.json()["business_line"] == b.json()["business_line"]
        else:
            assert a.json() == b.json(), body
    unknown = front.post(f"/api/models/{'没有'}/predict", json={"texts": ["好"]})
    assert unknown.status_code == 404 and "没有" in unknown.json()["error"]


def test_the_start_up_drift_fill_in_slices_measures_every_cell(serving):
    from core import drift, server, stats

    store = serving.store
    server.measure_drift(store, "week", serving)  # slices of DRIFT_SLICE_SECONDS, between predictions
    by_line = stats.stats_by_line_and_period(store, M, "week")
    report = drift.drift_by_line_and_period(store, M, "week", by_line, budget_seconds=0.0)
    assert report.pending == 0 and len(report.cells) == len(by_line)  # every cell read from the cache
