"""Prediction log, hard examples, feedback and statistics on the seeded store."""
import numpy as np
import pandas as pd
import pytest

from core import feedback, predict, registry, sampling, stats, store as db, train
from core.errors import EmptyPool, InvalidInput

import storeprobe as probe

M = "评论情感"


def test_predictions_are_logged_with_line_time_and_probabilities(seeded_store):
    with seeded_store.connect() as con:
        before = probe.prediction_count(con)
    out = predict.predict_texts(seeded_store, M, ["房间很干净，服务很好", "太差了，再也不来了"], "ana",
                                business_line=["酒店", "酒店"], created_at=["2026-10-01 10:00", None])
    assert list(out.columns) == ["prediction_id", "text", "business_line", "label", "top_prob", "version",
                                 "p_正面", "p_负面"]
    assert out["label"].tolist() == ["正面", "负面"]
    assert np.allclose(out[["p_正面", "p_负面"]].sum(axis=1), 1)
    assert (out["top_prob"] == out[["p_正面", "p_负面"]].max(axis=1)).all()
    with seeded_store.connect() as con:
        assert probe.prediction_count(con) == before + 2
        logged = db.predictions_by_id(con, 1, out["prediction_id"].tolist())
    assert set(logged["business_line"]) == {"酒店"}
    with pytest.raises(InvalidInput, match="text 2 is empty"):
        predict.predict_texts(seeded_store, M, ["好", "  "], "ana")


def test_activation_takes_effect_on_the_next_prediction(seeded_store):
    train.train_version(seeded_store, M, "owner", model_config={"estimator": "complement_nb"})
    assert predict.predict_texts(seeded_store, M, ["不错"], "u")["version"].iloc[0] == 1
    registry.activate_version(seeded_store, M, 2, "owner", "naive Bayes for a day", force=True)  # worse: forced
    assert predict.predict_texts(seeded_store, M, ["不错"], "u")["version"].iloc[0] == 2


@pytest.mark.parametrize("strategy", [n for n in sampling.STRATEGIES if n != "disagreement"])  # needs a shadow: unit/test_shadow.py
def test_every_strategy_returns_k_unique_unlabelled_predictions(seeded_store, strategy):
    found = sampling.select_hard_examples(seeded_store, M, 25, "lab", strategy)
    ex = found.examples
    assert len(ex) == 25 and ex["prediction_id"].is_unique and ex["text"].is_unique
    assert found.strategy == strategy
    with seeded_store.connect() as con:
        labelled = con.execute("SELECT prediction_id FROM feedback").df()["prediction_id"]
        batch = probe.batch_row(con, found.batch_id)
    assert not ex["prediction_id"].isin(labelled).any()
    assert batch["strategy"] == strategy and list(batch["prediction_ids"]) == ex["prediction_id"].tolist()


def test_least_confidence_returns_the_lowest_top_probabilities(seeded_store):
    with seeded_store.connect() as con:
        pool = con.execute("""SELECT p.top_prob FROM predictions p WHERE p.text_key NOT IN
                              (SELECT text_key FROM feedback)""").df()["top_prob"]
    found = sampling.select_hard_examples(seeded_store, M, 20, "lab", "least_confidence", spread_lines=False).examples
    assert np.allclose(sorted(found["top_prob"]), sorted(pool.nsmallest(20)))
    margin = sampling.select_hard_examples(seeded_store, M, 5, "lab", "margin").examples
    gaps = (margin["p_正面"] - margin["p_负面"]).abs()
    assert np.allclose(sorted(gaps), sorted(2 * pool.nsmallest(5) - 1))  # two labels: gap = 2p - 1


def test_filters_and_exhausted_pool(seeded_store):
    found = sampling.select_hard_examples(seeded_store, M, 10, "lab", business_lines=["酒店"],
                                          since="2026-10-26", until="2026-10-27")
    ex = found.examples
    assert set(ex["business_line"]) <= {"酒店"}
    assert ex["created_at"].between(pd.Timestamp("2026-10-26"), pd.Timestamp("2026-10-27")).all()
    with pytest.raises(EmptyPool):
        sampling.select_hard_examples(seeded_store, M, 10, "lab", since="2030-01-01")
    with pytest.raises(InvalidInput, match="since must be a date"):
        sampling.select_hard_examples(seeded_store, M, 10, "lab", since="yesterday-ish")


def test_the_same_normalised_text_is_offered_once(seeded_store):
    text = "这个东西还行吧，说不上好也说不上坏"
    predict.predict_texts(seeded_store, M, [text, text.replace("，", ","), text + " "], "u",
                          business_line="数码")
    found = sampling.select_hard_examples(seeded_store, M, 2000, "lab").examples
    assert found["text"].str.replace("，", ",").str.strip().eq(text.replace("，", ",")).sum() == 1


def test_labels_become_training_rows_and_skip_does_not(seeded_store):
    ex = sampling.select_hard_examples(seeded_store, M, 3, "lab").examples
    with seeded_store.connect() as con:
        before = probe.table_counts(con)
    ids = feedback.record_labels(seeded_store, M, pd.DataFrame(
        {"prediction_id": ex["prediction_id"], "label": ["正面", "skip", "unclear"]}), "lab")
    with seeded_store.connect() as con:
        after = probe.table_counts(con)
    assert after["feedback"] == before["feedback"] + 3
    assert after["examples"] == before["examples"] + 1
    assert feedback.labelled_counts(seeded_store, M, user="lab") == {"正面": 1, "skip": 1, "unclear": 1}
    # a labelled prediction is never offered again
    again = sampling.select_hard_examples(seeded_store, M, 50, "lab").examples
    assert not again["prediction_id"].isin(ex["prediction_id"]).any()
    feedback.undo_labels(seeded_store, M, ids[:1], "lab")
    with seeded_store.connect() as con:
        assert probe.table_counts(con)["examples"] == before["examples"]


def test_bad_labels_change_nothing(seeded_store):
    ex = sampling.select_hard_examples(seeded_store, M, 2, "lab").examples
    with seeded_store.connect() as con:
        before = probe.table_counts(con)
    cases = [
        ({"prediction_id": ex["prediction_id"], "label": ["正面", "好评"]}, "label '好评' in row 3 is not one of"),
        ({"prediction_id": [ex["prediction_id"].iloc[0], 10 ** 9], "label": ["正面", "负面"]}, "no prediction 1000000000"),
        ({"prediction_id": ["abc", 1], "label": ["正面", "负面"]}, "not a number in row 2"),
    ]
    for rows, message in cases:
        with pytest.raises(InvalidInput, match=message):
            feedback.record_labels(seeded_store, M, pd.DataFrame(rows), "lab")
    feedback.label_prediction(seeded_store, M, int(ex["prediction_id"].iloc[0]), "正面", "lab")
    with pytest.raises(InvalidInput, match="already labelled"):
        feedback.label_prediction(seeded_store, M, int(ex["prediction_id"].iloc[0]), "负面", "lab")
    with seeded_store.connect() as con:
        assert probe.table_counts(con)["examples"] == before["examples"] + 1


def test_statistics_match_the_log(seeded_store):
    table = stats.stats_by_line_and_period(seeded_store, M, "day")
    with seeded_store.connect() as con:
        log = con.execute("SELECT p.*, f.label AS truth FROM predictions p LEFT JOIN feedback f "
                          "USING (prediction_id)").df()
    log["period"] = log["created_at"].dt.floor("D")
    assert table["volume"].sum() == len(log)
    row = table.sort_values("volume").iloc[-1]
    part = log[(log.business_line == row.business_line) & (log.period == row.period)]
    assert row.volume == len(part)
    assert row.mean_top_prob == pytest.approx(part.top_prob.mean())
    assert row.low_conf_share == pytest.approx((part.top_prob < 0.6).mean())
    assert row["share_正面"] == pytest.approx((part.label == "正面").mean())
    labelled = part[part.truth.notna()]
    assert row.labelled == len(labelled)
    assert "accuracy" not in table.columns  # estimated, audited and hard-example accuracy, never merged
    weekly = stats.stats_by_line_and_period(seeded_store, M, "week", by_line=False)
    assert set(weekly["business_line"]) == {"(all)"} and weekly["volume"].sum() == len(log)


def test_slices_without_labels_or_with_one_class_have_empty_metrics(seeded_store):
    predict.predict_texts(seeded_store, M, ["很好", "很差"], "u", business_line="新业务",
                          created_at="2026-11-20 12:00")
    table = stats.stats_by_line_and_period(seeded_store, M, "day", business_lines=["新业务"])
    assert len(table) == 1 and table["labelled"].iloc[0] == 0
    assert pd.isna(table["audited_accuracy"].iloc[0]) and pd.isna(table["hard_example_accuracy"].iloc[0])
    assert pd.isna(table["macro_f1"].iloc[0])
    ids = predict.predict_texts(seeded_store, M, ["好极了"], "u", business_line="单类",
                                created_at="2026-11-20 12:00")["prediction_id"]
    feedback.label_prediction(seeded_store, M, int(ids.iloc[0]), "正面", "lab")
    one = stats.stats_by_line_and_period(seeded_store, M, "day", business_lines=["单类"])
    assert one["labelled"].iloc[0] == 1 and pd.isna(one["macro_f1"].iloc[0])
    assert stats.stats_by_line_and_period(seeded_store, M, "day", since="2031-01-01").empty


def test_a_running_period_is_left_out_of_the_headline():
    frame = pd.DataFrame({"period": pd.to_datetime(["2026-11-09", "2026-11-16", "2026-11-23"]),
                          "volume": [100, 120, 3], "mean_top_prob": [0.7, 0.8, 0.9],
                          "low_conf_share": [0.2, 0.1, 0.0]})
    complete, running = stats.without_running_period(frame, "week", now="2026-11-24 10:00")
    assert running == pd.Timestamp("2026-11-23") and complete["volume"].tolist() == [100, 120]
    head = stats.compare_last_periods(complete)
    assert head["volume"] == (120, 20) and head["low_conf_share"] == (0.1, -0.1)
    assert stats.without_running_period(frame, "week", now="2026-12-01")[1] is None


def test_macro_f1_per_slice_matches_scikit_learn(seeded_store):
    from sklearn.metrics import f1_score

    table = stats.stats_by_line_and_period(seeded_store, M, "week")
    with seeded_store.connect() as con:
        log = con.execute("SELECT p.business_line, p.created_at, p.label, f.label AS truth FROM predictions p "
                          "JOIN feedback f USING (prediction_id)").df()
    log["period"] = log["created_at"].dt.to_period("W-SUN").dt.start_time
    checked = 0
    for row in table.dropna(subset=["macro_f1"]).itertuples():
        part = log[(log.business_line == row.business_line) & (log.period == row.period)]
        labels = sorted(set(part.truth) | set(part.label))
        assert row.macro_f1 == pytest.approx(f1_score(part.truth, part.label, labels=labels, average="macro"))
        checked += 1
    assert checked > 0


def test_two_labellers_on_one_prediction_at_once_leave_one_label(seeded_store):
    from concurrent.futures import ThreadPoolExecutor

    from core.errors import MMSError

    pid = int(sampling.select_hard_examples(seeded_store, M, 1, "lab").examples["prediction_id"].iloc[0])

    def label(who):
        try:
            return feedback.label_prediction(seeded_store, M, pid, "正面", who)
        except MMSError as e:
            return str(e)

    results = list(ThreadPoolExecutor(4).map(label, ["a", "b", "c", "d"]))
    assert sum(isinstance(r, int) for r in results) == 1, results
    with seeded_store.connect() as con:
        assert con.execute("SELECT count(*) FROM feedback WHERE prediction_id = ?", [pid]).fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM examples WHERE prediction_id = ?", [pid]).fetchone()[0] == 1
