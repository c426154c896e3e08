"""Three `streamlit run app.py` servers on one DuckLake store, each answering predictions, labels and
activations through the HTTP API at once: nothing sent is lost, one version ends active, every
activation is audited, and a version trained elsewhere is served by all of them."""
import subprocess
import threading
import time
from urllib.parse import quote

import pytest

from core import demo, migrate, predict, train
from core.store import Store
from lakefixtures import new_lake, pg_cluster  # noqa: F401  (fixtures)
from servers import post_json, start_server, status

M = demo.MODEL
TRAFFIC_SECONDS = 40  # bounded: the test sends for this long, however fast the machine is
LINE = "three-servers"


def start(store: Store, log_path) -> tuple[str, subprocess.Popen]:
    url, proc = start_server({"MMS_STORE": store.url, "MMS_DATA_PATH": store.data_path}, log_path)
    return f"{url}/api", proc


def wait_ready(url: str, proc: subprocess.Popen, log_path) -> None:
    deadline = time.monotonic() + 180
    while status(f"{url}/health") != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the server at {url} did not start: " + open(log_path).read()[-2000:])
        time.sleep(0.5)


class Client:
    """Predicts one text, labels the answer, and (if `activates`) switches versions, until stopped."""

    def __init__(self, api: str, me: str, activates: bool):
        self.api, self.me, self.activates = f"{api}/models/{quote(M)}", me, activates
        self.predicted: list[int] = []
        self.labelled: list[int] = []
        self.activated: list[int] = []
        self.failures: list[tuple[str, int, dict]] = []

    def send(self, what: str, path: str, body: dict, ok: int) -> dict | None:
        """One request, sent again while it answers 409 (it lost a race with another server's write)."""
        while True:
            status, answer = post_json(self.api + path, body)
            if status == ok:
                return answer
            if status != 409 or answer.get("regressions"):
                self.failures.append((what, status, answer))
                return None
            time.sleep(0.02)

    def run(self, stop: threading.Event) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            answer = self.send("predict", "/predict", {"texts": [f"{self.me}的第{i}条评论，还可以"],
                                                       "business_line": LINE}, 200)
            if answer is None:
                continue
            pid = answer["predictions"][0]["prediction_id"]
            self.predicted.append(pid)
            if self.send("label", "/feedback", {"prediction_id": pid, "label": "正面"}, 201) is not None:
                self.labelled.append(pid)
            if self.activates and i % 5 == 0:
                version = 1 + i // 5 % 2
                if self.send("activate", f"/versions/{version}/activate",
                             {"reason": f"stress {self.me}", "force": True}, 200) is not None:
                    self.activated.append(version)


@pytest.mark.stress
def test_three_servers_on_one_lake_keep_every_write_and_serve_every_version(seeded_store, pg_cluster, tmp_path):
    lake = new_lake(pg_cluster, tmp_path)
    migrate.migrate(seeded_store, lake, "tester")  # servers do not build a demo on a lake: it exists first
    train.train_version(lake, M, "tester")  # version 2, for the servers to switch between
    logs = [tmp_path / f"server{n}.log" for n in range(3)]
    servers = [start(lake, log) for log in logs]
    try:
        for (api, proc), log in zip(servers, logs):
            wait_ready(api, proc, log)
        clients = [Client(api, f"s{n}c{k}", activates=k == 0) for n, (api, _) in enumerate(servers) for k in range(2)]
        stop = threading.Event()
        threads = [threading.Thread(target=c.run, args=(stop,)) for c in clients]
        for t in threads:
            t.start()
        time.sleep(TRAFFIC_SECONDS)
        stop.set()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert [f for c in clients for f in c.failures] == []

        predicted = [pid for c in clients for pid in c.predicted]
        labelled = [pid for c in clients for pid in c.labelled]
        activated = sum(len(c.activated) for c in clients)
        with lake.connect() as con:
            logged = {r[0] for r in con.execute("SELECT prediction_id FROM predictions WHERE business_line = ?",
                                                [LINE]).fetchall()}
            stored = con.execute("SELECT prediction_id FROM feedback").fetchall()
            audited = con.execute("SELECT count(*) FROM events WHERE action = 'activate' "
                                  "AND details LIKE '%stress s%'").fetchone()[0]
            active = con.execute("SELECT active_version FROM models WHERE name = ?", [M]).fetchall()
        assert len(predicted) == len(set(predicted)) == len(logged) and set(predicted) == logged
        assert sorted(labelled) == sorted(pid for (pid,) in stored if pid in logged)
        assert activated > 0 and audited == activated
        assert len(active) == 1 and active[0][0] in (1, 2)

        # a version trained by this (fourth) process, activated through the first server, is what
        # the other two answer with once their lookups are at most LOOKUP_SECONDS old
        version = train.train_version(lake, M, "tester").version
        api0 = Client(servers[0][0], "owner", activates=False)
        assert api0.send("activate", f"/versions/{version}/activate", {"reason": "new", "force": True}, 200)
        time.sleep(predict.LOOKUP_SECONDS + 0.5)
        for api, _ in servers:
            answer = Client(api, "check", activates=False).send("predict", "/predict", {"texts": ["很好"]}, 200)
            assert answer["predictions"][0]["version"] == version
    finally:
        for _, proc in servers:
            proc.terminate()
        for _, proc in servers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
