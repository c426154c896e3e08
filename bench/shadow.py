"""Serving latency with a version in shadow against without one, through a real `streamlit run app.py`.

    python bench/shadow.py [--seconds 20] [--clients 4] [--rounds 2]

Builds a demo store in a temporary folder and trains a second version (not activated). Then, in
turns (off, on, off, on, ...: the machine's load drifts, so the two settings alternate), starts the
server with no version in shadow or with version 2 in shadow, sends batches of 1 text from
--clients clients for --seconds, and stops it. Prints per phase and per setting p50/p99 latency,
requests/s, the machine's load average, how many predictions the shadow scored while the clients
ran and how many it had left when they stopped; and checks that predictions answered = logged.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

from _common import ROOT, header, record
from api_load import Results, free_port, pct, predictor, start_server, stop_server, wait_healthy
from core import demo, shadow, train
from core.store import Store

sys.path.insert(0, str(ROOT / "tests"))
import storeprobe  # noqa: E402  (row counts before and after: a read the product itself never needs)


def phase(store: Store, texts: list[str], on: bool, clients: int, seconds: float, folder: Path) -> dict:
    """One server life: shadow on or off, warm-up, `clients` clients for `seconds`; its figures."""
    if on:
        shadow.start(store, demo.MODEL, 2, "bench")
    else:
        shadow.stop(store, demo.MODEL, "bench")
    with store.connect() as con:
        logged_before = storeprobe.prediction_count(con)
    scored_before = shadow.scored_since(store, demo.MODEL, "2000-01-01") if on else 0
    proc, base, _ = start_server(store, free_port(), folder / f"server-{time.monotonic_ns()}.log")
    results = Results()
    try:
        wait_healthy(base, proc)
        warm = requests.post(f"{base}/models/{demo.MODEL}/predict", json={"texts": texts[:20]}, timeout=120)
        warm.raise_for_status()
        results.answered += len(warm.json()["predictions"])
        time.sleep(shadow.SCORER_START_SECONDS + 2)  # the shadow's first look, and its worker started
        load_start = os.getloadavg()[0]
        stop_at = time.monotonic() + seconds
        threads = [threading.Thread(target=predictor, args=(base, demo.MODEL, texts, 1, 7 * i + on,
                                                             lambda: stop_at, results, None))
                   for i in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        load_end = os.getloadavg()[0]
    finally:
        stop_server(proc)
    with store.connect() as con:
        logged = storeprobe.prediction_count(con) - logged_before
    latency = results.latency[1]
    return {"on": on, "p50": float(np.percentile(latency, 50)), "p99": float(np.percentile(latency, 99)),
            "rate": len(latency) / elapsed, "answered": results.answered, "logged": logged,
            "scored": (shadow.scored_since(store, demo.MODEL, "2000-01-01") - scored_before) if on else 0,
            "left": shadow.pending(store, demo.MODEL) if on else 0, "load": (load_start + load_end) / 2,
            "latency": latency}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    header("Serving latency with a version in shadow, against without one")
    folder = Path(tempfile.mkdtemp(prefix="mms-bench-shadow-"))
    try:
        store = Store(folder / "bench.duckdb")
        demo.build_store(store, n_train=3000, n_test=1000, n_traffic=20000, weeks=2)
        train.train_version(store, demo.MODEL, "bench", model_config={"estimator": "complement_nb"}, activate=False)
        texts = demo.load_reviews().sample(frac=1.0, random_state=3).reset_index(drop=True)["text"].iloc[:3000].tolist()
        print(f"store: demo, 20,000 logged predictions; version 1 answers, version 2 (complement NB) is the shadow")
        print(f"{args.clients} clients, 1 text per request, {args.seconds:.0f} s per phase, settings alternating\n")
        print("phase  shadow   p50        p99        req/s   load   answered  logged  shadow scored  left")
        phases = []
        for i in range(args.rounds * 2):
            p = phase(store, texts, i % 2 == 1, args.clients, args.seconds, folder)
            phases.append(p)
            print(f"{i + 1:5d}  {'on ' if p['on'] else 'off'}   {p['p50'] * 1000:7.1f} ms {p['p99'] * 1000:7.1f} ms "
                  f"{p['rate']:7.1f}  {p['load']:5.1f}  {p['answered']:8d}  {p['logged']:6d}  {p['scored']:13d}  "
                  f"{p['left']:4d}")
        off = [x for p in phases if not p["on"] for x in p["latency"]]
        on = [x for p in phases if p["on"] for x in p["latency"]]
        ratio = np.percentile(on, 50) / np.percentile(off, 50)
        print(f"\nall phases: p50 off {pct(off, 50)}, on {pct(on, 50)}: on/off {ratio:.3f} "
              f"(target within 10 %: {'met' if ratio <= 1.10 else 'missed'}); p99 off {pct(off, 99)}, on {pct(on, 99)}")
        print(f"answered = logged in every phase: {all(p['answered'] == p['logged'] for p in phases)}")
        print(f"load average over the phases: {np.mean([p['load'] for p in phases]):.1f} "
              f"(the machine is shared; {os.cpu_count()} cores)")
        record("shadow_p50_ratio", round(float(ratio), 3))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
