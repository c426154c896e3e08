"""A first `streamlit run app.py` on an empty folder: the server builds the demo store by itself,
so the API answers without anyone opening the dashboard, and the build shows progress in the log."""
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from core import demo
from core.store import Store
from servers import launch_chromium, start_server, stop_server


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.mark.browser
def test_the_server_builds_the_demo_store_at_start_and_the_api_answers_without_a_browser(tmp_path):
    store_path = tmp_path / "fresh" / "mms.duckdb"
    base, proc = start_server({"MMS_STORE": str(store_path)}, tmp_path / "streamlit.log")
    log_path = tmp_path / "streamlit.log"
    try:
        sidebar = _sidebar_during_the_build(base, store_path, tmp_path)
        assert sidebar is not None, "the dashboard did not show the build's progress"
        assert not {"ui", "_ui", "data", "label", "monitor", "train"} & set(sidebar.lower().split()), sidebar
        url = f"{base}/api/models"
        statuses = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                status, body = _get(url)
            except OSError:  # not listening yet
                time.sleep(0.5)
                continue
            statuses.append(status)
            if status == 200:
                break
            assert status == 503 and "building the demo store" in body["error"], body
            time.sleep(1)
        assert statuses and statuses[-1] == 200, f"no answer after 240 s: {log_path.read_text()[-2000:]}"
        assert [m["name"] for m in body] == [demo.MODEL]
        assert Store(store_path).exists()
        assert not list(store_path.parent.glob(".demo-build-*")), "the scratch folder was left behind"
        text = log_path.read_text()
        assert "building the demo store" in text and "demo store ready" in text
    finally:
        stop_server(proc)


def _sidebar_during_the_build(url: str, store_path: Path, tmp_path: Path) -> str | None:
    """The sidebar's text while the dashboard shows the first build's progress (None if the
    build ended before the page showed it)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    page.goto(url, timeout=10_000)
                    break
                except Exception:  # not listening yet
                    time.sleep(0.5)
            page.get_by_text("building the demo store").first.wait_for(timeout=60_000)
            if store_path.exists():
                return None
            page.screenshot(path=str(tmp_path / "first-start.png"))
            side = page.locator('[data-testid="stSidebar"]')
            return side.inner_text() if side.count() else ""
        finally:
            browser.close()


def test_a_build_killed_half_way_leaves_no_store_and_the_next_start_builds_a_whole_one(tmp_path, monkeypatch):
    """The store file appears only once the build is whole, so a crash never leaves a store to trust."""
    store = Store(tmp_path / "mms.duckdb")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill would stop it, after the model and its files were written

    monkeypatch.setattr(demo, "build_store", _small_build(demo.build_store))
    predict_texts = demo.predict.predict_texts
    monkeypatch.setattr(demo.predict, "predict_texts", crash)
    with pytest.raises(KeyboardInterrupt):
        demo.ensure_demo_store(store)
    assert not store.exists()
    assert not list(tmp_path.glob(".demo-build-*"))
    monkeypatch.setattr(demo.predict, "predict_texts", predict_texts)
    assert demo.ensure_demo_store(store) is True
    assert store.exists()
    assert demo.ensure_demo_store(store) is False  # once: an existing store is never rebuilt


def _small_build(build):
    def small(store, user="demo", progress=None):
        return build(store, user, n_train=200, n_test=80, n_traffic=100, weeks=1, progress=progress)
    return small
