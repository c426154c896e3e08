"""The Monitor in chromium against `streamlit run app.py` on the demo store: a fresh load (a new
browser session opening the Monitor until its last element is drawn and the script is done), then
period switches (Week -> Day -> Month -> Week), each until the page shows the new period.

    python bench/monitor_timing.py [--store PATH] [--url URL] [--rounds N]

Without --url a server is started on --store (default: a demo store built with core.demo's
defaults in a temporary folder). The load average is printed beside every figure: this machine is
shared. Issue 22's targets: fresh load <= 1.5 s, period switch <= 1 s.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, header

sys.path.insert(0, str(ROOT / "tests"))

from core import demo  # noqa: E402
from core.store import Store  # noqa: E402

DONE = """() => !document.querySelector('[data-testid="stStatusWidget"]')
                && !!document.querySelector('.st-key-monitor_download')"""
CAPTION = """(by) => [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
                       .some(c => c.innerText.startsWith('Latest ' + by) || c.innerText.startsWith('Latest complete ' + by))"""


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def settle(page, *checks) -> float:
    """Seconds from now until every check holds (polled every 25 ms)."""
    start = time.perf_counter()
    for script, arg in checks:
        page.wait_for_function(script, arg=arg, polling=25, timeout=180_000)
    return time.perf_counter() - start


def fresh_load(browser, url: str) -> float:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_timeout(200)  # the script starts after the page's JavaScript has connected
    page.wait_for_function(DONE, polling=25, timeout=180_000)
    seconds = time.perf_counter() - start
    page.close()
    return seconds


def switch(page, title: str) -> float:
    start = time.perf_counter()
    page.locator(".st-key-monitor_period button").filter(has_text=title).click()
    page.wait_for_timeout(50)
    page.wait_for_function(CAPTION, arg=title.lower(), polling=25, timeout=180_000)
    page.wait_for_function(DONE, polling=25, timeout=180_000)
    return time.perf_counter() - start


def run(url: str, rounds: int) -> None:
    from playwright.sync_api import sync_playwright
    from servers import launch_chromium

    with sync_playwright() as p:
        browser = launch_chromium(p)
        warm = fresh_load(browser, url)
        print(f"first load after the server started (caches cold): {warm:.2f} s ({load()})")
        for i in range(rounds):
            print(f"fresh load {i + 1}: {fresh_load(browser, url):.2f} s ({load()})   target <= 1.5 s")
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.wait_for_timeout(200)
        page.wait_for_function(DONE, polling=25, timeout=180_000)
        for i in range(rounds):
            for title in ("Day", "Month", "Week"):
                print(f"switch to {title:5} (round {i + 1}): {switch(page, title):.2f} s ({load()})   target <= 1 s")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", help="the store to serve (default: a new demo store)")
    parser.add_argument("--url", help="measure a server already running at this URL")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    header("Monitor in chromium: fresh load and period switch")
    if args.url:
        run(args.url, args.rounds)
        return
    from servers import start_server, stop_server, wait_ready

    folder = Path(tempfile.mkdtemp(prefix="mms-bench-monitor-"))
    try:
        store = Store(args.store) if args.store else Store(folder / "mms.duckdb")
        if not args.store:
            demo.build_store(store)
        url, proc = start_server({"MMS_STORE": str(store.path), "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"},
                                 folder / "streamlit.log")
        try:
            wait_ready(url, proc, folder / "streamlit.log")
            run(url, args.rounds)
        finally:
            stop_server(proc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
