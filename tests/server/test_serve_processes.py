"""Serving processes beside the server (core/servepool.py, core/serveproc.py): `streamlit run app.py` with
MMS_SERVING_PROCESSES=2 answers predictions on a second port from two processes, the server staying the
embedded store's one writer. Every answered prediction is in the log, an activation reaches them, they
refuse what the API refuses, the command line keeps working, and a setting that cannot be used gets a
sentence while the dashboard still serves."""
import subprocess
import sys
import threading
import time
from urllib.parse import quote

import duckdb
import pytest

from core import demo, servepool, train
from core.errors import InvalidInput
from lakefixtures import pg_cluster  # noqa: F401  (fixture)
from servers import ROOT, core_json, free_port, post_json, serving, status

M = demo.MODEL
LINE = "serving-processes"


def serving_pids(base: str, tries: int = 40) -> set[int]:
    """The serving processes that answered `tries` new connections' health checks."""
    import urllib.request

    pids = set()
    for _ in range(tries):
        with urllib.request.urlopen(f"{base}/api/health", timeout=10) as r:
            pids.add(int(r.headers["X-MMS-Serving-Process"]))
    return pids


def wait_serving(base: str, seconds: float = 90, processes: int = 1) -> set[int]:
    """Wait until `processes` serving processes answer on `base`; their PIDs."""
    deadline = time.monotonic() + seconds
    while status(f"{base}/api/health") != 200 or len(pids := serving_pids(base, 10 * processes)) < processes:
        assert time.monotonic() < deadline, f"fewer than {processes} serving processes answer on {base}"
        time.sleep(0.3)
    return pids


def logged(store, ids: list[int]) -> dict[int, tuple[str, int]]:
    """(text, version) of each logged prediction id, read from the file once the server has stopped."""
    with duckdb.connect(str(store.path), read_only=True) as con:
        rows = con.execute("SELECT prediction_id, text, version FROM predictions WHERE prediction_id IN "
                           "(SELECT unnest(?::BIGINT[]))", [ids]).fetchall()
    return {pid: (text, version) for pid, text, version in rows}


@pytest.fixture
def two_processes(seeded_store, tmp_path):
    port = free_port()
    env = {"MMS_STORE": str(seeded_store.path), "MMS_SERVING_PROCESSES": "2", "MMS_SERVING_PORT": str(port)}
    return seeded_store, env, f"http://127.0.0.1:{port}", tmp_path / "server.log"


def test_two_serving_processes_answer_only_what_the_server_logged(two_processes):
    store, env, base, log = two_processes
    answered: dict[int, str] = {}
    failures = []

    def client(me: int) -> None:
        for i in range(25):
            text = f"客户{me}的第{i}条评论，物流很快"
            code, body = post_json(f"{base}/api/models/{quote(M)}/predict", {"texts": [text], "business_line": LINE})
            if code == 200:
                answered[body["predictions"][0]["prediction_id"]] = text
            else:
                failures.append((code, body))

    with serving(env, log) as url:
        assert len(wait_serving(base, processes=2)) == 2  # two processes share the port
        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # the command line keeps working beside them, through the server
        listed = core_json(store, "versions", M)
        assert listed
        assert status(f"{url}/api/health") == 200
    assert not failures
    assert len(answered) == 200
    found = logged(store, list(answered))
    assert {pid: text for pid, (text, _) in found.items()} == answered


def test_an_activation_reaches_the_serving_processes(two_processes):
    store, env, base, log = two_processes
    train.train_version(store, M, "tester")  # version 2, inactive
    with serving(env, log) as url:
        wait_serving(base)
        first = post_json(f"{base}/api/models/{quote(M)}/predict", {"texts": ["质量很好"]})
        assert first[0] == 200 and first[1]["predictions"][0]["version"] == 1
        code, body = post_json(f"{url}/api/models/{quote(M)}/versions/2/activate",
                               {"reason": "serving processes follow", "force": True})
        assert code == 200, body
        versions = set()
        deadline = time.monotonic() + 30  # far beyond the bound (predict.LOOKUP_SECONDS): no timing asserted
        while time.monotonic() < deadline and versions != {2}:
            versions = {post_json(f"{base}/api/models/{quote(M)}/predict", {"texts": [f"还行{i}"]})[1]
                        ["predictions"][0]["version"] for i in range(10)}
        assert versions == {2}


def test_serving_processes_refuse_as_the_api_does(two_processes):
    store, env, base, log = two_processes
    with serving(env, log) as url:
        wait_serving(base)
        for body in ({"texts": []}, {"texts": ["好"], "version": 0}, {"texts": "好"}, {"text": ["好"]}):
            ours = post_json(f"{base}/api/models/{quote(M)}/predict", body)
            theirs = post_json(f"{url}/api/models/{quote(M)}/predict", body)
            assert ours == theirs and ours[0] in (400, 422), body
        for kind, data in (("text/plain", '{"texts": ["好"]}'.encode()), ("application/json", b""),
                           ("application/json", b'{"texts": [')):
            assert _raw(base, data, kind) == _raw(url, data, kind) and _raw(base, data, kind)[0] == 400, (kind, data)
        assert post_json(f"{base}/api/models/nope/predict", {"texts": ["好"]}) == \
            post_json(f"{url}/api/models/nope/predict", {"texts": ["好"]})
        code, body = post_json(f"{base}/api/models/{quote(M)}/versions/1/activate", {"reason": "x"})
        assert code == 404 and "predict only" in body["error"]  # nothing that changes models is served there


def _raw(base: str, data: bytes, kind: str) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{base}/api/models/{quote(M)}/predict", data=data, method="POST",
                                 headers={"Content-Type": kind})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_a_setting_that_cannot_be_used_is_a_sentence_and_the_dashboard_still_serves(seeded_store, tmp_path):
    env = {"MMS_STORE": str(seeded_store.path), "MMS_SERVING_PROCESSES": "two"}
    log = tmp_path / "server.log"
    with serving(env, log) as url:
        deadline = time.monotonic() + 60
        while "no serving processes" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.3)
        assert post_json(f"{url}/api/models/{quote(M)}/predict", {"texts": ["好"]})[0] == 200
    assert "MMS_SERVING_PROCESSES='two' is not a whole number" in log.read_text()


@pytest.mark.parametrize("env, said", [
    ({"MMS_SERVING_PROCESSES": "-1"}, "give 0 to 64 serving processes"),
    ({"MMS_SERVING_PROCESSES": "1", "MMS_SERVING_PORT": "70000"}, "give a port from 1 to 65535"),
    ({"MMS_SERVING_PROCESSES": "1", "MMS_SERVING_ADDRESS": "192.0.2.1"}, "cannot listen on 192.0.2.1"),
])
def test_serving_settings_are_checked(monkeypatch, env, said):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidInput, match=said):
        servepool.configured(8501)


def test_a_port_in_use_is_a_sentence(monkeypatch):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        monkeypatch.setenv("MMS_SERVING_PROCESSES", "1")
        monkeypatch.setenv("MMS_SERVING_PORT", str(taken.getsockname()[1]))
        with pytest.raises(InvalidInput, match="cannot listen on 127.0.0.1 port"):
            servepool.configured(8501)


def test_the_serve_command_on_an_embedded_store_needs_its_server(seeded_store):
    done = subprocess.run([sys.executable, "-m", "core", "--store", str(seeded_store.path), "serve"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"no server holds {seeded_store.path}" in done.stderr


def _post(url: str, body: dict, token: str | None) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_serving_processes_know_a_token_s_user_from_the_server(two_processes):
    from core import auth

    store, env, base, log = two_processes
    auth.add_user(store, "boss", "owner", "a long enough password", by="setup")
    token = auth.create_token(store, "boss", by="boss")
    path = f"/api/models/{quote(M)}/predict"
    with serving(env, log) as url:
        wait_serving(base)
        for given in (None, "mms_not-a-token"):
            assert _post(base + path, {"texts": ["好"]}, given) == _post(url + path, {"texts": ["好"]}, given)
            assert _post(base + path, {"texts": ["好"]}, given)[0] == 401
        code, body = _post(base + path, {"texts": ["不错"], "business_line": LINE}, token)
        assert code == 200, body
    pid = body["predictions"][0]["prediction_id"]
    with duckdb.connect(str(store.path), read_only=True) as con:
        assert con.execute("SELECT created_by FROM predictions WHERE prediction_id = ?", [pid]).fetchone() == ("boss",)


def test_the_serve_command_on_ducklake_writes_from_each_process(seeded_store, pg_cluster, tmp_path):
    import os
    import signal

    from core import migrate
    from lakefixtures import new_lake

    lake = new_lake(pg_cluster, tmp_path)
    migrate.migrate(seeded_store, lake, "tester")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MMS_STORE": lake.url, "MMS_DATA_PATH": lake.data_path}
    with open(tmp_path / "serve.log", "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "core", "serve", "--processes", "2", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert len(wait_serving(base, seconds=180, processes=2)) == 2
        answered = {}
        for i in range(20):
            code, body = post_json(f"{base}/api/models/{quote(M)}/predict", {"texts": [f"第{i}条"], "business_line": LINE})
            assert code == 200, body
            answered[body["predictions"][0]["prediction_id"]] = f"第{i}条"
        code, body = post_json(f"{base}/api/models/{quote(M)}/versions/1/activate", {"reason": "x"})
        assert code == 404 and "predict only" in body["error"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, (tmp_path / "serve.log").read_text()[-2000:]
    with lake.connect() as con:
        rows = con.execute("SELECT prediction_id, text FROM predictions WHERE business_line = ?", [LINE]).fetchall()
    assert dict(rows) == answered


def test_the_serve_command_hands_its_rows_to_the_running_server(seeded_store, tmp_path):
    import signal

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serving({"MMS_STORE": str(seeded_store.path)}, tmp_path / "server.log"):
        with open(tmp_path / "serve.log", "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "core", "--store", str(seeded_store.path), "serve",
                                     "--processes", "1", "--port", str(port)], cwd=ROOT, stdout=out,
                                    stderr=subprocess.STDOUT)
        try:
            wait_serving(base)
            code, body = post_json(f"{base}/api/models/{quote(M)}/predict", {"texts": ["服务很好"],
                                                                             "business_line": LINE})
            assert code == 200, body
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, (tmp_path / "serve.log").read_text()[-2000:]
    assert "rows logged by the server" in (tmp_path / "serve.log").read_text()
    pid = body["predictions"][0]["prediction_id"]
    assert logged(seeded_store, [pid]) == {pid: ("服务很好", 1)}
