"""Versions (product owners): every model at a glance; for the selected model its versions and their
metrics, reactivating any version with a reason, versions compared against a base, and the history.

Reactivating a version worse than the active one (an ordinary rollback, often) shows what regressed
(core.compare) and needs "reactivate anyway", recorded as forced with the reason."""
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import compare, registry
from pages import _ordinal, _shadow, _ui, _versions_activate, _versions_compare, _versions_experiments

HEADLINES = {"accuracy": "Accuracy", "macro_f1": "Macro-F1"}
CHART_WIDTH, BOX_WIDTH = 500, 410  # px: side by side in a 1400 px window, stacked at 1000 px


@st.cache_data(show_spinner=False, max_entries=8)
def load_overview(_store, store_key: str, revision: tuple) -> pd.DataFrame:
    return registry.models_overview(_store)


@st.cache_data(show_spinner=False, max_entries=16)
def load_model(_store, store_key: str, name: str, revision: tuple) -> dict:
    """Everything this page shows about one model, read once per change of the store."""
    return {"model": registry.get_model(_store, name), "versions": registry.list_versions(_store, name),
            "table": registry.versions_table(_store, name),
            "history": registry.activation_history(_store, name),
            "events": registry.events_table(_store, name, limit=50),
            "annotations": registry.version_annotations(_store, name)}


def overview(store, selected: str) -> None:
    st.subheader("All models")
    frame = load_overview(store, repr(store), _ui.revision())
    frame.insert(0, "selected", frame["model"].eq(selected).map({True: "▶", False: ""}))
    frame["active_version"] = frame["active_version"].astype("Int64")  # a model not trained yet: blank, not None
    st.dataframe(frame, hide_index=True, key="versions_models", placeholder="", column_config={
        "selected": st.column_config.TextColumn("", width="small"),
        "active_version": st.column_config.NumberColumn("active version", format="v%d"),
        "macro_f1": st.column_config.NumberColumn("macro-F1", format="%.3f"),
        "accuracy": st.column_config.NumberColumn("accuracy", format="percent"),
    })
    st.caption("Choose the model in the sidebar.")


def headline_chart(versions: list[registry.Version]) -> go.Figure:
    x = [v.version for v in versions]
    hover = [f"{v.mode} · {v.created_at:%Y-%m-%d} · {v.created_by}" for v in versions]
    fig = go.Figure()
    for key, name in HEADLINES.items():
        fig.add_trace(go.Scatter(x=x, y=[v.metrics.get(key) for v in versions], name=name, mode="lines+markers",
                                 customdata=hover, hovertemplate=f"v%{{x}} {name} %{{y:.3f}}<br>%{{customdata}}"
                                                                 "<extra></extra>"))
    _ordinal.headline_traces(fig, versions)
    active = [v for v in versions if v.status == registry.ACTIVE]
    if active:
        fig.add_vline(x=active[0].version, line_dash="dot", line_color="#16a34a",
                      annotation_text=f"active v{active[0].version}", annotation_position="top left")
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.25),
                      hovermode="x unified")
    fig.update_xaxes(title="version", tickmode="array", tickvals=x, ticktext=[f"v{n}" for n in x])
    fig.update_yaxes(title="on the test split", tickformat=".3f", nticks=6, range=headline_range(fig))
    return fig


def headline_range(fig: go.Figure) -> list[float] | None:
    """The y range, at least 0.01 tall: one version, or versions a hair apart, drew five ticks that all
    read 0.813 (plotly spreads its ticks over whatever tiny range the points span)."""
    ys = [y for trace in fig.data for y in (trace.y or ()) if isinstance(y, (int, float))]
    if not ys:
        return None
    pad = max(0.005 - (max(ys) - min(ys)) / 2, 0) + 0.002
    return [min(ys) - pad, max(ys) + pad]


def versions_table(table: pd.DataFrame) -> None:
    shown = table.assign(status=table["status"].map({registry.ACTIVE: "● active"}).fillna(""),
                         parent=table["parent"].astype("Int64"))  # v1 has no parent: a gap
    st.dataframe(shown, hide_index=True, key="versions_table", placeholder="", column_config={
        "version": st.column_config.NumberColumn("version", format="v%d"),
        "parent": st.column_config.NumberColumn("parent", format="v%d"),
        "rows_seen": st.column_config.NumberColumn("rows seen", format="localized"),
        "accuracy": st.column_config.NumberColumn("accuracy", format="percent"),
        "macro_f1": st.column_config.NumberColumn("macro-F1", format="%.3f"),
        "log_loss": st.column_config.NumberColumn("log loss", format="%.3f"),
        "ece": st.column_config.NumberColumn("ECE", format="%.3f"),
        "created_at": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
        "created_by": st.column_config.TextColumn("by"),
        **_ordinal.versions_columns(),
    })


def history_section(history: pd.DataFrame, events: pd.DataFrame) -> None:
    st.subheader("History")
    tab_activations, tab_events = st.tabs(["Activations", "Recent events"])
    with tab_activations:
        if history.empty:
            st.caption("No activations yet.")
        st.dataframe(history, hide_index=True, key="versions_history", placeholder="", column_config={
            "at": st.column_config.DatetimeColumn("at", format="YYYY-MM-DD HH:mm:ss"),
            "from_version": st.column_config.NumberColumn("from", format="v%d"),
            "to_version": st.column_config.NumberColumn("to", format="v%d")})
    with tab_events:
        st.dataframe(events[["at", "user", "action", "details"]], hide_index=True, key="versions_events",
                     column_config={"at": st.column_config.DatetimeColumn("at", format="YYYY-MM-DD HH:mm:ss")})
        st.caption("The model's latest 50 audit events, newest first.")


def main() -> None:
    name = _ui.require_model()
    store = _ui.store()
    if st.session_state.pop("versions_clear", False):
        # assigned, not deleted: the browser keeps a deleted widget's old value on screen
        st.session_state.update(versions_reason="", versions_confirm=False, versions_force=False, versions_pick=None)
    with _ui.errors_as_messages():
        data = load_model(store, repr(store), name, _ui.revision())
    model, versions = data["model"], data["versions"]

    st.title("Versions")
    st.subheader(f"{_ui.md_escape(model.name)} · " + (f"active version v{model.active_version}" if model.active_version
                                           else "no active version"))
    if model.description:
        st.text(model.description)
    trivial = compare.baseline(next((v for v in versions if v.status == registry.ACTIVE), None))
    if trivial is not None and not trivial.beaten:  # forced: no better than guessing, said plainly
        st.warning(f"Version {trivial.version} answers predictions, but {trivial.sentence()}.", icon=":material/warning:")
    if not versions:
        st.info("This model has no version yet: train one on the Train page.")
        st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
        overview(store, name)
        return

    # side by side at 1400 px, one under the other at 1000 px: fixed columns squeezed the switch box
    # beside the open sidebar until its regressions table showed one column
    row = st.container(horizontal=True)
    with row.container(width=CHART_WIDTH):
        st.plotly_chart(headline_chart(versions), key="versions_chart")
    panel = row.container(border=True, width=BOX_WIDTH)
    with panel:
        to_activate = _versions_activate.reactivate_box(model, versions, data["history"])
    versions_table(data["table"])
    _shadow.versions_section(model, versions)
    _versions_activate.model_file_section(model, versions)
    _versions_experiments.experiments_section(model, versions, data["annotations"])
    _versions_compare.diff_section(versions, model.active_version)
    history_section(data["history"], data["events"])
    st.divider()
    overview(store, name)
    if to_activate:  # last, so that an error message cannot hide the rest of the page
        with panel:
            _versions_activate.reactivate(model, *to_activate)


main()
