"""Train (product owners): what the next version learns from, a retrain with progress, and the
new version beside the active one on the same test split, ready to activate.

The settings of the next version (estimator, features, jieba preprocessing) sit below, with a
live tokenisation preview. A retrain uses the model's saved settings; settings that differ from
them are listed and used only once the user confirms them. Activating takes a typed reason and a
confirmation; a version worse than the active one (core.compare) needs "activate anyway".
"""
import hashlib
import re
import time

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import auth, compare, estimators, preprocess, registry, selection, train
from pages import _ordinal, _shadow, _ui

PLAN_TILE, METRIC_TILE = 250, 200  # px: "not possible" and "Calibration error (ECE)" in full
TABLE_TILE = 440  # px: a per-class or per-line table with both versions and the delta
SAMPLE = "这家酒店的房间很干净，前台服务也热情，就是早餐一般般。"


@st.cache_data(show_spinner=False, max_entries=16)
def load(_store, store_key: str, name: str, revision: tuple):
    """The model, its versions and the training plan, read once per change of the store."""
    return (registry.get_model(_store, name), registry.list_versions(_store, name),
            train.training_plan(_store, name))


@st.cache_data(show_spinner=False, max_entries=64)
def tokens_of(config: dict, text: str) -> list[str]:
    return preprocess.preview(config, text)


# --- settings of the next version ---------------------------------------------------------

def reset_form() -> None:
    for key in [k for k in st.session_state if str(k).startswith(("cfg_", "prep_"))]:
        del st.session_state[key]


def saved_values(model: registry.Model) -> dict:
    """Each settings widget's value from the model's saved settings, by widget key.

    Passed to the widgets as their `value`, never seeded into session state: a browser that does
    not hold a widget's value (a fresh session, a page switch) falls back to the widget's own
    default, which must be the saved setting, not the widget's minimum."""
    c, p = model.model_config, model.preprocess
    return {
        "cfg_estimator": c["estimator"], "cfg_C": float(c["C"]), "cfg_alpha": float(c["alpha"]),
        "cfg_word_ngrams": tuple(c["word_ngrams"]), "cfg_char_on": c["char_ngrams"] is not None,
        "cfg_char_ngrams": tuple(c["char_ngrams"] or (1, 3)), "cfg_min_df": int(c["min_df"]),
        "cfg_max_features": int(c["max_features"] or 0), "cfg_seed": int(c["seed"]),
        "cfg_epochs": int(c["epochs"]),
        "prep_cut_mode": p["cut_mode"], "prep_hmm": bool(p["hmm"]),
        "prep_stop_words": "\n".join(p["stop_words"]), "prep_new_words": "\n".join(p["new_words"]),
        "prep_fullwidth": bool(p["fullwidth_to_halfwidth"]), "prep_lowercase": bool(p["lowercase"]),
        "prep_punctuation": bool(p["drop_punctuation"]), "prep_sample": SAMPLE,
    }


def seed_form(model: registry.Model) -> dict:
    """The widgets' values for this model; a different model starts afresh."""
    if st.session_state.get("train_form_for") != model.name:
        reset_form()
        st.session_state["train_form_for"] = model.name
    return saved_values(model)


def model_settings(saved: dict, v: dict) -> dict:
    """Estimator and features; settings that do not apply to the chosen estimator keep their saved value."""
    s = st.session_state
    names = list(estimators.ESTIMATORS)
    st.selectbox("Estimator", names, index=names.index(v["cfg_estimator"]), key="cfg_estimator",
                 format_func=lambda k: f"{k} — {estimators.ESTIMATORS[k]}")
    estimator = s["cfg_estimator"]
    selected = estimator == estimators.AUTO  # selection sets the estimator, C or alpha and the n-grams itself
    left, right = st.columns(2)
    with left:
        if selected:
            st.caption("Model selection chooses the estimator, its C or alpha and the word and character "
                       "n-grams by cross-validation on the training split; pick an estimator to set them yourself.",
                       help="\n".join(f"- {c.describe()}" for c in selection.candidate_configs()))
        elif estimator in ("logreg", "linear_svc"):
            st.number_input("C (inverse regularisation)", min_value=1e-4, max_value=1e4, value=v["cfg_C"], step=0.5,
                            format="%.4g", key="cfg_C", help="Larger C fits the training data more closely.")
        else:
            st.number_input("alpha", min_value=1e-8, max_value=10.0, value=v["cfg_alpha"], step=1e-5, format="%.0e",
                            key="cfg_alpha", help="Smoothing for naive Bayes, regularisation for SGD.")
        if not selected:
            st.slider("Word n-grams", 1, 6, value=v["cfg_word_ngrams"], key="cfg_word_ngrams",
                      help="Runs of 1 to n jieba tokens as features.")
            st.toggle("Character n-grams as well", value=v["cfg_char_on"], key="cfg_char_on")
            st.slider("Character n-grams", 1, 6, value=v["cfg_char_ngrams"], key="cfg_char_ngrams",
                      disabled=not s["cfg_char_on"])
    with right:
        if estimator != "sgd":
            st.number_input("min_df (ignore features seen in fewer texts)", min_value=1, max_value=1000,
                            value=v["cfg_min_df"], step=1, key="cfg_min_df")
            st.number_input("max_features (0 = no limit)", min_value=0, max_value=10_000_000,
                            value=v["cfg_max_features"], step=10_000, key="cfg_max_features")
        else:
            st.number_input("Epochs per incremental update", min_value=1, max_value=100, value=v["cfg_epochs"],
                            step=1, key="cfg_epochs",
                            help="Passes over the new labels when a later version updates this one.")
        st.number_input("Random seed", min_value=0, max_value=2**31 - 1, value=v["cfg_seed"], step=1, key="cfg_seed")
    config = dict(saved, estimator=estimator, seed=int(s["cfg_seed"]))
    if not selected:
        config["word_ngrams"] = list(s["cfg_word_ngrams"])
        config["char_ngrams"] = list(s["cfg_char_ngrams"]) if s["cfg_char_on"] else None
    if estimator in ("logreg", "linear_svc"):
        config["C"] = float(s["cfg_C"])
    elif not selected:
        config["alpha"] = float(s["cfg_alpha"])
    if estimator != "sgd":
        config["min_df"] = int(s["cfg_min_df"])
        config["max_features"] = int(s["cfg_max_features"]) or None
    else:
        config["epochs"] = int(s["cfg_epochs"])
    return config


def preprocessing_settings(v: dict) -> dict:
    s = st.session_state
    left, right = st.columns(2)
    with left:
        st.segmented_control("jieba cut mode", list(preprocess.CUT_MODES), default=v["prep_cut_mode"],
                             key="prep_cut_mode", required=True,
                             help="accurate: one cut per text; full: every word jieba knows; "
                                  "search: accurate plus the shorter words inside long ones.")
        st.toggle("HMM for words not in the dictionary", value=v["prep_hmm"], key="prep_hmm")
        st.toggle("Full-width to half-width", value=v["prep_fullwidth"], key="prep_fullwidth")
        st.toggle("Lower case", value=v["prep_lowercase"], key="prep_lowercase")
        st.toggle("Drop punctuation", value=v["prep_punctuation"], key="prep_punctuation")
    with right:
        st.text_area("New words (one per line)", value=v["prep_new_words"], key="prep_new_words", height=90,
                     help="Added to this model's jieba dictionary only, so they are never split.")
        st.text_area("Stop words (one per line)", value=v["prep_stop_words"], key="prep_stop_words", height=90,
                     help="Dropped after cutting.")
    return {"cut_mode": s["prep_cut_mode"] or "accurate", "hmm": s["prep_hmm"],
            "new_words": s["prep_new_words"], "stop_words": s["prep_stop_words"],
            "fullwidth_to_halfwidth": s["prep_fullwidth"], "lowercase": s["prep_lowercase"],
            "drop_punctuation": s["prep_punctuation"]}


def tokenisation_preview(prep: dict) -> None:
    st.markdown("**Tokenisation preview**")
    text = st.text_input("Sample sentence", value=SAMPLE, key="prep_sample", help="Press Enter to see its tokens.")
    if not text.strip():
        st.caption("Type a sentence to see its tokens.")
        return
    with st.spinner("Loading the jieba dictionary…"), _ui.errors_as_messages():
        tokens = tokens_of(prep, text)
    st.caption(f"{len(tokens)} tokens")
    st.code(" / ".join(tokens) or "(no tokens left)", language=None, wrap_lines=True)


def unsaved(model: registry.Model, config: dict, prep: dict) -> pd.DataFrame:
    """The settings shown that differ from the model's saved ones (setting, saved, shown)."""
    with _ui.errors_as_messages():
        def normal(c, p):
            return {"config": estimators.ModelConfig.from_dict(c).to_dict(),
                    "preprocess": preprocess.PreprocessConfig.from_dict(p).to_dict()}
        return compare.settings_diff(normal(model.model_config, model.preprocess), normal(config, prep))


def settings_panel(model: registry.Model) -> tuple[dict, dict, pd.DataFrame, bool]:
    """The settings form; returns (model config, preprocessing, differences from the saved ones, save clicked)."""
    values = seed_form(model)
    tab_model, tab_prep = st.tabs(["Model", "Preprocessing"])
    with tab_model:
        config = model_settings(model.model_config, values)
    with tab_prep:
        prep = preprocessing_settings(values)
        tokenisation_preview(prep)
    diff = unsaved(model, config, prep)
    changed = not diff.empty
    row = st.container(horizontal=True, vertical_alignment="center")
    save = row.button("Save config", key="train_save", type="primary" if changed else "secondary",
                      disabled=not changed or not may("manage"))
    row.button("Reset", key="train_reset", on_click=reset_form, disabled=not changed,
               help="Back to the model's saved settings.")
    row.caption("Unsaved changes: save them to make them the model's default, or confirm them above the "
                "Full retrain button to train with them once." if changed else "These are the model's saved settings.")
    return config, prep, diff, save


def save_settings(model: registry.Model, config: dict, prep: dict) -> None:
    with _ui.errors_as_messages():
        registry.update_model(_ui.store(), model.name, _ui.user(), preprocess=prep, model_config=config)
    st.session_state["flash"] = "Settings saved: the next retrain starts from them."
    st.rerun()


# --- what the next version learns from, and the buttons -----------------------------------

def may(action: str) -> bool:
    return auth.may(_ui.role(), action)


def summary(config: dict, prep: dict) -> str:
    c = estimators.ModelConfig.from_dict(config)
    p = preprocess.PreprocessConfig.from_dict(prep)
    hyper = f"C={c.C:g}" if c.estimator in ("logreg", "linear_svc") else f"alpha={c.alpha:g}"
    chars = f", characters {c.char_ngrams[0]}–{c.char_ngrams[1]}" if c.char_ngrams else ""
    model = (f"{c.estimator} ({hyper}, seed {c.seed}) · word {c.word_ngrams[0]}–{c.word_ngrams[1]}-grams{chars}"
             if c.pinned else f"auto (selection chooses the estimator, C or alpha and n-grams; seed {c.seed})")
    return (f"{model} · "
            f"jieba {p.cut_mode}, HMM {'on' if p.hmm else 'off'} · {len(p.new_words)} new words, "
            f"{len(p.stop_words)} stop words")


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
        st.caption("Full retrain will use: " + _ui.md_escape(summary(config, prep))
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


def run_training(model: registry.Model, mode: str, config: dict | None, prep: dict | None) -> None:
    """Train; a full retrain with config None uses the model's saved settings (read by core)."""
    bar = st.progress(0.0, text="starting")
    started = time.monotonic()
    with _ui.errors_as_messages():
        if mode == "full":
            version = train.train_version(_ui.store(), model.name, _ui.user(), model_config=config,
                                          preprocess=prep, progress=_ui.progress_callback(bar))
        else:
            version = train.train_version(_ui.store(), model.name, _ui.user(), incremental=True,
                                          progress=_ui.progress_callback(bar))
    st.session_state["train_result"] = {"model": model.name, "version": version.version,
                                        "base": model.active_version, "how": "just trained"}
    kind = "full retrain" if mode == "full" else "incremental update"
    st.session_state["flash"] = f"Version {version.version} trained ({kind}, {time.monotonic() - started:.1f} s)."
    st.rerun()


# --- the new version beside the active one ------------------------------------------------

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
    ready = may("activate") and bool(reason.strip()) and confirm and (not found or force)
    why_not = ("Activating needs the owner role." if not may("activate")
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


# --- the page -----------------------------------------------------------------------------

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
        config, prep, diff, save = settings_panel(model)
    with result:
        to_activate = result_panel(model, versions)
    with top:
        st.subheader("What the next version will learn from")
        plan_panel(plan)
        mode, confirmed = train_buttons(plan, config, prep, diff)
    if save:
        with settings:
            save_settings(model, config, prep)
    if mode == "full" and not confirmed:  # a stale browser's click on the disabled button
        with top:
            st.error("The settings shown differ from the saved ones: tick “Train with these unsaved settings” "
                     "or press Reset first.")
    elif mode:
        with top:
            # unchanged settings: core reads the saved ones, whatever the widgets hold
            run_training(model, mode, *((config, prep) if not diff.empty else (None, None)))
    if to_activate:
        with result:
            activate(model, *to_activate)


main()
