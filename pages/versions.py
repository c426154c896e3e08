"""Versions (product owners): every model at a glance; for the selected model its versions and their
metrics, reactivating any version with a reason, a diff of two versions, and the history.

Reactivating a version worse than the active one (an ordinary rollback, often) shows what regressed
(core.compare) and needs "reactivate anyway", recorded as forced with the reason."""
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import auth, compare, registry
from pages import _ui

HEADLINES = {"accuracy": "Accuracy", "macro_f1": "Macro-F1"}
DIFF_KEYS = "versions_diff_a", "versions_diff_b"


@st.cache_data(show_spinner=False, max_entries=8)
def load_overview(_store, store_key: str, revision: tuple) -> pd.DataFrame:
    return registry.models_overview(_store)


@st.cache_data(show_spinner=False, max_entries=16)
def load_model(_store, store_key: str, name: str, revision: tuple) -> dict:
    """Everything this page shows about one model, read once per change of the store."""
    return {"model": registry.get_model(_store, name), "versions": registry.list_versions(_store, name),
            "table": registry.versions_table(_store, name),
            "history": registry.activation_history(_store, name),
            "events": registry.events_table(_store, name, limit=50)}


def may(action: str) -> bool:
    return auth.may(_ui.role(), action)


def label_of(v: registry.Version, active: int | None) -> str:
    """A version as the dropdowns name it; "active" from the model's active version as read this run."""
    active = " · active" if v.version == active else ""
    return f"v{v.version} · {v.mode} · macro-F1 {_ui.fmt_num(v.headline)} · {v.created_at:%Y-%m-%d}{active}"


def keep_valid(key: str, options: list, default) -> None:
    """A selectbox keeps its choice across reruns, but not one the selected model does not have."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = default


# --- sections -----------------------------------------------------------------------------

def overview(store, selected: str) -> None:
    st.subheader("All models")
    frame = load_overview(store, repr(store), _ui.revision())
    frame.insert(0, "selected", frame["model"].eq(selected).map({True: "▶", False: ""}))
    st.dataframe(frame, hide_index=True, key="versions_models", column_config={
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
    active = [v for v in versions if v.status == registry.ACTIVE]
    if active:
        fig.add_vline(x=active[0].version, line_dash="dot", line_color="#16a34a",
                      annotation_text=f"active v{active[0].version}", annotation_position="top left")
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.25),
                      hovermode="x unified")
    fig.update_xaxes(title="version", tickmode="array", tickvals=x, ticktext=[f"v{n}" for n in x])
    fig.update_yaxes(title="on the test split", tickformat=".3f", nticks=6)
    return fig


def versions_table(table: pd.DataFrame) -> None:
    shown = table.assign(status=table["status"].map({registry.ACTIVE: "● active"}).fillna(""),
                         parent=table["parent"].astype("Int64"))  # a first version's parent shows blank, not None
    st.dataframe(shown, hide_index=True, key="versions_table", column_config={
        "version": st.column_config.NumberColumn("version", format="v%d"),
        "parent": st.column_config.NumberColumn("parent", format="v%d"),
        "rows_seen": st.column_config.NumberColumn("rows seen", format="localized"),
        "accuracy": st.column_config.NumberColumn("accuracy", format="percent"),
        "macro_f1": st.column_config.NumberColumn("macro-F1", format="%.3f"),
        "log_loss": st.column_config.NumberColumn("log loss", format="%.3f"),
        "ece": st.column_config.NumberColumn("ECE", format="%.3f"),
        "created_at": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
        "created_by": st.column_config.TextColumn("by"),
    })


def reactivate_box(model: registry.Model, versions: list[registry.Version], history: pd.DataFrame):
    """Pick a version, give a reason, confirm (and, for a worse version, tick "anyway");
    returns (version, reason, was active before, force) on click."""
    st.markdown("**Switch the active version**")
    by_number = {v.version: v for v in versions}
    inactive = [v.version for v in versions if v.version != model.active_version]
    keep_valid("versions_pick", list(by_number), inactive[-1] if inactive else versions[-1].version)
    picked = st.selectbox("Version", list(by_number), key="versions_pick",
                          format_func=lambda n: label_of(by_number[n], model.active_version))
    v = by_number[picked]
    st.caption(f"Trained by {_ui.md_escape(v.created_by)} at {v.created_at:%Y-%m-%d %H:%M} · "
               + (f"{v.data.get('rows', 0):,} rows seen · " if v.data.get("rows") is not None else "")
               + ("answers predictions now." if picked == model.active_version else
                  "was active before." if picked in set(history["to_version"]) else "never active yet."))
    active = by_number.get(model.active_version)
    found = compare.regressions(v, active) if active and picked != model.active_version else []
    if found:
        sentence = compare.describe(found, picked, model.active_version)
        st.error(sentence[:1].upper() + sentence[1:] + ".", icon=":material/trending_down:")
        st.dataframe(pd.DataFrame([r.to_dict() for r in found]), hide_index=True, key="versions_regressions",
                     column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                    for c in ("base", "candidate", "drop", "tolerance")})
    reason = st.text_input("Reason (recorded in the activation history)", key="versions_reason",
                           placeholder="e.g. version 3 misreads hotel reviews", max_chars=500)
    confirm = st.checkbox(f"Switch predictions from version {model.active_version} to version {picked}",
                          key="versions_confirm", disabled=picked == model.active_version)
    force = bool(found) and st.checkbox(f"Switch anyway, although version {picked} is worse (recorded as forced, "
                                        f"with your reason)", key="versions_force")
    ready = (may("activate") and picked != model.active_version and bool(reason.strip()) and confirm
             and (force or not found))
    why_not = ("Activating needs the owner role." if not may("activate")
               else "This version is already active." if picked == model.active_version
               else "Give a reason and tick the confirmation first." if not (reason.strip() and confirm)
               else "Tick “switch anyway” to activate a worse version." if not ready else None)
    verb = "Reactivate" if picked in set(history["to_version"]) else "Activate"
    if st.button(f"{verb} v{picked}" + (" anyway" if found else ""), key="versions_reactivate", type="primary",
                 disabled=not ready,
                 help=why_not or "The switch is one transaction, recorded with your name and reason."):
        if ready:  # a disabled button's click from a stale browser is ignored
            return picked, reason.strip(), verb == "Reactivate", bool(found)
    if not st.session_state.get("user"):
        st.caption("You will be recorded as “anonymous”: put your name in the sidebar.")
    return None


def reactivate(model: registry.Model, version: int, reason: str, again: bool, force: bool) -> None:
    with _ui.errors_as_messages():
        registry.activate_version(_ui.store(), model.name, version, _ui.user(), reason, force=force)
    st.session_state["flash"] = (f"Version {version} is {'active again' if again else 'now active'}: it answers "
                                 f"{_ui.md_escape(model.name)}'s predictions from now on"
                                 + (" (forced, recorded with your reason)." if force else "."))
    st.session_state["versions_clear"] = True
    st.rerun()


def diff_section(versions: list[registry.Version], active: int | None) -> None:
    st.subheader("Compare two versions")
    if len(versions) < 2:
        st.caption("Only one version so far: train another on the Train page to compare.")
        return
    by_number = {v.version: v for v in versions}
    numbers = list(by_number)
    newest_other = next((n for n in reversed(numbers) if n != active), numbers[-1])
    keep_valid(DIFF_KEYS[0], numbers, active if active in by_number else numbers[-2])
    keep_valid(DIFF_KEYS[1], numbers, newest_other)
    left, right, only = st.columns([2, 2, 1], vertical_alignment="bottom")
    a = left.selectbox("Version", numbers, key=DIFF_KEYS[0], format_func=lambda n: label_of(by_number[n], active))
    b = right.selectbox("beside version", numbers, key=DIFF_KEYS[1],
                        format_func=lambda n: label_of(by_number[n], active))
    only_diff = only.toggle("Only differences", value=True, key="versions_diff_only")
    diff = compare.diff_table(by_number[a], by_number[b])
    differing = int(diff["differs"].sum())
    st.caption(f"{differing} of {len(diff)} settings and figures differ." if a != b
               else "The same version on both sides.")
    if only_diff:
        diff = diff[diff["differs"]]
    frame = diff.assign(**{c: diff[c].map(compare.as_text) for c in diff.columns if c not in ("setting", "differs")},
                        differs=diff["differs"].map({True: "●", False: ""}))
    styled = frame.style.apply(
        lambda row: ["background-color: rgba(250, 204, 21, 0.25)" if row["differs"] else ""] * len(row), axis=1)
    st.dataframe(styled, hide_index=True, key="versions_diff", column_config={
        "differs": st.column_config.TextColumn("differs", width="small")})
    st.markdown("**Reliability** (on the test split: a calibrated model's points lie on the diagonal)")
    st.plotly_chart(_ui.reliability_figure([by_number[n] for n in dict.fromkeys((a, b))]), key="versions_reliability")
    _ui.model_choice(by_number[b], "versions_choice")


def history_section(history: pd.DataFrame, events: pd.DataFrame) -> None:
    st.subheader("History")
    tab_activations, tab_events = st.tabs(["Activations", "Recent events"])
    with tab_activations:
        if history.empty:
            st.caption("No activations yet.")
        st.dataframe(history, hide_index=True, key="versions_history", column_config={
            "at": st.column_config.DatetimeColumn("at", format="YYYY-MM-DD HH:mm:ss"),
            "from_version": st.column_config.NumberColumn("from", format="v%d"),
            "to_version": st.column_config.NumberColumn("to", format="v%d")})
    with tab_events:
        st.dataframe(events[["at", "user", "action", "details"]], hide_index=True, key="versions_events",
                     column_config={"at": st.column_config.DatetimeColumn("at", format="YYYY-MM-DD HH:mm:ss")})
        st.caption("The model's latest 50 audit events, newest first.")


# --- the page -----------------------------------------------------------------------------

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
    if not versions:
        st.info("This model has no version yet: train one on the Train page.")
        st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
        overview(store, name)
        return

    chart, box = st.columns([3, 2])
    with chart:
        st.plotly_chart(headline_chart(versions), key="versions_chart")
    with box:
        panel = st.container(border=True)
        with panel:
            to_activate = reactivate_box(model, versions, data["history"])
    versions_table(data["table"])
    diff_section(versions, model.active_version)
    history_section(data["history"], data["events"])
    st.divider()
    overview(store, name)
    if to_activate:  # last, so that an error message cannot hide the rest of the page
        with panel:
            reactivate(model, *to_activate)


main()
