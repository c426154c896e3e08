"""The product started as a user starts it, for tests: `streamlit run app.py` on a free loopback
port, and Debian's chromium driven by Playwright."""
import json
from contextlib import contextmanager
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
# headless as root, and no background traffic: this machine reaches no network beyond its registries
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# An init script that keeps every string a canvas draws in window.__drawn, so a test can read what a
# canvas table or chart shows
CANVAS_TEXT = """window.__drawn = [];
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
    window.__drawn.push(String(text));
    return fillText.call(this, text, ...rest);
};"""


def post_json(url: str, body: dict, timeout: float = 60) -> tuple[int, dict]:
    """POST `body` as JSON: the status and the JSON answer, refusals included."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(url: str) -> int | None:
    """The HTTP status of a GET, or None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def start_server(env: dict, log_path: Path) -> tuple[str, subprocess.Popen]:
    """`streamlit run app.py` with these settings (MMS_STORE, ...) on a free loopback port; returns
    its base URL and process at once (see wait_ready)."""
    port = free_port()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                                 "--server.address", "127.0.0.1", "--server.headless", "true"],
                                cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    return f"http://127.0.0.1:{port}", proc


def wait_ready(url: str, proc: subprocess.Popen, log_path: Path, ready=None, seconds: float = 90) -> None:
    """Wait until the server answers its health check (and `ready()`, if given); fail with its log."""
    deadline = time.monotonic() + seconds
    while status(url + "/_stcore/health") != 200 or (ready is not None and not ready()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the server at {url} did not start: " + Path(log_path).read_text()[-2000:])
        time.sleep(0.3)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def serving(env: dict, log):
    """A server on a free port for the duration of a `with`: its url; stopped afterwards, even on failure."""
    url, proc = start_server(env, log)
    try:
        wait_ready(url, proc, log)
        yield url
    finally:
        stop_server(proc)


def chromium_session(shots: Path | None = None):
    """A module fixture's body: Debian's chromium through Playwright, closed at the end (`yield from`)."""
    from playwright.sync_api import sync_playwright

    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        yield browser
        browser.close()


def launch_chromium(playwright):
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run tests/setup.sh"
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def wait_idle(page) -> None:
    """Wait until Streamlit has finished running the script."""
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=120_000)
    page.wait_for_timeout(300)


def go(page, title: str) -> None:
    """Open a page from the sidebar and wait until it is drawn."""
    page.get_by_role("link", name=title).first.click()
    page.wait_for_url(f"**/{title.lower()}")
    wait_idle(page)
    page.get_by_role("heading", name=title).first.wait_for()


def sign_in(page, url: str, name: str, password: str):
    """Sign in on the dashboard's form at `url`; the page once the session is in."""
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_role("heading", name="Sign in to MMS").wait_for()
    wait_idle(page)
    page.get_by_label("User", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"Signed in as {name}").wait_for()
    wait_idle(page)
    return page


def core_json(store, *args):
    """A command's JSON answer. The server holds its store open, so a test asks it the way a user
    would: the command line, which reaches the running server."""
    done = subprocess.run([sys.executable, "-m", "core", "--store", str(store.path), "--format", "json", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
