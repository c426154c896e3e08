"""The dashboard for an ordinal model (ordered grades): Monitor's grade mix, mean grade and grade drift;
the ordinal figures on Train and Versions; hotkeys in grade order on Label; creating one on Data. A
classification model beside it shows none of the ordinal figures."""
import pytest

from core import feedback, registry
from gradedfixtures import GRADED, GRADES, _graded_template, graded_store  # noqa: F401  (fixtures)

DEMO = "评论情感"


@pytest.fixture
def seeded_store(graded_store):  # noqa: F811  (the pages' `app` fixture opens this store)
    """The seeded demo store with the graded model 紧急程度 beside 评论情感."""
    return graded_store


def open_on(app, page: str, model: str = GRADED, role: str = "owner"):
    """A page of the dashboard with `model` chosen in the sidebar."""
    at = app(page, role=role)
    at.session_state["select_model"] = model
    at.run()
    assert not at.exception
    return at


def table_with(at, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_monitor_of_an_ordinal_model_shows_grades_in_order_mean_grade_and_grade_drift(app):
    at = open_on(app, "pages/monitor.py")
    assert not at.error
    titles = [m.label for m in at.metric]
    assert titles[-3:] == ["Mean grade", "Mean expected grade", "Share predicted 高"]
    assert all(m.value not in ("", "–") for m in at.metric[-3:])
    assert any("Grades, lowest first: 低 < 中 < 高" in c.value for c in at.caption)
    subheaders = [s.value for s in at.subheader]
    assert "Grade mix over time per business line" in subheaders and "Mean grade per business line" in subheaders
    assert "Class mix over time per business line" not in subheaders
    at.session_state["monitor_tab"] = "Grade mix"  # one tab per chart: the open one is drawn
    at.run()
    mix = next(c for c in at.get("plotly_chart") if c.proto.id and "monitor_chart_mix" in c.proto.id)
    legend = [t for t in __import__("json").loads(mix.proto.spec)["data"] if t.get("type") == "bar"]
    assert [t["name"] for t in legend][:3] == GRADES  # stacked in grade order, lowest first
    stats = table_with(at, "mean_expected_grade")
    assert stats["mean_expected_grade"].between(1, 3).all() and stats["labelled_mae"].notna().any()
    assert [c for c in stats.columns if c.startswith("share_")] == [f"share_{g}" for g in GRADES]
    drift = table_with(at, "grade_shift")
    assert "售后" in set(drift[drift["flagged"]]["business_line"])
    assert any("predicted grades moved up" in m.value for m in at.markdown)
    assert any("Grades against the reference" in c.value for c in at.caption)


def test_monitor_of_a_classification_model_has_no_grades(app):
    at = open_on(app, "pages/monitor.py", DEMO)
    assert "Mean grade" not in [m.label for m in at.metric]
    assert "Class mix over time per business line" in [s.value for s in at.subheader]
    assert not any("grade" in c for d in at.dataframe for c in d.value.columns)


@pytest.fixture
def second_versions(graded_store):
    """Version 2 of both models, not active: Train shows it beside the active version 1."""
    from core import train

    train.train_version(graded_store, GRADED, "tester", model_config={"estimator": "logreg", "C": 0.3})
    train.train_version(graded_store, DEMO, "tester", model_config={"estimator": "complement_nb"})
    return graded_store


def test_train_shows_the_ordinal_figures_beside_the_active_version_and_a_classifier_none(app, second_versions):
    at = open_on(app, "pages/train.py")
    figures = {m.label: m for m in at.metric}
    assert {"MAE (grades)", "QWK", "Spearman", "Exact", "Within one"} <= set(figures)
    v1, v2 = (registry.get_version(second_versions, GRADED, n).metrics["ordinal"] for n in (1, 2))
    assert figures["QWK"].value == f"{v2['qwk']:.3f}" and figures["Within one"].value == f"{v2['within_one']:.1%}"
    lines = table_with(at, "qwk")
    assert set(lines["business_line"]) == {"客服", "售后"} and lines["test_rows"].sum() == v2["n"]
    v1_lines = registry.get_version(second_versions, GRADED, 1).metrics["ordinal_by_line"]
    assert lines.set_index("business_line")["mae_base"].to_dict() == pytest.approx(
        {line: m["mae"] for line, m in v1_lines.items()})  # v1's error on each line beside v2's
    assert any("Grades, lowest first: 低 < 中 < 高" in c.value for c in at.caption)
    classifier = open_on(app, "pages/train.py", DEMO)
    assert not {"MAE (grades)", "QWK"} & {m.label for m in classifier.metric}
    assert not any("qwk" in d.value.columns for d in classifier.dataframe)


def test_versions_shows_the_ordinal_figures_and_compares_two_versions(app, second_versions):
    at = open_on(app, "pages/versions.py")
    table = table_with(at, "qwk")
    assert list(table["version"]) == [1, 2] and {"mae", "spearman", "within_one"} <= set(table.columns)
    assert any(m.value.startswith("**Ordinal figures of v2**") for m in at.markdown)
    assert {"MAE (grades)", "QWK"} <= {m.label for m in at.metric}
    classifier = open_on(app, "pages/versions.py", DEMO)
    assert not any(m.value.startswith("**Ordinal figures") for m in classifier.markdown)
    assert not any("qwk" in d.value.columns for d in classifier.dataframe)


def test_label_keys_count_up_the_grades_and_ordinal_strategies_are_offered(app, seeded_store):
    at = open_on(app, "pages/label.py")
    assert any("Grades, lowest first: 1 低 < 2 中 < 3 高" in c.value for c in at.caption)
    assert at.selectbox(key="label_strategy").options[:2] == [
        o for o in at.selectbox(key="label_strategy").options if o.startswith(("expected error", "spread"))]
    assert [at.button(key=f"label_as_{i}").label for i in range(3)] == GRADES
    assert any(c.value.startswith("Expected grade") for c in at.caption)
    at.selectbox(key="label_strategy").set_value("expected_error").run()
    assert not at.exception
    before = feedback.labelled_today(seeded_store, GRADED, "tester").get("高", 0)
    at.button(key="label_as_2").click().run()  # the third key: the highest grade
    assert not at.exception
    assert feedback.labelled_today(seeded_store, GRADED, "tester").get("高", 0) == before + 1


def test_data_page_creates_an_ordinal_model_with_its_grades_in_order(app, seeded_store):
    at = app("pages/data.py")
    at.radio(key="create_task").set_value("ordinal").run()
    rows = "text,label_1,label_2\n" + "".join(f"工单{i}：第{i % 3}级,咨询,{'低中高'[i % 3]}\n" for i in range(30))
    at.file_uploader(key="create_file").set_value(("graded.csv", rows.encode(), "text/csv"))
    at.run()
    assert not at.exception
    assert at.text_input(key="create_labels").value == ""  # a file cannot tell 低 < 中 < 高: the owner types it
    assert all(g in at.warning[0].value for g in GRADES)  # the grades found in label_2
    at.text_input(key="create_labels").input("低,高")
    at.text_input(key="create_name").input("分级")
    at.button[0].click().run()
    assert any("at least 3 grades" in e.value for e in at.error)
    assert "分级" not in [m.name for m in registry.list_models(seeded_store)]
    at.text_input(key="create_labels").input("低,中,高")
    at.button[0].click().run()
    assert not at.exception
    model = registry.get_model(seeded_store, "分级")
    assert model.task == "ordinal" and model.labels == GRADES


NO_GUARD = {"MMS_GUARD_OVERALL": "1", "MMS_GUARD_CLASS_RECALL": "1", "MMS_GUARD_LINE_ACCURACY": "1",
            "MMS_GUARD_ORDINAL_MAE": "5", "MMS_GUARD_LINE_ORDINAL_MAE": "5"}


def record_file(frame) -> bytes:
    """The model record's file: one text with both label columns (label_1 a class, label_2 the grade)."""
    return frame.rename(columns={"label": "label_2"}).assign(label_1="咨询").to_csv(index=False).encode()


def test_the_loop_of_an_ordinal_model_through_the_dashboard(app, seeded_store, monkeypatch):
    """Create, import, train, predict, label, retrain, activate and roll back, each on its page."""
    import numpy as np

    from gradedfixtures import graded_frame

    for name, value in NO_GUARD.items():  # the flow, not the guard (tested in core)
        monkeypatch.setenv(name, value)
    rng = np.random.default_rng(7)
    at = app("pages/data.py")
    at.radio(key="create_task").set_value("ordinal").run()
    at.file_uploader(key="create_file").set_value(("tickets.csv", record_file(graded_frame(rng, 200)), "text/csv"))
    at.run()
    at.text_input(key="create_labels").input("低,中,高")
    at.text_input(key="create_name").input("工单分级")
    at.button[0].click().run()
    assert not at.exception and at.sidebar.selectbox(key="model").value == "工单分级"
    at.file_uploader(key="import_file").set_value(("more.csv", record_file(graded_frame(rng, 80)), "text/csv"))
    at.run()
    at.button(key="import_write").click().run()
    assert not at.exception
    assert registry.get_model(seeded_store, "工单分级").labels == GRADES

    at.switch_page("pages/train.py").run()
    at.button(key="train_full").click().run()
    assert not at.exception
    assert registry.get_model(seeded_store, "工单分级").active_version == 1  # a first version is activated

    at.switch_page("pages/predict.py").run()
    at.text_area(key="predict_texts").input("订单的问题，马上处理，严重故障。\n发票的问题，不着急，有空再看。")
    at.button(key="predict_run").click().run()
    assert not at.exception
    answered = table_with(at, "expected_grade")
    assert list(answered["label"]) == ["高", "低"] and answered["expected_grade"].iloc[0] > answered["expected_grade"].iloc[1]

    at.switch_page("pages/label.py").run()
    at.selectbox(key="label_strategy").set_value("expected_error").run()
    at.button(key="label_as_1").click().run()  # 中
    assert not at.exception
    assert feedback.labelled_today(seeded_store, "工单分级", "tester") == {"中": 1}

    at.switch_page("pages/train.py").run()
    at.button(key="train_full").click().run()
    at.text_input(key="train_activate_reason").input("一条新标签").run()
    at.checkbox(key="train_activate_confirm").check().run()
    at.button(key="train_activate").click().run()
    assert not at.exception
    assert registry.get_model(seeded_store, "工单分级").active_version == 2

    at.switch_page("pages/versions.py").run()
    at.selectbox(key="versions_pick").set_value(1).run()
    at.text_input(key="versions_reason").input("回到 v1").run()
    at.checkbox(key="versions_confirm").check().run()
    at.button(key="versions_reactivate").click().run()
    assert not at.exception
    assert registry.get_model(seeded_store, "工单分级").active_version == 1
