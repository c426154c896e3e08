"""Monitoring an analyst can trust: estimated accuracy near the truth on a calibrated model, a
random audit sample with a right Wilson interval, hard-example accuracy kept apart, and drift
that flags a new business line from its first week but leaves unchanged lines alone."""
import numpy as np
import pandas as pd
import pytest

from core import drift, feedback, imports, monitoring, predict, registry, stats, train
from core.errors import EmptyPool
from core.store import Store

M = "m"
LOGREG = {"estimator": "logreg"}
END = pd.Timestamp("2026-11-02")  # a Monday: four whole weeks before it
WEEKS = [END - pd.Timedelta(weeks=w) for w in (4, 3, 2, 1)]
NEW = "酒店"  # a line the model is trained without; it arrives in the last week


def _times(n: int, week_start: pd.Timestamp, rng) -> list:
    return [week_start + pd.Timedelta(seconds=int(s)) for s in rng.integers(0, 7 * 86400, n)]


@pytest.fixture(scope="module")
def world(tmp_path_factory, reviews):
    """A model trained without hotel reviews; four weeks of traffic on the other lines, and hotel
    reviews as a new line in the last week. Returns (store, truth: text -> label)."""
    from core import demo

    store = Store(tmp_path_factory.mktemp("monitoring") / "mms.duckdb")
    data = reviews.assign(business_line=reviews["text"].map(demo.business_line))
    old, new = data[data["business_line"] != NEW], data[data["business_line"] == NEW]
    registry.create_model(store, M, ["正面", "负面"], "tester", model_config=LOGREG)
    imports.import_frame(store, M, old.iloc[:1500], "test", "tester")
    imports.import_frame(store, M, old.iloc[1500:5500], "train", "tester")
    train.train_version(store, M, "tester")
    rng = np.random.default_rng(7)
    traffic = old.iloc[5500:5500 + 4 * 1200]
    for w, start in enumerate(WEEKS):
        week = traffic.iloc[w * 1200:(w + 1) * 1200]
        predict.predict_texts(store, M, week["text"].tolist(), "tester", business_line=week["business_line"].tolist(),
                              created_at=_times(len(week), start, rng), workers=1)
    arrivals = new.iloc[:400]
    predict.predict_texts(store, M, arrivals["text"].tolist(), "tester", business_line=NEW,
                          created_at=_times(len(arrivals), WEEKS[-1], rng), workers=1)
    return store, dict(zip(data["text"], data["label"]))


def true_weekly_accuracy(store, truth: dict):
    """Per business line × week, the share of logged predictions whose label is the text's true one."""
    with store.connect() as con:
        log = con.execute("SELECT business_line, date_trunc('week', created_at) AS period, text, label "
                          "FROM predictions").df()
    log["right"] = log["text"].map(truth) == log["label"]
    return log.groupby(["business_line", "period"])["right"].mean().rename("truth").reset_index()


def test_wilson_interval_matches_hand_computed_values():
    low, high = monitoring.wilson_interval([8, 0, 50], [10, 20, 100])
    # 8/10: centre (0.8 + z²/20) / (1 + z²/10) = 0.7168, half-width 0.2266
    np.testing.assert_allclose(low, [0.4902, 0.0, 0.4038], atol=1e-4)
    np.testing.assert_allclose(high, [0.9433, 0.1611, 0.5962], atol=1e-4)
    low, high = monitoring.wilson_interval([0], [0])
    assert np.isnan(low[0]) and np.isnan(high[0])  # no audited items: no interval, not 0..1


def test_estimated_accuracy_is_within_3_points_of_the_truth_per_line_and_week(world):
    """The issue's target: within ±3 points of the true accuracy for every line × week with at least 500
    predictions (here the 综合 line's four weeks, 530-580 each), and within 3 expected errors for
    every line × week of a line the model was trained on, however small."""
    store, truth = world
    version = registry.get_version(store, M)
    assert version.metrics["ece"] <= 0.05  # calibrated: the estimate may be read
    by_line, overall = stats.stats_by_line_and_overall(store, M, "week")
    true = true_weekly_accuracy(store, truth)
    # the new line is left out: the test split says nothing about texts from elsewhere, which is why
    # drift is flagged beside its estimate
    cells = by_line[by_line["business_line"] != NEW].merge(true.assign(period=pd.to_datetime(true["period"])),
                                                             on=["business_line", "period"])
    gap = cells["estimated_accuracy"] - cells["truth"]
    large = cells["volume"] >= 500
    assert large.sum() >= 4
    assert (gap[large].abs() <= 0.03).all(), cells[large]
    assert (gap.abs() <= 3 * cells["estimate_error"]).all(), cells.assign(gap=gap)
    assert cells["estimate_error"].between(0.005, 0.05).all()  # the traffic's and the held-out map's error
    assert overall.attrs["not_estimated"] == {}


def test_a_new_lines_interval_covers_its_true_accuracy_or_says_it_cannot_be_trusted(world):
    """The issue's repro: a line the model never saw was flagged as drift, yet its estimate (about 80 %
    here, against a true 66-73 %) claimed ± 2 pt with no note. Its interval now contains the truth and
    its note says why the estimate cannot be trusted there; the known lines keep a tight interval."""
    store, truth = world
    table, _ = stats.stats_with_drift(store, M, "week")
    true = true_weekly_accuracy(store, truth)
    cells = table.merge(true.assign(period=pd.to_datetime(true["period"])), on=["business_line", "period"])
    inside = (cells["estimate_low"] <= cells["truth"]) & (cells["truth"] <= cells["estimate_high"])
    new = cells[cells["business_line"] == NEW]
    assert len(new) == 1 and new["drift_flagged"].all()
    assert (new["estimated_accuracy"] - new["truth"] > 0.05).all()  # the estimate itself is still too high
    assert inside[new.index].all(), new[["estimated_accuracy", "estimate_low", "estimate_high", "truth"]]
    note = new["estimate_note"].iloc[0]
    assert note.startswith("cannot be trusted here") and "never saw" in note and "unlike any in the test split" in note
    known = cells[cells["business_line"] != NEW]
    assert (known["estimate_note"] == "").all()
    np.testing.assert_allclose(known["estimate_high"] - known["estimate_low"],  # no shift: as tight as before
                               2 * monitoring.Z95 * known["estimate_error"])
    assert inside[known.index].mean() >= 0.9

    by_line, overall = stats.stats_by_line_and_overall(store, M, "week")  # what the Monitor reads
    report = drift.drift_by_line_and_period(store, M, "week", by_line)
    shown, over = stats.with_shift(by_line, overall, report.cells)
    assert shown.loc[shown["business_line"] == NEW, "estimate_note"].iloc[0] == note
    last = over.sort_values("period").iloc[-1]
    plain = monitoring.Z95 * last["estimate_error"]
    assert last["estimate_low"] < last["estimated_accuracy"] - plain and NEW in last["estimate_note"]
    first = over.sort_values("period").iloc[0]  # before the new line arrived: not widened
    assert first["estimate_note"] == "" and first["estimate_high"] - first["estimate_low"] == \
        pytest.approx(2 * monitoring.Z95 * first["estimate_error"])


def test_the_shift_aware_interval_follows_its_documented_rule():
    """Not flagged: estimate ± 1.96 errors. Flagged: widened by the held-out check's gap and error on
    the supported share, chance..1 on the unsupported share. Flagged without a check: no interval."""
    lines = pd.DataFrame({"business_line": ["a", "b", "c"], "period": pd.to_datetime(["2026-10-05"] * 3),
                          "volume": [100, 100, 200], "estimated_accuracy": [0.9, 0.8, 0.85],
                          "estimate_error": [0.01, 0.02, 0.01], "drift_flagged": [False, True, True],
                          "drift_moved": ["", "texts", "texts"], "unsupported_share": [0.0, 0.5, np.nan],
                          "support_gap": [0.0, -0.03, np.nan], "support_se": [0.0, 0.02, np.nan],
                          "estimate_note": ["", "", ""]})
    overall = pd.DataFrame({"business_line": ["(all)"], "period": pd.to_datetime(["2026-10-05"]), "volume": [400],
                            "estimated_accuracy": [0.85], "estimate_error": [0.008], "estimate_note": [""]})
    got, over = monitoring.shift_aware(lines, overall, chance=0.5)
    z = monitoring.Z95
    assert got.loc[0, "estimate_low"] == pytest.approx(0.9 - z * 0.01) and got.loc[0, "estimate_note"] == ""
    spread = z * np.hypot(0.02, 0.02) + 0.03
    assert got.loc[1, "estimate_low"] == pytest.approx(0.5 * (0.8 - spread) + 0.5 * 0.5)
    assert got.loc[1, "estimate_high"] == pytest.approx(0.5 * (0.8 + spread) + 0.5)
    assert got.loc[1, "estimate_note"].startswith("cannot be trusted here: drift flagged (texts); 50%")
    assert np.isnan(got.loc[2, "estimate_low"]) and "no held-out check" in got.loc[2, "estimate_note"]
    below = (100 * (0.8 - z * 0.02 - got.loc[1, "estimate_low"]) + 200 * (0.85 - z * 0.01 - 0.5)) / 400
    assert over.loc[0, "estimate_low"] == pytest.approx(0.85 - z * 0.008 - below)
    assert "b, c" in over.loc[0, "estimate_note"]


def test_a_version_above_the_calibration_limit_shows_no_estimate_and_says_why(world, monkeypatch):
    store, _ = world
    monkeypatch.setenv("MMS_ESTIMATE_MAX_ECE", "0.0001")
    by_line, overall = stats.stats_by_line_and_overall(store, M, "week")
    assert by_line["estimated_accuracy"].isna().all() and overall["estimated_accuracy"].isna().all()
    assert "not calibrated" in overall.attrs["not_estimated"][1] and "MMS_ESTIMATE_MAX_ECE" in \
        overall.attrs["not_estimated"][1]
    assert overall["volume"].sum() > 0  # the rest of the statistics stay


def test_the_audit_sample_is_random_and_its_labels_give_the_audited_accuracy(world, tmp_path):
    import shutil

    source, truth = world
    shutil.copytree(source.path.parent, tmp_path / "copy")
    store = Store(tmp_path / "copy" / source.path.name)
    with store.connect() as con:
        log = con.execute("SELECT prediction_id, top_prob FROM predictions").df()
    audit = monitoring.select_audit_batch(store, M, 10_000, "tester")
    assert str(audit.strategy) == "audit"
    items = audit.examples
    assert 0.01 < len(items) / len(log) < 0.03  # about MMS_AUDIT_SHARE (2 %) of the log
    # random, not the hard examples: its confidence is the log's, not the lowest
    assert abs(items["top_prob"].mean() - log["top_prob"].mean()) < 0.03
    hard = log.nsmallest(len(items), "top_prob")
    assert items["top_prob"].mean() - hard["top_prob"].mean() > 0.1
    assert len(set(items["prediction_id"]) & set(hard["prediction_id"])) < 0.2 * len(items)

    labels = pd.DataFrame({"prediction_id": items["prediction_id"], "label": items["text"].map(truth)})
    feedback.record_labels(store, M, labels, "tester", batch_id=audit.batch_id)
    by_line, overall = stats.stats_by_line_and_overall(store, M, "month")
    expected = (items["text"].map(truth) == items["label"]).mean()
    assert overall["audited"].sum() == len(items)
    assert abs(overall["audit_items"].sum() - len(items)) < 4 * np.sqrt(len(items))  # the expected size
    audited = np.average(overall["audited_accuracy"], weights=overall["audited"])
    assert audited == pytest.approx(expected)
    assert (overall["hard_labelled"] == 0).all()  # audit labels are not hard examples
    with pytest.raises(EmptyPool, match="every audit item"):
        monitoring.select_audit_batch(store, M, 10, "tester")


def test_the_audited_accuracy_interval_contains_the_true_accuracy_in_19_of_20_line_weeks(tmp_path):
    """The issue's target, on 100 line × weeks whose true accuracy is known (0.70-0.97, 2,500
    predictions each): the audit sample at MMS_AUDIT_SHARE (about 50 items a cell) is drawn through
    the audit queue and labelled with the truth, and its Wilson 95 % interval must contain the cell's
    true accuracy. 100 cells, not 20: at 95 % coverage 20 cells miss twice or more about one time in
    four, while 100 cells fall below 90 covered about one time in fifty (and the seed is fixed)."""
    from core import store as db

    store = Store(tmp_path / "mms.duckdb")
    registry.create_model(store, M, ["正面", "负面"], "tester", model_config=LOGREG)
    rng = np.random.default_rng(14)
    cells = pd.DataFrame([(f"line{i}", END - pd.Timedelta(weeks=w)) for i in range(10) for w in range(1, 11)],
                         columns=["business_line", "period"]).assign(accuracy=lambda c: rng.uniform(0.7, 0.97, len(c)))
    per_cell = 2500
    traffic = cells.loc[cells.index.repeat(per_cell)].reset_index(drop=True)
    traffic["created_at"] = traffic["period"] + pd.to_timedelta(rng.integers(0, 7 * 86400, len(traffic)), unit="s")
    traffic["label"] = np.where(rng.random(len(traffic)) < 0.5, "正面", "负面")
    right = rng.random(len(traffic)) < traffic["accuracy"]
    traffic["truth"] = np.where(right, traffic["label"], np.where(traffic["label"] == "正面", "负面", "正面"))
    traffic["text"] = traffic["norm_text"] = [f"review {i}" for i in range(len(traffic))]
    traffic["top_prob"] = 0.8
    traffic["probs"] = [[0.8, 0.2] if label == "正面" else [0.2, 0.8] for label in traffic["label"]]
    with store.transaction() as con:
        model_id = registry.find_model(con, M).model_id
        traffic["prediction_id"] = db.insert_predictions(con, model_id, 1, traffic, "test", "tester")
    audit = monitoring.select_audit_batch(store, M, 10 ** 6, "tester").examples
    truth = traffic.set_index("prediction_id")["truth"]
    feedback.record_labels(store, M, pd.DataFrame({"prediction_id": audit["prediction_id"],
                                                   "label": audit["prediction_id"].map(truth).to_numpy()}),
                           "tester")
    true = traffic.assign(right=right).groupby(["business_line", "period"])["right"].mean().rename("truth")
    judged = stats.stats_by_line_and_period(store, M, "week").merge(true.reset_index(), on=["business_line", "period"])
    assert len(judged) == 100 and judged["audited"].between(25, 80).all()  # about 2 % of 2,500 each
    covered = (judged["audit_low"] <= judged["truth"]) & (judged["truth"] <= judged["audit_high"])
    assert covered.sum() >= 90, judged[~covered]  # 95 expected
    assert (judged["audit_high"] - judged["audit_low"]).mean() < 0.3  # an interval that says something


def test_a_new_business_line_is_flagged_in_its_first_week_and_unchanged_lines_are_not(world):
    store, _ = world
    by_line = stats.stats_by_line_and_period(store, M, "week")
    report = drift.drift_by_line_and_period(store, M, "week", by_line)
    cells = report.cells
    new = cells[cells["business_line"] == NEW]
    assert len(new) == 1 and new["flagged"].all() and new["period"].iloc[0] == WEEKS[-1]
    assert "never saw in training" in new["moved"].iloc[0]
    assert new["text_auc"].iloc[0] > 0.75  # its texts moved too, not only its name
    old = cells[cells["business_line"] != NEW]
    judged = old[old["status"] == "ok"]
    assert len(judged) >= 8 and not old["flagged"].any(), old[old["flagged"]][["business_line", "period", "moved"]]
    again = drift.drift_by_line_and_period(store, M, "week", by_line)  # from the cache: the same verdicts
    pd.testing.assert_frame_equal(again.cells, cells)


def test_a_known_line_whose_texts_change_is_flagged_against_the_training_reference(world, tmp_path, reviews):
    import shutil

    from core import demo

    source, _ = world
    shutil.copytree(source.path.parent, tmp_path / "copy")
    store = Store(tmp_path / "copy" / source.path.name)
    hotel = reviews[reviews["text"].map(demo.business_line) == NEW].iloc[400:700]
    later = END + pd.Timedelta(days=1)
    predict.predict_texts(store, M, hotel["text"].tolist(), "tester", business_line="数码",
                          created_at=[later] * len(hotel), workers=1)
    report = drift.drift_by_line_and_period(store, M, "week", stats.stats_by_line_and_period(store, M, "week"))
    shifted = report.cells[(report.cells["business_line"] == "数码") & (report.cells["period"] == END)]
    assert shifted["flagged"].all() and "texts" in shifted["moved"].iloc[0]
    earlier = report.cells[(report.cells["business_line"] == "数码") & (report.cells["period"] < END)]
    assert not earlier["flagged"].any()  # against the reference, not the previous week


def test_a_reference_window_with_too_few_predictions_says_so_instead_of_flagging(world):
    store, _ = world
    by_line = stats.stats_by_line_and_period(store, M, "week")
    tiny = (str(WEEKS[0]), str(WEEKS[0] + pd.Timedelta(hours=2)))
    report = drift.drift_by_line_and_period(store, M, "week", by_line, window=tiny)
    old = report.cells[report.cells["business_line"] != NEW]
    assert not old["flagged"].any()
    assert all("reference window has" in report.references[line] and "not judged" in report.references[line]
               for line in old["business_line"].unique())
    assert (old["status"].str.contains("not judged")).all()


def test_stats_in_the_cli_and_the_api_say_which_accuracy_is_which_and_carry_drift(world, tmp_path):
    import json
    import shutil
    import subprocess
    import sys

    from fastapi.testclient import TestClient

    from conftest import ROOT
    from core import api

    source, _ = world
    shutil.copytree(source.path.parent, tmp_path / "copy")
    store = Store(tmp_path / "copy" / source.path.name)
    proc = subprocess.run([sys.executable, "-m", "core", "--store", str(store.path), "--format", "json", "stats", M,
                           "--by", "week"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    new = [r for r in rows if r["business_line"] == NEW]
    assert new and all(r["drift_flagged"] and "never saw" in r["drift_moved"] for r in new)
    assert not any(r["drift_flagged"] for r in rows if r["business_line"] != NEW)
    assert {"estimated_accuracy", "estimate_low", "estimate_high", "estimate_note", "audited_accuracy", "audit_low",
            "audit_high", "hard_example_accuracy"} <= set(rows[0])
    assert all(r["estimate_note"].startswith("cannot be trusted") for r in new)
    table = subprocess.run([sys.executable, "-m", "core", "--store", str(store.path), "stats", M, "--no-drift"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "hard_example_accuracy: on labelled hard examples" in table.stderr and "biased" in table.stderr

    with TestClient(api.create_app(store), client=("127.0.0.1", 50000)) as client:
        answer = client.get(f"/models/{M}/stats", params={"by": "week"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body["accuracies"]) == {"estimated_accuracy", "audited_accuracy", "hard_example_accuracy"}
    assert body["reference"] == "training" and "never seen in training" in body["references"][NEW]
    assert [r["business_line"] for r in body["rows"] if r["drift_flagged"]] == [NEW]


def test_a_time_budget_leaves_uncached_cells_pending_and_a_full_pass_fills_the_cache(world):
    """The Monitor measures within a budget; what does not fit is pending (never flagged for drift,
    but a line the model never saw is still flagged) until a full pass (the server's) caches it."""
    store, _ = world
    by_line = stats.stats_by_line_and_period(store, M, "month")
    hurried = drift.drift_by_line_and_period(store, M, "month", by_line, budget_seconds=0)
    assert hurried.pending == len(by_line)
    known = hurried.cells[hurried.cells["business_line"] != NEW]
    assert (known["status"] == "not measured yet").all() and not known["flagged"].any()
    assert hurried.cells[hurried.cells["business_line"] == NEW]["flagged"].all()
    full = drift.drift_by_line_and_period(store, M, "month", by_line)
    assert full.pending == 0 and "not measured yet" not in set(full.cells["status"])
    cached = drift.drift_by_line_and_period(store, M, "month", by_line, budget_seconds=0)
    assert cached.pending == 0
    pd.testing.assert_frame_equal(cached.cells, full.cells)


def test_the_monitor_keeps_a_growing_cells_recent_measures_and_a_full_pass_measures_it_again(world, monkeypatch):
    """Under live traffic the open period's cells grow between any two renders: a render with
    keep_seconds uses measures taken within that time (no classifier fit), a pass without it
    (the CLI, the API, the server's) measures every cell that grew by a tenth again."""
    store, _ = world
    by_line = stats.stats_by_line_and_period(store, M, "month")
    first = drift.drift_by_line_and_period(store, M, "month", by_line)  # every cell cached now
    grown = by_line.assign(volume=by_line["volume"] * 2)
    fits, real = [], drift._measure
    monkeypatch.setattr(drift, "_measure", lambda *a: fits.append(a[-2]["business_line"]) or real(*a))
    kept = drift.drift_by_line_and_period(store, M, "month", grown, budget_seconds=2, keep_seconds=300)
    assert fits == [] and kept.pending == 0
    measured = first.cells["status"] != "not measured yet"
    pd.testing.assert_series_equal(kept.cells["text_auc"][measured], first.cells["text_auc"][measured])
    drift.drift_by_line_and_period(store, M, "month", grown, budget_seconds=None, keep_seconds=0)  # too old to keep; no time budget: the count, not the machine's speed, is under test
    assert len(fits) == len(grown)
    drift.drift_by_line_and_period(store, M, "month", by_line.assign(volume=by_line["volume"] * 4))
    assert len(fits) == 2 * len(grown)
