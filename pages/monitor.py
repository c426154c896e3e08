"""Monitor (analysts): prediction statistics per business line and period, and a way to send a
slice of them to the Label page."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import plotly.express as px
import streamlit as st

from core import export, settings, slices, stats
from core.slices import Slice, period_label
from pages import _ui

ALL = 0  # the version filter's "all versions" (versions count from 1)
FILTER_KEYS = ("monitor_lines", "monitor_period", "monitor_dates", "monitor_version", "monitor_range")


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
    c1, c2, c3, c4 = st.columns([3, 2.4, 2.6, 2])
    chosen = c1.multiselect("Business lines", lines, key="monitor_lines", placeholder="All business lines")
    by = c2.segmented_control("Period", list(slices.PERIODS), format_func=str.title, default="week",
                              required=True, key="monitor_period")
    dates = c3.date_input("Dates", min_value=first, max_value=last, key="monitor_dates")
    version = c4.selectbox("Version", [ALL, *versions], key="monitor_version",
                           format_func=lambda v: "All versions" if v == ALL else versions[v])
    since, until = slices.from_widget_dates(dates, first, last)
    return by or "week", Slice.of(chosen, since, until, None if version == ALL else version)


def delta_text(value, fmt: str) -> str | None:
    if value is None:
        return None
    if fmt == "count":
        return f"{value:+,.0f}"
    if fmt == "pp":
        return f"{value * 100:+.1f} pp"
    return f"{value:+.3f}"


def headline(overall: pd.DataFrame, by: str) -> None:
    """Four numbers for the latest complete period, each with its change against the period before."""
    complete, running = stats.without_running_period(overall, by)
    compare = stats.compare_last_periods(complete)
    ordered = complete.sort_values("period")
    last = ordered["period"].iloc[-1]
    against = f"vs the {by} before" if len(ordered) > 1 else "no earlier period"
    still = "" if running is None else f" The {by} in progress ({period_label(running, by, short=True)}) is left out until it ends."
    st.caption(f"Latest {'complete ' if running is not None else ''}{by}: {period_label(last, by, short=True)}"
               + (f", against {period_label(ordered['period'].iloc[-2], by)}." if len(ordered) > 1 else ".") + still)
    cells = [("volume", "Volume", lambda v: f"{v:,.0f}", "count", "normal"),
             ("mean_top_prob", "Mean confidence", lambda v: f"{v:.3f}", "abs", "normal"),
             ("low_conf_share", "Low-confidence share", _ui.fmt_pct, "pp", "inverse"),
             ("accuracy", "Labelled accuracy", _ui.fmt_pct, "pp", "normal")]
    for col, (metric, title, fmt, delta_fmt, colour) in zip(st.columns(4), cells):
        value, delta = compare[metric]
        col.metric(title, "–" if value is None else fmt(value),
                   delta_text(delta, delta_fmt), delta_color=colour, delta_description=against,
                   chart_data=ordered[metric].dropna().tolist() if len(ordered) > 1 else None,
                   border=True)


def show(fig, key: str) -> None:
    fig.update_layout(height=340, margin={"t": 10, "b": 10, "l": 10, "r": 10}, legend_title_text="")
    st.plotly_chart(fig, key=key)


def charts(by_line: pd.DataFrame, overall: pd.DataFrame, labels: list[str], by: str, low: float) -> None:
    left, right = st.columns(2)
    with left:
        st.subheader("Volume per business line")
        fig = px.bar(by_line, x="period", y="volume", color="business_line",
                     labels={"period": by.title(), "volume": "predictions", "business_line": "business line"})
        show(fig, key="monitor_chart_volume")
    with right:
        st.subheader("Confidence over time")
        conf = overall.melt(id_vars="period", value_vars=["mean_top_prob", "low_conf_share"],
                            var_name="measure", value_name="value")
        conf["measure"] = conf["measure"].map({"mean_top_prob": "mean confidence",
                                               "low_conf_share": f"share below {low:.2f}"})
        fig = px.line(conf, x="period", y="value", color="measure", markers=True,
                      labels={"period": by.title(), "value": "", "measure": ""})
        fig.update_yaxes(range=[0, 1], tickformat=".0%")
        show(fig, key="monitor_chart_confidence")

    left, right = st.columns(2)
    with left:
        st.subheader("Low-confidence share by line and period")
        grid = by_line.assign(when=by_line["period"].map(lambda p: period_label(p, by, short=True)))
        heat = grid.pivot_table(index="business_line", columns="when", values="low_conf_share", sort=True)
        fig = px.imshow(heat, color_continuous_scale="Reds", zmin=0, aspect="auto",
                        text_auto=".0%" if heat.shape[1] <= 16 else False,
                        labels={"x": by.title(), "y": "business line", "color": "low-conf."})
        fig.update_coloraxes(colorbar_tickformat=".0%")
        show(fig, key="monitor_chart_heatmap")
    with right:
        st.subheader("Class mix per business line")
        mix = stats.class_mix_by_line(by_line, labels)
        fig = px.bar(mix, y="business_line", x="share", color="label", orientation="h",
                     labels={"business_line": "business line", "label": "predicted label"})
        fig.update_xaxes(tickformat=".0%", range=[0, 1])
        show(fig, key="monitor_chart_mix")

    st.subheader("Accuracy where labels came back")
    labelled = pd.concat([overall.assign(business_line="(all lines)"), by_line])
    labelled = labelled[labelled["labelled"] > 0]
    if labelled.empty:
        st.caption("No labelled predictions in this slice yet: label some on the Label page.")
        return
    fig = px.line(labelled, x="period", y="accuracy", color="business_line", markers=True,
                  hover_data={"labelled": True},
                  labels={"period": by.title(), "accuracy": "accuracy", "business_line": "business line"})
    fig.update_yaxes(tickformat=".0%")
    fig.update_traces(line_width=1, opacity=0.55)
    fig.update_traces(selector={"name": "(all lines)"}, line_width=4, opacity=1.0)
    show(fig, key="monitor_chart_accuracy")
    st.caption("Each point is accuracy over the predictions labelled in that period; few labels make it noisy "
               "(hover to see how many).")


def send_to_label(name: str, by_line: pd.DataFrame, by: str, where: Slice, first: dt.date, last: dt.date) -> None:
    """Pick a business line and period and open the Label page on that slice."""
    st.subheader("Label a slice")
    lines = sorted(by_line["business_line"].unique())
    periods = sorted(by_line["period"].unique(), reverse=True)
    c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
    line = c1.selectbox("Business line", [None, *lines], key="monitor_slice_line",
                        format_func=lambda v: "All lines in the filter" if v is None else v)
    start = c2.selectbox("Period", periods, key="monitor_slice_period", format_func=lambda p: period_label(p, by))
    if c3.button("Label this slice", icon="🏷️", key="monitor_send", type="primary"):
        st.session_state["label_filters"] = {"model": name,
                                             "slice": slices.period_slice(where, start, by, line, first, last)}
        st.session_state["select_model"] = name  # a page switch resets the sidebar's model selectbox
        st.switch_page("pages/label.py")


def table(by_line: pd.DataFrame, name: str, by: str) -> None:
    st.subheader("Statistics")
    shown = by_line.copy()
    shown["period"] = shown["period"].dt.date
    pct = st.column_config.NumberColumn(format="percent")
    st.dataframe(shown, hide_index=True, key="monitor_table", column_config={
        "business_line": "business line", "mean_top_prob": st.column_config.NumberColumn(
            "mean confidence", format="%.3f"), "low_conf_share": st.column_config.NumberColumn(
            "low-confidence share", format="percent"), "accuracy": pct,
        "macro_f1": st.column_config.NumberColumn("macro-F1", format="%.3f"),
        "mix_shift": st.column_config.NumberColumn("mix shift", format="%.3f",
                                                   help="Total variation distance between this period's class "
                                                        "mix and the line's mix over the whole range"),
        **{c: st.column_config.NumberColumn(c.removeprefix("share_") + " share", format="percent")
           for c in shown.columns if c.startswith("share_")}})
    st.download_button("Download CSV", export.to_csv_bytes(by_line), file_name=f"mms-stats-{name}-{by}.csv",
                       mime="text/csv", icon="⬇️", key="monitor_download")


def main() -> None:
    name = _ui.require_model()
    store = _ui.store()
    key = str(store.path)
    st.title("Monitor")
    with _ui.errors_as_messages():
        revision = _ui.revision()
        with st.spinner("Reading the prediction log…"):
            lines, first, last = _ui.slice_options(store, key, name, revision)
        labels, versions = _ui.labels_and_versions(store, key, revision, name)
    if first is None:
        st.info(f"Model {_ui.md_escape(name)} has no predictions yet. Log some on the Predict page, or with "
                "`python -m core predict`, and they will show up here.")
        st.stop()
    low = float(settings.get("low_confidence"))
    st.caption(f"Model {_ui.md_escape(name)}. Low confidence means a top probability below {low:.2f}: the "
               f"{settings.SETTINGS['low_confidence'].env} setting.")

    reset_filters_on_model_change(name)
    follow_new_days(first, last)
    by, where = filters(lines, first, last, versions)
    with _ui.errors_as_messages(), st.spinner("Computing statistics…"):
        by_line, overall = load_stats(store, key, revision, name, by, where)
    if by_line.empty:
        st.info("No predictions match these filters. Widen the dates or pick other business lines.")
        st.stop()

    headline(overall, by)
    charts(by_line, overall, labels, by, low)
    send_to_label(name, by_line, by, where, first, last)
    table(by_line, name, by)


main()
