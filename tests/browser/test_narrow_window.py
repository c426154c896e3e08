"""Issue 22 items 6 and 7 and the Train page as a user met them in chromium against `streamlit run
app.py`, at 1000 px beside the open sidebar and at 1400 px: Train's tiles and buttons cut ("81.…",
"Full r…"), the version comparison's second version off screen, the Predict page's typed results
under "Upload a file" and both downloads under one name. Screenshots go to tests/screenshots."""

import pytest

from core import train
from servers import chromium_session, go, serving, wait_idle

pytestmark = pytest.mark.browser

from test_sign_in_tables_and_forms import CUT, SHOTS  # noqa: E402  the same "is it cut" check and folder
from conftest import copy_store

M = "评论情感"


@pytest.fixture(scope="module")
def served(_seeded_template, tmp_path_factory):
    """The seeded demo store with a version 2 not active (Train shows it beside version 1), in open mode
    (no users: this machine)."""
    folder = tmp_path_factory.mktemp("pages1000") / "store"
    store = copy_store(_seeded_template, folder)
    train.train_version(store, M, "olga", model_config={"estimator": "complement_nb"})
    with serving({"MMS_STORE": str(store.path)}, folder / "streamlit.log") as url:
        yield url, store


@pytest.fixture(scope="module")
def browser(served):
    yield from chromium_session(SHOTS)


def opened(browser, url, title, width, height=1000):
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.set_default_timeout(120_000)
    page.goto(url)
    wait_idle(page)
    go(page, title)
    return page


def settled(page) -> None:
    """Until the script has finished its run (the status widget shows only after a while)."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')
    page.wait_for_timeout(1000)


def cut(locator) -> bool:
    return locator.evaluate(CUT)


def test_train_tiles_and_buttons_are_whole_at_1000_px(served, browser):
    url, _ = served
    for width in (1000, 1400):
        page = opened(browser, url, "Train", width, height=3600)
        # three plan tiles, then four of the version beside the active one
        page.wait_for_function("document.querySelectorAll('[data-testid=\"stMetric\"]').length >= 7")
        settled(page)
        metrics = page.get_by_test_id("stMetric")
        for i in range(metrics.count()):
            assert not cut(metrics.nth(i)), f"metric {metrics.nth(i).inner_text()!r} is cut at {width} px"
        for name in ("Full retrain", "Incremental update"):
            button = page.get_by_role("button", name=name).first
            assert not cut(button), f"{name} is cut at {width} px"
        page.screenshot(path=str(SHOTS / f"pages-train-{width}.png"))
        page.context.close()


def test_the_comparison_shows_the_base_and_a_version_whole_at_1000_px(served, browser):
    url, _ = served
    for width in (1000, 1400):
        page = opened(browser, url, "Versions", width, height=4200)
        table = page.locator(".st-key-versions_diff_table")
        table.wait_for()
        settled(page)
        table.scroll_into_view_if_needed()
        page.wait_for_timeout(1500)
        scroller = table.locator(".dvn-scroller").first
        content, shown = scroller.evaluate("s => [s.scrollWidth, s.clientWidth]")
        assert content <= shown, f"the comparison scrolls sideways at {width} px: {content} px in {shown} px"
        assert not cut(page.locator(".st-key-versions_diff_a")), f"the base version is cut at {width} px"
        page.get_by_text("Δ: the version minus the base").wait_for()
        page.screenshot(path=str(SHOTS / f"pages-versions-{width}.png"))
        page.context.close()


def test_predict_keeps_typed_and_file_results_apart_and_previews_the_file(served, browser, tmp_path):
    url, _ = served
    page = opened(browser, url, "Predict", 1000, height=2400)
    page.locator(".st-key-predict_texts textarea").fill("房间很干净，服务也很好\n快递太慢了，包装也破了")
    page.locator(".st-key-predict_run button").click()
    page.get_by_text("2 predictions logged with version 1: the typed texts").wait_for()
    wait_idle(page)
    with page.expect_download() as typed:
        page.locator(".st-key-predict_download_typed button").click()
    page.get_by_role("tab", name="Upload a file").click()
    page.wait_for_timeout(500)
    assert not page.get_by_text("the typed texts.").is_visible()
    assert not page.locator(".st-key-predict_download_typed").is_visible()
    upload = tmp_path / "orders.csv"
    upload.write_text("text,business_line\n" + "".join(f"第{i}单：物流很快,数码\n" for i in range(9)), encoding="gbk")
    page.locator(".st-key-predict_file input[type=file]").set_input_files(str(upload))
    page.get_by_text("orders.csv: 9 rows").wait_for()  # the preview, before predicting
    wait_idle(page)
    page.screenshot(path=str(SHOTS / "pages-predict-preview-1000.png"))
    page.locator(".st-key-predict_file_run button").click()
    page.get_by_text("9 predictions logged with version 1: orders.csv").wait_for()
    wait_idle(page)
    with page.expect_download() as from_file:
        page.locator(".st-key-predict_download_file button").click()
    names = typed.value.suggested_filename, from_file.value.suggested_filename
    assert names[0] != names[1] and "orders" in names[1], names
    page.screenshot(path=str(SHOTS / "pages-predict-1000.png"))
    page.set_viewport_size({"width": 1400, "height": 2400})
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SHOTS / "pages-predict-1400.png"))
    page.context.close()
