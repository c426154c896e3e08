"""The Versions page: models, versions, reactivating with a reason, the diff, the history."""
import json

import pytest

from core import registry, train

MODEL = "评论情感"


def table(at, *columns):
    """The first table on the page with these columns (AppTest gives tables no key)."""
    return next(d.value for d in at.dataframe if set(columns) <= set(d.value.columns))


@pytest.fixture
def two_versions(seeded_store):
    """Version 2 trained and activated, so that version 1 can be reactivated."""
    train.train_version(seeded_store, MODEL, "owner2", model_config={"estimator": "complement_nb"})
    # complement_nb is worse than version 1 here: activating it is forced, as a person would
    registry.activate_version(seeded_store, MODEL, 2, "owner2", "set-up: try naive Bayes", force=True)
    return seeded_store


def test_versions_page_shows_models_versions_and_history(app):
    at = app("pages/versions.py")
    assert not at.exception
    assert table(at, "model", "active_version")["model"].tolist() == [MODEL]
    assert table(at, "version", "rows_seen")["version"].tolist() == [1]
    assert not table(at, "from_version", "reason").empty  # version 1 became active when trained
    assert at.button(key="versions_reactivate").disabled  # only one version, and it is active
    assert len(list(at.get("plotly_chart"))) == 1


def test_reactivating_a_version_records_the_reason_and_the_user(app, two_versions):
    at = app("pages/versions.py")
    assert not at.exception
    assert at.selectbox(key="versions_pick").value == 1
    assert at.button(key="versions_reactivate").disabled  # no reason, no confirmation yet
    at.text_input(key="versions_reason").input("v2 读错酒店评论").run()
    assert at.button(key="versions_reactivate").disabled  # still unconfirmed
    at.checkbox(key="versions_confirm").check().run()
    at.button(key="versions_reactivate").click().run()
    assert not at.exception
    assert registry.get_model(two_versions, MODEL).active_version == 1
    latest = registry.activation_history(two_versions, MODEL).iloc[0]  # newest first
    assert (latest["from_version"], latest["to_version"]) == (2, 1)
    assert (latest["reason"], latest["user"]) == ("v2 读错酒店评论", "tester")
    assert any("Version 1 is active again" in s.value for s in at.success)
    assert at.text_input(key="versions_reason").value == ""  # the form starts afresh


def test_the_diff_shows_what_differs_between_two_versions(app, two_versions):
    at = app("pages/versions.py")
    diff = table(at, "setting", "differs")
    assert set(diff.columns) == {"setting", "v2", "v1", "differs"}
    estimator = diff.set_index("setting").loc["config.estimator"]
    assert (estimator["v1"], estimator["v2"], estimator["differs"]) == ("logreg", "complement_nb", "●")
    assert "preprocess.cut_mode" not in set(diff["setting"])  # the same in both: hidden by default
    at.toggle(key="versions_diff_only").set_value(False).run()
    assert "preprocess.cut_mode" in set(table(at, "setting", "differs")["setting"])


def test_an_altered_model_file_is_a_sentence_and_nothing_changes(app, two_versions):
    v1 = registry.get_version(two_versions, MODEL, 1)
    with open(two_versions.path.parent / v1.artifact, "ab") as f:
        f.write(b"tampered")
    at = app("pages/versions.py")
    at.text_input(key="versions_reason").input("roll back").run()
    at.checkbox(key="versions_confirm").check().run()
    at.button(key="versions_reactivate").click().run()
    assert not at.exception
    assert any("altered" in e.value for e in at.error)
    assert registry.get_model(two_versions, MODEL).active_version == 2


def test_analysts_cannot_reactivate(app, two_versions):
    at = app("pages/versions.py", role="analyst")
    at.text_input(key="versions_reason").input("roll back").run()
    at.checkbox(key="versions_confirm").check().run()
    assert at.button(key="versions_reactivate").disabled


def test_switching_to_a_worse_version_shows_what_regressed_and_needs_forcing(app, worse_v2):
    at = app("pages/versions.py")
    assert at.selectbox(key="versions_pick").value == 2
    assert any("version 2 is worse than version 1 on the same test set" in e.value.lower() for e in at.error)
    fell = table(at, "what", "drop")
    assert "accuracy" in set(fell["what"])
    at.text_input(key="versions_reason").input("回滚演练").run()
    at.checkbox(key="versions_confirm").check().run()
    assert at.button(key="versions_reactivate").disabled  # a worse version needs "switch anyway"
    at.checkbox(key="versions_force").check().run()
    at.button(key="versions_reactivate").click().run()
    assert not at.exception
    assert registry.get_model(worse_v2, MODEL).active_version == 2
    details = json.loads(registry.events_table(worse_v2, MODEL, limit=1).iloc[0]["details"])
    assert (details["reason"], details["forced"]) == ("回滚演练", True)
    assert any("forced" in s.value for s in at.success)


def test_after_a_rollback_the_dropdowns_label_the_new_active_version(app, two_versions):
    at = app("pages/versions.py")
    at.text_input(key="versions_reason").input("roll back").run()
    at.checkbox(key="versions_confirm").check().run()
    at.button(key="versions_reactivate").click().run()
    assert registry.get_model(two_versions, MODEL).active_version == 1
    for key in ("versions_pick", "versions_diff_a", "versions_diff_b"):
        labels = at.selectbox(key=key).options
        assert [label.split(" · ")[0] for label in labels if label.endswith("active")] == ["v1"], key


def test_the_versions_table_shows_no_literal_none(app):
    at = app("pages/versions.py")
    table = next(d.value for d in at.dataframe if "parent" in d.value.columns and "rows_seen" in d.value.columns)
    assert "None" not in table.astype(str).to_numpy().ravel().tolist()
    assert table["parent"].isna().iloc[0]  # version 1 has no parent: a gap, not the word None


def test_one_version_draws_distinct_axis_ticks_and_no_switch_to_itself(app):
    """With one version (accuracy and macro-F1 a hair apart) the headline chart's five y ticks all read
    0.813, and the switch box offered "Switch predictions from version 1 to version 1"."""
    at = app("pages/versions.py")
    assert not at.exception
    chart = json.loads(next(iter(at.get("plotly_chart"))).proto.spec)
    low, high = chart["layout"]["yaxis"]["range"]
    assert high - low >= 0.01  # ticks at .3f, nticks 6: at least 0.002 apart, so each reads differently
    assert not [c for c in at.checkbox if c.key == "versions_confirm"]
    assert at.button(key="versions_reactivate").disabled
    assert at.button(key="versions_reactivate").help == "This version is already active."


def test_the_experiments_table_has_readable_headers_and_the_filter_keeps_the_names(app, two_versions):
    """Headers read 'macro-F1' and 'rows from labelling', not 'macro_f1' and 'rows_by_source.feedback';
    the filter still takes macro_f1."""
    at = app("pages/versions.py")
    at.toggle(key="versions_runs_all").set_value(True).run()
    runs = next(d for d in at.dataframe if "tags" in d.value.columns and "note" in d.value.columns)
    headers = {c: json.loads(runs.proto.columns).get(c, {}).get("label", c) for c in runs.value.columns}
    assert headers["metrics.macro_f1"] == "macro-F1"
    assert headers["data.rows_by_source.feedback"] == "rows from labelling"
    assert headers["metrics.per_class.正面.recall"] == "正面 recall"
    assert not [h for h in headers.values() if "_" in h or "." in h]
    at.text_input(key="versions_filter").input("macro_f1 > 0").run()
    assert not at.exception and not at.error
