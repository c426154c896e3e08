"""What every page shares: the store, the selected model, who is working, errors as sentences.

Pages import this module; it holds no logic of its own beyond Streamlit plumbing.
"""
from __future__ import annotations

import datetime as dt
import re
from contextlib import contextmanager

import pandas as pd
import streamlit as st

from core import auth, demo, registry, settings, slices, stats
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


@st.cache_data(show_spinner=False, ttl=60, max_entries=32)
def demo_notice(_store, store_key: str, model: str | None) -> str | None:
    """The demo notice for the sidebar: read from the audit log once a minute, not on every rerun (the log grows
    with every label and sign-in, and the notice only changes when the store is rebuilt)."""
    return demo.demo_notice(_store, model)


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


def keyed(key, label) -> str:
    """A label after its key ("1 正面"), or the key alone when the label is that key: numeric grades
    read "1 1 · 2 2"."""
    return str(key) if str(label) == str(key) else f"{key} {label}"


def percent_digits(values) -> int:
    """Decimals that tell every two different probabilities apart (49.6% from 50.4%), 1 to 4."""
    distinct = sorted(set(float(v) for v in values))
    for digits in range(1, 5):
        shown = {round(100 * v, digits) for v in distinct}
        if len(shown) == len(distinct):
            return digits
    return 4


def wrapped_row_height(texts: pd.Series, chars_per_line: int, line_px: int = 20, most_px: int = 640) -> int | None:
    """A table row height that fits the longest text wrapped at `chars_per_line` (the grid wraps only
    rows taller than 64 px; `most_px` is about 1,100 characters, a longer text opens in full when its
    cell is clicked); None for one-line texts."""
    lines = -(-int(texts.str.len().max() or 0) // chars_per_line)
    return None if lines <= 1 else min(max(65, 10 + line_px * lines), most_px)


def fmt_pct(value) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.1%}"


def fmt_num(value, digits: int = 3) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.{digits}f}"


# where training rows came from (examples.source), as a person says it
SOURCES = {"import": "imported", "feedback": "from labelling", "review": "from review"}


def fmt_sources(rows_by_source: dict, empty: str = "none") -> str:
    """Row counts by source in words, imported first: "4,000 imported, 339 from labelling"."""
    order = [s for s in SOURCES if s in rows_by_source] + sorted(set(rows_by_source) - set(SOURCES))
    return ", ".join(f"{rows_by_source[s]:,} {SOURCES.get(s, s)}" for s in order if rows_by_source[s]) or empty


def reliability_figure(versions: list[registry.Version]):
    """Each version's reliability curve (mean confidence vs accuracy per bin; marker size: count)."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="calibrated", line={"dash": "dot"}))
    for v in versions:
        bins = v.metrics.get("reliability") or []
        fig.add_scatter(x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins], mode="lines+markers",
                        name=f"v{v.version} (ECE {fmt_num(v.metrics.get('ece'))})",
                        text=[f"{b['count']} predictions" for b in bins],
                        marker={"size": [6 + 14 * (b["count"] / max(x["count"] for x in bins)) ** 0.5 for b in bins]})
    fig.update_layout(xaxis_title="mean confidence", yaxis_title="accuracy", height=320,
                      margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig


def model_choice(version: registry.Version, key: str) -> None:
    """How the version's config was chosen (selection's candidates, or the fallback) and its reliability."""
    chosen = version.data.get("selection")
    with st.expander("What selection tried, and calibration" if chosen else "Calibration"):
        if chosen and "fallback" in chosen:
            st.warning(chosen["fallback"])
        elif chosen:
            reused = chosen.get("reused")  # an incremental update or a refit: the choice of an earlier search
            st.caption((f"Chosen in version {reused['selected_in']}, not searched again ({reused['why']}): "
                        if reused else "") + chosen.get("reason", "the config was given, not selected"))
            st.dataframe(pd.DataFrame([{"candidate": t["describe"], "CV macro-F1": t.get("cv_macro_f1"),
                                        "CV accuracy": t.get("cv_accuracy"), "seconds": t.get("seconds"),
                                        "skipped": t.get("skipped", "")} for t in chosen["tried"]]),
                         hide_index=True, key=f"{key}_tried")
        st.caption(f"Probabilities: {version.data.get('calibration', 'not recorded (an older version)')}")
        bins = version.metrics.get("reliability")
        if bins:  # confidence vs accuracy per bin; on the diagonal when calibrated
            # plotly, as every other chart of these pages: st.line_chart imported altair (1.6 s) on a first
            # render and validated its spec (0.3 s) on every render of Train and Versions, collapsed or not
            st.plotly_chart(reliability_figure([version]), key=f"{key}_reliability")
            st.caption(f"ECE {fmt_num(version.metrics.get('ece'))}; predictions per bin: "
                       + ", ".join(f"{b['low']:.1f}-{b['high']:.1f}: {b['count']}" for b in bins))


# --- charts over periods (Monitor) ------------------------------------------------------------

def line_colours(lines: list[str]) -> dict[str, str]:
    """A fixed colour per business line, distinct for up to 48 lines (Plotly's default ten made two
    of fourteen lines red), the same whichever lines a filter shows."""
    import plotly.express as px

    palette = px.colors.qualitative.Dark24 + px.colors.qualitative.Light24
    return {line: palette[i % len(palette)] for i, line in enumerate(sorted(lines))}


def period_ticks(periods, by: str, most: int = 8) -> tuple[list, list[str]]:
    """At most `most` ticks on period starts, named as the page names periods ("Nov 30", "2026-11")."""
    periods = sorted(pd.Series(pd.to_datetime(list(periods))).drop_duplicates())
    step = max(1, -(-len(periods) // most))
    shown = periods[::step]
    fmt = "%Y-%m" if by == "month" else "%b %d"
    return shown, [p.strftime(fmt) for p in shown]


def period_axis(fig, periods, by: str, running=None, most: int = 8) -> None:
    """Every x axis of `fig` over these periods: ticks on period starts (a single period read
    "23:59:59.9995 Dec 6"), half a period of room either side (an empty chart ran from -1 to 6),
    and the period in progress shaded."""
    periods = pd.to_datetime(pd.Series(list(periods))).drop_duplicates().sort_values()
    if periods.empty:
        return
    half = (periods.iloc[0] + slices.PERIOD_STEP[by] - periods.iloc[0]) / 2
    tickvals, ticktext = period_ticks(periods, by, most)
    fig.update_xaxes(type="date", tickvals=tickvals, ticktext=ticktext, tickangle=0,
                     range=[periods.iloc[0] - half, periods.iloc[-1] + half])
    if running is not None:  # on every panel of a faceted figure
        panels = {"row": "all", "col": "all"} if getattr(fig, "_grid_ref", None) else {}
        fig.add_vrect(x0=running - half, x1=running + half, fillcolor="grey", opacity=0.15, line_width=0, **panels)
