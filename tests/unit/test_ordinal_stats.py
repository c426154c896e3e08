"""Statistics and drift of an ordinal model: grade distribution, mean grade and mean expected grade per
business line x period (from the rollups, equal to the log), the grades' drift; classification unchanged."""
import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest

from core import drift, stats
from core import store as db
from core.store import Store
from gradedfixtures import GRADED, GRADES, END, _graded_template, build_graded, graded_store  # noqa: F401
from lakefixtures import new_lake, pg_cluster  # noqa: F401  (fixtures)

DEMO = "评论情感"


def from_the_log(store: Store) -> pd.DataFrame:
    """Mean predicted grade and mean expected grade per line x week, computed here from the logged probabilities."""
    with store.connect() as con:
        log = con.execute("""SELECT p.business_line, date_trunc('week', p.created_at) AS period, p.label, p.probs
                             FROM predictions p JOIN models m USING (model_id) WHERE m.name = ?""", [GRADED]).df()
    position = log["label"].map({g: i + 1 for i, g in enumerate(GRADES)})
    expected = log["probs"].map(lambda p: float(np.dot(p, np.arange(1, len(GRADES) + 1))))
    frame = log.assign(grade=position, expected=expected)
    return frame.groupby(["business_line", "period"]).agg(volume=("grade", "size"), mean_grade=("grade", "mean"),
                                                          mean_expected_grade=("expected", "mean")).reset_index()


def test_mean_grade_and_expected_grade_per_line_and_week_are_the_logs(graded_store):
    lines, overall = stats.stats_by_line_and_overall(graded_store, GRADED, "week")
    expected = from_the_log(graded_store)
    got = lines.merge(expected, on=["business_line", "period"], suffixes=("", "_log"))
    assert len(got) == len(lines) == 4
    assert (got["volume"] == got["volume_log"]).all()
    assert np.allclose(got["mean_grade"], got["mean_grade_log"])
    assert np.allclose(got["mean_expected_grade"], got["mean_expected_grade_log"])
    # grades lie between the lowest (1) and the highest (3); the urgent second week of 售后 reads higher
    assert lines["mean_expected_grade"].between(1, 3).all()
    after_sales = lines[lines["business_line"] == "售后"].sort_values("period")["mean_grade"].tolist()
    assert after_sales[1] > after_sales[0] + 0.4
    assert overall["business_line"].eq(stats.ALL_LINES).all()
    by_week = expected.assign(w=expected["volume"] * expected["mean_expected_grade"]).groupby("period")
    assert np.allclose(overall["mean_expected_grade"], (by_week["w"].sum() / by_week["volume"].sum()).to_numpy())


def test_labelled_mae_is_the_mean_distance_in_grades_of_the_labels_that_came_back(graded_store):
    lines, overall = stats.stats_by_line_and_overall(graded_store, GRADED, "week")
    with graded_store.connect() as con:
        given = con.execute("""SELECT p.business_line, date_trunc('week', p.created_at) AS period, p.label AS predicted,
                                      f.label AS truth FROM feedback f JOIN predictions p USING (prediction_id)
                               JOIN models m ON m.model_id = p.model_id WHERE m.name = ?""", [GRADED]).df()
    position = {g: i + 1 for i, g in enumerate(GRADES)}
    given["error"] = (given["truth"].map(position) - given["predicted"].map(position)).abs()
    assert len(given) == 30 and given["error"].max() >= 1  # the fixture's labels, some of them missed
    want = given.groupby(["business_line", "period"])["error"].mean()
    got = lines.set_index(["business_line", "period"])["labelled_mae"]
    assert np.allclose(got.loc[want.index], want) and got.drop(want.index).isna().all()
    assert overall["labelled_mae"].notna().sum() == given["period"].nunique()


def test_a_slice_that_cuts_a_day_reads_the_cut_part_from_the_log(graded_store):
    since = END - pd.Timedelta(days=10, hours=5)  # mid-day: part from the log, whole days from the rollups
    lines = stats.stats_by_line_and_period(graded_store, GRADED, "day", "客服", since=since)
    with graded_store.connect() as con:
        log = con.execute("""SELECT date_trunc('day', p.created_at) AS period, p.probs FROM predictions p
                             JOIN models m USING (model_id) WHERE m.name = ? AND business_line = '客服'
                             AND p.created_at >= ?""", [GRADED, since.to_pydatetime()]).df()
    log["expected"] = log["probs"].map(lambda p: float(np.dot(p, [1, 2, 3])))
    want = log.groupby("period")["expected"].mean()
    assert np.allclose(lines.set_index("period")["mean_expected_grade"].sort_index(), want.sort_index())


def test_compacted_rollups_give_the_same_grades(graded_store):
    before = stats.stats_by_line_and_period(graded_store, GRADED, "week")
    assert stats.compact_rollups(graded_store) >= 0
    after = stats.stats_by_line_and_period(graded_store, GRADED, "week")
    assert np.allclose(before["mean_expected_grade"], after["mean_expected_grade"])


def test_ordinal_rollups_written_before_the_column_are_rebuilt_by_the_migration(graded_store, tmp_path):
    want = stats.stats_by_line_and_period(graded_store, GRADED, "week")
    older = tmp_path / "older"  # the store as it was before the expected grade reached the rollups
    shutil.copytree(graded_store.path.parent, older)
    con = duckdb.connect(str(older / graded_store.path.name))
    number = next(i for i, (name, _) in enumerate(db.MIGRATIONS, start=1)
                  if name == "expected grade in the prediction rollups")
    con.execute("ALTER TABLE prediction_rollups DROP COLUMN sum_expected_grade")
    con.execute("DELETE FROM schema_migrations WHERE version = ?", [number])
    con.close()
    got = stats.stats_by_line_and_period(Store(older / graded_store.path.name), GRADED, "week")
    assert np.allclose(got["mean_expected_grade"], want["mean_expected_grade"])


def test_a_classification_model_has_no_grade_columns(graded_store):
    lines, overall = stats.stats_by_line_and_overall(graded_store, DEMO, "week")
    assert not set(stats.GRADE_COLUMNS) & (set(lines.columns) | set(overall.columns))
    table, _ = stats.stats_with_drift(graded_store, DEMO, "week")
    assert not {"grade_shift", "grade_reference", "mean_grade"} & set(table.columns)


def test_the_grades_moving_up_on_one_line_is_drift_and_says_which_way(graded_store):
    table, about = stats.stats_with_drift(graded_store, GRADED, "week")
    cells = table.set_index(["business_line", table["period"].dt.date.astype(str)])
    moved = cells.loc[("售后", "2026-10-26")]
    assert moved["drift_flagged"] and "predicted grades moved up" in moved["drift_moved"]
    assert moved["grade_shift"] > 0.25 and moved["mean_grade"] > moved["grade_reference"]
    calm = cells.loc[("客服", "2026-10-26")]
    assert calm["grade_shift"] < 0.25 and "grades" not in calm["drift_moved"]
    assert "held-out outputs" in about["references"]["客服"]


def test_grade_shift_is_the_earth_movers_distance_in_grades():
    ref = np.array([0.5, 0.5, 0.0])
    one_up = drift.grade_shift(np.array([0.0, 0.5, 0.5]), ref)
    assert one_up == pytest.approx({"mean_grade": 2.5, "grade_reference": 1.5, "grade_shift": 1.0})
    # half the items moving one grade or two: the same class-mix distance (0.5), not the same grade shift
    one = drift.grade_shift(np.array([0.0, 0.5, 0.5]), np.array([0.5, 0.0, 0.5]))
    far = drift.grade_shift(np.array([0.0, 0.0, 1.0]), np.array([0.5, 0.0, 0.5]))
    assert one["grade_shift"] == pytest.approx(0.5) and far["grade_shift"] == pytest.approx(1.0)
    assert np.isnan(drift.grade_shift(np.array([1.0, 0, 0]), None)["grade_shift"])


@pytest.mark.parametrize("backend", ["embedded", "ducklake"])
def test_the_grade_figures_are_the_same_on_both_backends_and_after_compaction(backend, tmp_path, request):
    store = Store(tmp_path / "mms.duckdb") if backend == "embedded" else new_lake(request.getfixturevalue("pg_cluster"),
                                                                                 tmp_path)
    build_graded(store)
    lines = stats.stats_by_line_and_period(store, GRADED, "week")
    want = from_the_log(store)
    got = lines.merge(want, on=["business_line", "period"], suffixes=("", "_log"))
    assert len(got) == 4 and np.allclose(got["mean_expected_grade"], got["mean_expected_grade_log"])
    assert lines["labelled_mae"].notna().sum() == 1  # the fixture labels 30 predictions of one line x week
    stats.compact_rollups(store)
    again = stats.stats_by_line_and_period(store, GRADED, "week")
    assert np.allclose(again["mean_expected_grade"], lines["mean_expected_grade"])
    assert np.allclose(again["labelled_mae"].fillna(-1), lines["labelled_mae"].fillna(-1))
