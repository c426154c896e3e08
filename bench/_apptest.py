"""Shared by the benchmarks that render pages: the dashboard run through AppTest the way
tests/conftest.py's `app` fixture runs it (app.py, its st.navigation, user and role preset)."""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from _common import ROOT, timer

PAGES = ["pages/monitor.py", "pages/label.py", "pages/train.py", "pages/versions.py", "pages/data.py",
         "pages/predict.py"]
USER = "bench"

# AppTest sets session state from the main thread, which Streamlit reports on every run.
logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(
    lambda record: "missing ScriptRunContext" not in record.getMessage())


class Dashboard:
    """The dashboard on one store: `with Dashboard(path) as d: at, seconds = d.open("pages/label.py")`."""

    def __init__(self, store_path):
        self.store_path = Path(store_path)

    def __enter__(self) -> "Dashboard":
        import pytest

        from tests.conftest import use_navigation_in_apptest

        self._patch = pytest.MonkeyPatch()
        use_navigation_in_apptest(self._patch)
        self._patch.setenv("MMS_STORE", str(self.store_path))
        return self

    def __exit__(self, *exc) -> None:
        self._patch.undo()

    def open(self, page: str = "pages/monitor.py", role: str = "owner"):
        """A new session shown `page`: returns the AppTest and the seconds of the page's first
        render (for Monitor, the app's first run; for another page, the switch to it)."""
        from streamlit.testing.v1 import AppTest

        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.session_state["user"] = USER
        at.session_state["role"] = role
        with timer() as t:
            at.run()
        check(at)
        if page == "pages/monitor.py":
            return at, t.seconds
        with timer() as t:
            at.switch_page(page).run()
        check(at)
        return at, t.seconds


def check(at) -> None:
    if at.exception:
        raise RuntimeError(f"the page raised: {at.exception[0].message}")
    errors = [e.value for e in at.error]
    if errors:
        raise RuntimeError(f"the page shows an error: {errors[0]}")


def warm_up() -> None:
    """Render the app once on an empty store: a server process has its imports done before a
    session's first run, so a first render measured after this counts cold data, not imports."""
    from core.store import Store

    folder = Path(tempfile.mkdtemp(prefix="mms-bench-empty-"))
    try:
        empty = Store(folder / "empty.duckdb")
        with empty.connect():
            pass  # creates the file: app.py builds the demo store only where none exists
        with Dashboard(empty.path) as d:
            for page in PAGES:
                d.open(page)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
