"""A product owner puts a version in shadow on the Versions page of a running server, live traffic
comes in through the API, and the page shows the shadow's evidence beside the active version."""
import time

import pytest
import requests

from core import train
from servers import ROOT, chromium_session, go, serving, wait_idle
from conftest import copy_store

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=120_000)  # a wait for the rerun on a loaded machine, not a time limit on the user

pytestmark = pytest.mark.browser

SHOTS = ROOT / "tests" / "screenshots"
M = "评论情感"


@pytest.fixture(scope="module")
def served(_seeded_template, tmp_path_factory):
    """The seeded demo store (open mode) with version 2 trained, not active, and a server on it that
    looks for unscored predictions every half second."""
    folder = tmp_path_factory.mktemp("shadow") / "store"
    store = copy_store(_seeded_template, folder)
    train.train_version(store, M, "olga", model_config={"estimator": "complement_nb"}, activate=False)
    env = {"MMS_STORE": str(store.path), "MMS_SHADOW_SECONDS": "0.5", "MMS_ESTIMATE_MAX_ECE": "0.5"}
    with serving(env, folder / "streamlit.log") as url:
        yield url, store


@pytest.fixture(scope="module")
def browser(served):
    yield from chromium_session(SHOTS)


def test_an_owner_shadows_a_version_and_reads_its_evidence_on_the_versions_page(served, browser, reviews):
    url, store = served
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)
    page.goto(url)
    wait_idle(page)
    go(page, "Versions")
    page.get_by_role("button", name="Shadow v2").first.click()
    wait_idle(page)
    expect(page.get_by_text("v2 is in shadow")).to_be_visible()

    texts = reviews["text"].iloc[-60:].tolist()
    for line in ("书籍", "酒店"):
        answer = requests.post(f"{url}/api/models/{M}/predict", json={"texts": texts[:30] if line == "书籍"
                                                                      else texts[30:], "business_line": line},
                               timeout=120)
        assert answer.status_code == 200
        assert {p["version"] for p in answer.json()["predictions"]} == {1}  # the active version answers

    deadline = time.monotonic() + 180  # a bound, not a timing: the server scores in the background
    while time.monotonic() < deadline:
        page.reload()
        wait_idle(page)
        metric = page.locator('[data-testid="stMetric"]').filter(has_text="Predictions scored")
        if metric.count() and "60" in metric.first.inner_text():
            break
        time.sleep(2)
    evidence = page.get_by_text("Evidence of v2")
    evidence.scroll_into_view_if_needed()
    expect(evidence).to_be_visible()
    metrics = page.locator('[data-testid="stMetric"]')
    expect(metrics.filter(has_text="Predictions scored")).to_contain_text("60")
    expect(metrics.filter(has_text="Agreement")).to_contain_text("%")
    expect(metrics.filter(has_text="Estimated accuracy, v1")).to_contain_text("%")
    expect(metrics.filter(has_text="Estimated accuracy, v2")).to_contain_text("%")
    expect(page.get_by_text("none labelled yet").first).to_be_visible()  # who was right: no label yet
    per_line = page.locator('[data-testid="stDataFrame"]').filter(has=page.locator("canvas")).last
    expect(per_line).to_be_visible()
    scroller = page.locator(".st-key-versions_shadow_evidence .dvn-scroller").first
    evidence.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "shadow-versions-evidence.png"))
    widths = scroller.evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert widths[0] <= widths[1] + 1, widths  # every column fits at 1400 px: no sideways scroll
    page.set_viewport_size({"width": 1000, "height": 900})
    wait_idle(page)
    page.locator(".st-key-versions_shadow_evidence").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "shadow-versions-evidence-1000.png"))
