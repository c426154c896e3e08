"""core.compare: the figures of two versions side by side, checked against hand-computed values."""
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from core import compare

TOL = compare.Tolerances(overall=0.005, class_recall=0.02, line_accuracy=0.03, line_min_rows=30)


def version(number, accuracy=0.80, macro_f1=0.78, recall=(0.85, 0.70), lines=None, n_test=200, **facts):
    """A version-like record with metrics on a 200-row test set of classes 正面 (120) and 负面 (80)."""
    metrics = {"n_test": n_test, "accuracy": accuracy, "macro_f1": macro_f1, "log_loss": 0.45, "ece": 0.05,
               "per_class": {"正面": {"precision": 0.82, "recall": recall[0], "f1": 0.83, "support": 120},
                             "负面": {"precision": 0.75, "recall": recall[1], "f1": 0.72, "support": 80}},
               "by_business_line": lines or {"酒店": {"n": 100, "accuracy": 0.80}, "图书": {"n": 10, "accuracy": 0.9}}}
    base = dict(version=number, metrics=metrics, data={"rows": 1000, "test_rows": n_test}, mode="full",
                model_config={"estimator": "logreg", "C": 4.0}, preprocess={"cut_mode": "accurate"},
                parent_version=None, created_at=pd.Timestamp("2026-11-02 10:00"), created_by="ana")
    return SimpleNamespace(**{**base, **facts})


def test_overall_deltas_are_candidate_minus_base_and_know_which_way_is_better():
    base, new = version(1), version(2, accuracy=0.83, macro_f1=0.78)
    new.metrics["log_loss"] = 0.40
    by_key = {d.measure.key: d for d in compare.overall_deltas(new, base)}
    assert by_key["accuracy"].delta == pytest.approx(0.03) and by_key["accuracy"].better is True
    assert by_key["macro_f1"].unchanged and by_key["macro_f1"].better is None
    assert by_key["log_loss"].delta == pytest.approx(-0.05) and by_key["log_loss"].better is True  # lower is better
    assert by_key["ece"].unchanged


def test_a_difference_below_the_last_shown_digit_is_unchanged():
    base, new = version(1, accuracy=0.8), version(2, accuracy=0.8004)
    assert compare.overall_deltas(new, base)[0].unchanged
    assert not compare.overall_deltas(version(3, accuracy=0.8006), base)[0].unchanged


def test_per_class_and_per_line_tables_put_both_versions_side_by_side():
    base, new = version(1, recall=(0.85, 0.70)), version(2, recall=(0.80, 0.75))
    classes = compare.per_class_table(new, base)
    assert list(classes.columns) == ["class", "measure", "v1", "v2", "Δ", "support"]
    recall = classes[(classes["class"] == "负面") & (classes["measure"] == "recall")].iloc[0]
    assert (recall["v1"], recall["v2"], recall["support"]) == (0.70, 0.75, 80)
    assert recall["Δ"] == pytest.approx(0.05)
    lines = compare.by_line_table(version(2, lines={"酒店": {"n": 100, "accuracy": 0.74}}), base)
    assert lines.to_dict("records")[0]["Δ"] == pytest.approx(-0.06)
    assert list(compare.per_class_table(new).columns) == ["class", "measure", "v2", "support"]  # no base


def test_the_base_is_the_active_version_or_the_one_a_newly_active_version_replaced():
    assert compare.comparison_base(candidate=3, active=2) == 2
    assert compare.comparison_base(candidate=3, active=3, replaced=2) == 2
    assert compare.comparison_base(candidate=1, active=None) is None


# --- the guard's statistics on paired test rows --------------------------------------------------

def answers(truth, right, labels=("正面", "负面")) -> np.ndarray:
    """A version's answers: the true label where `right`, the other label where not."""
    other = {labels[0]: labels[1], labels[1]: labels[0]}
    return np.array([t if r else other[t] for t, r in zip(truth, right)], dtype=object)


def line_rows(line: str, n: int, base_right: int, lost: int, gained: int):
    """n rows of a line: the base is right on `base_right`; the candidate loses `lost` of those and
    gains `gained` of the rest."""
    base = np.arange(n) < base_right
    cand = base.copy()
    cand[:lost] = False
    cand[base_right:base_right + gained] = True
    truth = np.array(["正面" if i % 2 else "负面" for i in range(n)], dtype=object)
    return truth, base, cand, np.array([line] * n, dtype=object)


def paired(*parts) -> compare.Paired:
    truth, base, cand, lines = (np.concatenate([p[i] for p in parts]) for i in range(4))
    return compare.Paired(truth, answers(truth, base), answers(truth, cand), lines, ("正面", "负面"))


def test_a_better_retrain_with_a_small_fall_on_one_line_is_not_a_regression():
    # the 500-labels case: 酒店 falls 0.885 -> 0.844 (4 of its 96 rows: 6 lost, 2 gained), the rest gains a lot
    hotel = line_rows("酒店", 96, 85, lost=6, gained=2)
    books = line_rows("图书", 104, 70, lost=2, gained=27)
    rows = paired(hotel, books)
    by_line = {x.what: x for x in compare._tests(rows, TOL)}["accuracy on 酒店"]
    assert (round(by_line.base, 3), round(by_line.candidate, 3)) == (0.885, 0.844)
    assert by_line.worse > TOL.line_accuracy  # beyond the tolerance: the old guard refused it
    assert by_line.p_value == pytest.approx(37 / 256)  # exact McNemar: 6 or more of 8 discordant rows
    assert compare.regressions(rows, TOL, level=0.05) == []


def test_a_significant_fall_is_a_regression_with_its_p_value():
    hotel = line_rows("酒店", 96, 85, lost=20, gained=0)
    books = line_rows("图书", 104, 70, lost=0, gained=0)
    found = {r.what: r for r in compare.regressions(paired(hotel, books), TOL, level=0.05)}
    assert {"accuracy", "accuracy on 酒店"} <= set(found)
    hotel_fall = found["accuracy on 酒店"]
    assert hotel_fall.p_value == pytest.approx(0.5 ** 20) and hotel_fall.rows == 96
    assert hotel_fall.drop == pytest.approx(20 / 96)
    assert "p < 0.001 on 96 paired test rows" in hotel_fall.sentence()
    assert {"what", "base", "candidate", "drop", "tolerance", "p_value", "rows"} == set(hotel_fall.to_dict())
    sentence = compare.describe(list(found.values()), 2, 1)
    assert sentence.startswith("version 2 is worse than version 1 on the same test set: accuracy")
    # a significant fall within its tolerance is no regression either
    assert "accuracy on 酒店" not in {r.what for r in compare.regressions(
        paired(hotel, books), compare.Tolerances(line_accuracy=0.25), level=0.05)}


def test_too_few_rows_on_a_line_is_a_note_not_a_fall():
    hotel = line_rows("酒店", 96, 85, lost=0, gained=0)
    baby = line_rows("母婴", 10, 10, lost=10, gained=0)  # every row lost, but only 10 of them
    rows = paired(hotel, baby)
    assert "accuracy on 母婴" not in {r.what for r in compare.regressions(rows, TOL, level=0.05)}
    notes = compare.guard_notes(rows, TOL)
    assert notes == ["母婴 has 10 test rows, too few to judge (a business line needs 30): accuracy 1.000 → 0.000 "
                     "is not counted as a fall"]


def test_holm_corrects_for_the_number_of_figures_tested():
    assert compare.holm([0.01, 0.04, 0.03], 0.05) == [True, False, False]  # 0.03 is not below 0.05 / 2
    assert compare.holm([0.001, 0.02, 0.04], 0.05) == [True, True, True]
    assert compare.binomial_tail(0, 0) == 1.0 and compare.binomial_tail(3, 3) == 1 / 8
    assert compare.binomial_tail(1200, 2000) == pytest.approx(0.0, abs=1e-15)  # the normal tail, large n


def test_ordinal_falls_are_judged_on_paired_errors_and_kappa():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    grades = ("低", "中", "高")
    true = rng.integers(0, 3, 300)
    base = np.where(rng.random(300) < 0.8, true, rng.integers(0, 3, 300))
    worse = np.where(rng.random(300) < 0.5, true, rng.integers(0, 3, 300))
    assert compare.qwk(true, base) == pytest.approx(sklearn_metrics.cohen_kappa_score(true, base, weights="quadratic"))
    names = np.asarray(grades, dtype=object)
    lines = np.array(["电商"] * 300, dtype=object)
    rows = compare.Paired(names[true], names[base], names[worse], lines, grades, graded=True)
    found = {r.what for r in compare.regressions(rows, TOL, level=0.05)}
    assert {"mean absolute error (grades)", "quadratic weighted kappa", "mean absolute error (grades) on 电商"} <= found
    same = compare.Paired(names[true], names[base], names[base], lines, grades, graded=True)
    assert compare.regressions(same, TOL, level=0.05) == []


def confusion_version(number, labels, matrix, graded=False):
    metrics = {"confusion": {"labels": list(labels), "matrix": matrix}, **({"ordinal": {}} if graded else {})}
    return SimpleNamespace(version=number, metrics=metrics)


def test_a_version_must_beat_the_majority_class_significantly_on_macro_f1():
    # 100 test rows, 正面 60 of them. Always 正面: F1 of 正面 2*60/(100+60) = 0.75, of 负面 0: macro 0.375
    good = compare.baseline(confusion_version(1, ["正面", "负面"], [[55, 5], [25, 15]]), level=0.05)
    assert (good.answer, good.metric, good.trivial) == ("正面", "macro-F1", 0.375)
    assert good.figure == pytest.approx((2 * 55 / (60 + 80) + 2 * 15 / (40 + 20)) / 2)
    assert good.beaten and "version 1 beats always answering 正面" in good.sentence()
    # 正面 for 98 of the 100 texts, one of its two 负面 right: better than the constant, not significantly
    weak = compare.baseline(confusion_version(1, ["正面", "负面"], [[59, 1], [39, 1]]), level=0.05)
    assert weak.figure > weak.trivial and weak.p_value > 0.05 and not weak.beaten
    assert weak.sentence().startswith("version 1 is no better than always answering 正面 (macro-F1 0.397 against "
                                      "0.375 on 100 test rows")
    constant = compare.baseline(confusion_version(1, ["正面", "负面"], [[60, 0], [40, 0]]), level=0.05)
    assert constant.p_value == 1.0 and not constant.beaten
    assert compare.macro_f1([[55, 5], [25, 15]]) == pytest.approx(good.figure)
    assert compare.baseline(SimpleNamespace(version=3, metrics={"note": "no test rows"})) is None


def test_an_ordinal_version_must_beat_the_median_grade():
    grades = ["1", "2", "3", "4", "5"]
    # nearly always "4", the median grade: 498 of 533 as in the report
    matrix = [[0, 0, 2, 25, 0], [0, 0, 1, 26, 0], [0, 0, 4, 100, 2], [0, 0, 3, 205, 5], [0, 0, 2, 147, 11]]
    flat = compare.baseline(confusion_version(1, grades, matrix, graded=True), level=0.05)
    assert flat.answer == "4" and flat.metric == "mean absolute error (grades)" and not flat.beaten
    assert "no better than always answering 4" in flat.sentence()
    spread = [[20, 5, 2, 0, 0], [4, 18, 5, 0, 0], [0, 6, 90, 10, 0], [0, 0, 10, 190, 13], [0, 0, 2, 20, 138]]
    assert compare.baseline(confusion_version(2, grades, spread, graded=True), level=0.05).beaten


def test_versions_measured_on_different_test_sets_are_not_compared_and_say_why():
    base, new = version(1, accuracy=0.9), version(2, accuracy=0.5, n_test=300)
    assert "different test sets (200 and 300 rows)" in compare.not_comparable(new, base)
    plain = compare.comparison(new, base, tolerances=TOL)
    assert plain["comparable"] is False and "different test sets" in plain["note"]
    no_metrics = version(3)
    no_metrics.metrics = {"note": "no test rows"}
    assert "version 3 has no metrics" in compare.not_comparable(no_metrics, base)


def test_the_comparison_as_plain_data_for_the_cli_and_api():
    base, new = version(1), version(2, accuracy=0.70)
    rows = paired(line_rows("酒店", 96, 85, lost=30, gained=0), line_rows("图书", 10, 5, lost=0, gained=0))
    plain = compare.comparison(new, base, rows, TOL)
    assert (plain["base"], plain["candidate"], plain["comparable"]) == (1, 2, True)
    accuracy = next(d for d in plain["overall"] if d["measure"] == "accuracy")
    assert accuracy["delta"] == pytest.approx(-0.10)
    assert {"class", "measure", "base", "candidate", "delta", "support"} == set(plain["per_class"][0])
    assert plain["by_line"][0]["business_line"] == "酒店"
    assert "accuracy" in [r["what"] for r in plain["regressions"]]
    assert plain["guard_notes"] and plain["guard_notes"][0].startswith("图书 has 10 test rows")
    assert compare.comparison(new, base)["regressions"] == []  # no paired rows: nothing judged


def test_the_diff_lists_every_fact_and_marks_those_that_differ():
    a = version(1)
    b = version(2, model_config={"estimator": "sgd", "C": 4.0}, mode="incremental", parent_version=1)
    diff = compare.diff_table(a, b).set_index("setting")
    assert list(diff.columns) == ["v1", "v2", "differs"]
    assert (diff.loc["config.estimator", "v1"], diff.loc["config.estimator", "v2"]) == ("logreg", "sgd")
    assert diff.loc["config.estimator", "differs"] and diff.loc["mode", "differs"]
    assert not diff.loc["config.C", "differs"] and not diff.loc["preprocess.cut_mode", "differs"]
    assert diff.loc["metrics.per_class.正面.recall", "v1"] == 0.85  # nested facts flattened


def test_settings_diff_names_only_the_settings_that_differ():
    saved = {"config": {"C": 4.0, "word_ngrams": [1, 2]}, "preprocess": {"hmm": True}}
    shown = {"config": {"C": 0.0001, "word_ngrams": [1, 6]}, "preprocess": {"hmm": True}}
    diff = compare.settings_diff(saved, shown)
    assert diff.to_dict("records") == [{"setting": "config.C", "saved": 4.0, "shown": 0.0001},
                                       {"setting": "config.word_ngrams", "saved": [1, 2], "shown": [1, 6]}]
    assert compare.settings_diff(saved, saved).empty
    assert [compare.as_text(v) for v in (None, 0.123456, [1, 2], "词")] == ["–", "0.1235", "[1, 2]", "词"]


def test_tolerances_and_the_level_come_from_settings(monkeypatch):
    monkeypatch.setenv("MMS_GUARD_OVERALL", "0.1")
    monkeypatch.setenv("MMS_GUARD_LINE_MIN_ROWS", "5")
    monkeypatch.setenv("MMS_GUARD_LEVEL", "0.01")
    t = compare.Tolerances.from_settings()
    assert (t.overall, t.class_recall, t.line_accuracy, t.line_min_rows) == (0.1, 0.02, 0.03, 5)
    assert compare.guard_level() == 0.01
    rows = paired(line_rows("酒店", 96, 85, lost=7, gained=0), line_rows("图书", 104, 70, lost=0, gained=0))
    assert "accuracy on 酒店" not in {r.what for r in compare.regressions(rows)}  # p = 1/128, not below 0.01 / 5
