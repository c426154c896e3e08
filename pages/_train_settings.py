"""The Train page's settings of the next version: estimator and features, jieba preprocessing with a
live tokenisation preview, and which of them differ from the model's saved settings."""
import pandas as pd
import streamlit as st

from core import compare, estimators, preprocess, registry, selection
from pages import _ui

SAMPLE = "这家酒店的房间很干净，前台服务也热情，就是早餐一般般。"


@st.cache_data(show_spinner=False, max_entries=64)
def tokens_of(config: dict, text: str) -> list[str]:
    return preprocess.preview(config, text)


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
                      disabled=not changed or not _ui.may("manage"))
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
