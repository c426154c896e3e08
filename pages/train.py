"""Train (product owners): what the next version learns from, a retrain with progress, and the
new version beside the active one on the same test split, ready to activate.

The settings of the next version (estimator, features, jieba preprocessing) sit below, with a
live tokenisation preview; the retrain uses them as shown, saved or not.
"""
import re
import time

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import preprocess, registry, train
from pages import _ui

SAMPLE = "这家酒店的房间很干净，前台服务也热情，就是早餐一般般。"
OVERALL = [  # key, label, format, lower is better
    ("accuracy", "Accuracy", "pct", False),
    ("macro_f1", "Macro-F1", "num", False),
    ("log_loss", "Log loss", "num", True),
    ("ece", "Calibration error (ECE)", "num", True),
]


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


def seed_form(model: registry.Model) -> None:
    """Widgets start from the model's saved settings; a different model starts afresh."""
    if st.session_state.get("train_form_for") != model.name:
        reset_form()
        st.session_state["train_form_for"] = model.name
    c, p = model.model_config, model.preprocess
    defaults = {
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
    for key, value in defaults.items():
        st.session_state.setdefault(key, value)


def model_settings(saved: dict) -> dict:
    """Estimator and features; settings that do not apply to the chosen estimator keep their saved value."""
    s = st.session_state
    st.selectbox("Estimator", list(train.ESTIMATORS), key="cfg_estimator",
                 format_func=lambda k: f"{k} — {train.ESTIMATORS[k]}")
    estimator = s["cfg_estimator"]
    left, right = st.columns(2)
    with left:
        if estimator in ("logreg", "linear_svc"):
            st.number_input("C (inverse regularisation)", min_value=1e-4, max_value=1e4, step=0.5, format="%.4g",
                            key="cfg_C", help="Larger C fits the training data more closely.")
        else:
            st.number_input("alpha", min_value=1e-8, max_value=10.0, step=1e-5, format="%.0e", key="cfg_alpha",
                            help="Smoothing for naive Bayes, regularisation for SGD.")
        st.slider("Word n-grams", 1, 6, key="cfg_word_ngrams", help="Runs of 1 to n jieba tokens as features.")
        st.toggle("Character n-grams as well", key="cfg_char_on")
        st.slider("Character n-grams", 1, 6, key="cfg_char_ngrams", disabled=not s["cfg_char_on"])
    with right:
        if estimator != "sgd":
            st.number_input("min_df (ignore features seen in fewer texts)", min_value=1, max_value=1000, step=1,
                            key="cfg_min_df")
            st.number_input("max_features (0 = no limit)", min_value=0, max_value=10_000_000, step=10_000,
                            key="cfg_max_features")
        else:
            st.number_input("Epochs per incremental update", min_value=1, max_value=100, step=1, key="cfg_epochs",
                            help="Passes over the new labels when a later version updates this one.")
        st.number_input("Random seed", min_value=0, max_value=2**31 - 1, step=1, key="cfg_seed")
    config = dict(saved, estimator=estimator, word_ngrams=list(s["cfg_word_ngrams"]), seed=int(s["cfg_seed"]),
                  char_ngrams=list(s["cfg_char_ngrams"]) if s["cfg_char_on"] else None)
    if estimator in ("logreg", "linear_svc"):
        config["C"] = float(s["cfg_C"])
    else:
        config["alpha"] = float(s["cfg_alpha"])
    if estimator != "sgd":
        config["min_df"] = int(s["cfg_min_df"])
        config["max_features"] = int(s["cfg_max_features"]) or None
    else:
        config["epochs"] = int(s["cfg_epochs"])
    return config


def preprocessing_settings() -> dict:
    s = st.session_state
    left, right = st.columns(2)
    with left:
        st.segmented_control("jieba cut mode", list(preprocess.CUT_MODES), key="prep_cut_mode", required=True,
                             help="accurate: one cut per text; full: every word jieba knows; "
                                  "search: accurate plus the shorter words inside long ones.")
        st.toggle("HMM for words not in the dictionary", key="prep_hmm")
        st.toggle("Full-width to half-width", key="prep_fullwidth")
        st.toggle("Lower case", key="prep_lowercase")
        st.toggle("Drop punctuation", key="prep_punctuation")
    with right:
        st.text_area("New words (one per line)", key="prep_new_words", height=90,
                     help="Added to this model's jieba dictionary only, so they are never split.")
        st.text_area("Stop words (one per line)", key="prep_stop_words", height=90,
                     help="Dropped after cutting.")
    return {"cut_mode": s["prep_cut_mode"] or "accurate", "hmm": s["prep_hmm"],
            "new_words": s["prep_new_words"], "stop_words": s["prep_stop_words"],
            "fullwidth_to_halfwidth": s["prep_fullwidth"], "lowercase": s["prep_lowercase"],
            "drop_punctuation": s["prep_punctuation"]}


def tokenisation_preview(prep: dict) -> None:
    st.markdown("**Tokenisation preview**")
    text = st.text_input("Sample sentence", key="prep_sample", help="Press Enter to see its tokens.")
    if not text.strip():
        st.caption("Type a sentence to see its tokens.")
        return
    with st.spinner("Loading the jieba dictionary…"), _ui.errors_as_messages():
        tokens = tokens_of(prep, text)
    st.caption(f"{len(tokens)} tokens")
    st.code(" / ".join(tokens) or "(no tokens left)", language=None, wrap_lines=True)


def settings_panel(model: registry.Model) -> tuple[dict, dict, bool, bool]:
    """The settings form; returns (model config, preprocessing, differs from the saved ones, save clicked)."""
    seed_form(model)
    tab_model, tab_prep = st.tabs(["Model", "Preprocessing"])
    with tab_model:
        config = model_settings(model.model_config)
    with tab_prep:
        prep = preprocessing_settings()
        tokenisation_preview(prep)
    with _ui.errors_as_messages():
        changed = (train.ModelConfig.from_dict(config) != train.ModelConfig.from_dict(model.model_config)
                   or preprocess.PreprocessConfig.from_dict(prep)
                   != preprocess.PreprocessConfig.from_dict(model.preprocess))
    row = st.container(horizontal=True, vertical_alignment="center")
    save = row.button("Save config", key="train_save", type="primary" if changed else "secondary",
                      disabled=not changed or not owner())
    row.button("Reset", key="train_reset", on_click=reset_form, disabled=not changed,
               help="Back to the model's saved settings.")
    row.caption("Unsaved changes: a full retrain uses the settings shown here. Save them to make them "
                 "the model's default." if changed else "These are the model's saved settings.")
    return config, prep, changed, save


def save_settings(model: registry.Model, config: dict, prep: dict) -> None:
    with _ui.errors_as_messages():
        registry.update_model(_ui.store(), model.name, _ui.user(), preprocess=prep, model_config=config)
    st.session_state["flash"] = "Settings saved: the next retrain starts from them."
    st.rerun()


# --- what the next version learns from, and the buttons -----------------------------------

def owner() -> bool:
    return _ui.role() == "owner"


def summary(config: dict, prep: dict) -> str:
    c = train.ModelConfig.from_dict(config)
    p = preprocess.PreprocessConfig.from_dict(prep)
    hyper = f"C={c.C:g}" if c.estimator in ("logreg", "linear_svc") else f"alpha={c.alpha:g}"
    chars = f", characters {c.char_ngrams[0]}–{c.char_ngrams[1]}" if c.char_ngrams else ""
    return (f"{c.estimator} ({hyper}, seed {c.seed}) · word {c.word_ngrams[0]}–{c.word_ngrams[1]}-grams{chars} · "
            f"jieba {p.cut_mode}, HMM {'on' if p.hmm else 'off'} · {len(p.new_words)} new words, "
            f"{len(p.stop_words)} stop words")


def plan_panel(plan: train.TrainingPlan) -> None:
    total = sum(plan.rows_by_source.values())
    new = sum(plan.new_since_active.values())
    by_source = ", ".join(f"{n:,} {s}" for s, n in sorted(plan.rows_by_source.items())) or "none yet"
    new_by_source = ", ".join(f"{n:,} {s}" for s, n in sorted(plan.new_since_active.items())) or "none"
    a, b, c = st.columns(3)
    a.metric("Training rows", f"{total:,}", help="Imported rows plus labels given on the Label page.",
             border=True)
    a.caption(by_source)
    since = f"v{plan.active_version}" if plan.active_version else "the first version"
    b.metric(f"New since {since}", f"{new:,}", border=True)
    b.caption(new_by_source)
    c.metric("Incremental update", "possible" if plan.incremental_possible else "not possible", border=True)
    c.caption(plan.reason[:1].upper() + plan.reason[1:] + ".")


def train_buttons(plan: train.TrainingPlan, config: dict, prep: dict, changed: bool) -> str | None:
    """The two training buttons; returns the mode clicked ("full" or "incremental"), if any."""
    with _ui.errors_as_messages():
        st.caption("Full retrain will use: " + _ui.md_escape(summary(config, prep))
                   + (" — **unsaved settings**" if changed else ""))
    full, inc, note = st.columns([1, 1, 3], vertical_alignment="center")
    not_owner = None if owner() else "Training needs the owner role."
    clicked_full = full.button("Full retrain", key="train_full", type="primary", icon=":material/model_training:",
                               disabled=not owner(), width="stretch",
                               help=not_owner or "A new version from every training row, with the settings below.")
    clicked_inc = inc.button("Incremental update", key="train_incremental", icon=":material/update:", width="stretch",
                             disabled=not (owner() and plan.incremental_possible),
                             help=not_owner or (plan.reason[:1].upper() + plan.reason[1:]))
    if not st.session_state.get("user"):
        st.caption("You will be recorded as “anonymous”: put your name in the sidebar.")
    note.caption("A new version is not activated until you activate it below "
                 + ("(the model's first version is)." if plan.active_version is None else
                    f"(version {plan.active_version} keeps answering predictions)."))
    return "full" if clicked_full else "incremental" if clicked_inc else None


def run_training(model: registry.Model, mode: str, config: dict, prep: dict) -> None:
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

def fmt(value, kind: str) -> str:
    return _ui.fmt_pct(value) if kind == "pct" else _ui.fmt_num(value)


def fmt_delta(new, old, kind: str) -> str | None:
    if new is None or old is None:
        return None
    d = new - old
    return f"{d * 100:+.1f} pp" if kind == "pct" else f"{d:+.3f}"


def overall(new: registry.Version, base: registry.Version | None) -> None:
    for col, (key, label, kind, lower_better) in zip(st.columns(len(OVERALL)), OVERALL):
        value = new.metrics.get(key)
        old = base.metrics.get(key) if base else None
        delta = fmt_delta(value, old, kind)
        unchanged = delta is not None and float(re.sub(r"[^0-9.+-]", "", delta)) == 0
        col.metric(label, fmt(value, kind), delta=delta, border=True,
                   delta_color="off" if unchanged else "inverse" if lower_better else "normal",
                   help=f"v{base.version}: {fmt(old, kind)}" + (" · lower is better" if lower_better else "")
                   if base else None)


def per_class_table(new: registry.Version, base: registry.Version | None) -> pd.DataFrame:
    """One row per class and measure, so that both versions sit side by side in a narrow column."""
    rows = []
    for label, m in new.metrics.get("per_class", {}).items():
        old = base.metrics.get("per_class", {}).get(label, {}) if base else {}
        for key in ("precision", "recall", "f1"):
            row = {"class": label, "measure": key}
            if base:
                row[f"v{base.version}"] = old.get(key)
            row[f"v{new.version}"] = m[key]
            if base:
                row["Δ"] = m[key] - old[key] if old.get(key) is not None else None
            row["support"] = m["support"]
            rows.append(row)
    return pd.DataFrame(rows)


def by_line_table(new: registry.Version, base: registry.Version | None) -> pd.DataFrame:
    rows = []
    for line, m in new.metrics.get("by_business_line", {}).items():
        row = {"business line": line, "test rows": m["n"]}
        old = base.metrics.get("by_business_line", {}).get(line, {}) if base else {}
        if base:
            row[f"v{base.version}"] = old.get("accuracy")
        row[f"v{new.version}"] = m["accuracy"]
        if base:
            row["Δ"] = m["accuracy"] - old["accuracy"] if old.get("accuracy") is not None else None
        rows.append(row)
    return pd.DataFrame(rows)


def show_table(frame: pd.DataFrame, key: str) -> None:
    formats = {c: st.column_config.NumberColumn(c, format="%+.3f" if c == "Δ" else "%.3f")
               for c in frame.columns if c == "Δ" or re.fullmatch(r"v\d+", c)}
    st.dataframe(frame, hide_index=True, column_config=formats, key=key)


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

    Returns (version, reason) when its activate button is clicked."""
    by_number = {v.version: v for v in versions}
    result = st.session_state.get("train_result")
    if result and result["model"] == model.name and result["version"] in by_number:
        new = by_number[result["version"]]
        heading = f"Version {new.version}, {result['how']}"
    elif versions and versions[-1].status != registry.ACTIVE:
        new = versions[-1]
        heading = f"Version {new.version}, the newest, not active yet"
        result = {"base": model.active_version}
    else:
        st.caption("The newest version is the active one. Train a version to see it here beside it.")
        return None
    base = by_number.get(model.active_version if model.active_version != new.version else result.get("base"))
    st.subheader(heading + (f", beside active version {base.version}" if base and base.status == registry.ACTIVE
                            else f", beside version {base.version}" if base else ""))
    st.caption(f"{new.mode} · trained by {_ui.md_escape(new.created_by)} at {new.created_at:%Y-%m-%d %H:%M} · "
               f"{new.data.get('rows', 0):,} rows seen · {new.metrics.get('n_test', 0):,} test rows")
    if "accuracy" not in new.metrics:
        st.warning("This version has no metrics: the model has no test rows. Import a test split on the Data page.")
        return None
    if base and base.metrics.get("n_test") != new.metrics.get("n_test"):
        st.warning(f"The test split changed between the two versions ({base.metrics.get('n_test')} and "
                   f"{new.metrics.get('n_test')} rows): differences are not only the model's.")
    clicked = activate_box(model, new)
    overall(new, base)
    left, right = st.columns(2)
    with left:
        st.markdown("**Per class**")
        show_table(per_class_table(new, base), "train_per_class")
    with right:
        st.markdown("**Per business line** (accuracy)")
        show_table(by_line_table(new, base), "train_by_line")
    shown = [v for v in (base, new) if v and "confusion" in v.metrics]
    zmax = max(max(max(row) for row in v.metrics["confusion"]["matrix"]) for v in shown)
    st.markdown("**Confusion matrices** (rows: true label, columns: predicted)")
    for col, v in zip(st.columns(2), shown):
        col.plotly_chart(confusion_figure(v, zmax), key=f"train_confusion_{v.version}")
    return clicked


def activate_box(model: registry.Model, new: registry.Version):
    """The reason field and activate button; returns (version, reason) when clicked."""
    if new.status == registry.ACTIVE:
        st.success(f"Version {new.version} is active: it answers predictions now.")
        return None
    reason, button = st.columns([4, 1], vertical_alignment="bottom")
    text = reason.text_input("Reason for activating (recorded in the history)", key="train_activate_reason",
                             placeholder=f"better than version {model.active_version} on the test split")
    if button.button(f"Activate v{new.version}", key="train_activate", type="primary", width="stretch",
                     disabled=not owner(), help=None if owner() else "Activating needs the owner role."):
        return new.version, text.strip() or f"compared with version {model.active_version} on the Train page"
    return None


def activate(model: registry.Model, version: int, reason: str) -> None:
    with _ui.errors_as_messages():
        registry.activate_version(_ui.store(), model.name, version, _ui.user(), reason)
    # keep it beside the version it replaced
    st.session_state["train_result"] = {"model": model.name, "version": version, "base": model.active_version,
                                        "how": "just activated"}
    st.session_state["flash"] = f"Version {version} is now active: it answers predictions."
    st.session_state["train_clear"] = True
    st.rerun()


# --- the page -----------------------------------------------------------------------------

def main() -> None:
    name = _ui.require_model()
    store = _ui.store()
    if st.session_state.pop("train_clear", False):
        st.session_state["train_activate_reason"] = ""  # assigned: the browser keeps a deleted widget's value
    with _ui.errors_as_messages():
        model, versions, plan = load(store, repr(store), name, _ui.revision())
    st.title("Train")
    st.markdown(f"**{_ui.md_escape(model.name)}** · " + (
        f"active version **v{model.active_version}**" if model.active_version else "no version yet")
        + (f" · {_ui.md_escape(model.description)}" if model.description else ""))
    if not owner():
        st.info("Training, saving settings and activating need the owner role.")

    # Drawn top to bottom as a product owner reads; filled so that actions run last, where an
    # error message (which stops the script) cannot hide the rest of the page.
    top, result, settings = st.container(), st.container(), st.container()
    with settings:
        st.divider()
        st.subheader("Settings for the next version")
        config, prep, changed, save = settings_panel(model)
    with result:
        to_activate = result_panel(model, versions)
    with top:
        st.subheader("What the next version will learn from")
        plan_panel(plan)
        mode = train_buttons(plan, config, prep, changed)
    if save:
        with settings:
            save_settings(model, config, prep)
    if mode:
        with top:
            run_training(model, mode, config, prep)
    if to_activate:
        with result:
            activate(model, *to_activate)


main()
