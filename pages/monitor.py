"""Monitor (analysts): prediction statistics per business line and period, the three accuracies
(estimated, audited, hard examples) kept apart, drift against a reference, and a way to send a
slice or its audit sample to the Label page."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from core import auth, drift, export, monitoring, settings, slices, stats
from core.slices import Slice, period_label
from pages import _charts, _ordinal, _ui
from pages import _alerts

ALL = 0  # the version filter's "all versions" (versions count from 1)
FILTER_KEYS = ("monitor_lines", "monitor_period", "monitor_dates", "monitor_version", "monitor_range")


@st.cache_data(show_spinner=False, max_entries=64)
def load_drift(_store, store_key: str, revision: tuple, name: str, by: str, where: Slice, window,
               _by_line: pd.DataFrame, budget: float | None, attempt: int) -> drift.DriftReport:
    """Drift of the slice's line x periods against the reference (cells are also cached in the
    store); `attempt` changes while cells are pending, so a rerun looks at the store again."""
    keep = None if budget is None else float(settings.get("drift_keep_seconds"))  # "measure now": everything
    return drift.drift_by_line_and_period(_store, name, by, _by_line, window=window, version=where.version,
                                          budget_seconds=budget, keep_seconds=keep)


def drift_report(store, key: str, revision: tuple, name: str, by: str, where: Slice, window,
                 by_line: pd.DataFrame) -> drift.DriftReport:
    """Drift within the render's time budget, or all of it when the user asked to measure the rest."""
    everything = st.session_state.pop("monitor_measure_rest", False)
    budget = None if everything else 0.0 if drift.measuring(store, name, by, window, where.version) \
        else float(settings.get("drift_render_seconds"))
    attempt = st.session_state.get("monitor_drift_attempt", 0)
    report = load_drift(store, key, revision, name, by, where, window, by_line, budget, attempt)
    if report.pending:
        st.session_state["monitor_drift_attempt"] = attempt + 1
        drift.measure_in_background(store, name, by, by_line, window=window, version=where.version)
    return report


def pending_note(report: drift.DriftReport) -> None:
    """Say which cells are not measured yet, and offer to measure them now."""
    if not report.pending:
        return
    total = len(report.cells)
    left, right = st.columns([4, 1], vertical_alignment="center")
    left.info(f"Drift is measured for {total - report.pending} of {total} line x periods (newest first); the "
              f"server measures the other {report.pending} in the background, and they are never flagged "
              "until measured. Rerun the page to see them, or measure them now.", icon=":material/hourglass_top:")
    if right.button("Measure the rest now", key="monitor_measure_rest_button"):
        st.session_state["monitor_measure_rest"] = True
        st.rerun()


@st.cache_data(show_spinner=False, max_entries=64)
def load_stats(_store, store_key: str, revision: tuple, name: str, by: str,
               where: Slice) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Statistics by line and over all lines (one read of the rollups), cached per store
    (`store_key` names `_store`, which is not hashed), revision and slice: reruns cost nothing."""
    return stats.stats_by_line_and_overall(_store, name, by, **where.filters())


def reset_filters_on_model_change(name: str) -> None:
    """Business lines and dates differ per model: a newly selected model starts from all of them."""
    if st.session_state.get("monitor_model") != name:
        for key in FILTER_KEYS:
            st.session_state.pop(key, None)
        st.session_state["monitor_model"] = name


def follow_new_days(first: dt.date, last: dt.date) -> None:
    """Set the date range before its widget is drawn: all days at first, then as slices.follow_new_days says."""
    chosen = slices.follow_new_days(st.session_state.get("monitor_dates"), st.session_state.get("monitor_range"),
                                    first, last)
    st.session_state["monitor_dates"] = chosen or (first, last)
    st.session_state["monitor_range"] = (first, last)


def filters(lines: list[str], first: dt.date, last: dt.date, versions: dict[int, str]) -> tuple[str, Slice]:
    """The filter row; returns the period and the slice it selects."""
    # a row that wraps: four fixed columns beside the sidebar at 1000 px cut the Period control and
    # showed only the start date
    row = st.container(horizontal=True, key="monitor_filters")
    chosen = row.multiselect("Business lines", lines, key="monitor_lines", placeholder="All business lines")
    by = row.segmented_control("Period", list(slices.PERIODS), format_func=str.title, default="week",
                               required=True, key="monitor_period")
    dates = row.date_input("Dates", min_value=first, max_value=last, key="monitor_dates", width=240)
    version = row.selectbox("Version", [ALL, *versions], key="monitor_version",
                            format_func=lambda v: "All versions" if v == ALL else versions[v])
    since, until = slices.from_widget_dates(dates, first, last)
    return by or "week", Slice.of(chosen, since, until, None if version == ALL else version)


def from_url(name: str, lines: list[str], first: dt.date, last: dt.date, versions: dict[int, str]) -> None:
    """Set the filters from a shared link (?model=..&line=..&period=..&from=..&to=..&version=..) once
    per link, before they are drawn; a value the model does not have is named and left out."""
    link = {k: tuple(st.query_params.get_all(k)) for k in st.query_params}
    if not link or link == st.session_state.get("monitor_url"):
        return
    wanted = link.get("model", (name,))[0]
    if wanted != name and st.session_state.get("monitor_url_tried") != link:
        st.session_state["monitor_url_tried"] = link
        _ui.select_model(wanted)  # reruns on that model, if it exists; the rest is read then
    st.session_state["monitor_url"] = link
    wrong = [f"model {wanted}"] if wanted != name else []
    wrong += [f"business line {v}" for v in link.get("line", ()) if v not in lines]
    st.session_state["monitor_lines"] = [v for v in link.get("line", ()) if v in lines]
    period = link.get("period", ("week",))[0]
    if period in slices.PERIODS:
        st.session_state["monitor_period"] = period
    else:
        wrong.append(f"period {period}")
    try:
        since, until = (dt.date.fromisoformat(link.get(k, (str(d),))[0]) for k, d in (("from", first), ("to", last)))
        st.session_state["monitor_dates"] = (slices.clamp(since, first, last), slices.clamp(until, since, last))
    except ValueError:
        wrong.append(f"dates {link.get('from', ('',))[0]}..{link.get('to', ('',))[0]} (not YYYY-MM-DD)")
    version = link.get("version", (str(ALL),))[0]
    st.session_state["monitor_version"] = int(version) if version.isdigit() and int(version) in versions else ALL
    if st.session_state["monitor_version"] == ALL and version != str(ALL):
        wrong.append(f"version {version}")
    if wrong:
        st.warning("Left out of the link, not found: " + ", ".join(map(_ui.md_escape, wrong))
                   + f". Showing model {_ui.md_escape(name)}.")


def to_url(name: str, by: str, where: Slice, dates, first: dt.date, last: dt.date) -> None:
    """Keep the filters in the address bar, so a view can be shared as a link."""
    since, until = (tuple(dates) + (last,))[:2] if dates else (first, last)
    link = {"model": (name,), "period": (by,), "from": (str(since),), "to": (str(until),),
            **({"line": where.business_lines} if where.business_lines else {}),
            **({"version": (str(where.version),)} if where.version is not None else {})}
    if link != {k: tuple(st.query_params.get_all(k)) for k in st.query_params}:
        st.query_params.from_dict({k: list(v) for k, v in link.items()})
    st.session_state["monitor_url"] = link


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


def without_blanks(frame: pd.DataFrame, percent: set[str]) -> pd.DataFrame:
    """Number columns with gaps as text with "–" in the gaps: a grid would print None there."""
    out = frame.copy()
    for c in out.columns:
        if c in percent and pd.api.types.is_float_dtype(out[c]) and not out[c].isna().any():
            out[c] = out[c] * 100  # shown by share_column's "%.1f%%": Streamlit's "percent" printed 70 %, 65.2 %, 74.46 %
        elif pd.api.types.is_float_dtype(out[c]) and out[c].isna().any():
            fmt = (lambda v: f"{v:.1%}") if c in percent else (lambda v: f"{v:.3f}")
            out[c] = [("–" if pd.isna(v) else fmt(v)) for v in out[c]]
    return out


PERCENT = "%.1f%%"  # of a share times 100 (without_blanks): one decimal in every row


def share_column(shown: pd.DataFrame, column: str, label: str, help: str | None = None):
    """A share as a percentage: a number column, or text once without_blanks wrote "–" in its gaps (a
    column without gaps read 0.6667 and 1 beside 66.7% in the next period's table)."""
    if column in shown.columns and pd.api.types.is_float_dtype(shown[column]):
        return st.column_config.NumberColumn(label, format=PERCENT, help=help)
    return st.column_config.Column(label, help=help)


LABELLED_HELP = ("Every label that came back (audit, hard examples, imported): how much was labelled, not an "
                 "accuracy; its macro-F1 mixes random and hard labels, so it is not the model's")


def table(by_line: pd.DataFrame, name: str, by: str, report: drift.DriftReport | None) -> None:
    st.subheader("Statistics")
    percent = {"low_conf_share", "estimated_accuracy", "estimate_error", "estimate_low", "estimate_high",
               "audited_accuracy", "audit_low",
               "audit_high", "hard_example_accuracy", *[c for c in by_line.columns if c.startswith(slices.SHARE_PREFIX)]}
    shown = without_blanks(by_line, percent)
    shown["period"] = by_line["period"].dt.date
    first = ["business_line", "period", "volume", "estimated_accuracy", "audited_accuracy", "hard_example_accuracy"]
    # the accuracies first: after the period's other figures they were off screen at 1400 px
    st.dataframe(shown, hide_index=True, key="monitor_table", column_order=first + [c for c in shown if c not in first],
                 column_config={
        "business_line": "business line", "mean_top_prob": st.column_config.NumberColumn(
            "mean confidence", format="%.3f"), "low_conf_share": share_column(shown, "low_conf_share", "low-confidence share"),
        "labelled": st.column_config.NumberColumn("labels returned", help=LABELLED_HELP),
        "macro_f1": st.column_config.NumberColumn("macro-F1 of labels returned", format="%.3f", help=LABELLED_HELP)
        if pd.api.types.is_float_dtype(shown["macro_f1"])  # text once gaps read "–"
        else st.column_config.Column("macro-F1 of labels returned", help=LABELLED_HELP),
        "estimated_accuracy": share_column(shown, "estimated_accuracy", "estimated accuracy",
                                           help=monitoring.ACCURACIES["estimated_accuracy"]),
        "estimate_error": share_column(shown, "estimate_error", "estimate error"),
        "estimate_low": share_column(shown, "estimate_low", "estimate low (95 %)"),
        "estimate_high": share_column(shown, "estimate_high", "estimate high (95 %)"),
        "estimate_note": st.column_config.Column("estimate note", help="Why the estimate's interval is widened, or "
                                                 "why it cannot be trusted there (drift, texts unlike the test split)"),
        "audited_accuracy": share_column(shown, "audited_accuracy", "audited accuracy",
                                         help=monitoring.ACCURACIES["audited_accuracy"]),
        "audit_low": share_column(shown, "audit_low", "audit low"),
        "audit_high": share_column(shown, "audit_high", "audit high"),
        "hard_example_accuracy": share_column(shown, "hard_example_accuracy", "hard-example accuracy (biased)",
                                              help=monitoring.ACCURACIES["hard_example_accuracy"]),
        "mix_shift": st.column_config.NumberColumn("mix shift", format="%.3f",
                                                   help="Total variation distance between this period's class "
                                                        "mix and the line's mix over the whole range"),
        **{c: share_column(shown, c, c.removeprefix(slices.SHARE_PREFIX) + " share")
           for c in shown.columns if c.startswith(slices.SHARE_PREFIX)}, **_ordinal.column_config(shown)})
    download = by_line if report is None else stats.with_drift_columns(by_line, report.cells)
    st.download_button("Download CSV", export.to_csv_bytes(download), file_name=f"mms-stats-{name}-{by}.csv",
                       mime="text/csv", icon=":material/download:", key="monitor_download")


def main() -> None:
    name = _ui.require_model()
    store = _ui.store()
    key = str(store.path)
    st.title("Monitor")
    _alerts.section(name)  # open and acknowledged alerts, and their thresholds (pages/_alerts.py)
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

    reset_filters_on_model_change(name)
    follow_new_days(first, last)
    from_url(name, lines, first, last, versions)
    by, where = filters(lines, first, last, versions)
    to_url(name, by, where, st.session_state.get("monitor_dates"), first, last)
    with _ui.errors_as_messages(), st.spinner("Computing statistics…"):
        by_line, overall = load_stats(store, key, revision, name, by, where)
    if by_line.empty:
        st.info("No predictions match these filters. Widen the dates or pick other business lines.")
        st.stop()

    window = reference_window(first, last)
    report = None
    with _ui.errors_as_messages(), st.spinner("Measuring drift against the reference…"):
        report = drift_report(store, key, revision, name, by, where, window, by_line)
    if report is not None:  # the estimate's interval widens where drift is flagged, and says why
        by_line, overall = stats.with_shift(by_line, overall, report.cells)
    headline(overall, by, report)
    if grades:
        _ordinal.headline(overall, grades, by, stats.without_running_period(overall, by)[1])
    pending_note(report)
    _charts.charts(by_line, overall, labels, by, low, report, _ui.line_colours(lines), graded=bool(grades))
    if grades:
        _ordinal.mean_grade_chart(by_line, overall, grades, by, _ui.line_colours(lines),
                                  stats.without_running_period(overall, by)[1])
    if report is not None:
        drift_view(report, by)
        if grades:
            _ordinal.grade_drift(report, by)
    send_to_label(name, by_line, by, where, first, last)
    table(by_line, name, by, report)


def reference_window(first: dt.date, last: dt.date):
    """The drift reference from the sidebar: None for the training data, or a (since, until) window."""
    with st.sidebar:
        choice = st.radio("Drift reference", ["Training data", "A window of predictions"], key="monitor_reference",
                          help="What each line x period is compared with. Default: the version's training data.")
        if choice == "Training data":
            return None
        dates = st.date_input("Reference window", value=(first, min(first + dt.timedelta(days=13), last)),
                              min_value=first, max_value=last, key="monitor_reference_dates")
    since, until = slices.from_widget_dates(dates, first, last)
    return (str(since), str(until))


main()
