"""DuckLake: API throughput with 1, 2 and 3 server processes on one lake, and the same statistics
query (line x day) on the embedded store and on DuckLake holding the same predictions.

    python bench/ducklake.py [--rows 1000000] [--seconds 15] [--clients 2]

The data is stats_scale's cached store of --rows predictions (built by bench/stats_scale.py when
missing), copied, then migrated into a DuckLake with `core.migrate` (a throwaway PostgreSQL
cluster on loopback, as the tests start one; the lake's Parquet under /tmp). Each throughput phase
runs --clients clients per server, each posting one request after another for --seconds, with 1
and with 100 texts per request, spread over the servers.
"""
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import requests

from _common import ROOT, header, timer
from api_load import free_port, wait_healthy
from core import demo, migrate, stats
from core.store import Store
from stats_scale import cached_store

sys.path.insert(0, str(ROOT / "tests"))
import pgcluster  # noqa: E402

HOST = "127.0.0.1"


def start_servers(lake: Store, n: int, folder: Path) -> list[tuple[subprocess.Popen, str]]:
    servers = []
    env = {**os.environ, "MMS_STORE": lake.url, "MMS_DATA_PATH": lake.data_path, "MMS_COMPACT_SECONDS": "60"}
    for i in range(n):
        port = free_port()
        log = open(folder / f"server{n}-{i}.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                                 "--server.address", HOST, "--server.headless", "true",
                                 "--browser.gatherUsageStats", "false"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        servers.append((proc, f"http://{HOST}:{port}/api"))
    for proc, base in servers:
        wait_healthy(base, proc, timeout=180)
    return servers


def stop_servers(servers) -> None:
    for proc, _ in servers:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc, _ in servers:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def load(bases: list[str], batch: int, clients: int, seconds: float) -> tuple[float, float, int]:
    """(texts per second, requests per second, refusals) of `clients` clients per server."""
    answered, requests_done, refused = [0], [0], [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(base: str, me: int) -> None:
        url = f"{base}/models/{quote(demo.MODEL)}/predict"
        session, i = requests.Session(), 0
        while time.monotonic() < stop_at:
            i += 1
            texts = [f"客户端{me}的第{i}-{k}条：房间干净，服务一般" for k in range(batch)]
            r = session.post(url, json={"texts": texts, "business_line": "bench"}, timeout=120)
            with lock:
                if r.status_code == 200:
                    answered[0] += batch
                    requests_done[0] += 1
                else:
                    refused[0] += 1

    threads = [threading.Thread(target=client, args=(base, k * 100 + j))
               for k, base in enumerate(bases) for j in range(clients)]
    with timer() as t:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    return answered[0] / t.seconds, requests_done[0] / t.seconds, refused[0]


def time_stats(store: Store, later: int = 3) -> tuple[float, float]:
    """Seconds of the first line x day statistics with the store open, and the median of `later` more."""
    with store.connect():  # held open, as a server holds its store
        with timer() as first:
            stats.stats_by_line_and_period(store, demo.MODEL, "day")
        times = []
        for _ in range(later):
            with timer() as t:
                stats.stats_by_line_and_period(store, demo.MODEL, "day")
            times.append(t.seconds)
    return first.seconds, statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000, help="predictions in the store (stats_scale's cache)")
    p.add_argument("--seconds", type=float, default=15, help="length of each throughput phase")
    p.add_argument("--clients", type=int, default=2, help="clients per server")
    args = p.parse_args()
    header(f"DuckLake: 1-3 servers, and statistics at {args.rows:,} predictions on both backends")
    work = Path(tempfile.mkdtemp(prefix="mms-bench-lake-"))
    cluster = pgcluster.Cluster().start()
    try:
        cached = cached_store(args.rows, rebuild=False)
        embedded = Store(work / "embedded" / "mms.duckdb")  # a copy: the cache may be open in another bench
        shutil.copytree(cached.path.parent, embedded.path.parent, ignore=shutil.ignore_patterns("complete"))
        (embedded.path.parent / cached.path.name).rename(embedded.path)
        lake = Store(cluster.create_db("benchlake"), str(work / "lake") + "/")
        with timer() as t:
            done = migrate.migrate(embedded, lake, "bench")
        print(f"migrated {done.rows['predictions']:,} predictions into DuckLake in {t.seconds:.0f} s")

        e_first, e_later = time_stats(embedded)
        l_first, l_later = time_stats(lake)
        print(f"stats line x day, embedded: first {e_first:.3f} s, later median {e_later:.3f} s")
        print(f"stats line x day, DuckLake: first {l_first:.3f} s, later median {l_later:.3f} s")
        print(f"  DuckLake / embedded: first {l_first / e_first:.2f}x, later {l_later / e_later:.2f}x")

        rates: dict[tuple[int, int], float] = {}
        for n in (1, 2, 3):
            servers = start_servers(lake, n, work)
            try:
                load([b for _, b in servers], 100, 1, 3)  # warm-up: worker processes and model lookups
                for batch in (1, 100):
                    texts, reqs, refused = load([b for _, b in servers], batch, args.clients, args.seconds)
                    rates[n, batch] = texts
                    print(f"{n} server(s), {n * args.clients} clients, {batch:>3} text(s)/request: "
                          f"{texts:8.0f} texts/s, {reqs:6.1f} requests/s, {refused} refused", flush=True)
            finally:
                stop_servers(servers)
        for batch in (1, 100):
            print(f"  {batch:>3} text(s)/request, 2 servers / 1: {rates[2, batch] / rates[1, batch]:.2f}x, "
                  f"3 / 1: {rates[3, batch] / rates[1, batch]:.2f}x")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
