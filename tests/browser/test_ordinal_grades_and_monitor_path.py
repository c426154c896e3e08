"""Issue 22 as a new user met it in chromium against `streamlit run app.py`: an ordinal model's grades
on the Data page (items 1 and 11: their order, and no traceback in the log after Create model), and
/monitor opening the Monitor without Streamlit's Deploy button (item 12)."""

import pytest

from servers import ROOT, chromium_session, core_json, go, serving, start_server, stop_server, wait_idle, wait_ready
from conftest import copy_store

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=120_000)  # a wait for the rerun on a loaded machine, not a time limit on the user

pytestmark = pytest.mark.browser

SHOTS = ROOT / "tests" / "screenshots"


@pytest.fixture(scope="module")
def served(_seeded_template, tmp_path_factory):
    """The seeded demo store, open (no users): the dashboard on this machine needs no sign-in."""
    folder = tmp_path_factory.mktemp("newuser") / "store"
    store = copy_store(_seeded_template, folder)
    log = folder / "streamlit.log"
    with serving({"MMS_STORE": str(store.path)}, log) as url:
        yield url, store, log


@pytest.fixture(scope="module")
def browser(served):
    yield from chromium_session(SHOTS)


def opened(browser, url, path=""):
    page = browser.new_context(viewport={"width": 1400, "height": 1400}).new_page()
    page.set_default_timeout(120_000)
    page.goto(url + path)
    wait_idle(page)
    return page


def test_an_ordinal_models_grades_keep_their_own_order_not_the_files_frequencies(served, browser, tmp_path):
    url, store, log = served
    page = opened(browser, url)
    go(page, "Data")
    page.get_by_text("Ordinal (排序: grades in order)").click()
    wait_idle(page)
    grades = ["4"] * 9 + ["5"] * 7 + ["3"] * 5 + ["1"] * 3 + ["2"] * 2  # most frequent first: 4,5,3,1,2
    upload = tmp_path / "grades.csv"
    upload.write_text("text,label\n" + "".join(f"第{i}张工单，紧急程度{g},{g}\n" for i, g in enumerate(grades)),
                      encoding="utf-8")
    page.locator(".st-key-create_file input[type=file]").set_input_files(str(upload))
    wait_idle(page)
    expect(page.locator(".st-key-create_labels input")).to_have_value("1,2,3,4,5")
    expect(page.get_by_text("Grades, lowest first: 1 < 2 < 3 < 4 < 5")).to_be_visible()  # shown back before Create
    page.locator(".st-key-create_name input").fill("工单紧急度")
    page.get_by_role("button", name="Create model").click()
    page.get_by_text("Model 工单紧急度 created with 26 rows").wait_for()
    wait_idle(page)
    page.screenshot(path=str(SHOTS / "newuser-data-ordinal-created.png"))
    created = next(m for m in core_json(store, "models") if m["model"] == "工单紧急度")
    assert created["labels"].replace(" ", "") == "1,2,3,4,5"
    text = log.read_text()
    assert "create_test_share" not in text and "Traceback" not in text, text[-3000:]
    page.context.close()


def test_monitor_opens_at_its_own_path_and_no_deploy_button_shows(served, browser):
    url, store, log = served
    page = opened(browser, url, "/monitor")
    page.get_by_role("heading", name="Monitor").first.wait_for()
    expect(page.get_by_text("Page not found")).to_have_count(0)
    expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
    page.screenshot(path=str(SHOTS / "newuser-monitor-path.png"))
    page.context.close()


NOISE = ("No runtime found", "RuntimeWarning", "leaked semaphore", "Traceback")


def test_the_log_stays_quiet_while_a_browser_watches_the_first_build(browser, tmp_path):
    """A first start with the dashboard open during the demo build, to the server's shutdown: only MMS's
    own lines. (A page script run during the build used to be what the worker pool's forkserver ran.)"""
    log = tmp_path / "streamlit.log"
    url, proc = start_server({"MMS_STORE": str(tmp_path / "fresh" / "mms.duckdb")}, log)
    try:
        wait_ready(url, proc, log)
        # the module's browser: a second sync_playwright() beside it refuses to start in its event loop
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(600_000)
        page.goto(url)
        page.get_by_role("heading", name="Monitor").first.wait_for()  # after the build, the Monitor
        wait_idle(page)
        page.close()
    finally:
        stop_server(proc)
    text = log.read_text()
    assert "demo store ready" in text
    noise = [line for line in text.splitlines() if any(n in line for n in NOISE)]
    assert not noise, "\n".join(noise)
