"""Versions as experiments (issue 16): notes and tags on a version on both backends, the experiments
table filtered and sorted, the setting-against-metric chart, the CLI's tag / note / versions
--filter, and the rough edges that live in core and the CLI (the session's opening model, the demo
notice, the models table's width)."""
import json
import unicodedata

import pytest

from conftest import make_model
from core import cli, demo, experiments, registry, train
from core.errors import InvalidInput, PermissionDenied, VersionNotFound
from core.store import Store
from lakefixtures import new_lake, pg_cluster  # noqa: F401  (fixture)

M = demo.MODEL


@pytest.fixture(params=["embedded", "ducklake"])
def any_store(request, tmp_path):
    if request.param == "embedded":
        return Store(tmp_path / "mms.duckdb")
    return new_lake(request.getfixturevalue("pg_cluster"), tmp_path)


def call(store, *args, capsys, user="tester"):
    try:
        code = cli.main(["--store", str(store.path), "--user", user, *map(str, args)])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def runs(store):
    return experiments.runs_table(registry.list_versions(store, M), registry.version_annotations(store, M))


# --- notes and tags -----------------------------------------------------------------------------

def test_notes_and_tags_are_kept_per_version_on_both_backends(any_store, reviews):
    make_model(any_store, reviews, n_train=120, n_test=40, name="m", config={"estimator": "logreg"})
    train.train_version(any_store, "m", "owner", activate=True)
    train.train_version(any_store, "m", "owner", model_config={"estimator": "complement_nb"})
    registry.annotate_version(any_store, "m", 1, "owner", note="baseline: logreg C=4", tags=["baseline", "logreg"])
    registry.annotate_version(any_store, "m", 2, "olga", tags=["nb"])
    changed = registry.annotate_version(any_store, "m", 1, "olga", add_tags=["keep", "baseline"],
                                        remove_tags=["logreg"])
    assert changed.tags == ("baseline", "keep") and changed.note == "baseline: logreg C=4"
    assert changed.updated_by == "olga"
    notes = registry.version_annotations(any_store, "m")
    assert {n: (a.note, a.tags) for n, a in notes.items()} == {1: ("baseline: logreg C=4", ("baseline", "keep")),
                                                               2: ("", ("nb",))}
    registry.annotate_version(any_store, "m", 1, "olga", note="")  # an empty note clears it, the tags stay
    assert registry.version_annotations(any_store, "m")[1].note == ""
    assert registry.version_annotations(any_store, "m")[1].tags == ("baseline", "keep")


def test_a_note_needs_an_owner_an_existing_version_and_sensible_tags(team):
    with pytest.raises(PermissionDenied):
        registry.annotate_version(team, M, 1, "lars", note="labellers do not write notes")
    with pytest.raises(VersionNotFound):
        registry.annotate_version(team, M, 7, "olga", note="no such version")
    for bad in (["a,b"], ["x" * 41], [f"t{i}" for i in range(21)]):
        with pytest.raises(InvalidInput):
            registry.annotate_version(team, M, 1, "olga", tags=bad)
    with pytest.raises(InvalidInput):
        registry.annotate_version(team, M, 1, "olga", note="x" * 2001)
    assert registry.version_annotations(team, M) == {}  # nothing refused was written


# --- the experiments table ----------------------------------------------------------------------

def test_versions_filter_and_sort_by_settings_metrics_and_tags(worse_v2):
    registry.annotate_version(worse_v2, M, 2, "tester", tags=["naive-bayes"])
    table = runs(worse_v2)
    assert table["version"].tolist() == [1, 2]
    assert experiments.varying(table, experiments.SETTINGS)[0] == "config.estimator"
    assert experiments.filter_runs(table, "estimator = complement_nb")["version"].tolist() == [2]
    assert experiments.filter_runs(table, "tags contains naive-bayes")["version"].tolist() == [2]
    assert experiments.filter_runs(table, "tag != naive-bayes")["version"].tolist() == [1]
    f1 = table.set_index("version")["metrics.macro_f1"]
    assert experiments.filter_runs(table, f"macro_f1 > {f1[2]:.6f}")["version"].tolist() == [1]
    assert experiments.filter_runs(table, f"metrics.macro_f1 <= {f1[2]:.6f} and mode = full")["version"].tolist() == [2]
    assert experiments.sort_runs(table, "macro_f1", descending=True)["version"].tolist() == [1, 2]
    assert experiments.sort_runs(table, "macro_f1")["version"].tolist() == [2, 1]


@pytest.mark.parametrize("expression, says", [
    ("bogus > 1", "no setting or metric is called 'bogus'"),
    ("macro_f1 > good", "is a number"),
    ("estimator > 3", "is text"),
    ("macro_f1 > 0.5 or mode = full", "`and` only"),
    ("just words", "is not a clause"),
    ("f1 > 0.5", "write the full name"),  # per class: 正面's and 负面's f1
])
def test_a_filter_that_cannot_work_says_why(worse_v2, expression, says):
    with pytest.raises(InvalidInput, match=says):
        experiments.filter_runs(runs(worse_v2), expression)


# --- the CLI ------------------------------------------------------------------------------------

def test_cli_tags_notes_and_filters_versions(worse_v2, capsys):
    code, out, err = call(worse_v2, "--format", "json", "tag", M, 2, "naive-bayes", "try", capsys=capsys)
    assert code == 0, err
    assert json.loads(out)["tags"] == "naive-bayes, try"
    code, out, err = call(worse_v2, "--format", "json", "tag", M, 2, "--remove", "try", capsys=capsys)
    assert json.loads(out)["tags"] == "naive-bayes"
    code, out, err = call(worse_v2, "note", M, 2, "complement NB: worse on 负面 recall", capsys=capsys)
    assert code == 0 and "note: complement NB: worse on 负面 recall" in out
    code, out, err = call(worse_v2, "note", M, 2, capsys=capsys)  # without TEXT: reads it
    assert "note: complement NB: worse on 负面 recall" in out and "tags: naive-bayes" in out
    code, out, err = call(worse_v2, "--format", "json", "versions", M, "--filter", "tags contains naive-bayes",
                          capsys=capsys)
    assert [(v["version"], v["tags"]) for v in json.loads(out)] == [(2, "naive-bayes")]
    code, out, err = call(worse_v2, "--format", "json", "versions", M, "--sort", "macro_f1", capsys=capsys)
    assert [v["version"] for v in json.loads(out)] == [2, 1]
    code, out, err = call(worse_v2, "versions", M, "--filter", "macro_f1 > high", capsys=capsys)
    assert code == 2 and err.startswith("error: ") and "is a number" in err
    code, out, err = call(worse_v2, "tag", M, 9, "x", capsys=capsys)
    assert code == 2 and "has no version 9" in err
    code, out, err = call(worse_v2, "tag", M, 1, capsys=capsys)
    assert code == 2 and "name a tag" in err


def _width(line: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)


def test_cli_models_table_fits_100_columns(seeded_store, capsys):
    registry.create_model(seeded_store, "客服工单分类-华东区域-售后问题-第二版本", ["退款", "物流", "质量", "其他", "投诉", "咨询"],
                          "tester", description="把客服工单分到六类：退款、物流、质量、投诉、咨询和其他。" * 3)
    code, out, err = call(seeded_store, "models", capsys=capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3 and max(map(_width, lines)) <= 100, out
    assert lines[0].split()[:5] == ["model", "versions", "active", "macro-F1", "accuracy"]
    demo_row = next(line for line in lines if line.startswith(M))
    assert " v1 " in demo_row and "判断一条" in demo_row  # the figures and the start of the description
    code, out, err = call(seeded_store, "--format", "json", "models", capsys=capsys)
    assert {m["model"] for m in json.loads(out)} == {M, "客服工单分类-华东区域-售后问题-第二版本"}  # JSON is whole


# --- which model a session opens on, and the demo notice ---------------------------------------

def test_a_session_opens_on_the_users_last_model_else_the_one_with_traffic(seeded_store):
    registry.create_model(seeded_store, "a-new-model", ["x", "y"], "tester")  # first by name, no predictions
    assert registry.opening_model(seeded_store, None) == M
    assert registry.opening_model(seeded_store, "olga") == M
    registry.remember_model(seeded_store, "olga", "a-new-model")
    assert registry.opening_model(seeded_store, "olga") == "a-new-model"
    assert registry.opening_model(seeded_store, "lars") == M  # someone else's choice is theirs
    registry.remember_model(seeded_store, "olga", M)
    assert registry.opening_model(seeded_store, "olga") == M


def test_without_traffic_a_session_opens_on_the_first_model(store):
    assert registry.opening_model(store, "olga") is None
    registry.create_model(store, "b", ["x", "y"], "tester")
    registry.create_model(store, "a", ["x", "y"], "tester")
    assert registry.opening_model(store, "olga") == "a"


def test_the_demo_notice_is_for_the_demo_model_only(seeded_store):
    registry.create_model(seeded_store, "工单", ["x", "y"], "tester")
    assert "Demo data" in demo.demo_notice(seeded_store, M)
    assert demo.demo_notice(seeded_store, "工单") is None


# --- the Versions page (AppTest) ----------------------------------------------------------------

def test_versions_page_filters_sorts_charts_and_saves_notes(app, worse_v2):
    registry.annotate_version(worse_v2, M, 1, "tester", tags=["baseline"])
    at = app("pages/versions.py")
    assert not at.exception
    shown = next(d.value for d in at.dataframe if "tags" in d.value.columns and "note" in d.value.columns)
    assert shown["version"].tolist() == [1, 2]  # sorted by macro-F1, best first
    assert "config.estimator" in shown.columns  # the setting that differs between the two
    at.text_input(key="versions_filter").input("estimator = complement_nb").run()
    shown = next(d.value for d in at.dataframe if "tags" in d.value.columns and "note" in d.value.columns)
    assert shown["version"].tolist() == [2]
    at.text_input(key="versions_filter").input("macro_f1 > high").run()
    assert any("Filter not applied" in e.value and "is a number" in e.value for e in at.error)
    at.text_input(key="versions_filter").input("").run()
    at.toggle(key="versions_sort_desc").set_value(False).run()
    shown = next(d.value for d in at.dataframe if "tags" in d.value.columns and "note" in d.value.columns)
    assert shown["version"].tolist() == [2, 1]
    assert at.selectbox(key="versions_chart_x").value == "config.estimator"
    assert at.selectbox(key="versions_chart_y").value == "metrics.macro_f1"
    assert any(c.key == "versions_setting_chart" for c in at.get("plotly_chart"))

    at.selectbox(key="versions_note_pick").set_value(2).run()
    at.text_area(key="versions_note").input("naive Bayes: worse on hotels").run()
    at.multiselect(key="versions_tags").set_value(["baseline", "nb"]).run()
    at.button(key="versions_note_save").click().run()
    assert not at.exception
    saved = registry.version_annotations(worse_v2, M)[2]
    assert saved.note == "naive Bayes: worse on hotels" and saved.tags == ("baseline", "nb")
    assert any("Saved the note and tags of v2" in s.value for s in at.success)


def test_analysts_read_notes_but_cannot_save_them(app, worse_v2):
    registry.annotate_version(worse_v2, M, 2, "tester", note="complement NB")
    at = app("pages/versions.py", role="analyst")
    at.selectbox(key="versions_note_pick").set_value(2).run()
    assert at.text_area(key="versions_note").value == "complement NB"
    assert at.button(key="versions_note_save").disabled


def test_the_opening_model_in_the_dashboard_has_traffic(app, seeded_store):
    registry.create_model(seeded_store, "a-new-model", ["x", "y"], "tester")  # sorted first, no predictions
    at = app("pages/monitor.py")
    assert at.sidebar.selectbox(key="model").value == M
    assert any("Demo data" in i.value for i in at.sidebar.info)
    at.sidebar.selectbox(key="model").set_value("a-new-model").run()
    assert not any("Demo data" in i.value for i in at.sidebar.info)
    assert registry.opening_model(seeded_store, "tester") == "a-new-model"  # remembered for tester's next session
