"""The Monitor's charts over periods: volume, confidence, low-confidence share, class or grade mix per
line, and the three accuracies. One chart a row (side by side beside the sidebar at 1000 px, ticks
overlapped and facet titles were cut), one tab each; every chart shades the period in progress.

Rendering only: the figures come from core (stats, drift). Building a Plotly figure costs more than
the rest of a Monitor render on the server, and drawing it more in the browser, so only the open tab's
figure is built and sent, once per content of the tables it draws (the same view in another session,
or after a write that changed nothing shown, reuses it), never changed afterwards."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core import drift, settings, slices, stats
from core.slices import period_label
from pages import _ordinal, _ui

NO_FLAGS = pd.DataFrame(columns=["period", "business_line", "moved"])


def laid_out(fig, height: int = 340, top: int = 10):
    fig.update_layout(height=height, margin={"t": top, "b": 10, "l": 10, "r": 10}, legend_title_text="")
    return fig


def mark_flags(fig, flagged: pd.DataFrame, y: pd.Series | float, **kw) -> None:
    """A warning marker over each flagged line x period, named in its hover text."""
    if flagged.empty:
        return
    fig.add_scatter(x=flagged["period"], y=y, mode="markers+text", text=["⚠"] * len(flagged),
                    textposition="top center", marker={"symbol": "triangle-down", "size": 11, "color": "#d62728"},
                    hovertext=[f"{r.business_line}: {r.moved}" for r in flagged.itertuples()], hoverinfo="text",
                    name="drift flagged", showlegend=True, **kw)


TAB = "monitor_tab"  # the chart shown: kept in the session across reruns and period switches


@st.fragment
def charts(by_line: pd.DataFrame, overall: pd.DataFrame, labels: list[str], by: str, low: float,
           report: drift.DriftReport | None, colours: dict[str, str], grades: list[str] | None = None) -> None:
    """The charts in tabs, one drawn at a time: only the open tab's figure is built and sent (five to
    six figures drawn at once were most of a fresh load's time in the browser), and a switch of tab
    reruns this section alone. Each tab keeps its title and caption, drawn or not. Every chart shades
    the period in progress, which has not ended."""
    _, running = stats.without_running_period(overall, by)
    flagged = NO_FLAGS if report is None else report.flagged()[list(NO_FLAGS.columns)]
    graded = bool(grades)
    kinds = [*KINDS, *(["mean_grade"] if graded else [])]
    titles = {**TITLES, "mix": "Grade mix" if graded else "Class mix"}
    tabs = dict(zip(kinds, st.tabs([titles[k] for k in kinds], key=TAB, on_change="rerun")))

    def draw(kind: str, subheader: str) -> None:
        st.subheader(subheader)
        if tabs[kind].open is not False:  # None where tabs keep no state: then every tab draws
            fig = figure(kind, by_line, overall, flagged, tuple(labels), by, low, tuple(sorted(colours.items())),
                         tuple(grades or ()))
            st.plotly_chart(fig, key=f"monitor_chart_{kind}")

    still = "" if running is None else f" The shaded {by} ({period_label(running, by)}) is still in progress."
    with tabs["volume"]:
        draw("volume", "Volume per business line")
        st.caption("⚠ marks a line x period flagged for drift." + still + (" Its bar is short, not collapsed."
                                                                            if running is not None else ""))
    with tabs["confidence"]:
        draw("confidence", "Confidence over time")
    with tabs["heatmap"]:
        draw("heatmap", "Low-confidence share by line and period")
        if by_line["period"].nunique() > HEATMAP_TEXT_PERIODS:
            st.caption("Too many periods to print a share in each cell: hover over a cell to read it.")
    with tabs["mix"]:
        draw("mix", "Grade mix over time per business line" if graded else "Class mix over time per business line")
        st.caption("⚠ marks a line x period flagged for drift." + still)
    with tabs["accuracy"]:
        draw("accuracy", "Accuracy: estimated, audited, hard examples")
        accuracy_caption(overall, by, running)
    if graded:
        with tabs["mean_grade"]:
            draw("mean_grade", "Mean grade per business line")
            st.caption(_ordinal.MEAN_GRADE_CAPTION)


KINDS = ["volume", "confidence", "heatmap", "mix", "accuracy"]
TITLES = {"volume": "Volume", "confidence": "Confidence", "heatmap": "Low confidence", "accuracy": "Accuracy",
          "mean_grade": "Mean grade"}
HEATMAP_TEXT_PERIODS = 8  # a share per cell while a cell is wide enough to read it at 1000 px


@st.cache_resource(show_spinner=False, max_entries=64)
def figure(kind: str, by_line: pd.DataFrame, overall: pd.DataFrame, flagged: pd.DataFrame, labels: tuple, by: str,
           low: float, colours: tuple, grades: tuple) -> go.Figure:
    """One figure of one view, keyed by the content of what it draws (shared by every session: never
    changed once built)."""
    _, running = stats.without_running_period(overall, by)
    if kind == "volume":
        return volume_figure(by_line, overall["period"], by, running, flagged, dict(colours))
    if kind == "confidence":
        return confidence_figure(overall, by, running, low)
    if kind == "heatmap":
        return heatmap_figure(by_line, overall["period"], by, running)
    if kind == "mix":
        return class_mix_figure(by_line, list(labels), by, running, flagged,
                                _ordinal.colours(list(labels)) if grades else None)
    if kind == "mean_grade":
        return _ordinal.mean_grade_figure(by_line, overall, list(grades), by, dict(colours), running)
    return accuracy_figure(overall, by, running)


def volume_figure(by_line: pd.DataFrame, periods: pd.Series, by: str, running, flagged: pd.DataFrame,
                  colours: dict[str, str]) -> go.Figure:
    fig = go.Figure()
    for line, rows in by_line.sort_values("period").groupby("business_line", sort=True):
        fig.add_bar(x=rows["period"], y=rows["volume"], name=str(line), marker_color=colours.get(line),
                    marker_pattern_shape=["/" if p == running else "" for p in rows["period"]])
    fig.update_layout(barmode="stack", yaxis_title="predictions")
    mark_flags(fig, flagged, flagged["period"].map(by_line.groupby("period")["volume"].sum())
               if not flagged.empty else 0)
    _ui.period_axis(fig, periods, by, running)
    return laid_out(fig)


def confidence_figure(overall: pd.DataFrame, by: str, running, low: float) -> go.Figure:
    fig = go.Figure()
    o = overall.sort_values("period")
    for column, name in (("mean_top_prob", "mean confidence"), ("low_conf_share", f"share below {low:.2f}")):
        fig.add_scatter(x=o["period"], y=o[column], name=name, mode="lines+markers",
                        marker_symbol=["circle-open" if p == running else "circle" for p in o["period"]])
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    _ui.period_axis(fig, overall["period"], by, running)
    return laid_out(fig)


def heatmap_figure(by_line: pd.DataFrame, periods: pd.Series, by: str, running) -> go.Figure:
    heat = by_line.pivot_table(index="business_line", columns="period", values="low_conf_share", sort=True)
    text = heat.shape[1] <= HEATMAP_TEXT_PERIODS
    fig = go.Figure(go.Heatmap(z=heat.to_numpy(), x=heat.columns, y=heat.index, colorscale="Reds", zmin=0,
                               colorbar={"tickformat": ".0%", "title": {"text": "low-conf."}},
                               texttemplate="%{z:.0%}" if text else None, textfont={"size": 12},
                               hovertemplate="%{y} %{x|%Y-%m-%d}: %{z:.1%}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title="business line")
    _ui.period_axis(fig, periods, by, running)
    return laid_out(fig, height=max(300, 80 + 26 * len(heat)))


def class_mix_figure(by_line: pd.DataFrame, labels: list[str], by: str, running, flagged: pd.DataFrame,
                     ordered_colours: dict | None = None) -> go.Figure:
    """Predicted class shares per period, one panel per line; flagged periods carry a marker. An ordinal
    model's grades (`ordered_colours`) stack in their order along a sequential colour scale."""
    mix = by_line.melt(id_vars=["business_line", "period"], value_vars=[f"{slices.SHARE_PREFIX}{label}" for label in labels],
                       var_name="label", value_name="share")
    mix["label"] = mix["label"].str.removeprefix(slices.SHARE_PREFIX)
    lines = sorted(by_line["business_line"].unique())
    rows = -(-len(lines) // 3)
    height = 60 + 170 * rows  # room for each panel's title above it: squeezed into 340 px they overlapped
    fig = px.bar(mix, x="period", y="share", color="label", facet_col="business_line", facet_col_wrap=3,
                 facet_row_spacing=min(0.5 / rows, 50 / height), facet_col_spacing=0.04,
                 category_orders={"business_line": lines, "label": labels}, color_discrete_map=ordered_colours,
                 labels={"period": "", "share": "", "label": "predicted label", "business_line": ""})
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_yaxes(tickformat=".0%", range=[0, 1.15])
    for i, line in enumerate(lines):
        marks = flagged[flagged["business_line"] == line]
        if not marks.empty:
            fig.add_scatter(x=marks["period"], y=[1.07] * len(marks), mode="text", text=["⚠"] * len(marks),
                            hovertext=marks["moved"].tolist(), hoverinfo="text", showlegend=False,
                            row=rows - i // 3, col=i % 3 + 1)
    _ui.period_axis(fig, by_line["period"], by, running, most=3)
    fig.update_layout(legend={"orientation": "h", "y": 1 + 40 / height, "yanchor": "bottom", "x": 0})
    return laid_out(fig, height=height + 40, top=50)  # the legend above the first titles


def accuracy_figure(overall: pd.DataFrame, by: str, running=None) -> go.Figure:
    """The three accuracies over all lines per period, on one axis but never merged: estimated with
    its expected error, audited with its Wilson interval, hard examples dashed and labelled biased.
    The period in progress is shaded and its points hollow: a few predictions give a wide bar."""
    o = overall.sort_values("period")
    fig = go.Figure()

    def symbols(frame: pd.DataFrame) -> list[str]:
        return ["circle-open" if p == running else "circle" for p in frame["period"]]

    est = o[o["estimated_accuracy"].notna()]
    fig.add_scatter(x=est["period"], y=est["estimated_accuracy"], name="estimated (no labels)", mode="lines+markers",
                    marker_symbol=symbols(est), error_y={"type": "data", "array": 2 * est["estimate_error"]})
    aud = o[o["audited"] > 0]
    fig.add_scatter(x=aud["period"], y=aud["audited_accuracy"], name="audited (random sample, 95 % interval)",
                    mode="markers", marker={"size": 10, "symbol": symbols(aud)},
                    error_y={"type": "data", "symmetric": False, "array": aud["audit_high"] - aud["audited_accuracy"],
                             "arrayminus": aud["audited_accuracy"] - aud["audit_low"]})
    hard = o[o["hard_labelled"] > 0]
    fig.add_scatter(x=hard["period"], y=hard["hard_example_accuracy"], name="hard examples (biased)",
                    mode="lines+markers", line={"dash": "dot"}, opacity=0.6, marker_symbol=symbols(hard))
    fig.update_yaxes(tickformat=".0%", range=[0, 1.02])
    fig.update_layout(legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0})
    _ui.period_axis(fig, o["period"], by, running)
    return laid_out(fig)


def accuracy_caption(overall: pd.DataFrame, by: str, running) -> None:
    not_estimated = overall.attrs.get("not_estimated", {})
    st.caption(("No estimate: " + "; ".join(not_estimated.values()) + ". " if not_estimated else "")
               + ("" if running is None else f"The shaded {by} is in progress: its hollow points rest on few "
                                             "predictions so far. ")
               + "Estimated: the mean calibrated confidence, no labels needed (bars: ± 2 expected errors). Audited: "
               f"a random {float(settings.get('audit_share')):.0%} of every line x period "
               f"({settings.SETTINGS['audit_share'].env}), labelled on purpose. Hard examples: the labels that came "
               "back from the least-confident predictions, so biased low: never read them as the model's accuracy.")
