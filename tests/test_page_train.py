"""The Train page: settings with a tokenisation preview, the plan, a retrain, the comparison, activation."""
from core import registry

MODEL = "评论情感"


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


def test_full_retrain_creates_version_2_shows_the_comparison_and_activates_it(app, seeded_store):
    at = app("pages/train.py")
    at.button(key="train_full").click().run()
    assert not at.exception
    versions = registry.list_versions(seeded_store, MODEL)
    assert [v.version for v in versions] == [1, 2]
    assert versions[1].status == registry.INACTIVE
    assert any("Version 2, just trained, beside active version 1" in h.value for h in at.subheader)
    assert {m.label for m in at.metric} >= {"Accuracy", "Macro-F1", "Log loss", "Calibration error (ECE)"}
    assert len(elements(at, "plotly_chart")) == 2  # both confusion matrices
    assert not at.dataframe[0].value.empty  # per class

    at.text_input(key="train_activate_reason").input("更好 on hotels").run()
    at.button(key="train_activate").click().run()
    assert not at.exception
    assert registry.get_model(seeded_store, MODEL).active_version == 2
    latest = registry.activation_history(seeded_store, MODEL).iloc[0]  # newest first
    assert (latest["to_version"], latest["reason"], latest["user"]) == (2, "更好 on hotels", "tester")
    assert any("Version 2 is active" in s.value for s in at.success)


def test_incremental_update_learns_the_new_labels_of_an_sgd_version(app, seeded_store, reviews):
    from core import imports, train

    train.train_version(seeded_store, MODEL, "tester", model_config={"estimator": "sgd"}, activate=True)
    imports.import_frame(seeded_store, MODEL, reviews.iloc[-30:][["text", "label"]], "train", "tester")
    at = app("pages/train.py")
    assert not at.button(key="train_incremental").disabled
    at.button(key="train_incremental").click().run()
    assert not at.exception
    newest = registry.list_versions(seeded_store, MODEL)[-1]
    assert (newest.version, newest.mode, newest.parent_version) == (3, registry.INCREMENTAL, 2)
    assert any("Version 3, just trained, beside active version 2" in h.value for h in at.subheader)


def test_a_training_error_is_a_sentence_on_the_page(app, seeded_store, monkeypatch):
    from core import train
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
