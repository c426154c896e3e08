"""Two labellers on overlapping items and an owner's review of their disagreement, in chromium
against `streamlit run app.py`: what each labeller clicks, what the owner decides, and the
training set the store holds afterwards."""
import re

import pytest

from core import agreement, auth, predict
from core import store as db
from servers import ROOT, launch_chromium, start_server, stop_server, wait_ready, go, sign_in, core_json
from conftest import copy_store

pytestmark = pytest.mark.browser

SHOTS = ROOT / "tests" / "screenshots"
M = "评论情感"
LINE = "团队线"  # the items of this test, on a line of their own: the demo's labels stay out of the batches
TEXTS = ["质量很好，物流也快", "太差了，再也不买", "包装破损，客服不理人", "非常满意，推荐购买"]


@pytest.fixture
def served(_seeded_template, tmp_path):
    folder = tmp_path / "store"
    store = copy_store(_seeded_template, folder)
    auth.add_user(store, "olga", "owner", "owner-pass-1", by="setup")
    auth.add_user(store, "lars", "labeller", "labeller-pass", by="olga")
    auth.add_user(store, "mia", "labeller", "labeller-pass-2", by="olga")
    predict.predict_texts(store, M, TEXTS, "olga", business_line=LINE)
    url, proc = start_server({"MMS_STORE": str(store.path)}, folder / "streamlit.log")
    try:
        wait_ready(url, proc, folder / "streamlit.log")
        yield url, store, proc
    finally:
        stop_server(proc)


def wait_idle(page) -> None:
    """Until Streamlit has finished running the script: the Monitor a sign-in lands on can take
    minutes on a loaded machine (its first render measures drift)."""
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=600_000)
    page.wait_for_timeout(300)



def _labelled_on_line(store) -> int:
    return sum(int(r["labelled"]) for r in core_json(store, "stats", M, "--by", "month", "--no-drift")
               if r.get("business_line") == LINE)


def _sign_in(browser, url, name, password):
    return sign_in(browser.new_context(viewport={"width": 1400, "height": 1000}).new_page(), url, name, password)



def _label_the_line(page, decide) -> dict[int, str]:
    """On the Label page, filter to LINE and label every item shown with decide(prediction id)."""
    go(page, "Label")
    lines = page.locator(".st-key-label_lines input")
    lines.click()
    lines.fill(LINE)
    lines.press("Enter")
    page.keyboard.press("Escape")
    wait_idle(page)
    given = {}
    while True:
        page.locator(".st-key-label_lines").wait_for()
        if page.get_by_text("Nothing left to label here").count():
            return given
        caption = page.get_by_text(re.compile(r"prediction \d+$")).first.inner_text()
        pid = int(caption.rsplit(" ", 1)[1])
        label = decide(pid)
        page.locator(f".st-key-label_as_{0 if label == '正面' else 1} button").click()
        wait_idle(page)
        given[pid] = label


def test_two_labellers_overlap_and_an_owner_decides_their_disagreement(served):
    from playwright.sync_api import sync_playwright

    url, store, proc = served
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            olga = _sign_in(browser, url, "olga", "owner-pass-1")
            go(olga, "Review")
            olga.locator(".st-key-review_share input").fill("100")
            olga.locator(".st-key-review_share input").press("Enter")
            wait_idle(olga)
            olga.locator(".st-key-review_share_save button").click()
            olga.get_by_text("are labelled again by a second labeller").wait_for()

            lars = _sign_in(browser, url, "lars", "labeller-pass")
            by_lars = _label_the_line(lars, lambda pid: "正面")
            assert len(by_lars) == len(TEXTS)  # nobody had labelled anything on the line: all his
            assert _labelled_on_line(store) == len(TEXTS)

            mia = _sign_in(browser, url, "mia", "labeller-pass-2")
            disputed = min(by_lars)
            by_mia = _label_the_line(mia, lambda pid: "负面" if pid == disputed else "正面")
            assert set(by_mia) == set(by_lars)  # the whole line again (share 100 %), blind
            assert _labelled_on_line(store) == len(TEXTS) - 1  # the disagreement counts nowhere yet

            olga.reload()
            olga.get_by_role("heading", name="Review").first.wait_for()
            wait_idle(olga)
            olga.locator(".st-key-review_item").get_by_text(f"prediction {disputed}").wait_for()
            said = olga.locator(".st-key-review_said").inner_text()
            assert "lars" in said and "mia" in said
            olga.screenshot(path=str(SHOTS / "review.png"), full_page=True)
            olga.locator(".st-key-review_as_1 button").click()  # 负面, as mia said
            olga.get_by_text("Nothing waits for review").wait_for()
            wait_idle(olga)
            olga.set_viewport_size({"width": 1400, "height": 2000})  # the page scrolls inside: show it all
            wait_idle(olga)
            olga.screenshot(path=str(SHOTS / "review_done.png"), full_page=True)
            assert _labelled_on_line(store) == len(TEXTS)
        except Exception:
            for i, context in enumerate(browser.contexts):
                for page in context.pages:
                    page.screenshot(path=str(SHOTS / f"FAILED-review-{i}.png"), full_page=True)
            raise
        finally:
            browser.close()
    stop_server(proc)
    with store.connect() as con:
        model_id = con.execute("SELECT model_id FROM models WHERE name = ?", [M]).fetchone()[0]
        rows = db.examples_with_tokens(con, model_id, "train", "none")
        line = con.execute("SELECT example_id, prediction_id FROM examples WHERE business_line = ?", [LINE]).df()
    trained = rows.merge(line, on="example_id")
    assert dict(zip(trained["prediction_id"].astype(int), trained["label"])) == \
        {pid: "负面" if pid == disputed else "正面" for pid in by_lars}
    assert agreement.review_queue(store, M).empty
