"""What the pages show of an ordinal model (ordered grades, 排序): grades always in their order, lowest
first; the grade mix, mean grade and its drift on the Monitor; MAE, QWK, Spearman, exact and
within-one per version and line on Train and Versions. A classification model shows none of it.

Rendering only: the figures come from core (stats, drift, the version's metrics)."""
from __future__ import annotations

import math

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core import compare, registry, slices
from core.slices import period_label
from pages import _ui

# An ordinal version's figures (metrics["ordinal"], core.ordinal.ordinal_metrics), as every face names them.
FIGURES = {"mae": ("MAE (grades)", "Mean absolute error of the most likely grade, in grades: lower is better"),
           "qwk": ("QWK", "Quadratic weighted kappa: agreement that punishes far misses more (1 = perfect)"),
           "spearman": ("Spearman", "Rank correlation of the true grade with the expected grade"),
           "exact": ("Exact", "Share of test rows given exactly their grade"),
           "within_one": ("Within one", "Share of test rows at most one grade off")}
PERCENT = {"exact", "within_one"}
# The exact-grade share is the accuracy of the most likely grade, so core's comparison leaves it to
# the accuracy; shown here beside the ordinal figures, it is compared the same way.
EXACT = compare.Measure("exact", "Exact grade (the accuracy of the most likely grade)", True, False)


@st.cache_data(show_spinner=False, max_entries=16)
def grades(_store, store_key: str, revision: tuple, name: str) -> list[str] | None:
    """The model's grades, lowest first, if it is an ordinal model; None for a classification model."""
    model = registry.get_model(_store, name)
    return list(model.labels) if registry.is_ordinal(model) else None


def order_caption(labels: list[str]) -> str:
    return "Grades, lowest first: " + " < ".join(labels)


def colours(labels: list[str]) -> dict[str, str]:
    """One colour per grade along a sequential scale, so a stacked bar reads from low to high."""
    scale = px.colors.sample_colorscale("Viridis", [i / max(len(labels) - 1, 1) for i in range(len(labels))])
    return dict(zip(labels, scale))


def grade_axis(fig: go.Figure, labels: list[str]) -> None:
    """A y axis from the lowest grade (1) to the highest (n), ticks named by the grades."""
    fig.update_yaxes(range=[0.9, len(labels) + 0.1], tickvals=list(range(1, len(labels) + 1)),
                     ticktext=[_ui.keyed(i, g) for i, g in enumerate(labels, start=1)])


def fmt(key: str, value) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{value:.1%}" if key in PERCENT else f"{value:.3f}"


# --- Data ------------------------------------------------------------------------------------

def task_choice() -> str:
    """The task of a new model: classification, or ordinal (grades in an order given now, fixed for good)."""
    task = st.radio("Task", list(registry.TASKS), key="create_task", horizontal=True,
                    format_func={registry.CLASSIFICATION: "Classification (labels without order)",
                                 registry.ORDINAL: "Ordinal (排序: grades in order)"}.get)
    if task == registry.ORDINAL:
        st.caption("Give the grades in their order, lowest first, at least three (e.g. 低,中,高 or 1,2,3,4,5): "
                   "the order is fixed once the model is created. A file with the record's two label columns "
                   "feeds an ordinal model from `label_2` (a `label` column, if present, comes first).")
    return task


def labels_prompt(task: str) -> str:
    return "Grades, lowest first, comma-separated" if task == registry.ORDINAL else "Labels, comma-separated"


# --- Label -------------------------------------------------------------------------------------

def key_hint(labels: list[str]) -> str:
    """The Label page's line on an ordinal model's keys: 1..n from the lowest grade to the highest."""
    keys = " < ".join(_ui.keyed(i, g) for i, g in enumerate(labels[:9], start=1))
    return f"Grades, lowest first: {keys}. The keys count up from the lowest grade to the highest."


def expected_note(row: pd.Series, labels: list[str]) -> None:
    """Where the example's expected grade lies between the grades (an ordinal model's examples carry it)."""
    value = row.get("expected_grade")
    if value is None or pd.isna(value):
        return
    low, high = labels[max(math.floor(value) - 1, 0)], labels[min(math.ceil(value) - 1, len(labels) - 1)]
    where = f"at {low}" if low == high else f"between {low} and {high}"
    st.caption(f"Expected grade {value:.2f} of 1–{len(labels)}: {where}, by the model's distribution.")


# --- Monitor ---------------------------------------------------------------------------------

def headline(overall: pd.DataFrame, labels: list[str], by: str, running) -> None:
    """Mean predicted grade, mean expected grade and the highest grade's share of the latest complete
    period, each against the period before."""
    ordered = overall[overall["period"] != running] if running is not None and overall["period"].nunique() > 1 \
        else overall
    ordered = ordered.sort_values("period")
    last, prev = ordered.iloc[-1], (ordered.iloc[-2] if len(ordered) > 1 else None)
    top = f"{slices.SHARE_PREFIX}{labels[-1]}"
    cells = [("mean_grade", "Mean grade", False, "The mean position of the predicted (most likely) grades, 1 = "
                                                 f"{labels[0]}, {len(labels)} = {labels[-1]}"),
             ("mean_expected_grade", "Mean expected grade", False, "The mean of each prediction's expected grade "
                                                                   "(its distribution's mean): it moves before the "
                                                                   "likeliest grade flips"),
             (top, f"Share predicted {labels[-1]}", True, f"The share of predictions whose likeliest grade is the "
                                                          f"highest, {labels[-1]}")]
    against = f"vs the {by} before" if prev is not None else "no earlier period"
    row = st.container(horizontal=True, key="monitor_grade_headline")  # wraps: columns cut the titles at 1000 px
    for col, (key, title, percent, help_text) in zip([row] * len(cells), cells):
        value = last[key]
        change = None if prev is None or pd.isna(prev[key]) or pd.isna(value) else value - prev[key]
        shown = None if change is None else f"{change * 100:+.1f} pp" if percent else f"{change:+.2f}"
        col.metric(title, "–" if pd.isna(value) else f"{value:.1%}" if percent else f"{value:.2f}", shown,
                   delta_color="off", delta_description=against, border=True, help=help_text,
                   chart_data=ordered[key].dropna().tolist() if len(ordered) > 1 else None)
    st.caption(order_caption(labels) + f". A rise means the predictions moved toward {labels[-1]}.")


def mean_grade_figure(by_line: pd.DataFrame, overall: pd.DataFrame, labels: list[str], by: str,
                      colours: dict | None = None, running=None) -> go.Figure:
    """Mean expected grade per line and period (solid) and over all lines (dashed), on the grade axis,
    each line in its colour (`colours`), the period in progress shaded (the Monitor's "Mean grade" tab)."""
    fig = go.Figure()
    for line, rows in by_line.sort_values("period").groupby("business_line", sort=True):
        fig.add_scatter(x=rows["period"], y=rows["mean_expected_grade"], name=str(line), mode="lines+markers",
                        customdata=rows["mean_grade"], line_color=(colours or {}).get(line),
                        hovertemplate=f"{line} %{{x|%Y-%m-%d}}: expected %{{y:.2f}}, most likely %{{customdata:.2f}}"
                                      "<extra></extra>")
    o = overall.sort_values("period")
    fig.add_scatter(x=o["period"], y=o["mean_expected_grade"], name="all lines", mode="lines",
                    line={"dash": "dash", "color": "grey"})
    grade_axis(fig, labels)
    fig.update_layout(height=340, margin={"t": 10, "b": 10, "l": 10, "r": 10}, legend_title_text="")
    _ui.period_axis(fig, overall["period"], by, running)
    return fig


MEAN_GRADE_CAPTION = ("Mean expected grade: the mean of each prediction's grade distribution, averaged over the "
                      "period (the table also has the mean of the most likely grades).")


def grade_drift(report, by: str) -> None:
    """Each line's latest grade shift against the reference, in grades, and which way."""
    cells = report.cells.dropna(subset=["grade_shift"]) if "grade_shift" in report.cells else pd.DataFrame()
    if cells.empty:
        return
    latest = cells.sort_values("period").groupby("business_line", sort=True).tail(1)
    parts = [f"{r.business_line} {r.mean_grade:.2f} vs {r.grade_reference:.2f} ({r.grade_shift:.2f} grades moved, "
             f"{period_label(r.period, by, short=True)})" for r in latest.itertuples()]
    st.caption("Grades against the reference, latest period per line: " + "; ".join(parts) + ". Grade shift: the "
               "earth mover's distance between the predicted grade distributions, so a move by two grades counts "
               "twice (MMS_DRIFT_GRADE_SHIFT).")


COLUMNS = {"mean_grade": ("mean grade", "Mean position of the most likely grades (1 = lowest)"),
           "mean_expected_grade": ("mean expected grade", "Mean of the predictions' expected grades"),
           "labelled_mae": ("MAE on labels (grades)", "Mean distance in grades between the labels that came back "
                                                      "(audit and hard examples together) and the grades predicted"),
           "grade_reference": ("mean grade (ref.)", "Mean grade the reference's held-out outputs were given"),
           "grade_shift": ("grade shift", "Earth mover's distance between this period's predicted grades and the "
                                          "reference's, in grades")}


def column_config(shown: pd.DataFrame) -> dict:
    """Names for the grade columns of a statistics or drift table as shown: numbers with two decimals,
    or as text where gaps made the column text ("–")."""
    return {c: (st.column_config.NumberColumn(title, help=help_text, format="%.2f")
                if pd.api.types.is_float_dtype(shown[c]) else st.column_config.Column(title, help=help_text))
            for c, (title, help_text) in COLUMNS.items() if c in shown.columns}


# --- Train and Versions ------------------------------------------------------------------------

def headline_traces(fig: go.Figure, versions: list[registry.Version]) -> None:
    """QWK and the within-one share per version beside accuracy and macro-F1 (same 0..1 axis), for
    ordinal versions; nothing for classification ones. MAE is in grades, so it stays in the table."""
    graded = [v for v in versions if "ordinal" in v.metrics]
    for key in ("qwk", "within_one"):
        if graded:
            title = FIGURES[key][0]
            fig.add_scatter(x=[v.version for v in graded], y=[v.metrics["ordinal"].get(key) for v in graded],
                            name=title, mode="lines+markers", line={"dash": "dot"},
                            hovertemplate=f"v%{{x}} {title} %{{y:.3f}}<extra></extra>")


def versions_columns() -> dict:
    """Names and formats for the ordinal columns of the versions table (registry.ORDINAL_COLUMNS)."""
    return {k: st.column_config.NumberColumn(FIGURES[k][0], help=FIGURES[k][1],
                                             format="percent" if k in PERCENT else "%.3f")
            for k in registry.ORDINAL_COLUMNS}


def metrics_row(version: registry.Version, base: registry.Version | None, key: str) -> None:
    """An ordinal version's five figures as metrics, each against the base version's as core compares
    them (compare.ordinal_deltas: which way is better, percent or not)."""
    exact = compare.Delta(EXACT, (base.metrics.get("ordinal") or {}).get("exact") if base else None,
                          version.metrics["ordinal"].get("exact"))
    deltas = {d.measure.key: d for d in [*compare.ordinal_deltas(version, base), exact]}
    for col, k in zip(st.columns(len(FIGURES)), [k for k in FIGURES if k in deltas]):
        d = deltas[k]
        shown = None if d.delta is None else f"{d.delta * 100:+.1f} pp" if d.measure.percent else f"{d.delta:+.3f}"
        colour = "off" if d.unchanged else "inverse" if d.measure.lower_is_better else "normal"
        col.metric(FIGURES[k][0], fmt(k, d.candidate), shown, border=True, delta_color=colour,
                   help=f"{d.measure.label}. {FIGURES[k][1]}" + (f" · v{base.version}: {fmt(k, d.base)}" if base else ""))


def by_line_table(version: registry.Version, base: registry.Version | None = None) -> pd.DataFrame:
    """An ordinal version's figures per business line (test rows, MAE, QWK, Spearman, exact, within one),
    with the base version's MAE on the line beside its own (mae_base) when there is a base."""
    before = (base.metrics.get("ordinal_by_line") or {}) if base is not None else {}
    rows = [{"business_line": line, "test_rows": m.get("n"), **{k: m.get(k) for k in FIGURES},
             "mae_base": before.get(line, {}).get("mae")}
            for line, m in sorted((version.metrics.get("ordinal_by_line") or {}).items())]
    every = ["business_line", "test_rows", *FIGURES, "mae_base"]
    return pd.DataFrame(rows, columns=every)[every if base is not None else every[:-1]]


def by_line(version: registry.Version, base: registry.Version | None, key: str) -> None:
    table = by_line_table(version, base)
    if table.empty:
        st.caption("No business line in the test split.")
        return
    st.dataframe(table, hide_index=True, key=key, column_config={
        "business_line": "business line", "test_rows": st.column_config.NumberColumn("test rows"),
        **{k: st.column_config.NumberColumn(title, help=help_text, format="percent" if k in PERCENT else "%.3f")
           for k, (title, help_text) in FIGURES.items()},
        "mae_base": st.column_config.NumberColumn(f"MAE v{base.version}" if base else "", format="%.3f",
                                                  help="The base version's MAE on the line, in grades")})


def version_section(version: registry.Version, base: registry.Version | None, key: str) -> None:
    """Everything ordinal about one version: the figures against the base, per line, and the grade order."""
    if "ordinal" not in version.metrics:
        return
    st.markdown(f"**Ordinal figures of v{version.version}** on the test split"
                + (f", beside v{base.version}" if base and "ordinal" in base.metrics else ""))
    base = base if base and "ordinal" in base.metrics else None
    metrics_row(version, base, key)
    st.markdown("**Per business line** (ordinal)")
    by_line(version, base, f"{key}_by_line")
    st.caption(order_caption(version.metrics.get("confusion", {}).get("labels", [])) + ". The confusion matrix "
               "is in this order: cells near the diagonal are near misses.")
