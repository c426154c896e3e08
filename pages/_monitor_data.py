"""The Monitor's data: statistics and drift of one view, read once per store revision and view and
shared by every session (st.cache_data)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core import drift, settings, stats
from core.slices import Slice


@st.cache_data(show_spinner=False, max_entries=64)
def load_drift(_store, store_key: str, revision: tuple, name: str, by: str, where: Slice, window,
               _by_line: pd.DataFrame, _overall: pd.DataFrame, budget: float | None,
               attempt: int) -> tuple[drift.DriftReport, pd.DataFrame, pd.DataFrame]:
    """Drift of the slice's line x periods against the reference (cells are also cached in the
    store), and the statistics with each estimate's interval widened where drift is flagged;
    `attempt` changes while cells are pending, so a rerun looks at the store again."""
    keep = None if budget is None else float(settings.get("drift_keep_seconds"))  # "measure now": everything
    report = drift.drift_by_line_and_period(_store, name, by, _by_line, window=window, version=where.version,
                                            budget_seconds=budget, keep_seconds=keep)
    return (report, *stats.with_shift(_by_line, _overall, report.cells))


def drift_report(store, key: str, revision: tuple, name: str, by: str, where: Slice, window,
                 by_line: pd.DataFrame, overall: pd.DataFrame) -> tuple[drift.DriftReport, pd.DataFrame, pd.DataFrame]:
    """Drift within the render's time budget (none while the server measures this view), or all of it
    when the user asked to measure the rest; with the statistics as load_drift gives them."""
    everything = st.session_state.pop("monitor_measure_rest", False)
    budget = None if everything else 0.0 if drift.measuring(store, name, by, window, where.version) \
        else float(settings.get("drift_render_seconds"))
    attempt = st.session_state.get("monitor_drift_attempt", 0)
    report, by_line, overall = load_drift(store, key, revision, name, by, where, window, by_line, overall, budget,
                                          attempt)
    if report.pending:
        st.session_state["monitor_drift_attempt"] = attempt + 1
        drift.measure_in_background(store, name, by, by_line, window=window, version=where.version)
    return report, by_line, overall


@st.cache_data(show_spinner=False, max_entries=64)
def load_stats(_store, store_key: str, revision: tuple, name: str, by: str,
               where: Slice) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Statistics by line and over all lines (one read of the rollups), cached per store
    (`store_key` names `_store`, which is not hashed), revision and slice: reruns cost nothing."""
    return stats.stats_by_line_and_overall(_store, name, by, **where.filters())
