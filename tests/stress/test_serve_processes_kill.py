"""Serving processes killed mid-traffic (kill -9): a request a killed process had not answered is simply
not answered, every answered prediction is in the log, the pool starts another process in its place,
and a killed server takes its serving processes with it, having logged everything they answered."""
import contextlib
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import duckdb
import pytest

from core import demo
from servers import free_port, post_json, start_server, status, stop_server, wait_ready



def serving_pids(base: str, tries: int = 40) -> set[int]:
    """The serving processes that answered `tries` new connections' health checks."""
    pids = set()
    for _ in range(tries):
        try:
            with urllib.request.urlopen(f"{base}/api/health", timeout=10) as r:
                pids.add(int(r.headers["X-MMS-Serving-Process"]))
        except OSError:
            pass  # a process killed a moment ago: its place is being taken
    return pids


def wait_serving(base: str, seconds: float = 90) -> None:
    """Wait until both serving processes answer on `base`."""
    deadline = time.monotonic() + seconds
    while status(f"{base}/api/health") != 200 or len(serving_pids(base, 20)) < 2:
        assert time.monotonic() < deadline, f"two serving processes do not answer on {base}"
        time.sleep(0.3)

M = demo.MODEL
LINE = "kill-serving"
TRAFFIC_SECONDS = 24  # bounded: the test sends for this long, however fast the machine is


class Clients:
    def __init__(self, base: str, n: int = 8):
        self.base, self.n = base, n
        self.answered: dict[int, str] = {}
        self.refused: list[tuple[int, dict]] = []
        self.lost = 0  # connections a killed process dropped: not answered, so nothing is promised
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(k,)) for k in range(n)]

    def _run(self, me: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            text = f"顾客{me}第{i}次说：还不错"
            try:
                code, body = post_json(f"{self.base}/api/models/{quote(M)}/predict",
                                       {"texts": [text], "business_line": LINE}, timeout=30)
            except (OSError, ValueError):
                self.lost += 1
                time.sleep(0.05)
                continue
            if code == 200:
                self.answered[body["predictions"][0]["prediction_id"]] = text
            elif code == 503:  # the server is stopping or gone: refused, nothing answered
                self.refused.append((code, body))
            else:
                raise AssertionError((code, body))

    def answering(self, seconds: float = 120) -> None:
        """Wait until the serving processes answer (each loads the model on its first request)."""
        deadline = time.monotonic() + seconds
        while not self.answered:
            assert time.monotonic() < deadline, f"nothing answered: {self.refused[:3]}, {self.lost} lost"
            time.sleep(0.2)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)


def in_log(store, ids) -> dict[int, str]:
    with duckdb.connect(str(store.path)) as con:  # the server is gone: its WAL is replayed here
        rows = con.execute("SELECT prediction_id, text FROM predictions WHERE business_line = ?", [LINE]).fetchall()
    return {pid: text for pid, text in rows if pid in ids}


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def two_serving_processes(store_path: Path, tmp_path: Path):
    """`streamlit run app.py` with two serving processes on their own port: yields (their base URL, the
    server's process), stopped at the end however the test ends."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    url, proc = start_server({"MMS_STORE": str(store_path), "MMS_SERVING_PROCESSES": "2",
                              "MMS_SERVING_PORT": str(port)}, log)
    try:
        wait_ready(url, proc, log)
        wait_serving(base)
        yield base, proc
    finally:
        stop_server(proc)


@pytest.mark.stress
def test_killed_serving_processes_lose_no_answered_prediction_and_are_replaced(seeded_store, tmp_path):
    with two_serving_processes(seeded_store.path, tmp_path) as (base, proc):
        killed = []
        with Clients(base) as clients:
            clients.answering()
            for _ in range(2):
                time.sleep(TRAFFIC_SECONDS / 3)
                victim = sorted(serving_pids(base, 10))[0]
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
            time.sleep(TRAFFIC_SECONDS / 3)
            before = len(clients.answered)
            deadline = time.monotonic() + 60
            while len(clients.answered) == before and time.monotonic() < deadline:
                time.sleep(0.5)
        assert len(clients.answered) > before  # still answering after both kills
        deadline = time.monotonic() + 60
        while not (now := serving_pids(base, 20)) or now & set(killed) or len(now) < 2:
            assert time.monotonic() < deadline, f"the pool did not replace {killed}: {now}"
            time.sleep(0.5)
        assert clients.refused == []
    assert in_log(seeded_store, set(clients.answered)) == clients.answered


@pytest.mark.stress
def test_a_killed_server_takes_its_serving_processes_and_logged_all_they_answered(seeded_store, tmp_path):
    with two_serving_processes(seeded_store.path, tmp_path) as (base, proc):
        pids = serving_pids(base)
        with Clients(base) as clients:
            clients.answering()
            time.sleep(TRAFFIC_SECONDS / 3)
            proc.kill()
            proc.wait()
            deadline = time.monotonic() + 30
            while any(alive(pid) for pid in pids):
                assert time.monotonic() < deadline, "serving processes outlived their server"
                time.sleep(0.2)
    assert clients.answered
    assert in_log(seeded_store, set(clients.answered)) == clients.answered
