"""Chaos on a DuckLake: three servers with clients while one server is killed (kill -9) and the
PostgreSQL catalog stops for --outage seconds, then comes back.

    python bench/chaos_lake.py [--clients 2] [--outage 15] [--before 15] [--after 20]

A throwaway PostgreSQL cluster on loopback (as the tests start one) holds the catalog; a small demo
store (the tests' seeded size) is migrated into it. Each server gets --clients clients that predict one
text after another (business line "chaos") and read the model. Timeline: traffic for --before seconds,
kill -9 server 0, stop the catalog (pg_ctl -m immediate) for --outage seconds, start it again, traffic
for --after seconds, then server 0 is started again. It prints:

  answered = logged      every prediction answered 200 is in the store (and how many the killed
                         server logged without its answer reaching the client)
  5xx other than 503     answers that are the server's fault without saying so (must be 0)
  tracebacks in the logs (must be 0)
  /health after return   seconds from the catalog's return until each live server answers 200
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import requests

from _common import ROOT, header
from api_load import free_port, wait_healthy
from core import demo, migrate
from core.store import Store

sys.path.insert(0, str(ROOT / "tests"))
import pgcluster  # noqa: E402

HOST = "127.0.0.1"
LINE = "chaos"
M = demo.MODEL


def start_server(lake: Store, log_path: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "MMS_STORE": lake.url, "MMS_DATA_PATH": lake.data_path, "MMS_COMPACT_SECONDS": "20"}
    port = free_port()
    with open(log_path, "a") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                                 "--server.address", HOST, "--server.headless", "true",
                                 "--browser.gatherUsageStats", "false"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://{HOST}:{port}/api"


class Client(threading.Thread):
    """Predicts one text after another on one server, and reads the model every fifth time."""

    def __init__(self, base: str, me: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.base, self.me, self.stop = f"{base}/models/{quote(M)}", me, stop
        self.answered: list[int] = []
        self.statuses: Counter = Counter()
        self.unanswered = 0  # connection refused or dropped: no HTTP answer at all
        self.wrong: list[str] = []  # 5xx other than 503 (and 507), with their bodies

    def run(self) -> None:
        i = 0
        session = requests.Session()
        while not self.stop.is_set():
            i += 1
            try:
                if i % 5 == 0:
                    r = session.get(self.base, timeout=30)
                else:
                    r = session.post(f"{self.base}/predict", json={"texts": [f"{self.me}的第{i}条评论，还可以"],
                                                                   "business_line": LINE}, timeout=30)
            except requests.RequestException:
                self.unanswered += 1
                time.sleep(0.2)
                continue
            self.statuses[r.status_code] += 1
            if r.status_code == 200 and i % 5:
                self.answered.append(r.json()["predictions"][0]["prediction_id"])
            elif r.status_code >= 500 and r.status_code not in (503, 507):
                self.wrong.append(f"{r.status_code} {r.text[:200]}")
            elif r.status_code in (503, 507):
                time.sleep(min(float(r.headers.get("Retry-After", "1")), 1.0))


def health(base: str) -> int | None:
    try:
        return requests.get(f"{base}/health", timeout=2).status_code
    except requests.RequestException:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2, help="clients per server")
    parser.add_argument("--outage", type=float, default=15, help="seconds the catalog is down")
    parser.add_argument("--before", type=float, default=15, help="seconds of traffic before the kill and outage")
    parser.add_argument("--after", type=float, default=20, help="seconds of traffic after the catalog is back")
    args = parser.parse_args()
    header("DuckLake chaos: 3 servers, one killed, the catalog down for a while")
    folder = Path(tempfile.mkdtemp(prefix="mms-chaos-"))
    cluster = pgcluster.Cluster().start()
    servers: list[tuple[subprocess.Popen, str]] = []
    try:
        seed = Store(folder / "seed" / "mms.duckdb")
        demo.build_store(seed, n_train=400, n_test=150, n_traffic=500, weeks=2, label_share=0.1)
        lake = Store(cluster.create_db("chaos"), str(folder / "lake") + "/")
        migrate.migrate(seed, lake, "bench")
        logs = [folder / f"server{n}.log" for n in range(3)]
        servers = [start_server(lake, log) for log in logs]
        for proc, base in servers:
            wait_healthy(base, proc, timeout=300)
        print(f"3 servers ready; {args.clients} clients each; load average {os.getloadavg()[0]:.1f}")

        stop = threading.Event()
        clients = [Client(base, f"s{n}c{k}", stop) for n, (_, base) in enumerate(servers) for k in range(args.clients)]
        for c in clients:
            c.start()
        time.sleep(args.before)
        os.killpg(servers[0][0].pid, signal.SIGKILL)
        servers[0][0].wait()
        print(f"t={args.before:.0f} s: server 0 killed (kill -9)")
        time.sleep(1)
        pgcluster.pause(cluster)
        down_load = os.getloadavg()[0]
        print(f"catalog stopped for {args.outage:.0f} s (load average {down_load:.1f})")
        time.sleep(args.outage)
        pgcluster.resume(cluster)
        back = time.monotonic()
        recovered: dict[int, float | None] = {}
        while len(recovered) < 2 and time.monotonic() - back < 120:
            for n in (1, 2):
                if n not in recovered and health(servers[n][1]) == 200:
                    recovered[n] = time.monotonic() - back
            time.sleep(0.1)
        print("catalog back; /health 200 after: " + ", ".join(
            f"server {n} {recovered[n]:.1f} s" if n in recovered else f"server {n} NOT within 120 s" for n in (1, 2)))
        time.sleep(max(0.0, args.after - (time.monotonic() - back)))
        servers[0] = start_server(lake, logs[0])
        began = time.monotonic()
        wait_healthy(servers[0][1], servers[0][0], timeout=300)
        print(f"server 0 started again, answering after {time.monotonic() - began:.1f} s")
        time.sleep(3)
        stop.set()
        for c in clients:
            c.join(timeout=60)

        answered = [pid for c in clients for pid in c.answered]
        with lake.connect() as con:
            logged = {r[0] for r in con.execute("SELECT prediction_id FROM predictions WHERE business_line = ?",
                                                [LINE]).fetchall()}
        statuses = sum((c.statuses for c in clients), Counter())
        wrong = [w for c in clients for w in c.wrong]
        tracebacks = sum(log.read_text(errors="replace").count("Traceback") for log in logs)
        missing = set(answered) - logged
        print(f"requests answered: {dict(sorted(statuses.items()))}; no answer (killed server, refused or dropped): "
              f"{sum(c.unanswered for c in clients)}")
        print(f"answered = logged: {'yes' if not missing and len(set(answered)) == len(answered) else 'NO'} "
              f"({len(answered)} answered, {len(missing)} of them not logged; {len(logged - set(answered))} logged "
              f"without an answer reaching a client)")
        print(f"5xx other than 503/507: {len(wrong)}" + (f" e.g. {wrong[0]}" if wrong else ""))
        print(f"503 answers (with a sentence and Retry-After): {statuses.get(503, 0)}")
        print(f"tracebacks in the logs: {tracebacks}")
        worst = max(recovered.values()) if len(recovered) == 2 else None
        print(f"every live server answering /health within 10 s of the catalog's return: "
              f"{'yes' if worst is not None and worst <= 10 else 'NO'} (slowest {worst if worst is None else round(worst, 1)} s)")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}; logs in {folder}")
    finally:
        for proc, _ in servers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _ in servers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        cluster.stop()


if __name__ == "__main__":
    main()
