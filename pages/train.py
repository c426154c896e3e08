"""Train (product owners): what the next version learns from, a retrain with progress, and the
new version beside the active one on the same test split, ready to activate.

The settings of the next version (estimator, features, jieba preprocessing) sit below, with a
live tokenisation preview. A retrain uses the model's saved settings; settings that differ from
them are listed and used only once the user confirms them. Activating takes a typed reason and a
confirmation; a version worse than the active one (core.compare) needs "activate anyway".
"""
import hashlib
import time

import pandas as pd
import streamlit as st

from core import compare, registry, train
from pages import _policy, _train_result, _train_settings, _training_options, _ui
from pages._ui import may

PLAN_TILE = 250  # px: "not possible" in full


@st.cache_data(show_spinner=False, max_entries=16)
def load(_store, store_key: str, name: str, revision: tuple):
    """The model, its versions and the training plan, read once per change of the store."""
    return (registry.get_model(_store, name), registry.list_versions(_store, name),
            train.training_plan(_store, name))


def plan_panel(plan: train.TrainingPlan) -> None:
    total = sum(plan.rows_by_source.values())
    new = sum(plan.new_since_active.values())
    by_source = _ui.fmt_sources(plan.rows_by_source, "none yet")
    new_by_source = _ui.fmt_sources(plan.new_since_active)
    # tiles of a fixed width in a row that wraps: three equal columns beside the sidebar at 1000 px cut
    # "not possible" to "not po…"
    row = st.container(horizontal=True)
    a, b, c = (row.container(width=PLAN_TILE) for _ in range(3))
    a.metric("Training rows", f"{total:,}", help="Imported rows plus labels given on the Label page.",
             border=True)
    a.caption(by_source)
    since = f"v{plan.active_version}" if plan.active_version else "the first version"
    b.metric(f"New since {since}", f"{new:,}", border=True)
    b.caption(new_by_source)
    c.metric("Incremental update", "possible" if plan.incremental_possible else "not possible", border=True)
    c.caption(plan.reason[:1].upper() + plan.reason[1:] + ".")


def confirm_unsaved(diff: pd.DataFrame) -> bool:
    """With settings that differ from the saved ones: the differences, and a tick to train with them.

    The tick's key depends on the differences, so a further change needs a fresh tick."""
    if diff.empty:
        return True
    st.warning("The settings below differ from the model's saved settings. A Full retrain uses the saved "
               "settings unless you confirm these:", icon=":material/warning:")
    shown = diff.assign(saved=diff["saved"].map(compare.as_text), shown=diff["shown"].map(compare.as_text))
    st.dataframe(shown, hide_index=True, key="train_unsaved_diff")
    digest = hashlib.sha256(shown.to_json().encode("utf-8")).hexdigest()[:12]
    return st.checkbox("Train with these unsaved settings", key=f"train_unsaved_ok_{digest}")


def train_buttons(plan: train.TrainingPlan, config: dict, prep: dict, diff: pd.DataFrame) -> tuple[str | None, bool]:
    """The two training buttons; returns (the mode clicked, "full" or "incremental", if any; whether the
    settings shown may be used)."""
    confirmed = confirm_unsaved(diff)
    with _ui.errors_as_messages():
        st.caption("Full retrain will use: " + _ui.md_escape(_train_settings.summary(config, prep))
                   + ("" if diff.empty else " — **unsaved settings, confirmed**" if confirmed else
                      " — **unsaved settings: tick the confirmation above first**"))
    # buttons as wide as their labels in a row that wraps (fixed columns cut them to "Full r…" at 1000 px)
    row = st.container(horizontal=True, vertical_alignment="center")
    full, inc, note = row, row, row
    not_owner = None if may("train") else "Training needs the owner role."
    no_rows = None if sum(plan.rows_by_source.values()) else "No training rows yet: import labelled rows on the Data page."
    clicked_full = full.button("Full retrain", key="train_full", type="primary", icon=":material/model_training:",
                               disabled=not (may("train") and confirmed) or bool(no_rows), width="content",
                               help=not_owner or no_rows or ("A new version from every training row, with the "
                                                             "settings below." if confirmed else
                                                             "Confirm the unsaved settings first."))
    clicked_inc = inc.button("Incremental update", key="train_incremental", icon=":material/update:", width="content",
                             disabled=not (may("train") and plan.incremental_possible),
                             help=not_owner or (plan.reason[:1].upper() + plan.reason[1:]))
    if not st.session_state.get("user"):
        st.caption("You will be recorded as “anonymous”: put your name in the sidebar.")
    note.caption("A new version is not activated until you activate it below "
                 + ("(the model's first version is)." if plan.active_version is None else
                    f"(version {plan.active_version} keeps answering predictions)."))
    return ("full" if clicked_full else "incremental" if clicked_inc else None), confirmed


def run_training(model: registry.Model, mode: str, config: dict | None, prep: dict | None,
                 reselect: bool | None = None) -> None:
    """Train; a full retrain with config None uses the model's saved settings (read by core)."""
    bar = st.progress(0.0, text="starting")
    started = time.monotonic()
    with _ui.errors_as_messages():
        if mode == "full":
            version = train.train_version(_ui.store(), model.name, _ui.user(), model_config=config,
                                          preprocess=prep, progress=_ui.progress_callback(bar), reselect=reselect)
        else:
            version = train.train_version(_ui.store(), model.name, _ui.user(), incremental=True,
                                          progress=_ui.progress_callback(bar))
    st.session_state["train_result"] = {"model": model.name, "version": version.version,
                                        "base": model.active_version, "how": "just trained"}
    kind = "full retrain" if mode == "full" else "incremental update"
    st.session_state["flash"] = f"Version {version.version} trained ({kind}, {time.monotonic() - started:.1f} s)."
    st.rerun()


def main() -> None:
    name = _ui.require_model()
    store = _ui.store()
    if st.session_state.pop("train_clear", False):
        # assigned, not deleted: the browser keeps a deleted widget's value
        st.session_state.update(train_activate_reason="", train_activate_confirm=False, train_activate_force=False)
    with _ui.errors_as_messages():
        model, versions, plan = load(store, repr(store), name, _ui.revision())
    st.title("Train")
    st.markdown(f"**{_ui.md_escape(model.name)}** · " + (
        f"active version **v{model.active_version}**" if model.active_version else "no version yet")
        + (f" · {_ui.md_escape(model.description)}" if model.description else ""))
    if not may("train"):
        st.info("Training, saving settings and activating need the owner role.")

    # Drawn top to bottom as a product owner reads; filled so that actions run last, where an
    # error message (which stops the script) cannot hide the rest of the page.
    top, result, settings = st.container(), st.container(), st.container()
    with settings:
        st.divider()
        st.subheader("Settings for the next version")
        config, prep, diff, save = _train_settings.settings_panel(model)
    with result:
        to_activate = _train_result.result_panel(model, versions)
    with top:
        st.subheader("What the next version will learn from")
        plan_panel(plan)
        reselect = _training_options.full_retrain_choice(model, plan)
        mode, confirmed = train_buttons(plan, config, prep, diff)
    if save:
        with settings:
            _train_settings.save_settings(model, config, prep)
    if mode == "full" and not confirmed:  # a stale browser's click on the disabled button
        with top:
            st.error("The settings shown differ from the saved ones: tick “Train with these unsaved settings” "
                     "or press Reset first.")
    elif mode:
        with top:
            # unchanged settings: core reads the saved ones, whatever the widgets hold
            run_training(model, mode, *((config, prep) if not diff.empty else (None, None)), reselect)
    if to_activate:
        with result:
            _train_result.activate(model, *to_activate)
    _policy.section(name)  # the retraining policy and its runs


main()
