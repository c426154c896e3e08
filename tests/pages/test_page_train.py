"""The Train page: settings with a tokenisation preview, the plan, a retrain, the comparison, activation."""
import json
import re

import pytest
from streamlit.testing.v1 import AppTest

from core import registry, train
from tests.conftest import ROOT, use_navigation_in_apptest

MODEL = "评论情感"
NO_GUARD = {"MMS_GUARD_OVERALL": "1", "MMS_GUARD_CLASS_RECALL": "1", "MMS_GUARD_LINE_ACCURACY": "1"}


def elements(at, kind: str) -> list:
    return list(at.get(kind))


def test_train_page_shows_plan_settings_and_buttons(app):
    at = app("pages/train.py")
    assert not at.exception
    assert at.selectbox(key="cfg_estimator").value == "logreg"
    assert at.slider(key="cfg_word_ngrams").value == (1, 2)
    assert at.text_area(key="prep_stop_words") is not None
    assert not at.button(key="train_full").disabled
    # the seeded model's logreg version cannot learn incrementally, and the page says why
    assert at.button(key="train_incremental").disabled
    assert any("cannot learn incrementally" in c.value for c in at.caption)
    assert any(m.label == "Training rows" for m in at.metric)
    # rows by source in words, imported first, not "40 feedback, 400 import"
    assert any(re.fullmatch(r"[\d,]+ imported, [\d,]+ from labelling", c.value) for c in at.caption)


def test_preview_shows_the_tokens_of_the_sample_sentence(app):
    at = app("pages/train.py")
    at.text_input(key="prep_sample").input("我爱北京天安门").run()
    assert not at.exception
    assert any(c.value == "我 / 爱 / 北京 / 天安门" for c in at.code)
    at.text_area(key="prep_stop_words").input("我\n爱").run()
    assert any(c.value == "北京 / 天安门" for c in at.code)


def test_save_config_changes_the_models_settings(app, seeded_store):
    at = app("pages/train.py")
    assert at.button(key="train_save").disabled  # nothing changed yet
    at.selectbox(key="cfg_estimator").select("sgd").run()
    at.button(key="train_save").click().run()
    assert not at.exception
    assert registry.get_model(seeded_store, MODEL).model_config["estimator"] == "sgd"
    assert any("saved" in s.value for s in at.success)


def test_auto_shows_only_the_settings_selection_leaves_to_the_owner(app, seeded_store):
    at = app("pages/train.py")
    at.selectbox(key="cfg_estimator").select("auto").run()
    assert not at.exception
    shown = {w.key for kind in ("number_input", "slider", "toggle") for w in at.get(kind)}
    assert not {"cfg_C", "cfg_alpha", "cfg_word_ngrams", "cfg_char_on", "cfg_char_ngrams"} & shown
    assert {"cfg_min_df", "cfg_max_features", "cfg_seed"} <= shown
    assert any("Model selection chooses the estimator" in c.value for c in at.caption)
    at.button(key="train_save").click().run()
    saved = registry.get_model(seeded_store, MODEL).model_config
    assert saved["estimator"] == "auto" and (saved["C"], saved["word_ngrams"]) == (4.0, [1, 2])
    at.selectbox(key="cfg_estimator").select("complement_nb").run()
    assert at.number_input(key="cfg_alpha") is not None and at.slider(key="cfg_word_ngrams").value == (1, 2)


def test_full_retrain_creates_version_2_shows_the_comparison_and_activates_it(app, seeded_store, monkeypatch):
    for name, value in NO_GUARD.items():  # this flow is about a version no worse than the active one
        monkeypatch.setenv(name, value)
    at = app("pages/train.py")
    at.button(key="train_full").click().run()
    assert not at.exception
    versions = registry.list_versions(seeded_store, MODEL)
    assert [v.version for v in versions] == [1, 2]
    assert versions[1].status == registry.INACTIVE
    assert any("Version 2, just trained, beside active version 1" in h.value for h in at.subheader)
    assert {m.label for m in at.metric} >= {"Accuracy", "Macro-F1", "Log loss", "Calibration error (ECE)"}
    assert len(elements(at, "plotly_chart")) == 3  # both confusion matrices, and the reliability curve
    assert not at.dataframe[0].value.empty  # per class

    at.text_input(key="train_activate_reason").input("更好 on hotels").run()
    assert at.button(key="train_activate").disabled  # a reason is not enough: the switch is confirmed too
    at.checkbox(key="train_activate_confirm").check().run()
    at.button(key="train_activate").click().run()
    assert not at.exception
    assert registry.get_model(seeded_store, MODEL).active_version == 2
    latest = registry.activation_history(seeded_store, MODEL).iloc[0]  # newest first
    assert (latest["to_version"], latest["reason"], latest["user"]) == (2, "更好 on hotels", "tester")
    # said once, where the button was, not again at the top of the page
    assert [s.value for s in at.success if "active" in s.value] == ["Version 2 is active: it answers predictions now."]


def test_incremental_update_learns_the_new_labels_of_an_sgd_version(app, seeded_store, reviews):
    from core import imports

    train.train_version(seeded_store, MODEL, "tester", model_config={"estimator": "sgd"})
    registry.activate_version(seeded_store, MODEL, 2, "tester", "set-up: an sgd version", force=True)
    imports.import_frame(seeded_store, MODEL, reviews.iloc[-30:][["text", "label"]], "train", "tester")
    at = app("pages/train.py")
    assert not at.button(key="train_incremental").disabled
    at.button(key="train_incremental").click().run()
    assert not at.exception
    newest = registry.list_versions(seeded_store, MODEL)[-1]
    assert (newest.version, newest.mode, newest.parent_version) == (3, registry.INCREMENTAL, 2)
    assert any("Version 3, just trained, beside active version 2" in h.value for h in at.subheader)


def test_a_training_error_is_a_sentence_on_the_page(app, seeded_store, monkeypatch):
    from core.errors import TrainingError

    def fail(*args, **kwargs):
        raise TrainingError("training needs examples of at least two labels")

    monkeypatch.setattr(train, "train_version", fail)
    at = app("pages/train.py")
    at.button(key="train_full").click().run()
    assert not at.exception
    assert any("at least two labels" in e.value for e in at.error)
    assert [v.version for v in registry.list_versions(seeded_store, MODEL)] == [1]


def test_analysts_see_the_page_but_cannot_train(app):
    at = app("pages/train.py", role="analyst")
    assert not at.exception
    assert at.button(key="train_full").disabled
    assert at.button(key="train_save").disabled


# --- issue 12, item 1: a retrain starts from the model's saved settings ---------------------

SETTINGS_WIDGETS = ("number_input", "slider", "toggle", "text_area", "selectbox")


def fall_back_to_widget_defaults(at: AppTest) -> None:
    """What a browser does with a settings widget whose value it does not hold (a new session, a
    page switch): it shows, and sends back, the widget's own default from the page."""
    for kind in SETTINGS_WIDGETS:
        for w in at.get(kind):
            if str(w.key).startswith(("cfg_", "prep_")) and not w.disabled:
                if kind == "slider":
                    w.set_value(tuple(int(x) for x in w.proto.default))
                elif kind == "selectbox":
                    w.select_index(w.proto.default)
                else:
                    w.set_value(w.proto.default)


def saved_settings(store):
    model = registry.get_model(store, MODEL)
    return model.model_config, model.preprocess


def test_a_retrain_from_a_fresh_session_uses_the_saved_settings(seeded_store, monkeypatch):
    """The reproduction: new session, /train directly, type who is working, press Enter, click Full
    retrain as soon as that rerun ends. The browser then held none of the settings widgets' values
    and sent their defaults, which were their extremes (C=0.0001, seed 0, 1–6-grams, toggles off)."""
    monkeypatch.setenv("MMS_STORE", str(seeded_store.path))
    use_navigation_in_apptest(monkeypatch)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("pages/train.py").run()
    at.text_input(key="user").input("新来的").run()
    fall_back_to_widget_defaults(at)
    at.button(key="train_full").click().run()
    assert not at.exception
    newest = registry.list_versions(seeded_store, MODEL)[-1]
    assert newest.version == 2
    assert (newest.model_config, newest.preprocess) == saved_settings(seeded_store)
    assert newest.created_by == "新来的"


def test_changed_settings_are_shown_as_a_diff_and_need_their_own_confirmation(app, seeded_store):
    at = app("pages/train.py")
    at.number_input(key="cfg_C").set_value(0.5).run()
    diff = next(d.value for d in at.dataframe if {"setting", "saved", "shown"} <= set(d.value.columns))
    assert diff.to_dict("records") == [{"setting": "config.C", "saved": "4", "shown": "0.5"}]
    assert at.button(key="train_full").disabled  # refused until the unsaved settings are confirmed
    assert [v.version for v in registry.list_versions(seeded_store, MODEL)] == [1]
    confirm = next(c for c in at.checkbox if c.label == "Train with these unsaved settings")
    confirm.check().run()
    at.button(key="train_full").click().run()
    assert not at.exception
    newest = registry.list_versions(seeded_store, MODEL)[-1]
    assert (newest.version, newest.model_config["C"]) == (2, 0.5)
    assert registry.get_model(seeded_store, MODEL).model_config["C"] == 4.0  # trained with, not saved


def test_unchanged_settings_train_without_a_confirmation(app, seeded_store):
    at = app("pages/train.py")
    assert not any(c.label == "Train with these unsaved settings" for c in at.checkbox)
    at.button(key="train_full").click().run()
    newest = registry.list_versions(seeded_store, MODEL)[-1]
    assert (newest.version, (newest.model_config, newest.preprocess)) == (2, saved_settings(seeded_store))


# --- issue 12, item 2: activating needs a reason, a confirmation, and forcing a worse version -

def test_a_worse_v2_shows_what_regressed_and_activates_only_when_forced(app, worse_v2):
    at = app("pages/train.py")
    assert any("Version 2, the newest, not active yet" in h.value for h in at.subheader)
    assert any("version 2 is worse than version 1 on the same test set" in e.value.lower() for e in at.error)
    fell = next(d.value for d in at.dataframe if {"what", "drop", "tolerance"} <= set(d.value.columns))
    assert "accuracy" in set(fell["what"])
    assert at.button(key="train_activate").disabled
    at.text_input(key="train_activate_reason").input("先上线，酒店线再调").run()
    at.checkbox(key="train_activate_confirm").check().run()
    assert at.button(key="train_activate").disabled  # still needs "activate anyway"
    assert registry.get_model(worse_v2, MODEL).active_version == 1
    at.checkbox(key="train_activate_force").check().run()
    at.button(key="train_activate").click().run()
    assert not at.exception
    assert registry.get_model(worse_v2, MODEL).active_version == 2
    event = registry.events_table(worse_v2, MODEL, limit=1).iloc[0]
    details = json.loads(event["details"])
    assert (event["action"], details["reason"], details["forced"]) == ("activate", "先上线，酒店线再调", True)
    assert any("Version 2, just activated anyway" in h.value for h in at.subheader)
    assert "accuracy" in {r["what"] for r in details["regressions"]}


def test_when_the_guard_refuses_the_page_says_why_and_nothing_changes(app, worse_v2):
    at = app("pages/train.py")
    with pytest.MonkeyPatch.context() as mp:  # the page saw no regression (say, the active version changed since)
        mp.setattr("core.compare.regressions", lambda *a, **k: [])
        at.run()
        at.text_input(key="train_activate_reason").input("试试").run()
        at.checkbox(key="train_activate_confirm").check().run()
    at.button(key="train_activate").click().run()
    assert not at.exception
    assert any("worse than version 1" in e.value for e in at.error)
    assert registry.get_model(worse_v2, MODEL).active_version == 1


def test_a_model_without_rows_or_versions_says_so_and_cannot_be_retrained(app, seeded_store):
    """A model just created has no training rows and no version: the page must not claim that "the newest
    version is the active one", nor offer a Full retrain that can only fail."""
    registry.create_model(seeded_store, "空模型", ["退款", "咨询"], "tester")
    at = app("pages/train.py")
    at.session_state["select_model"] = "空模型"
    at.run()
    assert not at.exception
    assert at.button(key="train_full").disabled
    assert "import labelled rows on the Data page" in at.button(key="train_full").help
    captions = [c.value for c in at.caption]
    assert not any("newest version is the active one" in c for c in captions)
    assert any(c.startswith("No version yet") for c in captions)
