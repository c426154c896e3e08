"""The Versions page's switch of the active version (a reason, a confirmation, and "anyway" for a worse
version, recorded as forced) and the download of a version's verified model file."""
import pandas as pd
import streamlit as st

from core import artifacts, registry
from core.errors import MMSError
from pages import _ui
from pages._versions_compare import keep_valid, label_of


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
    verdict = registry.guard_verdict(_ui.store(), model.name, picked) if picked != model.active_version else None
    found = verdict.found if verdict else []
    if found:
        sentence = verdict.sentence()
        st.error(sentence[:1].upper() + sentence[1:] + ".", icon=":material/trending_down:")
        st.dataframe(pd.DataFrame([r.to_dict() for r in found]), hide_index=True, key="versions_regressions",
                     column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                    for c in ("base", "candidate", "drop", "tolerance")})
    reason = st.text_input("Reason (recorded in the activation history)", key="versions_reason",
                           placeholder="e.g. version 3 misreads hotel reviews", max_chars=500)
    confirm = picked != model.active_version and st.checkbox(  # "from version 1 to version 1" read as nonsense
        f"Switch predictions from version {model.active_version} to version {picked}", key="versions_confirm")
    force = bool(found) and st.checkbox(f"Switch anyway, although version {picked} is worse (recorded as forced, "
                                        f"with your reason)", key="versions_force")
    ready = (_ui.may("activate") and picked != model.active_version and bool(reason.strip()) and confirm
             and (force or not found))
    why_not = ("Activating needs the owner role." if not _ui.may("activate")
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


def model_file_section(model: registry.Model, versions: list[registry.Version]) -> None:
    """Download a version's model file, offered only once its sha256 matches the registry's."""
    by_number = {v.version: v for v in versions}
    row = st.container(horizontal=True, vertical_alignment="bottom")
    keep_valid("versions_file_pick", list(by_number), model.active_version or versions[-1].version)
    picked = row.selectbox("Model file of", list(by_number), key="versions_file_pick", width=160,
                           format_func=lambda n: f"v{n}" + (" (active)" if n == model.active_version else ""))
    v = by_number[picked]
    ready = st.session_state.get("versions_file")
    if not ready or ready["for"] != (model.name, v.version, v.sha256):
        if not row.button("Check its sha256", key="versions_file_check", icon=":material/verified:",
                          help="Reads the file and compares its sha256 with the one recorded when it was trained; "
                               "only a file that matches is offered."):
            row.caption(f"sha256 recorded: `{v.sha256[:16]}…`")
            return
        try:
            data = artifacts.verified_file(_ui.store(), v)
        except MMSError as e:
            st.error(str(e)[:1].upper() + str(e)[1:] + ".", icon=":material/gpp_bad:")
            return
        ready = st.session_state["versions_file"] = {"for": (model.name, v.version, v.sha256), "data": data}
    row.download_button(f"Download v{v.version}'s model file ({len(ready['data']) / 2 ** 20:.1f} MB)", ready["data"],
                        file_name=artifacts.download_name(model.name, v), mime="application/octet-stream",
                        key="versions_file_download", icon=":material/download:", on_click="ignore")
    row.caption(f"sha256 `{v.sha256[:16]}…` matches the registry's. A joblib file: load it with the same "
                f"versions of scikit-learn and jieba.")


def reactivate(model: registry.Model, version: int, reason: str, again: bool, force: bool) -> None:
    with _ui.errors_as_messages():
        registry.activate_version(_ui.store(), model.name, version, _ui.user(), reason, force=force)
    st.session_state["flash"] = (f"Version {version} is {'active again' if again else 'now active'}: it answers "
                                 f"{_ui.md_escape(model.name)}'s predictions from now on"
                                 + (" (forced, recorded with your reason)." if force else "."))
    st.session_state["versions_clear"] = True
    st.rerun()
