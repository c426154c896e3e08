"""The Monitor's sections: the latest period's headline and the three accuracies, the drift banner
and view, and sending a slice to the Label page."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from core import auth, drift, monitoring, slices, stats
from core.slices import Slice, period_label
from pages import _ordinal, _ui
from pages._monitor_table import share_column, without_blanks


def pending_note(report: drift.DriftReport) -> None:
    """Say which cells are not measured yet, and offer to measure them now."""
    if not report.pending:
        return
    total = len(report.cells)
    # the button under the note: in a fifth of the row it read "Measure t…" at 1000 px
    st.info(f"Drift is measured for {total - report.pending} of {total} line x periods (newest first); the "
            f"server measures the other {report.pending} in the background, and they are never flagged "
            "until measured. Rerun the page to see them, or measure them now.", icon=":material/hourglass_top:")
    if st.button("Measure the rest now", key="monitor_measure_rest_button"):
        st.session_state["monitor_measure_rest"] = True
        st.rerun()


def delta_text(value, fmt: str) -> str | None:
    if value is None:
        return None
    if fmt == "count":
        return f"{value:+,.0f}"
    if fmt == "pp":
        return f"{value * 100:+.1f} pp"
    return f"{value:+.3f}"


def headline(overall: pd.DataFrame, by: str, report: drift.DriftReport | None) -> None:
    """The latest complete period's numbers, each with its change against the period before; the
    three accuracies side by side and never merged; and the line x periods flagged for drift."""
    complete, running = stats.without_running_period(overall, by)
    compare = stats.compare_last_periods(complete)
    ordered = complete.sort_values("period")
    last = ordered["period"].iloc[-1]
    against = f"vs the {by} before" if len(ordered) > 1 else "no earlier period"
    still = "" if running is None else f" The {by} in progress ({period_label(running, by)}) is left out until it ends."
    st.caption(f"Latest {'complete ' if running is not None else ''}{by}: {period_label(last, by)}"
               + (f", against {period_label(ordered['period'].iloc[-2], by)}." if len(ordered) > 1 else ".") + still)
    cells = [("volume", "Volume", lambda v: f"{v:,.0f}", "count", "normal"),
             ("mean_top_prob", "Mean confidence", lambda v: f"{v:.3f}", "abs", "normal"),
             ("low_conf_share", "Low-confidence share", _ui.fmt_pct, "pp", "inverse")]
    row = st.container(horizontal=True, key="monitor_headline")  # wraps where columns cut the tiles at 1000 px
    for metric, title, fmt, delta_fmt, colour in cells:
        value, delta = compare[metric]
        row.metric(title, "–" if value is None else fmt(value),
                   delta_text(delta, delta_fmt), delta_color=colour, delta_description=against,
                   chart_data=ordered[metric].dropna().tolist() if len(ordered) > 1 else None,
                   border=True)
    accuracy_cells(ordered.iloc[-1], overall.attrs.get("not_estimated", {}))
    drift_banner(report, last, by)


def accuracy_cells(row: pd.Series, not_estimated: dict) -> None:
    """Estimated, audited and hard-example accuracy of one period, each saying what it is."""
    tiles = st.container(horizontal=True, key="monitor_accuracies")  # wraps: columns cut "Hard-example ac…"
    c1, c2, c3 = (tiles.container(width=270) for _ in range(3))
    estimated = row["estimated_accuracy"]
    c1.metric("Estimated accuracy", "–" if pd.isna(estimated) else _ui.fmt_pct(estimated), border=True,
              help=monitoring.ACCURACIES["estimated_accuracy"])
    interval = "" if pd.isna(row.get("estimate_low")) else \
        f"; 95 % interval {row['estimate_low']:.1%}–{row['estimate_high']:.1%}"
    note = row.get("estimate_note") or ""
    c1.caption("; ".join(not_estimated.values()) + ": no estimate." if pd.isna(estimated) and not_estimated else
               "No labels needed" + ("" if pd.isna(estimated) else f", ± {row['estimate_error'] * 100:.1f} pp{interval}.")
               + (f" {note[0].upper()}{note[1:]}." if note and not pd.isna(estimated) else ""))
    audited = row["audited_accuracy"]
    c2.metric("Audited accuracy", "–" if pd.isna(audited) else _ui.fmt_pct(audited), border=True,
              help=monitoring.ACCURACIES["audited_accuracy"])
    c2.caption(f"{int(row['audited'])} of about {int(row['audit_items'])} audit items labelled"
               + ("" if pd.isna(audited) else f"; 95 % interval {row['audit_low']:.0%}–{row['audit_high']:.0%}."))
    hard = row["hard_example_accuracy"]
    c3.metric("Hard-example accuracy (biased)", "–" if pd.isna(hard) else _ui.fmt_pct(hard), border=True,
              help=monitoring.ACCURACIES["hard_example_accuracy"])
    c3.caption(f"{int(row['hard_labelled'])} labelled hard examples (drawn by a hard-example strategy; imported, "
               "audit and random labels do not count): chosen for being hard, so lower than the model's accuracy "
               "by construction.")


def drift_banner(report: drift.DriftReport | None, last: pd.Timestamp, by: str) -> None:
    if report is None:
        return
    flagged = report.flagged()
    latest = flagged[flagged["period"] == last]
    if latest.empty and flagged.empty:
        st.success(f"No drift flagged against the reference ({reference_name(report)}).", icon=":material/check_circle:")
        return
    where = latest if not latest.empty else flagged
    lines = ", ".join(sorted(where["business_line"].unique()))
    when = period_label(last, by) if not latest.empty else "earlier periods"
    st.warning(f"Drift flagged in {when}: {lines}. See *Drift against the reference* below.", icon=":material/warning:")


def reference_name(report: drift.DriftReport) -> str:
    return (f"v{report.version}'s training data" if report.reference == drift.TRAINING
            else f"predictions in {report.reference}")


def drift_view(report: drift.DriftReport, by: str) -> None:
    """For each flagged line, what moved against the reference, and every line's measures."""
    st.subheader("Drift against the reference")
    st.caption(f"Reference: {reference_name(report)}. Thresholds: text AUC > {drift.thresholds()['drift_text_auc']:.2f}, "
               "unseen tokens, length, confidence and class mix (MMS_DRIFT_* settings). Each period is compared "
               "with the reference, not with the period before, so a shift stays visible after it happened.")
    flagged = report.flagged()
    if flagged.empty:
        st.markdown("No business line is flagged in this slice.")
    for line, cells in flagged.groupby("business_line", sort=True):
        first = cells["period"].min()
        st.markdown(f"**{_ui.md_escape(line)}**: flagged in {len(cells)} {by}(s) from {period_label(first, by)}. "
                    f"Moved: {_ui.md_escape(cells.sort_values('period')['moved'].iloc[-1])}.")
    for line, note in report.references.items():
        if "not judged" in note:
            st.caption(f"{_ui.md_escape(line)}: {_ui.md_escape(note)}")
    cells = report.cells.assign(moved=report.cells["moved"].replace("", "–"))
    shown = without_blanks(cells.astype({c: float for c in drift.COLUMNS[6:]}), {"unseen_share", "unseen_reference"})
    shown["period"] = cells["period"].dt.date
    st.dataframe(shown, hide_index=True, key="monitor_drift_table", column_config={
        "business_line": "business line", "text_auc": st.column_config.NumberColumn("text AUC", format="%.2f"),
        "unseen_share": share_column(shown, "unseen_share", "unseen tokens"),
        "unseen_reference": share_column(shown, "unseen_reference", "unseen (ref.)"),
        "mean_length": st.column_config.NumberColumn("length", format="%.0f"),
        "length_reference": st.column_config.NumberColumn("length (ref.)", format="%.0f"),
        "mean_top_prob": st.column_config.NumberColumn("confidence", format="%.3f"),
        "confidence_reference": st.column_config.NumberColumn("confidence (ref.)", format="%.3f"),
        "class_mix_distance": st.column_config.NumberColumn("class-mix distance", format="%.2f"),
        **_ordinal.column_config(shown)})


def send_to_label(name: str, by_line: pd.DataFrame, by: str, where: Slice, first: dt.date, last: dt.date) -> None:
    """Pick a business line and period and open the Label page on that slice (a role that may label)."""
    st.subheader("Label a slice")
    if not auth.may(_ui.role(), "label"):
        st.caption("Labelling a slice or its audit sample needs the role labeller or owner: ask an owner for "
                   "it to send a slice from here to the Label page.")
        return
    lines = sorted(by_line["business_line"].unique())
    periods = sorted(by_line["period"].unique(), reverse=True)
    row = st.container(horizontal=True, vertical_alignment="bottom", key="monitor_slice_row")
    line = row.selectbox("Business line", [None, *lines], key="monitor_slice_line",
                         format_func=lambda v: "All lines in the filter" if v is None else v)
    start = row.selectbox("Period", periods, key="monitor_slice_period", format_func=lambda p: period_label(p, by))
    chosen = slices.period_slice(where, start, by, line, first, last)
    if row.button("Label this slice", icon=":material/label:", key="monitor_send", type="primary"):
        open_label(name, chosen, None)
    if row.button("Audit this slice", icon=":material/casino:", key="monitor_audit",
                  help="Label the slice's audit sample: a random share of its predictions, whatever their "
                       "confidence. Its labels give the audited accuracy."):
        open_label(name, chosen, monitoring.AUDIT)


def open_label(name: str, chosen: Slice, strategy: str | None) -> None:
    """Open the Label page on a slice, on its hard examples or (strategy "audit") its audit sample."""
    st.session_state["label_filters"] = {"model": name, "slice": chosen,
                                         **({"strategy": strategy} if strategy else {})}
    st.session_state["select_model"] = name  # a page switch resets the sidebar's model selectbox
    st.switch_page("pages/label.py")
