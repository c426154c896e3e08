"""The flows a person clicks through, in a real browser: `streamlit run app.py` on a free port with a
temporary store, driven by Playwright in Debian's chromium. A screenshot of each page is saved
under tests/screenshots/ (the path is printed at the end of the test run)."""
import json

import pytest

from servers import ROOT, launch_chromium, start_server, stop_server, wait_idle, wait_ready, go, core_json
from conftest import copy_store

SHOTS = ROOT / "tests" / "screenshots"
M = "评论情感"


@pytest.fixture(scope="module")
def server(_seeded_template, tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser") / "store"
    store = copy_store(_seeded_template, folder)
    url, proc = start_server({"MMS_STORE": str(store.path)}, folder / "streamlit.log")
    wait_ready(url, proc, folder / "streamlit.log")
    yield url, store
    stop_server(proc)


@pytest.fixture(autouse=True)
def _screenshot_on_failure(request):
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "page" in request.fixturenames:
        request.getfixturevalue("page").screenshot(path=str(SHOTS / f"FAILED-{request.node.name}.png"), full_page=True)


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(server[0])
        yield page
        browser.close()




def _labelled(store) -> int:
    return sum(int(row["labelled"]) for row in core_json(store, "stats", M, "--by", "month"))


def _active(store) -> int:
    return next(m["active_version"] for m in core_json(store, "models") if m["model"] == M)


def _tick(page, key):
    """Tick a checkbox if the page shows it (the 'anyway' boxes appear only for a worse version)."""
    box = page.locator(f".st-key-{key} label")
    if box.count():
        box.first.click()
        wait_idle(page)


def _shot(page, name):
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_1_monitor_shows_charts(page):
    page.wait_for_selector(".st-key-monitor_chart_volume .main-svg")
    assert page.locator(".js-plotly-plot").count() == 1  # one tab per chart: the open one (volume) is drawn
    assert page.get_by_text("评论情感").count() > 0
    wait_idle(page)
    _shot(page, "monitor")


def test_2_label_one_example(page, server):
    store = server[1]
    who = page.get_by_label("Who is working")
    who.fill("browser")
    who.press("Enter")
    wait_idle(page)
    go(page, "Label")
    button = page.locator("button", has_text="正面").first
    try:
        button.wait_for()
    finally:
        _shot(page, "label")
    _shot(page, "label")
    before = _labelled(store)
    button.click()
    wait_idle(page)
    assert _labelled(store) == before + 1


def test_3_retrain_and_activate(page, server):
    store = server[1]
    go(page, "Train")
    page.locator(".st-key-train_full button").first.click()
    page.locator(".st-key-train_activate button").first.wait_for(timeout=180_000)
    wait_idle(page)
    _shot(page, "train")
    assert [v["version"] for v in core_json(store, "versions", M)] == [1, 2]
    page.locator(".st-key-train_activate_reason input").first.fill("browser test")
    page.locator(".st-key-train_activate_reason input").first.press("Enter")
    wait_idle(page)
    _tick(page, "train_activate_confirm")
    _tick(page, "train_activate_force")
    page.locator(".st-key-train_activate button").first.click()
    wait_idle(page)
    assert _active(store) == 2


def test_4_reactivate_the_previous_version(page, server):
    store = server[1]
    go(page, "Versions")
    page.locator(".st-key-versions_reactivate").wait_for()
    reason = page.locator(".st-key-versions_reason input").first
    reason.fill("roll back from the browser")
    reason.press("Enter")
    wait_idle(page)
    page.locator(".st-key-versions_confirm label").first.click()
    wait_idle(page)
    _tick(page, "versions_force")
    page.locator(".st-key-versions_reactivate button").first.click()
    wait_idle(page)
    _shot(page, "versions")
    assert _active(store) == 1
    last = next(e for e in core_json(store, "events", M) if e["action"] == "activate")
    details = json.loads(last["details"])
    assert (details["to_version"], details["reason"], last["user"]) == (1, "roll back from the browser", "browser")


def test_5_predict_and_data_pages(page, server):
    go(page, "Predict")
    page.get_by_label("One text per line").fill("房间很干净，服务也很好\n<img src=x onerror=alert(1)>")
    page.locator(".st-key-predict_run button").first.click()
    wait_idle(page)
    page.get_by_text("predictions logged").wait_for()
    _shot(page, "predict")
    go(page, "Data")
    _shot(page, "data")
    assert page.get_by_text("Create a model").count() > 0
