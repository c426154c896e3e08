"""Statistics that the Monitor draws, computed in core: the hard-example accuracy from drawn hard
examples only."""
import numpy as np
import pandas as pd
import pytest

from core import stats

M = "评论情感"


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
