"""What every page shares: the store, the selected model, who is working, errors as sentences.

Pages import this module; it holds no logic of its own beyond Streamlit plumbing.
"""
from __future__ import annotations

import datetime as dt
import re
from contextlib import contextmanager

import pandas as pd
import streamlit as st

from core import auth, registry, settings, stats
from core.errors import MMSError
from core.store import Store

ROLES = {auth.ANALYST: "Analyst (read)", auth.LABELLER: "Labeller (read, label)", auth.OWNER: "Owner (everything)"}


ENTRY_RAN = "_entry_ran"
DEEP_LINK = "_deep_link"  # the URL a detour through app.py started from; app.py opens its page after


def _through_entry() -> None:
    """Before st.navigation has run once in a server process, Streamlit treats pages/ as an
    old-style pages folder and runs a deep-linked page without app.py: go through app.py, which
    then opens the page the link named."""
    if not st.session_state.get(ENTRY_RAN):
        st.session_state[DEEP_LINK] = st.context.url
        st.switch_page("app.py")


def store() -> Store:
    """The store in use: MMS_STORE, else data/mms.duckdb (settings declares the default)."""
    _through_entry()
    return Store(settings.get("store"))


def md_escape(text) -> str:
    """User text inside markdown, shown as typed (no emphasis, links, emoji codes or LaTeX)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\\\1", str(text))


def user() -> str:
    return st.session_state.get("user") or "anonymous"


def role() -> str:
    return st.session_state.get("role") or auth.ANALYST


def model_name() -> str | None:
    _through_entry()
    return st.session_state.get("model")


def require_model() -> str:
    """The selected model, or a guard that stops the page with a hint."""
    name = model_name()
    if not name:
        st.info("No model yet. Create one on the **Data** page, or run `python -m core demo`.")
        st.stop()
    return name


def select_model(name: str, message: str | None = None) -> None:
    """Switch the sidebar's model (its widget is already drawn this run) and rerun, with a message."""
    st.session_state["select_model"] = name
    if message:
        st.session_state["flash"] = message
    st.rerun()


def show_flash() -> None:
    """A message left by the previous run (see select_model), shown once."""
    message = st.session_state.pop("flash", None)
    if message:
        st.success(message)


@contextmanager
def errors_as_messages():
    """Turn a user's mistake (MMSError) into a sentence on the page instead of a traceback."""
    try:
        yield
    except MMSError as e:
        st.error(str(e))
        st.stop()


def revision() -> tuple:
    """Changes with every write to the store; page caches key on it."""
    return registry.store_revision(store())


def slice_options(_store, store_key: str, name: str, store_revision: tuple) -> tuple[list[str], "dt.date | None", "dt.date | None"]:
    """Business lines and the first and last day with predictions, for the filters; cached until
    a prediction is logged (labels do not change them). `store_revision` is `revision()`."""
    return _slice_options(_store, store_key, name, store_revision[1])


@st.cache_data(show_spinner=False, max_entries=16)
def _slice_options(_store, store_key: str, name: str, last_prediction_id):
    overview = stats.prediction_overview(_store, name)
    if overview["first"] is None:
        return [], None, None
    return overview["business_lines"], overview["first"].date(), overview["last"].date()


@st.cache_data(show_spinner=False, max_entries=16)
def labels_and_versions(_store, store_key: str, revision: tuple, name: str) -> tuple[list[str], dict[int, str]]:
    """The model's labels, and its versions named for a version filter ("v2 (active)")."""
    labels = registry.get_model(_store, name).labels
    versions = {v.version: f"v{v.version}" + (" (active)" if v.status == registry.ACTIVE else "")
                for v in registry.list_versions(_store, name)}
    return labels, versions


def progress_callback(bar):
    """Adapt core's progress(fraction, message) to a st.progress bar."""
    def update(fraction: float, message: str) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message)
    return update


def fmt_pct(value) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.1%}"


def fmt_num(value, digits: int = 3) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.{digits}f}"
