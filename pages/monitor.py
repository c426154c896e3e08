"""Monitor (analysts): prediction statistics per business line and period, the three accuracies
(estimated, audited, hard examples) kept apart, drift against a reference, and a way to send a
slice or its audit sample to the Label page."""
from __future__ import annotations

import streamlit as st

from core import settings, stats
from pages import _alerts, _charts, _monitor_filters, _monitor_sections, _monitor_table, _ordinal, _ui
from pages._monitor_data import drift_report, load_stats


def main() -> None:
    name = _ui.require_model()
    store = _ui.store()
    key = str(store.path)
    st.title("Monitor")
    _alerts.section(name)  # open and acknowledged alerts, and their thresholds
    with _ui.errors_as_messages():
        revision = _ui.revision()
        with st.spinner("Reading the prediction log…"):
            lines, first, last = _ui.slice_options(store, key, name, revision)
        labels, versions = _ui.labels_and_versions(store, key, revision, name)
        grades = _ordinal.grades(store, key, revision, name)
    if first is None:
        st.info(f"Model {_ui.md_escape(name)} has no predictions yet. Log some on the Predict page, or with "
                "`python -m core predict`, and they will show up here.")
        st.stop()
    low = float(settings.get("low_confidence"))
    st.caption(f"Model {_ui.md_escape(name)}. Low confidence means a top probability below {low:.2f}: the "
               f"{settings.SETTINGS['low_confidence'].env} setting.")

    _monitor_filters.reset_filters_on_model_change(name)
    _monitor_filters.follow_new_days(first, last)
    _monitor_filters.from_url(name, lines, first, last, versions)
    by, where = _monitor_filters.filters(lines, first, last, versions)
    _monitor_filters.to_url(name, by, where, st.session_state.get("monitor_dates"), first, last)
    with _ui.errors_as_messages(), st.spinner("Computing statistics…"):
        by_line, overall = load_stats(store, key, revision, name, by, where)
    if by_line.empty:
        st.info("No predictions match these filters. Widen the dates or pick other business lines.")
        st.stop()

    window = _monitor_filters.reference_window(first, last)
    with _ui.errors_as_messages(), st.spinner("Measuring drift against the reference…"):
        # the estimate's interval widens where drift is flagged, and says why
        report, by_line, overall = drift_report(store, key, revision, name, by, where, window, by_line, overall)
    running = stats.without_running_period(overall, by)[1]
    _monitor_sections.headline(overall, by, report)
    if grades:
        _ordinal.headline(overall, grades, by, running)
    _monitor_sections.pending_note(report)
    colours = _ui.line_colours(lines)
    _charts.charts(by_line, overall, labels, by, low, report, colours, grades)  # in tabs: the open one is drawn
    _monitor_sections.drift_view(report, by)
    if grades:
        _ordinal.grade_drift(report, by)
    _monitor_sections.send_to_label(name, by_line, by, where, first, last)
    _monitor_table.table(by_line, name, by, report)


main()
