"""The serving path: the store held open by the server, predictions logged by the group-commit
writer (nothing lost, nothing answered before its commit), and the command line working through a
running server, also while it answers predictions and when it is killed."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import duckdb
import pandas as pd
import pytest

from core import auth, demo, forward, logwriter, predict, registry, sampling, stats, train
from core.server import Server
from core.serving import Serving
from core import store as db
from core.errors import InvalidInput, PermissionDenied, StoreError
from servers import ROOT, post_json, start_server, stop_server, wait_ready

import storeprobe  # noqa: E402

M = demo.MODEL


@pytest.fixture(params=[1, 2], ids=["one committer", "two committers"])
def serving(seeded_store, request, monkeypatch):
    """The seeded store as the server keeps it: held open, its predictions logged by the writer
    (with one committer thread, the default, and with two taking turns: MMS_LOG_COMMITTERS)."""
    monkeypatch.setenv("MMS_LOG_COMMITTERS", str(request.param))
    seeded_store.hold()
    serving = Serving(seeded_store).start()
    yield seeded_store, serving.writer
    serving.stop()
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


def test_a_prediction_is_logged_the_same_alone_as_in_a_large_batch_and_its_statistics_match_the_log(serving):
    store, _ = serving
    texts = ["质量很好，物流也快", "太差了，不会再买", "还行吧"]
    few = predict.predict_texts(store, M, texts, "tester", business_line="两条路")  # a few rows: a VALUES list
    many = predict.predict_texts(store, M, texts * 8, "tester", business_line="两条路")  # more: an Arrow table
    with store.connect() as con:
        model_id = db.model_by_name(con, M)["model_id"]
        logged = db.predictions_by_id(con, model_id, few["prediction_id"].tolist() + many["prediction_id"].tolist())
    logged = logged.set_index("prediction_id")
    columns = ["text", "text_key", "business_line", "label", "version"]
    alone = logged.loc[few["prediction_id"], columns].reset_index(drop=True)
    in_batch = logged.loc[many["prediction_id"][:3], columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, in_batch)
    from_rollups = stats.stats_by_line_and_period(store, M, "day", "两条路")
    with store.transaction() as con:
        db.rebuild_rollups(con)  # the statistics migration's SQL over the whole log
    recomputed = stats.stats_by_line_and_period(store, M, "day", "两条路")
    assert from_rollups["volume"].tolist() == [27]
    pd.testing.assert_frame_equal(from_rollups, recomputed, check_exact=False, rtol=1e-9)


def test_a_small_commit_counts_in_the_same_rollup_rows_as_the_statistics_sql_at_every_bucket_edge(seeded_store):
    # top probabilities whose * 100 lands just below or on a whole hundredth in floating point
    edges = [0.57, 0.29, 0.58, 0.6, 0.7, 0.1 + 0.2, 1.0, 0.5, 0.015, 0.9999999999, 0.56, 0.8]
    frame = {"text": [f"边界{i}" for i in range(len(edges))], "norm_text": [f"边界{i}" for i in range(len(edges))],
             "business_line": ["边界"] * len(edges), "label": ["正面", "负面"] * (len(edges) // 2),
             "top_prob": edges, "probs": [[p, 1 - p] for p in edges], "created_at": [None] * len(edges)}
    with seeded_store.connect() as con:
        model_id = db.model_by_name(con, M)["model_id"]
    with seeded_store.transaction() as con:
        db.insert_predictions(con, model_id, 1, frame, "test", "tester")  # a few rows: grouped in Python
    with seeded_store.connect() as con:
        written = storeprobe.prediction_rollup_sums(con, "边界")
    with seeded_store.transaction() as con:
        db.rebuild_rollups(con)  # the same rows grouped by the statistics' SQL
    with seeded_store.connect() as con:
        recomputed = storeprobe.prediction_rollup_sums(con, "边界")
    assert [row[:4] for row in written] == [row[:4] for row in recomputed]
    assert sum(row[3] for row in written) == len(edges)
    for got, expected in zip(written, recomputed):
        assert got[4:] == pytest.approx(expected[4:], rel=1e-12)


def test_a_refused_user_in_a_batch_is_refused_alone_and_leaves_no_rows_or_counts(seeded_store):
    auth.add_user(seeded_store, "olga", "owner", "owner-pass-1", by="setup")
    with seeded_store.connect() as con:
        before = storeprobe.table_counts(con)
    writer = logwriter.LogWriter(seeded_store)  # not started: the three requests queue into one batch
    rows = [_rows(seeded_store, text) for text in ("好", "坏", "妙")]
    rows[0].user, rows[1].user, rows[2].user = "olga", "mallory", "olga"
    futures = [writer.submit(r) for r in rows]
    writer.start()
    try:
        good = futures[0].result() + futures[2].result()
        with pytest.raises(PermissionDenied, match="'mallory' is not a known user"):
            futures[1].result()
    finally:
        writer.close()
    with seeded_store.connect() as con:
        after = storeprobe.table_counts(con)
        counted = con.execute("SELECT sum(n) FROM prediction_rollups").fetchone()[0]
        logged = storeprobe.prediction_count(con)
    assert _logged(seeded_store, good) == set(good) and len(good) == 2
    assert after["predictions"] == before["predictions"] + 2
    assert counted == logged  # the refused request's rollup rows went with its transaction


def test_without_a_server_a_prediction_logs_in_its_own_transaction(seeded_store):
    assert seeded_store.serving is None
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


def test_in_a_serving_process_every_activation_answers_the_next_prediction(serving):
    store, _ = serving
    train.train_version(store, M, "owner", model_config={"estimator": "complement_nb"}, activate=False)
    answered = lambda: predict.predict_texts(store, M, ["不错"], "u")["version"].iloc[0]
    assert answered() == answered() == 1  # the second from the server's reused lookup
    for version in (2, 1, 2):
        registry.activate_version(store, M, version, "owner", "switching", force=True)
        assert answered() == version


def test_a_running_server_compacts_the_rollup_rows_its_batches_append(seeded_store, monkeypatch):
    monkeypatch.setenv("MMS_COMPACT_SECONDS", "0.2")
    server = Server(seeded_store, None)
    server.start()
    try:
        for _ in range(6):  # one text, one line: every batch appends a row for the same rollup key
            predict.predict_texts(seeded_store, M, ["物流很快，质量很好"], "tester", business_line="compacted")
        deadline = time.monotonic() + 60  # a bound, not a timing: compaction runs every 0.2 s here
        while True:
            with seeded_store.connect() as con:
                rows = storeprobe.prediction_rollup_rows(con, "compacted")
            if rows == [(1, 6)] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert rows == [(1, 6)]  # merged into one row that still counts all six predictions
    finally:
        server.stop()
    assert seeded_store.serving is None


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
    serving = Serving(seeded_store).start()
    writer = serving.writer
    try:
        with seeded_store.connect() as con:
            before = storeprobe.prediction_count(con)
        with ThreadPoolExecutor(4) as pool:
            answers = [pool.submit(predict.predict_texts, seeded_store, M, ["好"], "tester") for _ in range(12)]
        for answer in answers:
            with pytest.raises(StoreError, match="the disk holding the store is full.*No space left"):
                answer.result()
        with seeded_store.connect() as con:
            assert storeprobe.prediction_count(con) == before
        assert writer.commits == 0
    finally:
        serving.stop()
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


def test_restore_under_a_holder_reopens_the_restored_file(seeded_store, tmp_path):
    from core import backup

    backup.backup(seeded_store, tmp_path / "bk", "tester")
    seeded_store.hold()
    try:
        extra = predict.predict_texts(seeded_store, M, ["多出来的一条"], "tester")["prediction_id"].tolist()
        backup.restore(seeded_store, tmp_path / "bk", "tester")
        assert _logged(seeded_store, extra) == set()  # the held store now reads the restored file
        again = predict.predict_texts(seeded_store, M, ["恢复以后"], "tester")["prediction_id"].tolist()
        assert _logged(seeded_store, again) == set(again)
    finally:
        seeded_store.unhold()


def test_prediction_ids_stay_unique_when_a_restore_rewinds_the_file_under_its_holder(seeded_store, tmp_path):
    from core import backup

    backup.backup(seeded_store, tmp_path / "bk", "tester")
    seeded_store.hold()  # a held store takes prediction ids in blocks
    try:
        predict.predict_texts(seeded_store, M, ["恢复以前"], "tester")
        backup.restore(seeded_store, tmp_path / "bk", "tester")
        held = predict.predict_texts(seeded_store, M, ["恢复以后"], "tester")["prediction_id"].tolist()
    finally:
        seeded_store.unhold()
    alone = predict.predict_texts(seeded_store, M, ["没有服务器", "第二条", "第三条"], "tester")["prediction_id"].tolist()
    assert not set(held) & set(alone)
    assert _logged(seeded_store, held + alone) == set(held + alone)


# --- a real server: `streamlit run app.py` ------------------------------------------------------

@pytest.fixture
def server(seeded_store, tmp_path):
    """A running server on the seeded store, ready once it holds the store (its file is written)."""
    url, proc = start_server({"MMS_STORE": str(seeded_store.path)}, tmp_path / "server.log")
    wait_ready(url, proc, tmp_path / "server.log", ready=lambda: forward.find(seeded_store.path) is not None)
    yield url, seeded_store, proc
    stop_server(proc)


class Traffic:
    """Threads posting one-text predictions until stopped; what was answered, and every refusal."""

    def __init__(self, url: str, threads: int = 2):
        self.url = f"{url}/api/models/{quote(M)}/predict"
        self.answered: list[int] = []
        self.refused: list[tuple[int, dict]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def _run(self, n: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            try:
                status, body = post_json(self.url, {"texts": [f"第{n}-{i}条：东西不错，物流很快"], "business_line": "load"})
            except OSError as e:  # the server was killed: this answer never arrived
                self.errors.append(str(e))
                return
            if status == 200:
                self.answered += [p["prediction_id"] for p in body["predictions"]]
            else:
                self.refused.append((status, body))


def _cli(*args: str, cwd=ROOT, store=None, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MMS_STORE": str(store.path), "PYTHONPATH": str(ROOT)}
    env.pop("MMS_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=cwd, env=env, input=stdin or "",
                          capture_output=True, text=True, timeout=300)


def test_every_command_works_through_a_running_server_while_it_answers_predictions(server, tmp_path):
    url, store, proc = server
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "texts.csv").write_text("text\n很好用\n太差了\n", encoding="utf-8")
    with Traffic(url) as traffic:
        time.sleep(1)
        steps = [("models",), ("train", M), ("versions", M, "--format", "json"),
                 ("activate", M, "2", "--force", "--reason", "x"),
                 ("predict", M, "texts.csv", "--out", "answers.csv"), ("stats", M),
                 ("backup", "bk")]
        done = {step[0]: _cli(*step, cwd=tmp_path / "work", store=store) for step in steps}
        time.sleep(1)
    for name, result in done.items():
        assert result.returncode == 0, (name, result.stdout, result.stderr)
        assert "busy" not in result.stderr
    assert [v["version"] for v in json.loads(done["versions"].stdout)] == [1, 2]
    assert "version: 2" in done["activate"].stdout and "status: active" in done["activate"].stdout
    answers = (tmp_path / "work" / "answers.csv").read_text(encoding="utf-8")  # the caller's relative path
    assert "很好用" in answers and "太差了" in answers
    assert (tmp_path / "work" / "bk" / "manifest.json").exists()
    assert traffic.refused == [] and traffic.errors == [] and len(traffic.answered) > 0
    versions = {p["version"] for p in post_json(f"{url}/api/models/{quote(M)}/predict", {"texts": ["好"]})[1]["predictions"]}
    assert versions == {2}

    # a user added through the server (its password from this command's stdin) closes the store to
    # writes without a credential, and says so instead of asking where no one can type
    added = _cli("add-user", "boss", "--role", "owner", "--password-stdin", store=store, stdin="a long password\n")
    assert added.returncode == 0, added.stderr
    refused = _cli("activate", M, "1", "--force", "--reason", "x", store=store)
    assert refused.returncode == 2 and "MMS_TOKEN" in refused.stderr

    proc.terminate()
    proc.wait(timeout=30)
    assert not forward.server_file(store.path).exists()  # removed at exit: the CLI opens the file itself again
    assert _logged(store, traffic.answered) == set(traffic.answered)  # sent = logged


@pytest.mark.stress
def test_a_server_killed_under_load_has_logged_every_prediction_it_answered(server):
    url, store, proc = server
    with Traffic(url, threads=6) as traffic:
        deadline = time.monotonic() + 60
        while len(traffic.answered) < 50 and time.monotonic() < deadline:  # under load, not at its first call
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert len(traffic.answered) > 0 and traffic.refused == [], (traffic.refused[:3], traffic.errors[:3])
    assert _logged(store, traffic.answered) == set(traffic.answered)
    # the server's file is left behind, but it names a dead process: the command line opens the store itself
    assert forward.server_file(store.path).exists()
    listed = _cli("models", store=store)
    assert listed.returncode == 0 and M in listed.stdout


def test_a_running_server_scores_a_newly_active_versions_pool_in_the_background(seeded_store, monkeypatch):
    monkeypatch.setenv("MMS_PRESCORE_SECONDS", "0.2")
    monkeypatch.setattr(sampling, "PRESCORE_START_SECONDS", 0.0)
    monkeypatch.setattr(sampling, "_SCORES", sampling._ScoreCache(sampling.SCORES_KEPT))
    server = Server(seeded_store, None)
    server.start()
    try:
        train.train_version(seeded_store, M, "owner", model_config={"estimator": "complement_nb"}, activate=False)
        registry.activate_version(seeded_store, M, 2, "owner", "retrained", force=True)
        deadline = time.monotonic() + 120  # a bound, not a timing: the server looks every 0.2 s here
        kept = lambda: any(key[0] == seeded_store.key and key[2] == 2 for key in list(sampling._SCORES._versions))
        while not kept() and time.monotonic() < deadline:
            time.sleep(0.2)
        scored = []
        monkeypatch.setattr(sampling, "score_pool", lambda *a: scored.append(len(a[3])))
        batch = sampling.select_hard_examples(seeded_store, M, 10, "lab").examples
        assert scored == [] and (batch["version"] == 2).all()  # the first batch by v2 scored nothing itself
    finally:
        server.stop()
