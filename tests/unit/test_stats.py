"""Statistics that the Monitor draws, computed in core: the class mix per business line, and the
hard-example accuracy from drawn hard examples only."""
import numpy as np
import pandas as pd
import pytest

from core import stats

M = "评论情感"


def test_class_mix_weighs_each_period_by_its_volume():
    table = pd.DataFrame({"business_line": ["酒店", "酒店", "图书"], "volume": [30, 10, 5],
                          "share_正面": [1.0, 0.0, 0.4], "share_负面": [0.0, 1.0, 0.6]})
    mix = stats.class_mix_by_line(table, ["正面", "负面"]).set_index(["business_line", "label"])["share"]
    assert mix[("酒店", "正面")] == pytest.approx(0.75) and mix[("酒店", "负面")] == pytest.approx(0.25)
    assert mix[("图书", "正面")] == pytest.approx(0.4)
    assert stats.class_mix_by_line(table.iloc[0:0], ["正面", "负面"]).empty


def test_class_mix_matches_the_log(seeded_store):
    mix = stats.class_mix_by_line(stats.stats_by_line_and_period(seeded_store, M, "week"), ["正面", "负面"])
    with seeded_store.connect() as con:
        log = con.execute("SELECT business_line, label FROM predictions").df()
    expected = log.groupby("business_line")["label"].value_counts(normalize=True)
    got = mix.set_index(["business_line", "label"])["share"]
    assert got.sum() == pytest.approx(log["business_line"].nunique())
    for (line, label), share in expected.items():
        assert got[(line, label)] == pytest.approx(share)


def test_the_demos_labels_are_not_hard_examples_and_no_column_merges_the_accuracies(seeded_store):
    """The demo labels a random share of its traffic without drawing hard examples: the Monitor read
    them as hard-example accuracy (81.6 % above an estimated 80.4 %). Only labels of a drawn hard batch
    count, and the table has no accuracy over every label."""
    from core import feedback, monitoring, sampling

    table = stats.stats_by_line_and_period(seeded_store, M, "week")
    assert table["labelled"].sum() >= 30  # the demo's labels are there
    assert (table["hard_labelled"] == 0).all() and table["hard_example_accuracy"].isna().all()
    assert "accuracy" not in table.columns
    assert {"estimated_accuracy", "audited_accuracy", "hard_example_accuracy"} <= set(table.columns)
    drawn = sampling.select_hard_examples(seeded_store, M, 6, "lab", "least_confidence")
    wrong = {"正面": "负面", "负面": "正面"}
    labels = [label if i % 3 else wrong[label] for i, label in enumerate(drawn.examples["label"])]
    feedback.record_labels(seeded_store, M, pd.DataFrame({"prediction_id": drawn.examples["prediction_id"],
                                                          "label": labels}), "lab", batch_id=drawn.batch_id)
    overall = stats.stats_by_line_and_period(seeded_store, M, "month", by_line=False)
    assert overall["hard_labelled"].sum() == 6
    hard = overall[overall["hard_labelled"] > 0]
    assert np.average(hard["hard_example_accuracy"], weights=hard["hard_labelled"]) == pytest.approx(4 / 6)
    assert "demo" in monitoring.ACCURACIES["hard_example_accuracy"]
