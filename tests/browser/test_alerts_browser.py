"""An alert on the Monitor in chromium (issue 26): the server's own loop raises it from the model's
thresholds and sends it to a webhook on loopback; an analyst sees it open and acknowledges it."""
import re
import time
from urllib.parse import quote

import pytest

from core import alerts, demo
from servers import CANVAS_TEXT, ROOT, chromium_session, serving, wait_idle
from webhook import Receiver
from conftest import copy_store

pytestmark = pytest.mark.browser

SHOTS = ROOT / "tests" / "screenshots"


@pytest.fixture(scope="module")
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def server(_seeded_template, tmp_path_factory, receiver):
    folder = tmp_path_factory.mktemp("alerts") / "store"
    store = copy_store(_seeded_template, folder)
    alerts.set_settings(store, demo.MODEL, "olga", estimated_below=0.99, webhook=receiver.url)  # before the server holds it
    with serving({"MMS_STORE": str(store.path), "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none",
                  "MMS_POLICY_SECONDS": "1"}, folder / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser(server):
    yield from chromium_session(SHOTS)


def test_an_alert_raised_by_the_server_shows_on_the_monitor_and_is_acknowledged(browser, server, receiver):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(CANVAS_TEXT)
    page = context.new_page()
    page.set_default_timeout(180_000)
    # the server's loop checks the thresholds within a second of holding the store, then sends
    deadline = time.monotonic() + 300
    while not receiver.bodies and time.monotonic() < deadline:
        time.sleep(0.5)
    assert receiver.bodies, "the server sent no alert to the webhook"
    assert {b["model"] for b in receiver.bodies} == {demo.MODEL}
    page.goto(server + "/?model=" + quote(demo.MODEL))
    page.get_by_role("heading", name="Monitor").first.wait_for()
    wait_idle(page)
    header = page.get_by_text(re.compile(r"^Alerts: \d+ open$")).first
    header.wait_for()
    shown = int(re.search(r"\d+", header.inner_text()).group())
    assert shown >= len(receiver.bodies)  # every alert sent is on the Monitor
    line = page.locator('[data-testid="stMarkdownContainer"]').filter(has=header).first
    lines = "e => e.querySelector('p').getBoundingClientRect().height / parseFloat(getComputedStyle(e.querySelector('p')).lineHeight)"
    page.screenshot(path=str(SHOTS / "alerts_monitor_line_1400.png"), full_page=False)
    assert line.evaluate(lines) < 1.5  # one line at the top, not a box of the whole list
    listing = page.locator('[data-testid="stExpander"]').filter(has_text="Alert list and thresholds")
    assert listing.count() == 1 and not listing.locator('[data-testid="stDataFrame"]').is_visible()  # folded
    page.set_viewport_size({"width": 1000, "height": 900})
    wait_idle(page)
    assert line.evaluate(lines) < 1.5  # still one line in a narrower window
    page.screenshot(path=str(SHOTS / "alerts_monitor_line_1000.png"), full_page=False)
    page.set_viewport_size({"width": 1400, "height": 1000})
    listing.locator("summary").click()
    table = listing.locator('[data-testid="stDataFrame"]')
    table.wait_for()
    wait_idle(page)
    drawn = page.evaluate("window.__drawn")  # what the canvas table drew: readable headers, no column keys
    listing.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "alerts_monitor_open.png"), full_page=False)
    assert {"raised", "state", "kind", "webhook", "message"} <= set(drawn), drawn[:80]
    assert not {"acknowledged_by", "last_error", "raised_at", "alert_id", "estimated_accuracy"} & set(drawn)
    scroller = table.locator(".dvn-scroller").first
    assert scroller.evaluate("e => e.scrollWidth <= e.clientWidth + 1")  # every column fits: no sideways scroll
    page.locator(".st-key-alerts_ack button").wait_for()
    page.locator(".st-key-alerts_ack button").click()
    wait_idle(page)
    page.get_by_text(f"Alerts: {shown - 1} open").wait_for()
    page.get_by_text("1 acknowledged").first.wait_for()
    page.screenshot(path=str(SHOTS / "alerts_monitor_acknowledged.png"), full_page=False)
