"""From a keypress on the Label page to the next example shown, in Debian's chromium on a real
`streamlit run app.py` over the demo store (issue 16's target: <= 300 ms).

    python bench/label_keypress.py [--store PATH] [--decisions 40] [--keys 1,2,A,S,U] [--pace MS] [--profile OUT]

The store (default: a demo store built once with build_store's defaults and cached under
/tmp/mms-bench-label) is copied to a temporary folder, so every run labels the same queue. The
time is taken in the page: a keydown listener notes performance.now(), and a MutationObserver
notes when the example's line "... · prediction N" names another prediction. The next key is
pressed once the page is idle again (what a labeller who reads the text does); that time, key
to idle, is printed too. The first two decisions warm the server and are not counted.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, header, timer

sys.path.insert(0, str(ROOT / "tests"))
from servers import launch_chromium, start_server, stop_server, wait_idle, wait_ready  # noqa: E402

from core import demo, feedback  # noqa: E402
from core.store import Store  # noqa: E402

CACHE = Path("/tmp/mms-bench-label/demo/mms.duckdb")
WARM_UP = 2

# Notes the keydown time and the time the shown prediction changes; `window.mmsShownId()` reads it.
WATCH = """() => {
  const shown = () => {
    for (const el of document.querySelectorAll('[data-testid="stText"]')) {
      const m = el.textContent.match(/· prediction (\\d+)$/);
      if (m) return m[1];
    }
    return null;
  };
  window.mmsShownId = shown;
  window.mmsLast = shown();
  window.addEventListener('keydown', () => { window.mmsKeyAt = performance.now(); }, true);
  new MutationObserver(() => {
    const now = shown();
    if (now !== null && now !== window.mmsLast) { window.mmsLast = now; window.mmsShownAt = performance.now(); }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def demo_store(path: Path) -> Path:
    if not path.exists():
        with timer() as t:
            demo.build_store(Store(path))
        print(f"demo store (build_store defaults) built in {t.seconds:.1f} s at {path}")
    return path


def settled(log: Path, seconds: float = 600) -> None:
    """Wait until the server has measured drift once (a thread it starts with, which would
    compete with the page for the CPU for the first minute or so of a new server)."""
    deadline = time.monotonic() + seconds
    while "MMS: drift" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(1)


def open_label_page(page, url: str) -> None:
    page.goto(url + "/label")  # straight there: the Monitor page would only load the machine
    who = page.get_by_label("Who is working")
    who.fill("bench")
    who.press("Enter")
    page.locator("button", has_text="正面").first.wait_for(timeout=120_000)
    wait_idle(page)
    page.evaluate("document.activeElement.blur()")  # shortcuts do not fire while a text box has focus


def decide(page, key: str, pace: float | None) -> tuple[float, float | None]:
    """Press `key`; returns (ms to the next example shown, ms until the page is idle again, None
    when the next key comes at `pace` ms after the example shows)."""
    before = page.evaluate("window.mmsShownId()")
    page.evaluate("window.mmsShownAt = null; window.mmsLast = window.mmsShownId()")
    page.locator("body").press(key)
    page.wait_for_function("window.mmsShownAt !== null", timeout=60_000)
    shown = page.evaluate("window.mmsShownAt - window.mmsKeyAt")
    if pace is not None:
        page.wait_for_timeout(pace)
        return shown, None
    wait_idle(page)
    idle = page.evaluate("performance.now() - window.mmsKeyAt") - 600  # wait_idle's two pauses
    assert page.evaluate("window.mmsShownId()") != before
    return shown, idle


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return (f"{name:28} median {statistics.median(values):7.0f} ms   p90 {p90:7.0f} ms   "
            f"min {ordered[0]:6.0f}   max {ordered[-1]:6.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", type=Path, help="a demo-sized store to copy (default: built once and cached)")
    parser.add_argument("--decisions", type=int, default=40)
    parser.add_argument("--keys", default="1,2", help="keys pressed in turn (1, 2: labels; A: accept; S: skip)")
    parser.add_argument("--pace", type=float, help="press the next key this many ms after the next example shows "
                                                   "(default: once the page is idle)")
    parser.add_argument("--profile", type=Path, help="py-spy the server while measuring, collapsed stacks to this file")
    args = parser.parse_args()
    header("Label page: keypress to the next example, chromium")
    source = demo_store(args.store or CACHE)
    folder = Path(tempfile.mkdtemp(prefix="mms-bench-label-"))
    shutil.copytree(source.parent, folder / "store")
    store_path = folder / "store" / source.name
    # no file watcher: other people editing the tree must not put a "source changed" prompt on the page
    url, proc = start_server({"MMS_STORE": str(store_path), "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"},
                             folder / "streamlit.log")
    from playwright.sync_api import sync_playwright
    try:
        wait_ready(url, proc, folder / "streamlit.log")
        settled(folder / "streamlit.log")
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            open_label_page(page, url)
            page.evaluate(WATCH)
            keys = args.keys.split(",")
            shown, idle, loads = [], [], []
            spy = None
            for i in range(args.decisions + WARM_UP):
                if i == WARM_UP and args.profile:
                    spy = subprocess.Popen(["py-spy", "record", "--pid", str(proc.pid), "--duration",
                                            str(3 * args.decisions), "--format", "raw", "--output", str(args.profile),
                                            "--nonblocking", "--threads", "--idle"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                s, t = decide(page, keys[i % len(keys)], args.pace)
                if i >= WARM_UP:
                    shown.append(s)
                    idle.append(t)
                    loads.append(os.getloadavg()[0])
                time.sleep(0.2)
            browser.close()
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on an interrupt
                spy.wait(timeout=60)
        pace = f"the next key {args.pace:.0f} ms after each example showed" if args.pace is not None else \
            "the next key once the page was idle"
        print(f"{pace}; {len(shown)} decisions (keys {', '.join(keys)} in turn), after {WARM_UP} not counted; "
              f"load average {min(loads):.1f}-{max(loads):.1f} while measuring")
        print(summary("keypress -> next example", shown), "  (target <= 300 ms)")
        if args.pace is None:
            print(summary("keypress -> page idle", idle))
        print("each, ms:", " ".join(f"{v:.0f}" for v in shown))
        stop_server(proc)
        written = sum(feedback.labelled_counts(Store(store_path), demo.MODEL, user="bench").values())
        print(f"decisions in the store afterwards: {written} of {args.decisions + WARM_UP} keys pressed")
    finally:
        stop_server(proc)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
