"""The Monitor's render while 8 clients predict, against its render idle, in one process as in the server.

    python bench/monitor_under_load.py [--renders 7] [--clients 8]

A demo store held and served as the server does (core/serving.py: writer, batcher, lookups); the
Monitor page rendered through AppTest (a rerun of one session, as after a click), --renders times
idle, then --renders times while --clients threads each send one-text predictions through
`predict.predict_batch` (the API's call, minus HTTP) as fast as they are answered. Prints the render
p50 both ways and their ratio (target: at most 2x), the predictions answered meanwhile, and the load.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import _apptest
from _common import header, timer
from core import demo, predict
from core.serving import Serving
from core.store import Store

TEXTS = ["质量很好，物流也快，下次还来买", "太差了，再也不买了，客服态度也不好", "一般般吧，价格还行"]


def renders(at, n: int) -> list[float]:
    seconds = []
    for _ in range(n):
        with timer() as t:
            at.run()
        _apptest.check(at)
        seconds.append(t.seconds)
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--renders", type=int, default=7)
    p.add_argument("--clients", type=int, default=8)
    args = p.parse_args(argv)
    header("the Monitor's render under prediction load, in the serving process")
    with tempfile.TemporaryDirectory(prefix="mms-monitor-load-") as tmp:
        store = Store(Path(tmp) / "mms.duckdb")
        demo.build_store(store)
        _apptest.warm_up()
        store.hold()
        serving = Serving(store).start()
        stop, answered = threading.Event(), [0]

        def client(k: int) -> None:
            i = 0
            while not stop.is_set():
                predict.predict_batch(store, demo.MODEL, [TEXTS[i % 3] + str(k * 100000 + i)], "bench",
                                      business_line="bench", source="api")
                answered[0] += 1
                i += 1

        try:
            with _apptest.Dashboard(store.path) as dashboard:
                at, first = dashboard.open("pages/monitor.py")
                renders(at, 2)  # the drift cells and caches the first renders fill
                idle_load = os.getloadavg()[0]
                idle = renders(at, args.renders)
                threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
                for t in threads:
                    t.start()
                time.sleep(1)
                busy_load, started, before = os.getloadavg()[0], time.perf_counter(), answered[0]
                busy = renders(at, args.renders)
                rate = (answered[0] - before) / (time.perf_counter() - started)
                stop.set()
                for t in threads:
                    t.join()
        finally:
            stop.set()
            serving.stop()
            store.unhold()
    a, b = statistics.median(idle), statistics.median(busy)
    print(f"Monitor rerun p50 idle {a * 1000:.0f} ms (load {idle_load:.1f}); with {args.clients} clients predicting "
          f"{b * 1000:.0f} ms (load {busy_load:.1f}, {rate:.0f} predictions/s meanwhile): {b / a:.2f}x idle "
          f"(target <= 2x); first render {first:.1f} s")
    print(f"batcher: {serving.batches} batches for {serving.batched} requests; writer commits {serving.writer.commits}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
