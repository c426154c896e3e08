"""The Versions page: models, versions, reactivating with a reason, the diff, the history."""
import hashlib
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


def diff_shown(at):
    """The comparison table as drawn: its visible columns (the hidden 'better' ones left out)."""
    element = next(d for d in at.dataframe if "what" in d.value.columns and "differs" in d.value.columns)
    return element.value[list(element.proto.column_order)].set_index("what")


def test_the_comparison_reads_names_values_and_deltas_against_the_base(app, two_versions):
    """Rows started with raw keys (data.fingerprint, data.selection.tried as raw JSON) and no column said
    how much a version differs from the other."""
    at = app("pages/versions.py")
    assert at.selectbox(key="versions_diff_a").value.startswith("v2 ")  # the active version is the base
    assert [o.split(" · ")[0] for o in at.multiselect(key="versions_diff_with").value] == ["v1"]
    diff = diff_shown(at)
    assert list(diff.columns) == ["v2 (base)", "v1", "Δ v1"]
    assert (diff.loc["estimator", "v2 (base)"], diff.loc["estimator", "v1"]) == ("complement_nb", "logreg")
    assert diff.loc["estimator", "Δ v1"] == "changed"
    v1, v2 = (registry.get_version(two_versions, MODEL, n) for n in (1, 2))
    assert diff.loc["Accuracy", "v1"] == f"{v1.metrics['accuracy']:.1%}"
    delta = (v1.metrics["accuracy"] - v2.metrics["accuracy"]) * 100
    assert diff.loc["Accuracy", "Δ v1"] == f"{delta:+.1f} pp".replace("-", "−")
    assert not [w for w in diff.index if "." in w or "_" in w]  # no raw keys
    assert not [c for c in diff.to_numpy().ravel() if str(c).startswith(("[", "{"))]  # no raw JSON
    assert "jieba mode" not in diff.index  # the same in both: hidden by default
    at.toggle(key="versions_diff_only").set_value(False).run()
    assert "jieba mode" in diff_shown(at).index


def test_n_versions_compare_against_a_chosen_base(app, two_versions):
    train.train_version(two_versions, MODEL, "owner2", model_config={"estimator": "logreg", "C": 0.5})
    at = app("pages/versions.py")
    labels = at.selectbox(key="versions_diff_a").options
    v1, v3 = (next(label for label in labels if label.startswith(f"v{n} ")) for n in (1, 3))
    at.selectbox(key="versions_diff_a").set_value(v1).run()
    at.multiselect(key="versions_diff_with").set_value([label for label in labels if not label.startswith("v1 ")]).run()
    assert not at.exception
    diff = diff_shown(at)
    assert list(diff.columns) == ["v1 (base)", "v2", "Δ v2", "v3", "Δ v3"]
    assert diff.loc["C", "v3"] == "0.5" and diff.loc["C", "Δ v3"] == "changed"
    assert "C" in diff.index and diff.loc["estimator", "Δ v3"] == ""  # v3 is logreg like the base
    at.selectbox(key="versions_diff_a").set_value(v3).run()  # the new base leaves the compared versions
    assert not at.exception
    assert list(diff_shown(at).columns) == ["v3 (base)", "v2", "Δ v2"]


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
    for key in ("versions_pick", "versions_diff_a"):
        labels = at.selectbox(key=key).options
        assert [label.split(" · ")[0] for label in labels if label.endswith("active")] == ["v1"], key
    assert [label.split(" · ")[0] for label in at.multiselect(key="versions_diff_with").value] == ["v1"]
    assert at.multiselect(key="versions_diff_with").value[0].endswith("· active")


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


def test_a_model_file_is_offered_for_download_once_its_sha256_matches(app, two_versions, monkeypatch):
    from streamlit.runtime.media_file_manager import MediaFileManager

    offered, add = [], MediaFileManager.add
    monkeypatch.setattr(MediaFileManager, "add", lambda self, data, mime, coords, file_name=None, **kw:
                        offered.append((file_name, data)) or add(self, data, mime, coords, file_name, **kw))
    v1 = registry.get_version(two_versions, MODEL, 1)
    at = app("pages/versions.py")
    assert not [b for b in at.get("download_button") if "model file" in b.proto.label]  # not before the check
    at.selectbox(key="versions_file_pick").set_value(1).run()
    at.button(key="versions_file_check").click().run()
    assert not at.exception
    assert [b.proto.label.split(" (")[0] for b in at.get("download_button")] == ["Download v1's model file"]
    name, data = next((n, d) for n, d in offered if n and n.endswith(".joblib"))
    assert name == f"{MODEL}-v1-{v1.sha256[:12]}.joblib"
    assert hashlib.sha256(data).hexdigest() == v1.sha256


def test_an_altered_model_file_is_not_offered(app, two_versions):
    v1 = registry.get_version(two_versions, MODEL, 1)
    with open(two_versions.path.parent / v1.artifact, "ab") as f:
        f.write(b"tampered")
    at = app("pages/versions.py")
    at.selectbox(key="versions_file_pick").set_value(1).run()
    at.button(key="versions_file_check").click().run()
    assert not at.exception
    assert any("version 1's model file has been altered" in e.value.lower() for e in at.error)
    assert not [b for b in at.get("download_button") if "model file" in b.proto.label]
