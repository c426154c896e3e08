"""Load on the HTTP API over loopback: predictors in batches of 1 and 32 while a labeller labels.

    python bench/api_load.py [--seconds 60] [--clients 8] [--label-rate 20]

Builds a small demo store in a temporary folder, starts the real server on a free loopback port
(`streamlit run app.py` when app.py serves the API, else uvicorn on core.api alone), runs for a
bounded time, stops the server, and prints requests per second, p50/p99 latency per batch size,
and the predictions logged in the store (read through core afterwards) against those answered.
"""
from __future__ import annotations

import argparse
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import requests

from _common import ROOT, header
from core import demo
from core.store import Store

sys.path.insert(0, str(ROOT / "tests"))
import storeprobe  # noqa: E402  (row counts before and after: a read the product itself never needs)

HOST = "127.0.0.1"  # loopback only, always


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def app_serves_api() -> bool:
    """Whether `streamlit run app.py` would serve an ASGI app (st.App with the API) from app.py."""
    from streamlit.web.server.app_discovery import discover_asgi_app

    return discover_asgi_app(ROOT / "app.py").is_asgi_app


def start_server(store: Store, port: int, log_path: Path) -> tuple[subprocess.Popen, str, str]:
    """The server process, its API base URL, and how it was started."""
    env = {**os.environ, "MMS_STORE": str(store.path)}
    if app_serves_api():
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
               "--server.address", HOST, "--server.headless", "true", "--browser.gatherUsageStats", "false"]
        base, how = f"http://{HOST}:{port}/api", "streamlit run app.py (dashboard + API, one process)"
    else:
        cmd = [sys.executable, "-m", "uvicorn", "core.api:create_app", "--factory", "--host", HOST,
               "--port", str(port), "--log-level", "warning"]
        base, how = f"http://{HOST}:{port}", "uvicorn core.api:create_app (app.py does not serve the API yet)"
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, base, how


def wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            if requests.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server not healthy after {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency = defaultdict(list)  # batch size -> seconds, answered requests only
        self.status = Counter()           # (kind, status code or error name)
        self.answered = 0                 # predictions returned in 200 answers
        self.labelled = 0
        self.label_latency: list[float] = []

    def add(self, kind: str, status, seconds: float, answered: int = 0, batch: int | None = None) -> None:
        with self.lock:
            self.status[(kind, status)] += 1
            if status in (200, 201):
                if kind == "predict":
                    self.latency[batch].append(seconds)
                    self.answered += answered
                else:
                    self.labelled += 1
                    self.label_latency.append(seconds)


def predictor(base, model, texts, batch, seed, stop_at, results, to_label):
    rng = random.Random(seed)
    session = requests.Session()
    while time.monotonic() < stop_at:
        picked = rng.sample(range(len(texts)), batch)
        body = {"texts": [texts[i] for i in picked], "business_line": "bench"}
        start = time.perf_counter()
        try:
            r = session.post(f"{base}/models/{model}/predict", json=body, timeout=30)
        except requests.RequestException as e:
            results.add("predict", type(e).__name__, time.perf_counter() - start)
            continue
        seconds = time.perf_counter() - start
        answers = r.json().get("predictions", []) if r.status_code == 200 else []
        results.add("predict", r.status_code, seconds, len(answers), batch)
        for i, a in zip(picked, answers):
            if rng.random() < 0.2:
                to_label.put((a["prediction_id"], i))


def labeller(base, model, labels, rate, stop_at, results, to_label):
    session = requests.Session()
    pause = 1.0 / rate
    while time.monotonic() < stop_at:
        try:
            prediction_id, i = to_label.get(timeout=0.2)
        except queue.Empty:
            continue
        start = time.perf_counter()
        try:
            r = session.post(f"{base}/models/{model}/feedback",
                             json={"prediction_id": prediction_id, "label": labels[i]}, timeout=30)
            results.add("feedback", r.status_code, time.perf_counter() - start)
        except requests.RequestException as e:
            results.add("feedback", type(e).__name__, time.perf_counter() - start)
        time.sleep(pause)


def warm_up(base: str, text: str, results: Results) -> float:
    """One prediction before the clock starts, so that the figures are for a warm server."""
    start = time.perf_counter()
    r = requests.post(f"{base}/models/{demo.MODEL}/predict", json={"texts": [text]}, timeout=60)
    r.raise_for_status()
    with results.lock:
        results.answered += len(r.json()["predictions"])
    return time.perf_counter() - start


def pct(values, q) -> str:
    return f"{np.percentile(values, q) * 1000:7.1f} ms" if values else "      – "


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60, help="length of the load (default 60)")
    p.add_argument("--clients", type=int, default=8, help="concurrent predictors, half send 1 text, half 32")
    p.add_argument("--label-rate", type=float, default=20, help="labels per second the labeller sends at most")
    p.add_argument("--traffic", type=int, default=2000, help="demo traffic rows in the temporary store")
    args = p.parse_args(argv)
    if not 0 < args.seconds <= 600 or not 1 <= args.clients <= 64:
        p.error("--seconds must be in (0, 600] and --clients in [1, 64]")

    header("HTTP API under load")
    reviews = demo.load_reviews().sample(frac=1.0, random_state=1).reset_index(drop=True).iloc[:5000]
    texts, labels = reviews["text"].tolist(), reviews["label"].tolist()
    with tempfile.TemporaryDirectory(prefix="mms-bench-") as tmp:
        store = Store(Path(tmp) / "mms.duckdb")
        t0 = time.perf_counter()
        demo.build_store(store, n_train=3000, n_test=1000, n_traffic=args.traffic, weeks=2)
        print(f"store: demo model {demo.MODEL!r}, built in {time.perf_counter() - t0:.1f} s at {store.path}")
        with store.connect() as con:
            before = storeprobe.table_counts(con)

        proc, base, how = start_server(store, free_port(), Path(tmp) / "server.log")
        results, to_label = Results(), queue.Queue()
        try:
            wait_healthy(base, proc)
            print(f"server: {how}, API at {base}")
            first = warm_up(base, texts[0], results)
            print(f"first prediction (loads the model file and jieba's dictionary): {first * 1000:.0f} ms")
            print(f"load: {args.seconds:.0f} s, {args.clients} predictors (batches of 1 and 32), "
                  f"1 labeller at <= {args.label_rate:.0f}/s")
            stop_at = time.monotonic() + args.seconds
            threads = [threading.Thread(target=predictor, args=(base, demo.MODEL, texts, 1 if i % 2 == 0 else 32,
                                                                i, stop_at, results, to_label))
                       for i in range(args.clients)]
            threads.append(threading.Thread(target=labeller, args=(base, demo.MODEL, labels, args.label_rate,
                                                                   stop_at, results, to_label)))
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - started
        except Exception:
            print((Path(tmp) / "server.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            stop_server(proc)

        with store.connect() as con:
            after = storeprobe.table_counts(con)
        failed = sum(n for (_, status), n in results.status.items() if status not in (200, 201))
        if failed:
            print(f"{failed} requests failed; the server's log ends with:\n"
                  + (Path(tmp) / "server.log").read_text()[-4000:], file=sys.stderr)
    report(results, elapsed, after["predictions"] - before["predictions"], after["feedback"] - before["feedback"])
    return 0


def report(results: Results, elapsed: float, logged: int, feedback_logged: int) -> None:
    predict_requests = sum(n for (kind, _), n in results.status.items() if kind == "predict")
    print(f"\nran {elapsed:.1f} s")
    print(f"{'requests':>10} {'req/s':>8} {'texts/s':>8} {'p50':>10} {'p99':>10}  kind")
    for batch in sorted(results.latency):
        lat = results.latency[batch]
        print(f"{len(lat):>10} {len(lat) / elapsed:>8.1f} {len(lat) * batch / elapsed:>8.1f} {pct(lat, 50):>10} "
              f"{pct(lat, 99):>10}  predict, batch of {batch}")
    print(f"{results.labelled:>10} {results.labelled / elapsed:>8.1f} {'':>8} {pct(results.label_latency, 50):>10} "
          f"{pct(results.label_latency, 99):>10}  feedback")
    print(f"all predict requests: {predict_requests} ({predict_requests / elapsed:.1f}/s)")
    print("answers by status:", ", ".join(f"{k} {s}: {n}" for (k, s), n in sorted(results.status.items(), key=str)))
    same = "equal" if logged == results.answered else "DIFFERENT"
    print(f"predictions answered: {results.answered}, logged in the store: {logged} ({same})")
    same = "equal" if feedback_logged == results.labelled else "DIFFERENT"
    print(f"labels accepted: {results.labelled}, recorded in the store: {feedback_logged} ({same})")


if __name__ == "__main__":
    sys.exit(main())
