"""An unauthenticated client sending a huge body, against a real `streamlit run app.py` (issue 27, item 5).

    python bench/body_limit.py [--mb 300]

Builds a small demo store with an owner, starts the server on a free loopback port, then: the
server's RSS, a 300 MB POST to /api/models/NAME/predict without a token (declared with Content-Length,
then sent chunked), the RSS after each, and the time of a real one-text prediction before and while
the big bodies arrive. Prints what each big request got back and how much of it the server read.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

from _common import ROOT, header
from core import auth, demo
from core.store import Store

sys.path.insert(0, str(ROOT / "tests"))
from servers import start_server, stop_server, wait_ready  # noqa: E402

CHUNK = b"x" * (1 << 20)


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def big_post(url: str, path: str, mb: int, chunked: bool) -> tuple[int | str, int]:
    """(status, MB sent before the server answered or closed)."""
    parts = urlsplit(url)
    con = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    sent = 0
    try:
        con.putrequest("POST", path)
        con.putheader("Content-Type", "application/json")
        if chunked:
            con.putheader("Transfer-Encoding", "chunked")
        else:
            con.putheader("Content-Length", str(mb * len(CHUNK)))
        con.endheaders()
        for _ in range(mb):
            data = (f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n") if chunked else CHUNK
            con.send(data)
            sent += 1
        if chunked:
            con.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server answered and closed: what it answered is below
    try:
        return con.getresponse().status, sent
    except (OSError, http.client.HTTPException) as e:
        return type(e).__name__, sent
    finally:
        con.close()


def one_prediction(url: str, path: str, token: str) -> float:
    parts = urlsplit(url)
    con = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    start = time.perf_counter()
    con.request("POST", path, json.dumps({"texts": ["房间很干净"]}),
                {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    assert con.getresponse().status == 200
    con.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=300)
    args = parser.parse_args()
    header("a large unauthenticated body against the server")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "mms.duckdb")
        demo.build_store(store, n_train=400, n_test=150, n_traffic=200, weeks=1)
        auth.add_user(store, "olga", "owner", "owner-pass-1", by="bench")
        token = auth.create_token(store, "olga", by="olga")
        url, proc = start_server({"MMS_STORE": str(store.path)}, Path(tmp) / "streamlit.log")
        try:
            wait_ready(url, proc, Path(tmp) / "streamlit.log")
            path = f"/api/models/{quote(demo.MODEL)}/predict"
            for _ in range(3):
                one_prediction(url, path, token)
            quiet = min(one_prediction(url, path, token) for _ in range(5))
            print(f"server RSS at start: {rss_mb(proc.pid):.0f} MB; a one-text prediction: {quiet * 1000:.0f} ms")
            for chunked in (False, True):
                before = rss_mb(proc.pid)
                during = []
                worker = threading.Thread(target=lambda: during.extend(one_prediction(url, path, token)
                                                                       for _ in range(5)))
                worker.start()
                status, sent = big_post(url, path, args.mb, chunked)
                worker.join()
                kind = "chunked" if chunked else "Content-Length"
                print(f"{args.mb} MB without a token ({kind}): answer {status} after {sent} MB sent; server RSS "
                      f"{before:.0f} -> {rss_mb(proc.pid):.0f} MB; a real prediction meanwhile: "
                      f"{max(during) * 1000:.0f} ms at worst")
            print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        finally:
            stop_server(proc)


if __name__ == "__main__":
    main()
