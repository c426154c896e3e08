"""core.compare: the figures of two versions side by side, checked against hand-computed values."""
from types import SimpleNamespace

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


def test_regressions_list_each_figure_that_fell_beyond_its_tolerance():
    base = version(1, accuracy=0.80, macro_f1=0.78, recall=(0.85, 0.70))
    new = version(2, accuracy=0.79, macro_f1=0.776, recall=(0.86, 0.65),
                  lines={"酒店": {"n": 100, "accuracy": 0.76}, "图书": {"n": 10, "accuracy": 0.5}})
    found = {r.what: r for r in compare.regressions(new, base, TOL)}
    # accuracy fell 0.010 > 0.005; macro-F1 0.004 is within; 负面's recall fell 0.05 > 0.02;
    # 酒店 fell 0.04 > 0.03; 图书 fell 0.4 but has 10 test rows, fewer than the 30 judged
    assert set(found) == {"accuracy", "recall of 负面", "accuracy on 酒店"}
    assert found["accuracy"].drop == pytest.approx(0.01)
    assert (found["recall of 负面"].base, found["recall of 负面"].candidate) == (0.70, 0.65)
    assert found["accuracy on 酒店"].to_dict() == pytest.approx(
        {"what": "accuracy on 酒店", "base": 0.80, "candidate": 0.76, "drop": 0.04, "tolerance": 0.03})
    sentence = compare.describe(list(found.values()), 2, 1)
    assert sentence.startswith("version 2 is worse than version 1 on the same test set: accuracy 0.800 → 0.790")
    assert "recall of 负面 0.700 → 0.650" in sentence and "accuracy on 酒店" in sentence


def test_a_fall_of_exactly_the_tolerance_is_allowed_and_a_better_version_has_none():
    base = version(1, accuracy=0.80, recall=(0.85, 0.70))
    assert compare.regressions(version(2, accuracy=0.795, recall=(0.83, 0.68)), base, TOL) == []
    assert compare.regressions(version(2, accuracy=0.9, recall=(0.9, 0.9)), base, TOL) == []


def test_versions_measured_on_different_test_sets_are_not_compared_and_say_why():
    base, new = version(1, accuracy=0.9), version(2, accuracy=0.5, n_test=300)
    assert compare.regressions(new, base, TOL) == []
    assert "different test sets (200 and 300 rows)" in compare.not_comparable(new, base)
    plain = compare.comparison(new, base, TOL)
    assert plain["comparable"] is False and "different test sets" in plain["note"]
    no_metrics = version(3)
    no_metrics.metrics = {"note": "no test rows"}
    assert "version 3 has no metrics" in compare.not_comparable(no_metrics, base)


def test_the_comparison_as_plain_data_for_the_cli_and_api():
    base, new = version(1), version(2, accuracy=0.70)
    plain = compare.comparison(new, base, TOL)
    assert (plain["base"], plain["candidate"], plain["comparable"]) == (1, 2, True)
    accuracy = next(d for d in plain["overall"] if d["measure"] == "accuracy")
    assert accuracy["delta"] == pytest.approx(-0.10)
    assert {"class", "measure", "base", "candidate", "delta", "support"} == set(plain["per_class"][0])
    assert plain["by_line"][0]["business_line"] == "酒店"
    assert [r["what"] for r in plain["regressions"]] == ["accuracy"]


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


def test_tolerances_come_from_settings(monkeypatch):
    monkeypatch.setenv("MMS_GUARD_OVERALL", "0.1")
    monkeypatch.setenv("MMS_GUARD_LINE_MIN_ROWS", "5")
    t = compare.Tolerances.from_settings()
    assert (t.overall, t.class_recall, t.line_accuracy, t.line_min_rows) == (0.1, 0.02, 0.03, 5)
