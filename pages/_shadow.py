"""Shadow versions on the pages: on Versions, put a version in shadow or stop it, and its evidence;
on Train, a version's evidence before it is activated. The shadow scores the live predictions in the
server's background and never answers (core.shadow)."""
import pandas as pd
import streamlit as st

from core import auth, registry, shadow
from core.slices import PERIODS
from pages import _ui

WHAT = ("A version in shadow scores every prediction the active version answers, in the server's background: "
        "it never answers and never slows an answer. Compare the two on the same live traffic before you activate it.")


def versions_section(model: registry.Model, versions: list[registry.Version]) -> None:
    """The Versions page's shadow control and the evidence of the version in shadow (or the last one)."""
    st.subheader("Shadow")
    st.caption(WHAT)
    store = _ui.store()
    with _ui.errors_as_messages():
        now = shadow.status(store, model.name)
    control(model, versions, now)
    evidence(model, None, "versions_shadow")


def control(model: registry.Model, versions: list[registry.Version], now: shadow.Shadow | None) -> None:
    allowed = auth.may(_ui.role(), "activate")
    row = st.container(horizontal=True, vertical_alignment="bottom")
    if now is not None:
        row.markdown(f"**v{now.version} is in shadow** since {pd.Timestamp(now.since):%Y-%m-%d %H:%M}, "
                     f"put there by {_ui.md_escape(now.by)}.")
        if row.button(f"Stop the shadow of v{now.version}", key="versions_shadow_stop", disabled=not allowed,
                      help=None if allowed else "Needs the owner role."):
            with _ui.errors_as_messages():
                shadow.stop(_ui.store(), model.name, _ui.user())
            st.session_state["flash"] = f"Version {now.version} is out of shadow; its evidence stays below."
            st.rerun()
    candidates = [v.version for v in versions if v.version != model.active_version]
    if not candidates or model.active_version is None:
        st.caption("Another version than the active one is needed: train one on the Train page.")
        return
    if st.session_state.get("versions_shadow_pick") not in candidates:
        st.session_state["versions_shadow_pick"] = candidates[-1]
    pick = row.selectbox("Version to shadow", candidates, key="versions_shadow_pick", width=180,
                         format_func=lambda n: f"v{n}" + (" (in shadow)" if now and now.version == n else ""))
    verb = "Shadow instead" if now is not None and now.version != pick else "Shadow"
    if row.button(f"{verb} v{pick}", key="versions_shadow_start", icon=":material/visibility:",
                  disabled=not allowed or (now is not None and now.version == pick),
                  help="Needs the owner role." if not allowed else
                       "One version per model is in shadow; this replaces the one there (recorded with your name)."):
        with _ui.errors_as_messages():
            shadow.start(_ui.store(), model.name, pick, _ui.user())
        st.session_state["flash"] = (f"Version {pick} is in shadow: it scores {_ui.md_escape(model.name)}'s live "
                                     "predictions from now on, without answering.")
        st.rerun()


def train_section(model: registry.Model, new: registry.Version) -> None:
    """The Train page's evidence for a version not active yet: how it answered the live traffic in shadow."""
    if new.status == registry.ACTIVE:
        return
    st.markdown(f"**v{new.version} on the live predictions** (in shadow)")
    with _ui.errors_as_messages():
        found = shadow.summary(_ui.store(), model.name, new.version)
    if found is None:
        st.caption(f"Version {new.version} has not scored live predictions yet. Put it in shadow on the Versions "
                   "page to compare it with the active version on real traffic before you activate it.")
        st.page_link("pages/versions.py", label="Go to Versions", icon=":material/visibility:")
        return
    evidence(model, new.version, "train_shadow")


def evidence(model: registry.Model, version: int | None, key: str) -> None:
    """The shadow's figures over the whole run, then per business line x period."""
    store = _ui.store()
    with _ui.errors_as_messages():
        whole = shadow.summary(store, model.name, version)
    if whole is None:
        st.caption("No version has scored in shadow yet.")
        return
    v = whole["shadow_version"]
    state = (f"in shadow, {whole['pending']:,} predictions not scored yet" if whole["in_shadow"]
             else "out of shadow: what it scored while it was there")
    st.markdown(f"**Evidence of v{v}** beside the version that answered ({whole['active_versions'] or 'none yet'}) · "
                f"{state}")
    if not whole["n"]:
        st.caption("No prediction has been scored yet: it scores those logged after it went into shadow.")
        return
    tiles = st.columns(4)
    tiles[0].metric("Predictions scored", f"{whole['n']:,}", help=shadow.ABOUT["n"])
    tiles[1].metric("Agreement", _ui.fmt_pct(whole["agreement"]), help=shadow.ABOUT["agreement"])
    tiles[2].metric(f"Estimated accuracy, {whole['active_versions']}", _ui.fmt_pct(whole["active_estimate"]),
                    help=shadow.ABOUT["active_estimate"])
    gain = whole["shadow_estimate"] - whole["active_estimate"]
    tiles[3].metric(f"Estimated accuracy, v{v}", _ui.fmt_pct(whole["shadow_estimate"]),
                    delta=None if pd.isna(gain) else f"{gain * 100:+.1f} pp", help=shadow.ABOUT["shadow_estimate"])
    if whole["not_estimated"]:
        st.caption("No estimate: " + _ui.md_escape(whole["not_estimated"]) + ".")
    st.caption(labelled_sentence(whole))
    by = st.segmented_control("Per", PERIODS, default="week", key=f"{key}_period") or "week"
    with _ui.errors_as_messages():
        table = shadow.evidence(store, model.name, by, v)
    # the container's key names the table in a browser
    st.container(key=f"{key}_evidence").dataframe(view(table, v), hide_index=True, use_container_width=True,
                                                  key=f"{key}_table", column_config=_columns(by, v))
    st.caption(" ".join(f"{name.replace('_', ' ')}: {text}." for name, text in shadow.ABOUT.items()))


def _columns(by: str, v: int) -> dict:
    """Headers and formats of the evidence view's columns (`by`: the period, `v`: the shadow version)."""
    return {
        "line": st.column_config.TextColumn("line"),
        "period": st.column_config.DatetimeColumn(by, format="YYYY-MM-DD"),
        "scored": st.column_config.NumberColumn("scored", format="%d", help=shadow.ABOUT["n"]),
        "agreement": st.column_config.NumberColumn("agreement", format="percent", help=shadow.ABOUT["agreement"]),
        "answered by": st.column_config.TextColumn("answered by"),
        "estimated, answer": st.column_config.TextColumn("est. answer", help=shadow.ABOUT["active_estimate"]),
        "estimated, shadow": st.column_config.TextColumn(f"est. v{v}", help=shadow.ABOUT["shadow_estimate"]),
        "disagreements": st.column_config.TextColumn("differ (labelled)"),
        "right where they differ": st.column_config.TextColumn(f"right: answer / v{v}",
                                                               help=shadow.ABOUT["accuracy_on_disagreements"]),
        "audited": st.column_config.TextColumn(f"audited: answer / v{v}", help=shadow.ABOUT["audited_accuracy"]),
    }


def view(table: pd.DataFrame, v: int) -> pd.DataFrame:
    """The evidence per line x period in ten narrow columns (a pair of figures shares one), so the
    table fits the page's width: estimates with their standard error, who was right where the two
    differ and on the audit sample as 'answer / shadow' with the number of labels."""
    def pair(a, b, n) -> str:
        return "–" if not n else f"{_ui.fmt_pct(a)} / {_ui.fmt_pct(b)} ({int(n)})"

    def estimate(x, error) -> str:
        return "–" if pd.isna(x) else f"{_ui.fmt_pct(x)} ± {100 * error:.1f}"

    return pd.DataFrame({
        "line": table["business_line"], "period": table["period"], "scored": table["n"],
        "agreement": table["agreement"], "answered by": table["active_versions"],
        "estimated, answer": [estimate(x, e) for x, e in zip(table["active_estimate"], table["active_estimate_error"])],
        "estimated, shadow": [estimate(x, e) for x, e in zip(table["shadow_estimate"], table["shadow_estimate_error"])],
        "disagreements": [f"{int(d):,} ({int(n):,})" for d, n in zip(table["disagreements"], table["disagreements_labelled"])],
        "right where they differ": [pair(a, b, n) for a, b, n in zip(table["active_accuracy_on_disagreements"],
                                                                       table["shadow_accuracy_on_disagreements"],
                                                                       table["disagreements_labelled"])],
        "audited": [pair(a, b, n) for a, b, n in zip(table["active_audited_accuracy"], table["shadow_audited_accuracy"],
                                                     table["audited"])],
    })


def labelled_sentence(whole: dict) -> str:
    """Who was right, where labels exist, in one sentence."""
    v = whole["shadow_version"]
    parts = [f"{whole['disagreements']:,} disagreements"]
    if whole["disagreements_labelled"]:
        parts.append(f"of the {whole['disagreements_labelled']:,} labelled, the answer was right on "
                     f"{_ui.fmt_pct(whole['active_accuracy_on_disagreements'])} and v{v} on "
                     f"{_ui.fmt_pct(whole['shadow_accuracy_on_disagreements'])}")
    else:
        parts.append("none labelled yet (draw them on the Label page with the disagreement strategy)")
    if whole["audited"]:
        parts.append(f"on the {whole['audited']:,} audited items: answer {_ui.fmt_pct(whole['active_audited_accuracy'])}, "
                     f"v{v} {_ui.fmt_pct(whole['shadow_audited_accuracy'])}")
    return "; ".join(parts) + "."
