"""The dashboard for an ordinal model (ordered grades): Monitor's grade mix, mean grade and grade drift;
the ordinal figures on Train and Versions; hotkeys in grade order on Label; creating one on Data. A
classification model beside it shows none of the ordinal figures."""
import pytest

from core import registry
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
    assert titles[-2:] == ["Mean grade", "Mean expected grade"]
    assert all(m.value not in ("", "–") for m in at.metric[-2:])
    assert any("Grades, lowest first: 低 < 中 < 高" in c.value for c in at.caption)
    subheaders = [s.value for s in at.subheader]
    assert "Grade mix over time per business line" in subheaders and "Mean grade per business line" in subheaders
    assert "Class mix over time per business line" not in subheaders
    mix = next(c for c in at.get("plotly_chart") if c.proto.id and "monitor_chart_mix" in c.proto.id)
    legend = [t for t in __import__("json").loads(mix.proto.spec)["data"] if t.get("type") == "bar"]
    assert [t["name"] for t in legend][:3] == GRADES  # stacked in grade order, lowest first
    stats = table_with(at, "mean_expected_grade")
    assert stats["mean_expected_grade"].between(1, 3).all()
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
