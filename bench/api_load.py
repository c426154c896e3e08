"""The serving path over loopback, through a real `streamlit run app.py` (issue 17's targets).

    python bench/api_load.py [--seconds 20] [--clients 8] [--store /tmp/mms-bench-stats/v2-1000000/bench.duckdb]

Builds a demo store in a temporary folder (or copies --store there, with its artifacts folder: a
stats_scale store of 1M predictions, so that the log the server appends to is realistic), measures bare jieba.lcut on one core over the texts
the clients send, starts the server on a free loopback port, then in turn: batches of 1 text
from --clients clients (requests/s, p50/p99), batches of 100 (texts/s against bare jieba), and two
clients while the command line trains and force-activates a version through the server (rate
before and during, refusals). Stops the server and compares predictions answered with logged.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import quote, urlsplit

import numpy as np
import requests

from _common import ROOT, header, record
from core import demo
from core.store import Store

sys.path.insert(0, str(ROOT / "tests"))
import storeprobe  # noqa: E402  (row counts before and after: a read the product itself never needs)

HOST = "127.0.0.1"  # loopback only, always
JIEBA_CPU_MS = float("nan")


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
    """One client on one kept-alive connection: http.client, not requests, whose own ~1 ms of CPU per
    call the server would lose on these 2 shared cores."""
    rng = random.Random(seed)
    url = urlsplit(base)
    path = f"{url.path}/models/{quote(model)}/predict"
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    while time.monotonic() < stop_at():
        picked = rng.sample(range(len(texts)), batch)
        body = json.dumps({"texts": [texts[i] for i in picked], "business_line": "bench"})
        start = time.perf_counter()
        try:
            connection.request("POST", path, body=body.encode(), headers={"Content-Type": "application/json"})
            r = connection.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException) as e:
            results.add("predict", type(e).__name__, time.perf_counter() - start)
            connection.close()
            continue
        seconds = time.perf_counter() - start
        answers = json.loads(data).get("predictions", []) if r.status == 200 else []
        results.add("predict", r.status, seconds, len(answers), batch)
        for i, a in zip(picked, answers):
            if to_label is not None and rng.random() < 0.2:
                to_label.put((a["prediction_id"], i))


def warm_up(base: str, texts: list[str], results: Results) -> float:
    """A prediction before the clock starts, so that the figures are for a warm server (a batch of 100
    starts the worker processes that tokenise large requests)."""
    start = time.perf_counter()
    r = requests.post(f"{base}/models/{demo.MODEL}/predict", json={"texts": texts}, timeout=120)
    r.raise_for_status()
    with results.lock:
        results.answered += len(r.json()["predictions"])
    return time.perf_counter() - start


def pct(values, q) -> str:
    return f"{np.percentile(values, q) * 1000:7.1f} ms" if values else "      – "


def bare_jieba_rate(texts: list[str]) -> float:
    """Texts per second of jieba.lcut alone, one core, on `texts` (the dictionary loaded first)."""
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    start, cpu = time.perf_counter(), time.process_time()
    for t in texts:
        jieba.lcut(t)
    global JIEBA_CPU_MS  # per text, in CPU time: the batch-100 phase's server CPU per text is compared with it
    JIEBA_CPU_MS = (time.process_time() - cpu) / len(texts) * 1000
    return len(texts) / (time.perf_counter() - start)


def run_phase(base, texts, batch, clients, seconds, results: Results, during=None) -> float:
    """`clients` predictors sending `batch` texts each for `seconds` (or while `during()` runs); elapsed."""
    stop_at = time.monotonic() + (seconds if during is None else 3600)
    threads = [threading.Thread(target=predictor, args=(base, demo.MODEL, texts, batch, 100 * batch + i,
                                                        lambda: stop_at, results, None))
               for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    if during is not None:
        during()
        stop_at = time.monotonic()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def profile(proc: subprocess.Popen, out: Path, seconds: float) -> subprocess.Popen:
    """py-spy on the server (every thread, idle ones left out) for `seconds`, as collapsed stacks."""
    return subprocess.Popen(["py-spy", "record", "--pid", str(proc.pid), "--duration", str(max(1, int(seconds))),
                             "--format", "raw", "--output", str(out), "--nonblocking", "--threads"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cpu_of(pgid: int, leader: int) -> tuple[float, float]:
    """CPU seconds so far of the group's leader (the server, or the serve command) and of the rest."""
    mine = rest = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            if int(stat.parent.name) == leader:
                mine += seconds
            else:
                rest += seconds
    return mine, rest


def group_cpu(pgid: int) -> float:
    """CPU seconds used so far by the server's process group (the server and its tokenising workers):
    per request, a figure that CPU contention from other work moves much less than a rate."""
    return sum(cpu_of(pgid, pgid))


def cli(store: Store, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MMS_STORE": str(store.path), "PYTHONPATH": str(ROOT)})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20, help="length of each load phase (default 20)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients sending one text each (default 8)")
    p.add_argument("--traffic", type=int, default=2000, help="demo traffic rows in the temporary store")
    p.add_argument("--profile", type=Path, help="py-spy the server during the batch-1 phase into this file "
                                                "(collapsed stacks, one per line with its sample count)")
    p.add_argument("--store", type=Path, help="copy this store (and its artifacts folder) instead of building one")
    p.add_argument("--only-batch1", action="store_true", help="measure the batch-1 phase only (for A/B runs)")
    args = p.parse_args(argv)
    if not 0 < args.seconds <= 600 or not 1 <= args.clients <= 64:
        p.error("--seconds must be in (0, 600] and --clients in [1, 64]")

    header("the serving path: HTTP API under load, and the command line through the server")
    reviews = demo.load_reviews().sample(frac=1.0, random_state=1).reset_index(drop=True).iloc[:5000]
    texts = reviews["text"].tolist()
    jieba_rate = bare_jieba_rate(texts)
    print(f"bare jieba.lcut, one core, the {len(texts)} texts the clients send: {jieba_rate:,.0f} texts/s")
    results: dict[str, Results] = {}
    with tempfile.TemporaryDirectory(prefix="mms-bench-") as tmp:
        store = Store(Path(tmp) / "mms.duckdb")
        t0 = time.perf_counter()
        if args.store:
            shutil.copyfile(args.store, store.path)
            shutil.copytree(args.store.parent / "artifacts", store.artifacts_dir)
            print(f"store: a copy of {args.store}, made in {time.perf_counter() - t0:.1f} s")
        else:
            demo.build_store(store, n_train=3000, n_test=1000, n_traffic=args.traffic, weeks=2)
            print(f"store: demo model {demo.MODEL!r}, built in {time.perf_counter() - t0:.1f} s")
        with store.connect() as con:
            before = storeprobe.table_counts(con)
        print(f"store: {before['predictions']:,} predictions logged before the run")
        proc, base, how = start_server(store, free_port(), Path(tmp) / "server.log")
        try:
            wait_healthy(base, proc)
            print(f"server: {how}, API at {base}")
            warm = Results()
            print(f"first prediction: {warm_up(base, texts[:1], warm) * 1000:.0f} ms; first batch of 100: "
                  f"{warm_up(base, texts[:100], warm) * 1000:.0f} ms")
            results["warm"] = warm
            elapsed, cpu, loads = {}, {}, {}
            for name, batch, clients in (("batch 1", 1, args.clients), ("batch 100", 100, 4)):
                if name == "batch 100" and args.only_batch1:
                    break
                results[name] = Results()
                spy = profile(proc, args.profile, args.seconds) if name == "batch 1" and args.profile else None
                loads[name], started = os.getloadavg()[0], group_cpu(proc.pid)
                elapsed[name] = run_phase(base, texts, batch, clients, args.seconds, results[name])
                cpu[name] = group_cpu(proc.pid) - started
                if spy is not None:
                    spy.wait()
            if args.only_batch1:
                stop_server(proc)
                report_batch1(results["batch 1"], elapsed["batch 1"], cpu["batch 1"], loads["batch 1"])
                return 0
            results["before"] = Results()
            elapsed["before"] = run_phase(base, texts, 1, 2, min(args.seconds, 10), results["before"])
            steps = []

            def train_and_activate():
                trained = cli(store, "train", demo.MODEL, "--format", "json")
                steps.append(("train", trained))
                if trained.returncode == 0:
                    version = str(json.loads(trained.stdout)["version"])
                    steps.append(("activate", cli(store, "activate", demo.MODEL, version, "--force",
                                                  "--reason", "bench")))

            results["during"] = Results()
            elapsed["during"] = run_phase(base, texts, 1, 2, None, results["during"], during=train_and_activate)
        except Exception:
            print((Path(tmp) / "server.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            stop_server(proc)
        with store.connect() as con:
            after = storeprobe.table_counts(con)
    report(results, elapsed, steps, jieba_rate, after["predictions"] - before["predictions"])
    report_batch1(results["batch 1"], elapsed["batch 1"], cpu["batch 1"], loads["batch 1"])
    per_text = cpu["batch 100"] / max(1, 100 * len(results["batch 100"].latency[100])) * 1000
    print(f"batch 100: server CPU {per_text:.2f} ms per text against bare jieba's {JIEBA_CPU_MS:.2f} ms (texts per "
          f"CPU second {JIEBA_CPU_MS / per_text:.2f} x bare jieba's: with c free cores the texts/s ratio is about c "
          f"times that); load average "
          f"{loads['batch 100']:.1f} at the phase's start")
    return 0


def report_batch1(r: Results, seconds: float, cpu: float, load: float) -> None:
    lat = r.latency[1]
    record("api_batch1_cpu_ms", cpu / max(1, len(lat)) * 1000)
    print(f"batch 1: {len(lat) / seconds:.0f} req/s, p50 {pct(lat, 50).strip()} / p99 {pct(lat, 99).strip()}; "
          f"server CPU {cpu / max(1, len(lat)) * 1000:.2f} ms per request (its process group, every thread); "
          f"load average {load:.1f} at the phase's start")


def report(results: dict, elapsed: dict, steps, jieba_rate: float, logged: int) -> None:
    print(f"\n{'phase':<10} {'seconds':>7} {'requests':>9} {'req/s':>8} {'texts/s':>8} {'p50':>10} {'p99':>10} refused")
    for name in ("batch 1", "batch 100", "before", "during"):
        r, t = results[name], elapsed[name]
        lat = [x for values in r.latency.values() for x in values]
        texts = sum(len(v) * b for b, v in r.latency.items())
        refused = sum(n for (_, status), n in r.status.items() if status != 200)
        print(f"{name:<10} {t:>7.1f} {len(lat):>9} {len(lat) / t:>8.1f} {texts / t:>8.0f} {pct(lat, 50):>10} "
              f"{pct(lat, 99):>10} {refused}")
    one, hundred = results["batch 1"], results["batch 100"]
    lat = one.latency[1]
    record("api_batch1_rps", len(lat) / elapsed["batch 1"])
    record("api_batch1_p50_ms", float(np.percentile(lat, 50)) * 1000)
    record("api_batch1_p99_ms", float(np.percentile(lat, 99)) * 1000)
    print(f"\nAPI, 1 text, clients: {len(lat) / elapsed['batch 1']:.0f} req/s (target >= 400); "
          f"p50 {pct(lat, 50).strip()} / p99 {pct(lat, 99).strip()} (targets <= 10 / 50 ms)")
    rate100 = len(hundred.latency[100]) * 100 / elapsed["batch 100"]
    record("api_batch100_ratio", rate100 / jieba_rate)
    print(f"API, 100 texts per request: {rate100:,.0f} texts/s = {rate100 / jieba_rate:.2f} x bare jieba on one "
          f"core (target >= 0.8)")
    before = len(results["before"].latency[1]) / elapsed["before"]
    during = len(results["during"].latency[1]) / elapsed["during"]
    refused = sum(n for (_, s), n in results["during"].status.items() if s != 200)
    record("cli_refused", refused)
    record("cli_rate_ratio", during / before)
    record("cli_steps_ok", all(r.returncode == 0 for _, r in steps) and len(steps) == 2)
    print(f"while the CLI trains and activates ({', '.join(f'{n} exit {r.returncode}' for n, r in steps)}, "
          f"{elapsed['during']:.1f} s): {refused} refused (target 0); {during:.1f} vs {before:.1f} req/s before "
          f"= {during / before:.2f} x (target >= 0.5)")
    for name, r in steps:
        if r.returncode:
            print(f"  {name}: {r.stderr.strip()[-500:]}")
    answered = sum(r.answered for r in results.values())
    record("answered_logged", [answered, logged])
    print(f"predictions answered: {answered}, logged in the store: {logged} "
          f"({'equal' if answered == logged else 'DIFFERENT'})")


if __name__ == "__main__":
    sys.exit(main())
