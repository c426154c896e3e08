"""Where a one-text prediction's CPU goes in the serving process, step by step, in process (no HTTP).

    python bench/serving_costs.py [--calls 300]

On a demo store held and served as the server does (core/serving.py), one thread, each step called
--calls times: CPU milliseconds per call (the whole process: DuckDB's threads included). The steps:
the model lookup (kept by the serving), the batch's checks, tokenising and predict_proba for 1 text
and for 8 together (per text), a commit of one request's rows by the writer, `predict_batch` end to
end through the batcher, and the API app called directly as ASGI: the full FastAPI route (a body the
lean path hands on: `version` 1.0) against the lean path (api.FastPredict). What the HTTP server
(uvicorn, Streamlit's middlewares) adds is in api_load.py and ../shared/bench/anchor_serving.py.
"""
from __future__ import annotations

import argparse
import os
import asyncio
import json
import tempfile
import time
from pathlib import Path

from _common import header
from core import api, demo, predict
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
        finally:
            loop.close()
            serving.stop()
            store.unhold()
    print(f"load average {os.getloadavg()[0]:.1f}; CPU ms per call, {args.calls} calls each, one thread")
    for name, ms in figures:
        print(f"  {name:<66} {ms:6.2f} ms")
    print(f"  writer commits: {serving.writer.commits}; batcher: {serving.batches} batches for {serving.batched} requests")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
