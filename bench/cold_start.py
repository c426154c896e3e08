"""Cold start: the demo store built from nothing (`python -m core demo`, what the app's first
start does), then later starts of the app on that store:

- a fresh process that imports the app and runs it once through AppTest (Monitor, the default
  page, drawn to the end): interpreter start, imports and the first script run;
- a real server (`streamlit run app.py` on a free loopback port): the time until
  /_stcore/health answers, and, with Playwright and Debian's chromium, until the browser shows
  the end of the Monitor page's first run (its Download CSV button);

and, with chromium, the very first start as a new user makes it: `streamlit run app.py` on an empty
folder, a browser opened at once (the page shows the demo store's build, then the Monitor), to the
Monitor's last element.

    python bench/cold_start.py [--runs 2] [--store PATH]

With --store, an existing store is started instead of building one (nothing is deleted).
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import ROOT, header, record, timer

CHROMIUM = "/usr/bin/chromium"
DONE = ".st-key-monitor_download"  # the last element the Monitor page draws


def build(path: Path) -> float:
    """Seconds for `python -m core demo` into `path`, printing its phases as they happen."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "core", "--store", str(path), "demo"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        print(f"  {time.perf_counter() - start:6.1f} s  {line.rstrip()}")
    if proc.wait() != 0:
        raise SystemExit("python -m core demo failed")
    return time.perf_counter() - start


def apptest_child(path: str) -> None:
    """In a fresh process: import the app's machinery and run app.py once (Monitor)."""
    start = time.perf_counter()
    os.environ["MMS_STORE"] = path
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["user"] = "bench"
    at.session_state["role"] = "owner"
    imported = time.perf_counter()
    at.run()
    if at.exception:
        raise SystemExit(f"app.py raised: {at.exception[0].message}")
    if not at.get("download_button"):
        raise SystemExit("the Monitor page did not draw to its end")
    print(f"{imported - start:.2f} {time.perf_counter() - imported:.2f}")


def apptest_start(path: Path) -> tuple[float, float, float]:
    """(seconds from spawn to exit, of which importing streamlit's testing, of which the run)."""
    with timer() as t:
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--apptest-child", str(path)], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    imports, run = map(float, out.split()[-2:])
    return t.seconds, imports, run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_start(path: Path, browser, wait_s: float = 120) -> dict:
    """Seconds from `streamlit run` to: a healthy server; in the browser, the Monitor page's title
    and the end of its first run; and then a second session's whole page in a new tab."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"], cwd=ROOT,
                            env={**os.environ, "MMS_STORE": str(path)}, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.perf_counter() - start > 120:
                log.seek(0)
                raise SystemExit("streamlit did not start:\n" + log.read().decode(errors="replace")[-2000:])
            time.sleep(0.02)
        marks = {"healthy": time.perf_counter() - start}
        if browser is not None:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.get_by_role("heading", name="Monitor").first.wait_for(timeout=wait_s * 1000)
            marks["title"] = time.perf_counter() - start
            page.wait_for_selector(DONE, timeout=wait_s * 1000)
            marks["drawn"] = time.perf_counter() - start
            page.close()
            with timer() as again:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url)
                page.wait_for_selector(DONE, timeout=120_000)
            marks["second_session"] = again.seconds
            page.close()
        return marks
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def launch_browser(playwright):
    if not Path(CHROMIUM).exists():
        print(f"(no {CHROMIUM}: the browser figure is left out; tests/setup.sh installs it)")
        return None
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2, help="later starts of each kind")
    parser.add_argument("--store", help="start the app on this existing store instead of building one")
    parser.add_argument("--apptest-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.apptest_child:
        apptest_child(args.apptest_child)
        return
    header("cold start")
    folder = None if args.store else Path(tempfile.mkdtemp(prefix="mms-bench-cold-"))
    try:
        if args.store:
            path = Path(args.store).resolve()
        else:
            path = folder / "mms.duckdb"
            print("building the demo store from nothing: python -m core demo")
            print(f"demo store built in {build(path):.1f} s (target < 60 s)")
        for i in range(args.runs):
            total, imports, run = apptest_start(path)
            print(f"later start {i + 1}, fresh process + AppTest run of app.py (Monitor): {total:.2f} s "
                  f"(target < 5 s; streamlit imports {imports:.2f} s, first script run {run:.2f} s)")
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            sync_playwright = None
            print("(playwright is not installed: the browser figure is left out)")
        if sync_playwright is None:
            for i in range(args.runs):
                print(f"later start {i + 1}, streamlit run app.py to /_stcore/health: "
                      f"{server_start(path, None)['healthy']:.2f} s")
            return
        with sync_playwright() as p:
            browser = launch_browser(p)
            for i in range(args.runs):
                m = server_start(path, browser)
                print(f"later start {i + 1}, streamlit run app.py: healthy at {m['healthy']:.2f} s", end="")
                if "drawn" in m:
                    record("chromium_start_drawn_s", m["drawn"])
                    record("chromium_fresh_session_s", m["second_session"])
                    print(f"; in the browser, Monitor's title at {m['title']:.2f} s and its end at {m['drawn']:.2f} s "
                          f"(target < 5 s); a second session's page {m['second_session']:.2f} s", end="")
                print()
            if browser is not None:
                with tempfile.TemporaryDirectory(prefix="mms-bench-first-") as empty:
                    m = server_start(Path(empty) / "mms.duckdb", browser, wait_s=600)
                record("chromium_first_run_s", m["drawn"])
                print(f"first start on an empty folder, streamlit run app.py: healthy at {m['healthy']:.2f} s; in the "
                      f"browser (the demo store built meanwhile), Monitor's title at {m['title']:.2f} s and its end at "
                      f"{m['drawn']:.2f} s; a second session's page {m['second_session']:.2f} s")
                browser.close()
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
