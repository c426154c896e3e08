"""Where a one-text prediction's CPU goes in the serving process, step by step, in process (no HTTP).

    python bench/serving_costs.py [--calls 300]

On a demo store held and served as the server does (core/serving.py), one thread, each step called
--calls times: CPU milliseconds per call (the whole process: DuckDB's threads included). The steps:
the model lookup (kept by the serving), the batch's checks, tokenising and predict_proba for 1 text
and for 8 together (per text), a commit of one request's rows by the writer, `predict_batch` end to
end through the batcher, and the API app called directly as ASGI: the full FastAPI route (a body the
lean path hands on: `version` 1.0) against the lean path (api.FastPredict). What the HTTP server
(uvicorn, Streamlit's middlewares) adds is in api_load.py and ../shared/bench/anchor_serving.py.

Then the writer's transaction of one request's row, statement by statement (each step adds one to
the one before: BEGIN + COMMIT alone, the permission check, the log's and the rollups' inserts rolled
back, the same committed), and a commit through the writer while another thread of the process runs
Python (as the batcher and the event loop do under load): the writer thread's own CPU and the wall
time per commit. DuckDB's Python client takes the GIL between the tasks of every statement, so a
statement that blocks (the COMMIT's WAL sync) waits for it again, up to Python's switch interval
(sys.getswitchinterval(), 5 ms) each time.
"""
from __future__ import annotations

import argparse
import os
import asyncio
import threading
import json
import tempfile
import time
from pathlib import Path

from _common import header
from core import api, auth, demo, predict
from core import store as db
from core.serving import Serving
from core.store import Store

TEXTS = ["质量很好，物流也快，下次还来买", "太差了，再也不买了，客服态度也不好", "一般般吧，价格还行"]


def per_call(fn, calls: int) -> float:
    """CPU milliseconds per call of fn() (the process's CPU: every thread)."""
    fn()
    start = time.process_time()
    for i in range(calls):
        fn()
    return (time.process_time() - start) / calls * 1000


def asgi_post(app, path: str, body: dict):
    """One POST through `app` as ASGI, as a server would call it; the status."""
    raw = json.dumps(body).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()),
                         (b"host", b"127.0.0.1")],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8501)}
    sent = []

    async def receive():
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message):
        sent.append(message)

    async def call():
        await app(scope, receive, send)
    return call, sent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=300)
    args = p.parse_args(argv)
    header("where a one-text prediction's CPU goes in the serving process")
    with tempfile.TemporaryDirectory(prefix="mms-costs-") as tmp:
        store = Store(Path(tmp) / "mms.duckdb")
        demo.build_store(store, n_train=3000, n_test=1000, n_traffic=2000, weeks=2)
        store.hold()
        serving = Serving(store).start()
        loop = asyncio.new_event_loop()
        try:
            model, version = serving.lookup(demo.MODEL, None)
            n = [0]

            def text():
                n[0] += 1
                return TEXTS[n[0] % 3] + str(n[0])

            def commit_one():
                results = predict.probabilities([TEXTS[0]], store, version, model.labels)
                rows, _ = predict.logged(model, version, [TEXTS[0]], ["bench"], [None], results, "api", "bench")
                serving.writer.submit(rows).result()

            app = api.create_app(store)
            path = f"/models/{demo.MODEL}/predict"
            rows = [
                ("model lookup (kept by the serving)", lambda: serving.lookup(demo.MODEL, None)),
                ("check_batch, 1 text", lambda: predict.check_batch([text()], "bench", "api")),
                ("tokenise + predict_proba, 1 text", lambda: predict.probabilities([text()], store, version,
                                                                                   model.labels)),
                ("the same, 8 texts together, per text", None),
                ("tokenise + predict_proba 1 text + its commit, one at a time", commit_one),
                ("predict_batch through the batcher, 1 text, one at a time",
                 lambda: predict.predict_batch(store, demo.MODEL, [text()], "bench", business_line="bench",
                                               source="api")),
            ]
            figures = []
            for name, fn in rows:
                if fn is None:
                    eight = lambda: predict.probabilities([text() for _ in range(8)], store, version, model.labels)
                    figures.append((name, per_call(eight, max(1, args.calls // 8)) / 8))
                else:
                    figures.append((name, per_call(fn, args.calls)))
            for name, body in (("API app as ASGI: the full FastAPI route (version 1.0: handed on)", {"version": 1.0}),
                               ("API app as ASGI: the lean path (api.FastPredict)", {"version": 1})):
                def through():
                    call, sent = asgi_post(app, path, {"texts": [text()], "business_line": "bench", **body})
                    loop.run_until_complete(call())
                    assert sent[0]["status"] == 200, sent
                figures.append((name, per_call(through, args.calls)))
            steps = transaction_steps(store, serving, model, version, args.calls)
            beside = writer_beside_python(store, serving, model, version, max(20, args.calls // 4))
        finally:
            loop.close()
            serving.stop()
            store.unhold()
    print(f"load average {os.getloadavg()[0]:.1f}; CPU ms per call, {args.calls} calls each, one thread")
    for name, ms in figures:
        print(f"  {name:<66} {ms:6.2f} ms")
    print(f"  writer commits: {serving.writer.commits}; batcher: {serving.batches} batches for {serving.batched} requests")
    print("the writer's transaction of one row, each step adding one to the step before (CPU ms per call):")
    for name, ms in steps:
        print(f"  {name:<66} {ms:6.2f} ms")
    print(f"a commit through the writer beside a thread running Python: writer thread CPU {beside[0]:.2f} ms, wall "
          f"{beside[1]:.2f} ms per commit (alone: {beside[2]:.2f} / {beside[3]:.2f} ms); load average "
          f"{os.getloadavg()[0]:.1f}")
    return 0


class _RolledBack(Exception):
    pass


def transaction_steps(store: Store, serving: Serving, model, version, calls: int) -> list[tuple[str, float]]:
    """CPU per call of the writer's transaction for one row, built up one statement at a time."""
    results = predict.probabilities([TEXTS[0]], store, version, model.labels)

    def rows():
        return predict.logged(model, version, [TEXTS[0]], ["bench"], [None], results, "api", "bench")[0]

    def transaction(check: bool, insert: bool, commit: bool):
        def call():
            try:
                with store.transaction() as con:
                    if check:
                        auth.require(con, "bench", "predict")
                    if insert:
                        r = rows()
                        db.insert_predictions(con, r.model_id, r.version, r.frame, r.source, r.user)
                    if not commit:
                        raise _RolledBack
            except _RolledBack:
                pass
        return call
    return [("BEGIN + COMMIT, nothing written", per_call(transaction(False, False, True), calls)),
            ("+ the permission check (auth.require)", per_call(transaction(True, False, True), calls)),
            ("+ insert_predictions, 1 row (log and rollup rows), rolled back", per_call(transaction(True, True, False),
                                                                                        calls)),
            ("the same, committed (WAL write and sync)", per_call(transaction(True, True, True), calls)),
            ("the same through the writer (its queue and thread)",
             per_call(lambda: serving.writer.submit(rows()).result(), calls))]


def writer_beside_python(store: Store, serving: Serving, model, version, calls: int) -> tuple[float, ...]:
    """(writer thread CPU, wall) ms per commit of one row with another thread running Python, then alone."""
    results = predict.probabilities([TEXTS[0]], store, version, model.labels)
    writer = next(t for t in threading.enumerate() if t.name.startswith("mms-log-writer"))
    clock = time.pthread_getcpuclockid(writer.ident)

    def commits() -> tuple[float, float]:
        start_cpu, start = time.clock_gettime(clock), time.perf_counter()
        for _ in range(calls):
            rows = predict.logged(model, version, [TEXTS[0]], ["bench"], [None], results, "api", "bench")[0]
            serving.writer.submit(rows).result()
        return ((time.clock_gettime(clock) - start_cpu) / calls * 1000, (time.perf_counter() - start) / calls * 1000)

    busy = threading.Event()

    def python():
        while not busy.is_set():
            sum(range(2000))  # pure Python: holds the GIL until the interpreter's switch interval asks it to yield
    other = threading.Thread(target=python, daemon=True)
    other.start()
    try:
        beside = commits()
    finally:
        busy.set()
        other.join()
    return (*beside, *commits())


if __name__ == "__main__":
    raise SystemExit(main())
