"""A DuckLake's PostgreSQL catalog stops for 15 s under two running servers with clients (issue 27, items
7-9): every answer is 200 or a 503 with a sentence and Retry-After, never another 5xx; nothing answered
is lost; the servers' logs hold no traceback; both answer /health again once the catalog is back."""
import threading
import time
from collections import Counter
from urllib.parse import quote

import pytest
import requests

import pgcluster
from core import demo, migrate
from lakefixtures import new_lake
from servers import start_server, stop_server

M = demo.MODEL
LINE = "outage"
OUTAGE_SECONDS = 15


def _health(api: str) -> int | None:
    try:
        return requests.get(f"{api}/health", timeout=5).status_code
    except requests.RequestException:
        return None


class Client(threading.Thread):
    def __init__(self, api: str, me: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.url, self.me, self.stop = f"{api}/models/{quote(M)}", me, stop
        self.answered: list[int] = []
        self.statuses: Counter = Counter()
        self.wrong: list[str] = []

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                r = requests.post(f"{self.url}/predict", json={"texts": [f"{self.me}第{i}条"], "business_line": LINE},
                                  timeout=60)
            except requests.RequestException as e:
                self.wrong.append(f"no answer: {e}")
                continue
            self.statuses[r.status_code] += 1
            if r.status_code == 200:
                self.answered.append(r.json()["predictions"][0]["prediction_id"])
            elif r.status_code == 503 and r.json().get("error") and r.headers.get("Retry-After"):
                time.sleep(0.2)
            else:
                self.wrong.append(f"{r.status_code} {r.text[:300]}")


@pytest.mark.stress
def test_servers_ride_out_their_catalog_stopping_for_15_seconds(seeded_store, tmp_path):
    if pgcluster.pg_bin() is None:
        pytest.skip("PostgreSQL is not installed")
    cluster = pgcluster.Cluster().start()  # its own: this test stops it
    procs = []
    try:
        lake = new_lake(cluster, tmp_path)
        migrate.migrate(seeded_store, lake, "tester")
        logs = [tmp_path / f"server{n}.log" for n in range(2)]
        servers = [start_server({"MMS_STORE": lake.url, "MMS_DATA_PATH": lake.data_path,
                                 "MMS_COMPACT_SECONDS": "5"}, log) for log in logs]
        procs = [proc for _, proc in servers]
        apis = [f"{url}/api" for url, _ in servers]
        deadline = time.monotonic() + 240
        while not all(_health(api) == 200 for api in apis):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), logs[0].read_text()[-2000:]
            time.sleep(0.5)
        for api in apis:  # the first prediction loads the model: before the clock starts
            warm = requests.post(f"{api}/models/{quote(M)}/predict", json={"texts": ["预热"]}, timeout=300)
            assert warm.status_code == 200, warm.text
        stop = threading.Event()
        clients = [Client(api, f"c{n}{k}", stop) for n, api in enumerate(apis) for k in range(2)]
        for c in clients:
            c.start()
        time.sleep(10)
        pgcluster.pause(cluster)
        time.sleep(OUTAGE_SECONDS)
        pgcluster.resume(cluster)
        back = time.monotonic()
        healthy = {}
        while len(healthy) < len(apis) and time.monotonic() - back < 120:
            for n, api in enumerate(apis):
                if n not in healthy and _health(api) == 200:
                    healthy[n] = time.monotonic() - back
            time.sleep(0.2)
        time.sleep(5)
        stop.set()
        for c in clients:
            c.join(timeout=90)

        assert len(healthy) == len(apis), "a server never answered /health again after the catalog's return"
        statuses = sum((c.statuses for c in clients), Counter())
        assert [w for c in clients for w in c.wrong] == []
        assert statuses[503] > 0 and statuses[200] > 0, statuses  # the outage was seen; traffic flowed around it
        answered = [pid for c in clients for pid in c.answered]
        with lake.connect() as con:
            logged = {r[0] for r in con.execute("SELECT prediction_id FROM predictions WHERE business_line = ?",
                                                [LINE]).fetchall()}
        assert set(answered) <= logged and len(set(answered)) == len(answered)
        for log in logs:
            assert "Traceback" not in log.read_text(errors="replace"), log.read_text(errors="replace")[-3000:]
        print(f"\ncatalog down {OUTAGE_SECONDS} s under 2 servers: {dict(statuses)}; {len(answered)} answered, all "
              f"logged; /health 200 again after {', '.join(f'{s:.1f} s' for s in healthy.values())}")
    finally:
        for proc in procs:
            stop_server(proc)
        cluster.stop()
