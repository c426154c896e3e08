"""The Train page's result: the new version beside the active one on the same test split, and the
box that activates it (with a typed reason, a confirmation and, for a worse version, "anyway")."""
import re

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import compare, registry
from pages import _ordinal, _shadow, _ui

METRIC_TILE = 200  # px: "Calibration error (ECE)" in full
TABLE_TILE = 440  # px: a per-class or per-line table with both versions and the delta


def fmt(value, measure: compare.Measure) -> str:
    return _ui.fmt_pct(value) if measure.percent else _ui.fmt_num(value)


def fmt_delta(d: compare.Delta) -> str | None:
    if d.delta is None:
        return None
    return f"{d.delta * 100:+.1f} pp" if d.measure.percent else f"{d.delta:+.3f}"


def overall(new: registry.Version, base: registry.Version | None) -> None:
    deltas = compare.overall_deltas(new, base)
    row = st.container(horizontal=True)  # fixed-width tiles that wrap, not columns that cut "81.…" at 1000 px
    for col, d in zip([row.container(width=METRIC_TILE) for _ in deltas], deltas):
        m = d.measure
        col.metric(m.label, fmt(d.candidate, m), delta=fmt_delta(d), border=True,
                   delta_color="off" if d.unchanged else "inverse" if m.lower_is_better else "normal",
                   help=f"v{base.version}: {fmt(d.base, m)}" + (" · lower is better" if m.lower_is_better else "")
                   if base else None)


def show_table(frame: pd.DataFrame, key: str) -> None:
    formats = {c: st.column_config.NumberColumn(c, format="%+.3f" if c == "Δ" else "%.3f")
               for c in frame.columns if c == "Δ" or re.fullmatch(r"v\d+", c)}
    st.dataframe(frame, hide_index=True, column_config=formats, key=key)


def regressions_table(found: list[compare.Regression]) -> None:
    st.dataframe(pd.DataFrame([r.to_dict() for r in found]), hide_index=True, key="train_regressions",
                 column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                for c in ("base", "candidate", "drop", "tolerance")})


def confusion_figure(version: registry.Version, zmax: int) -> go.Figure:
    confusion = version.metrics["confusion"]
    labels, z = confusion["labels"], confusion["matrix"]
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=labels, text=z, texttemplate="%{text}", zmin=0, zmax=zmax,
                               colorscale="Blues", showscale=False,
                               hovertemplate="true %{y} → predicted %{x}: %{z}<extra></extra>"))
    fig.update_layout(title=f"v{version.version} ({version.status})", height=320,
                      margin=dict(l=10, r=10, t=40, b=10))
    fig.update_xaxes(title="predicted", type="category")
    fig.update_yaxes(title="true", type="category", autorange="reversed")
    return fig


def result_panel(model: registry.Model, versions: list[registry.Version]):
    """The version just trained (or the newest one, if it is not active) beside the active version.

    Returns (version, reason, force) when its activate button is clicked."""
    by_number = {v.version: v for v in versions}
    result = st.session_state.get("train_result")
    if result and result["model"] == model.name and result["version"] in by_number:
        new = by_number[result["version"]]
        heading = f"Version {new.version}, {result['how']}"
    elif versions and versions[-1].status != registry.ACTIVE:
        new = versions[-1]
        heading = f"Version {new.version}, the newest, not active yet"
        result = {"base": model.active_version}
    elif versions:
        st.caption("The newest version is the active one. Train a version to see it here beside it.")
        return None
    else:
        st.caption("No version yet: the first one you train shows here with its metrics on the test split.")
        return None
    base = by_number.get(compare.comparison_base(new.version, model.active_version, result.get("base")))
    st.subheader(heading + (f", beside active version {base.version}" if base and base.status == registry.ACTIVE
                            else f", beside version {base.version}" if base else ""))
    st.caption(f"{new.mode} · trained by {_ui.md_escape(new.created_by)} at {new.created_at:%Y-%m-%d %H:%M} · "
               f"{new.data.get('rows', 0):,} rows seen · {new.metrics.get('n_test', 0):,} test rows")
    if "accuracy" not in new.metrics:
        st.warning("This version has no metrics: the model has no test rows. Import a test split on the Data page.")
        return None
    note = compare.not_comparable(new, base) if base else None
    if note:
        st.warning(note[:1].upper() + note[1:] + ": differences are not only the model's.")
    _shadow.train_section(model, new)
    clicked = activate_box(model, new, by_number.get(model.active_version))
    overall(new, base)
    _ordinal.version_section(new, base, "train_ordinal")
    row = st.container(horizontal=True)  # side by side at 1400 px, one under the other at 1000 px (not cut)
    left, right = row.container(width=TABLE_TILE), row.container(width=TABLE_TILE)
    with left:
        st.markdown("**Per class**")
        show_table(compare.per_class_table(new, base), "train_per_class")
    with right:
        st.markdown("**Per business line** (accuracy)")
        show_table(compare.by_line_table(new, base), "train_by_line")
    shown = [v for v in (base, new) if v and "confusion" in v.metrics]
    zmax = max(max(max(row) for row in v.metrics["confusion"]["matrix"]) for v in shown)
    st.markdown("**Confusion matrices** (rows: true label, columns: predicted)")
    for col, v in zip(st.columns(2), shown):
        col.plotly_chart(confusion_figure(v, zmax), key=f"train_confusion_{v.version}")
    _ui.model_choice(new, "train_choice")
    return clicked


def activate_box(model: registry.Model, new: registry.Version, active: registry.Version | None):
    """A typed reason, a confirmation, and, when the version is worse than the active one, what
    regressed and a tick to activate it anyway; returns (version, reason, force) when clicked."""
    if new.status == registry.ACTIVE:
        trivial = compare.baseline(new)  # a forced version no better than guessing gets no green badge
        if trivial is not None and not trivial.beaten:
            st.warning(f"Version {new.version} answers predictions now, but {trivial.sentence()}.", icon=":material/warning:")
        else:
            st.success(f"Version {new.version} is active: it answers predictions now.")
        return None
    verdict = registry.guard_verdict(_ui.store(), model.name, new.version)
    found = verdict.found
    if found:
        st.error(verdict.sentence()[:1].upper() + verdict.sentence()[1:] + ".", icon=":material/trending_down:")
        regressions_table(found)
    reason = st.text_input("Reason for activating (recorded in the history)", key="train_activate_reason",
                           max_chars=500, placeholder=f"why version {new.version} should answer predictions")
    switch = (f"Switch predictions from version {model.active_version} to version {new.version}"
              if model.active_version else f"Make version {new.version} the active version")
    confirm = st.checkbox(switch, key="train_activate_confirm")
    force = found and st.checkbox(f"Activate anyway, although version {new.version} is worse (recorded as "
                                  f"forced, with your reason)", key="train_activate_force")
    ready = _ui.may("activate") and bool(reason.strip()) and confirm and (not found or force)
    why_not = ("Activating needs the owner role." if not _ui.may("activate")
               else "Type a reason and tick the confirmation first." if not (reason.strip() and confirm)
               else "Tick “activate anyway” to switch to a worse version." if not ready else None)
    if not st.session_state.get("user"):
        st.caption("You will be recorded as “anonymous”: put your name in the sidebar.")
    label = f"Activate v{new.version} anyway" if found else f"Activate v{new.version}"
    if st.button(label, key="train_activate", type="primary", disabled=not ready,
                 help=why_not or "The switch is one transaction, recorded with your name and reason."):
        if ready:  # a disabled button's click from a stale browser is ignored
            return new.version, reason.strip(), bool(found)
    return None


def activate(model: registry.Model, version: int, reason: str, force: bool) -> None:
    with _ui.errors_as_messages():
        registry.activate_version(_ui.store(), model.name, version, _ui.user(), reason, force=force)
    # keep it beside the version it replaced
    # no flash at the top: the result section says it where the button was, once
    st.session_state["train_result"] = {"model": model.name, "version": version, "base": model.active_version,
                                        "how": "just activated anyway" if force else "just activated"}
    st.session_state["train_clear"] = True
    st.rerun()
