"""Labelling by keyboard in a real browser: `streamlit run app.py` on a copy of the seeded store,
Debian's chromium through Playwright. Twenty examples decided with the keys (accept the model's
suggestion, a label, skip, unclear, undo), then the store is read once the server has let it go."""
import re

import pytest

from core import agreement, feedback, registry
from core import store as db
from servers import ROOT, launch_chromium, start_server, stop_server, wait_idle, wait_ready
from conftest import copy_store

M = "评论情感"
USER = "keys"
GUIDELINES = ("**正面** when the review praises anything.\n\n"
              "<script>window.mmsInjected = 1</script><img src=x onerror=\"window.mmsInjected = 2\">")
# 24 keys: 22 decisions, two of them taken back (Z), so 20 stand
KEYS = ["a", "1", "2", "s", "u", "a", "z", "1", "a", "2", "s", "u", "a", "1", "z", "2", "a", "u", "1", "a",
        "a", "2", "1", "s"]


@pytest.fixture
def server(_seeded_template, tmp_path):
    folder = tmp_path / "store"
    store = copy_store(_seeded_template, folder)
    feedback.set_guidelines(store, M, GUIDELINES, "owner")
    url, proc = start_server({"MMS_STORE": str(store.path), "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"},
                             folder / "streamlit.log")
    wait_ready(url, proc, folder / "streamlit.log")
    yield url, store, proc
    stop_server(proc)


def shown(page) -> int:
    """The prediction the page shows now (its line '... · prediction N')."""
    line = page.locator(".st-key-label_item [data-testid='stText']").first.inner_text()
    return int(re.search(r"prediction (\d+)$", line).group(1))


def suggestion(page) -> str:
    text = page.locator(".st-key-label_accept button").inner_text()
    return re.search(r"suggestion: (\S+) \(", text).group(1)


def metric(page, label: str) -> str:
    box = page.get_by_test_id("stMetric").filter(has_text=label)
    return box.get_by_test_id("stMetricValue").inner_text().strip()


def press(page, key: str, before: int) -> None:
    page.keyboard.press(key)
    page.wait_for_function("(before) => { const el = document.querySelector("
                           "'.st-key-label_item [data-testid=\"stText\"]');"
                           " return el && !el.textContent.endsWith('prediction ' + before); }", arg=before)
    wait_idle(page)


def open_label_page(browser, url):
    """The Label page in open mode, working as USER, with its first example drawn."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(90_000)
    page.goto(url + "/label")
    who = page.get_by_label("Who is working")
    who.fill(USER)
    who.press("Enter")
    page.locator(".st-key-label_accept button").wait_for()
    wait_idle(page)
    return page


def test_twenty_decisions_by_keyboard_reach_the_store(server):
    from playwright.sync_api import sync_playwright

    url, store, proc = server
    labels = {"1": "正面", "2": "负面", "u": "unclear"}
    decided: dict[int, str] = {}  # prediction -> label, or "skip"
    history: list[int] = []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = open_label_page(browser, url)
        guide = page.locator(".st-key-label_guidelines")
        assert "<script>window.mmsInjected = 1</script>" in guide.inner_text()
        assert guide.locator("img").count() == 0 and guide.locator("strong", has_text="正面").count() == 1
        page.evaluate("document.activeElement.blur()")  # keys go to the page, not the name box
        for key in KEYS:
            now = shown(page)
            if key == "z":
                undone = history.pop()
                decided.pop(undone)
                page.keyboard.press(key)
                page.wait_for_function("(want) => document.querySelector('.st-key-label_item [data-testid=\"stText\"]')"
                                       ".textContent.endsWith('prediction ' + want)", arg=undone)
                wait_idle(page)
                continue
            decided[now] = suggestion(page) if key == "a" else labels.get(key, "skip")
            history.append(now)
            press(page, key, now)
        assert page.evaluate("window.mmsInjected") is None
        counts = {name: metric(page, name) for name in ("You labelled today", "Skipped today", "Unclear today")}
        page.screenshot(path=str(ROOT / "tests" / "screenshots" / "label_keys.png"), full_page=True)
        browser.close()
    stop_server(proc)  # the server holds the store; read it once it has let go

    assert len(decided) == 20
    skipped = {pid for pid, label in decided.items() if label == "skip"}
    labelled = {pid: label for pid, label in decided.items() if label != "skip"}
    with store.connect() as con:
        model = registry.find_model(con, M)
        rows = db.predictions_by_id(con, model.model_id, list(decided))
    in_store = dict(zip(rows["prediction_id"].astype(int), rows["feedback_label"]))
    assert {pid: in_store[pid] for pid in labelled} == labelled
    assert all(in_store[pid] is None or in_store[pid] != in_store[pid] for pid in skipped)  # no label: NaN/None
    assert feedback.skipped(store, M, USER, list(decided)) == skipped
    unclear = {pid for pid, label in labelled.items() if label == "unclear"}
    queue = agreement.review_queue(store, M)
    assert unclear <= set(queue.loc[queue["reason"] == "unclear", "prediction_id"].astype(int))
    mine = feedback.labelled_counts(store, M, user=USER)
    assert mine.get("skip", 0) == len(skipped) and mine.get("unclear", 0) == len(unclear)
    assert counts == {"You labelled today": str(len(labelled) - len(unclear)), "Skipped today": str(len(skipped)),
                      "Unclear today": str(len(unclear))}


def test_the_bulk_table_wraps_full_texts_and_takes_labels_by_keyboard(server):
    from playwright.sync_api import sync_playwright

    url, store, proc = server
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = open_label_page(browser, url)
        page.locator(".st-key-label_bulk label").first.click()
        wait_idle(page)
        grid = page.locator("[data-testid='stDataFrameResizable']").first
        box = grid.bounding_box()
        assert box["height"] > 20 * 65  # rows tall enough to wrap (the grid wraps rows over 64 px only)
        page.mouse.click(box["x"] + 40, box["y"] + 60)  # the first row's label cell
        page.wait_for_timeout(500)
        for key in ("Enter", "负", "Enter", "Escape", "Control+Enter"):  # the grid is slow to answer under load
            page.keyboard.type(key) if len(key) == 1 else page.keyboard.press(key)
            page.wait_for_timeout(1000)
        try:
            page.get_by_text("Recorded 1 labels").wait_for()
        finally:
            page.screenshot(path=str(ROOT / "tests" / "screenshots" / "label_bulk_keys.png"), full_page=True)
        wait_idle(page)
        browser.close()
    stop_server(proc)
    assert feedback.labelled_counts(store, M, user=USER) == {"负面": 1}


CUT = """(el) => [el, ...el.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1
                                                  && getComputedStyle(e).overflowX !== 'visible')"""


def test_at_1000_px_the_label_buttons_and_counters_are_not_cut(server):
    """Beside the open sidebar at 1000 px, fixed columns cut the label buttons to "正…" and "负…" and the
    queue's count to "1…": a labeller could not read what a button does or how much is left."""
    from playwright.sync_api import sync_playwright

    url, _, _ = server
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = open_label_page(browser, url)
        page.set_viewport_size({"width": 1000, "height": 1000})
        page.wait_for_timeout(500)
        for name in ("正面", "负面", "skip", "unclear"):
            button = page.get_by_role("button", name=re.compile(f"^{name}")).first
            assert not button.evaluate(CUT), f"the {name} button is cut"
        values = page.get_by_test_id("stMetricValue")
        assert values.count() == 5
        for i in range(values.count()):
            assert not values.nth(i).evaluate(CUT), values.nth(i).inner_text()
        browser.close()
