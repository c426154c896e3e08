"""The screens of issue 22 item 4 as a user waits for them, in Debian's chromium (Playwright) against a
real `streamlit run app.py`:

- the very first run: `streamlit run app.py` on an empty folder, a browser opened at once, until the
  Monitor is usable (its last element drawn and the script idle; the demo store is built meanwhile);
- on a fresh copy of that demo store, with an owner added so that sign-in applies, a server started
  anew: sign-in -> menu (the click on "Sign in" until the sidebar's menu shows, and until the Monitor
  under it is drawn), a fresh load of the Monitor (a new tab of the signed-in browser), a period switch
  (Week -> Day -> Week), and the Train and Versions pages opened from the menu.

Each figure is printed with the machine's 1-minute load average when it was taken: the machine is
shared, and a figure means little without it. Beside each Monitor figure, the server's own time: the
script runs the server did for it (each run timed in the server process), which the load weighs on
less than on what the browser waits for. Targets (issue 22): first run <= 20 s at load <= 2;
sign-in -> menu <= 1 s; Monitor fresh load <= 1.5 s; period switch <= 1 s.

    python bench/page_timings.py [--runs 3] [--store PATH] [--skip-first-run]

With --store, that demo store is copied (never changed) instead of the one the first run builds.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import ROOT, header, record

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
MONITOR_DONE = ".st-key-monitor_download"  # the last element the Monitor page draws
OWNER, PASSWORD = "bench-owner", "bench-owner-pass-1"
# Every change of the app's script state ("running", "notRunning"), with the page's clock: a rerun's end
# is the first "notRunning" after the click, however short the run (the status widget shows only later).
STATES = """window.__states = [];
new MutationObserver(ms => ms.forEach(m => window.__states.push([performance.now(),
    m.target.getAttribute('data-test-script-state')]))).observe(document, {attributes: true, subtree: true,
    attributeFilter: ['data-test-script-state']});"""


# `streamlit run` with each script run (a page's or a fragment's) timed: "end-epoch seconds" per line
# in the file $MMS_BENCH_RUNS. A thin wrapper around Streamlit's one call per run, nothing else changed.
TIMED_STREAMLIT = """
import os, sys, time
from streamlit.runtime.scriptrunner import exec_code, script_runner
real = exec_code.exec_func_with_error_handling
def timed(func, ctx):
    start = time.perf_counter()
    try:
        return real(func, ctx)
    finally:
        with open(os.environ["MMS_BENCH_RUNS"], "a") as f:
            f.write(f"{time.time()} {time.perf_counter() - start}\\n")
script_runner.exec_func_with_error_handling = timed
from streamlit.web import cli
sys.argv = ["streamlit", *sys.argv[1:]]
cli.main()
"""


def load() -> float:
    return os.getloadavg()[0]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`streamlit run app.py` on a store, as a user starts it; `started` is when it was spawned."""

    def __init__(self, store: Path, timed: bool = False):
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = tempfile.TemporaryFile()
        self.runs = store.parent / "script-runs.txt" if timed else None
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, *(["-c", TIMED_STREAMLIT] if timed else ["-m", "streamlit"]), "run", "app.py",
             "--server.port", self.url.rsplit(":", 1)[1], "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=ROOT, env={**os.environ, "MMS_STORE": str(store), **({"MMS_BENCH_RUNS": str(self.runs)} if timed else {})},
            stdout=self.log, stderr=subprocess.STDOUT)

    def script_seconds(self, since: float, until: float) -> float:
        """Seconds the server spent running scripts that ended between two wall-clock times."""
        if self.runs is None or not self.runs.exists():
            return float("nan")
        runs = [line.split() for line in self.runs.read_text().splitlines() if line.strip()]
        return sum(float(took) for end, took in runs if since <= float(end) <= until)

    def wait_healthy(self, seconds: float = 600) -> None:
        while True:
            try:
                if urllib.request.urlopen(self.url + "/_stcore/health", timeout=2).status == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.perf_counter() - self.started > seconds:
                self.log.seek(0)
                raise SystemExit("streamlit did not start:\n" + self.log.read().decode(errors="replace")[-2000:])
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def new_page(browser, width: int = 1400):
    context = browser.new_context(viewport={"width": width, "height": 1000})
    context.add_init_script(STATES)
    page = context.new_page()
    page.set_default_timeout(600_000)
    return page


def now(page) -> float:
    return page.evaluate("performance.now()")


def run_ended_after(page, t0: float) -> float:
    """Seconds from `t0` (the page's clock) until the script is idle again after a run that began after t0."""
    page.wait_for_function(f"""(() => {{ const s = window.__states.filter(x => x[0] > {t0});
        return s.some(x => x[1] === 'running') && s.length && s[s.length - 1][1] === 'notRunning'; }})()""",
                           polling=50)
    page.wait_for_timeout(400)  # a rerun the run asked for (st.rerun) starts within this
    page.wait_for_function("""(() => { const s = window.__states; return s[s.length - 1][1] === 'notRunning'; })()""",
                           polling=50)
    return (page.evaluate("window.__states[window.__states.length - 1][0]") - t0) / 1000


def idle(page) -> None:
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')


def first_run(browser, folder: Path) -> tuple[float, float, float]:
    """(seconds to a usable Monitor, seconds until healthy, load at the end) from no store at all."""
    server = Server(folder / "mms.duckdb")
    try:
        server.wait_healthy()
        healthy = time.perf_counter() - server.started
        page = new_page(browser)
        page.goto(server.url)
        page.wait_for_selector(MONITOR_DONE)
        idle(page)
        usable = time.perf_counter() - server.started
        page.context.close()
        return usable, healthy, load()
    finally:
        server.stop()


def sign_in(page, url: str) -> tuple[float, float]:
    """(seconds from the click to the menu, to the Monitor drawn under it) for a fresh browser session."""
    page.goto(url)
    page.get_by_role("heading", name="Sign in to MMS").wait_for()
    idle(page)
    page.get_by_label("User", exact=True).fill(OWNER)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    t0 = now(page)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector('[data-testid="stSidebarNav"]', state="visible")
    menu = (now(page) - t0) / 1000
    page.wait_for_selector(MONITOR_DONE)
    return menu, run_ended_after(page, t0)


def fresh_monitor(page, url: str) -> float:
    """A new load of the Monitor in a signed-in browser (the session cookie signs it in)."""
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(MONITOR_DONE)
    idle(page)
    return time.perf_counter() - start


def switch_period(page, period: str) -> float:
    t0 = now(page)
    page.locator(".st-key-monitor_period button", has_text=period).first.click()
    return run_ended_after(page, t0)


def open_from_menu(page, title: str) -> float:
    t0 = now(page)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).first.click()
    page.wait_for_url(f"**/{title.lower()}")
    seconds = run_ended_after(page, t0)
    page.get_by_role("heading", name=title).first.wait_for()
    return seconds


def show(what: str, figures: list[tuple], target: str = "") -> None:
    seconds = [f[0] for f in figures]
    loads = ", ".join(f"{f[0]:.2f} s @ {f[1]:.1f}" for f in figures)
    print(f"{what:44} median {statistics.median(seconds):6.2f} s  ({loads}){'  target ' + target if target else ''}")
    record(f"page_timings_{what.split(' (')[0].replace(' ', '_').replace('>', '').replace('-', '')}",
           statistics.median(seconds))
    server = [f[2] for f in figures if len(f) > 2]
    if server:
        label = "  of which the server ran the script"
        print(f"{label:44} median {statistics.median(server):6.2f} s  "
              f"({', '.join(f'{x:.2f} s' for x in server)})")


def measured(fn, *args, server: Server | None = None) -> tuple[float, ...]:
    """(seconds, load), and the server's script-run seconds meanwhile when `server` times its runs."""
    since = time.time()
    seconds = fn(*args)
    return (seconds, load()) + ((server.script_seconds(since, time.time()),) if server else ())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3, help="repeats of each figure on the demo store")
    parser.add_argument("--store", help="copy this demo store instead of building one in a first run")
    parser.add_argument("--skip-first-run", action="store_true", help="(with --store) no first run from nothing")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from core import auth
    from core.store import Store

    header("page timings in chromium (issue 22 item 4)")
    work = Path(tempfile.mkdtemp(prefix="mms-bench-timings-"))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            built = work / "first"
            built.mkdir()
            if not args.skip_first_run:
                print(f"first run from no store: streamlit run app.py on an empty folder (load {load():.1f} at start)")
                usable, healthy, at = first_run(browser, built)
                record("page_timings_first_run_s", usable)
                print(f"{'first run to a usable Monitor':44} {usable:6.2f} s @ load {at:.1f} (healthy at "
                      f"{healthy:.2f} s)  target <= 20 s at load <= 2")
            source = Path(args.store).resolve().parent if args.store else built
            copy = work / "copy"
            shutil.copytree(source, copy, ignore=shutil.ignore_patterns("*.wal", "*.tmp"))
            store = Store(copy / (Path(args.store).name if args.store else "mms.duckdb"))
            if auth.is_open(store):
                auth.add_user(store, OWNER, "owner", PASSWORD, by="bench")
            server = Server(store.path, timed=True)
            try:
                server.wait_healthy()
                print(f"server on a fresh copy of the demo store healthy after "
                      f"{time.perf_counter() - server.started:.2f} s (load {load():.1f})")
                menus, drawn, monitors, days, weeks, trains, versions = [], [], [], [], [], [], []
                for i in range(args.runs):
                    page = new_page(browser)
                    menu, monitor = sign_in(page, server.url)
                    menus.append((menu, load()))
                    drawn.append((monitor, load()))
                    monitors.append(measured(fresh_monitor, page, server.url, server=server))
                    days.append(measured(switch_period, page, "Day", server=server))
                    weeks.append(measured(switch_period, page, "Week", server=server))
                    trains.append(measured(open_from_menu, page, "Train"))
                    versions.append(measured(open_from_menu, page, "Versions"))
                    page.context.close()
                print(f"{args.runs} browser sessions, each: sign in, reload, Week -> Day -> Week, Train, Versions "
                      "(the first session is the server's first)")
                show("sign-in -> menu", menus, "<= 1 s")
                show("sign-in -> Monitor drawn under the menu", drawn)
                show("Monitor fresh load (signed in)", monitors, "<= 1.5 s")
                show("period switch Week -> Day", days, "<= 1 s")
                show("period switch Day -> Week", weeks, "<= 1 s")
                show("Train opened from the menu", trains)
                show("Versions opened from the menu", versions)
            finally:
                server.stop()
            browser.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
