"""Statistics read rollups kept by the writes themselves: after any mix of writes (batches over
lines, days and versions, replayed past times, labels, undos, compactions) they must equal a
recomputation from the raw log, for every period, filter and low-confidence threshold."""
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from core import feedback, stats
from core import store as db
from core.registry import NOT_TRAINING_LABELS
from core.store import Store

M = "评论情感"
LINES = ["酒店", "图书", "新业务", "数码"]
BASE = pd.Timestamp("2026-09-20")


def _model_id(store) -> int:
    with store.connect() as con:
        return con.execute("SELECT model_id FROM models WHERE name = ?", [M]).fetchall()[0][0]


def _top_probs(rng, n: int) -> np.ndarray:
    """Probabilities of the first label, with whole hundredths and sums of them (0.7 + 0.1 is
    0.7999999999999999) mixed in: the values that sit on a low-confidence threshold."""
    p = rng.random(n)
    on_edge = rng.random(n) < 0.3
    p[on_edge] = (rng.integers(0, 80, n) / 100 + rng.integers(0, 21, n) / 100)[on_edge]
    return np.clip(p, 0, 1)


def _log_batch(store, rng, model_id: int) -> None:
    n = int(rng.integers(1, 40))
    p = _top_probs(rng, n)
    when = BASE + pd.to_timedelta(rng.integers(0, 45 * 86400, n), unit="s")
    frame = pd.DataFrame({"text": [f"文本{rng.integers(0, 300)}" for _ in range(n)],
                          "business_line": rng.choice(LINES, n), "label": np.where(p >= 0.5, "正面", "负面"),
                          "top_prob": np.maximum(p, 1 - p), "probs": np.c_[p, 1 - p].tolist(),
                          "created_at": when if rng.random() < 0.8 else None})  # None: logged now
    frame["norm_text"] = frame["text"]
    with store.transaction() as con:
        db.insert_predictions(con, model_id, int(rng.integers(1, 3)), frame, "test", "tester")


def _random_writes(store, rng, rounds: int = 5) -> None:
    model_id, given = _model_id(store), []
    for r in range(rounds):
        for _ in range(int(rng.integers(3, 8))):
            _log_batch(store, rng, model_id)
        with store.connect() as con:
            open_ids = [row[0] for row in con.execute(
                "SELECT prediction_id FROM predictions p WHERE NOT EXISTS "
                "(SELECT 1 FROM feedback f WHERE f.prediction_id = p.prediction_id)").fetchall()]
        chosen = rng.choice(open_ids, size=min(25, len(open_ids)), replace=False)
        labels = rng.choice(["正面", "负面", "正面", "负面", *NOT_TRAINING_LABELS], size=len(chosen))
        given += feedback.record_labels(store, M, pd.DataFrame({"prediction_id": chosen, "label": labels}), "tester")
        taken = [int(i) for i in rng.choice(given, size=min(6, len(given)), replace=False)]
        feedback.undo_labels(store, M, taken, "tester")
        given = [g for g in given if g not in taken]
        if r % 2:
            stats.compact_rollups(store)


def _recomputed(store, by: str, low: float, by_line: bool = True, business_lines=None, since=None,
                until=None, version=None) -> pd.DataFrame:
    """The statistics table computed in pandas from every logged prediction and its label."""
    with store.connect() as con:
        log = con.execute("""SELECT p.business_line, p.created_at, p.version, p.label, p.top_prob, f.label AS truth
                             FROM predictions p LEFT JOIN feedback f USING (prediction_id)""").df()
    keep = pd.Series(True, index=log.index)
    if business_lines:
        keep &= log["business_line"].isin(business_lines)
    if since is not None:
        keep &= log["created_at"] >= pd.Timestamp(since)
    if until is not None:
        keep &= log["created_at"] < pd.Timestamp(until)
    if version is not None:
        keep &= log["version"] == version
    log = log[keep].copy()
    freq = {"day": "D", "week": "W-SUN", "month": "M"}[by]
    log["period"] = log["created_at"].dt.to_period(freq).dt.start_time
    if not by_line:
        log["business_line"] = stats.ALL_LINES
    rows = []
    for (line, period), g in log.groupby(["business_line", "period"]):
        judged = g[g["truth"].notna() & ~g["truth"].isin(NOT_TRAINING_LABELS)]
        rows.append({"business_line": line, "period": period, "volume": len(g),
                     "mean_top_prob": g["top_prob"].mean(), "low_conf_share": (g["top_prob"] < low).mean(),
                     "labelled": len(judged),
                     "macro_f1": _macro_f1(judged["truth"], judged["label"]),
                     **{f"share_{c}": (g["label"] == c).mean() for c in ("正面", "负面")}})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    line_share = log.groupby("business_line")["label"].apply(lambda s: (s == "正面").mean())
    table["mix_shift"] = (table["share_正面"] - table["business_line"].map(line_share)).abs()  # two labels
    return table


def _macro_f1(truth: pd.Series, predicted: pd.Series) -> float:
    if truth.nunique() < 2:
        return np.nan
    scores = []
    for label in set(truth) | set(predicted):
        tp = ((truth == label) & (predicted == label)).sum()
        scores.append(2 * tp / ((truth == label).sum() + (predicted == label).sum()))
    return float(np.mean(scores))


def _assert_same(got: pd.DataFrame, expected: pd.DataFrame, case) -> None:
    keys = ["business_line", "period"]
    if expected.empty:
        assert got.empty, case
        return
    got = got.sort_values(keys).reset_index(drop=True)
    expected = expected.sort_values(keys).reset_index(drop=True)
    assert got[keys].astype(str).equals(expected[keys].astype(str)), case
    for col in expected.columns.drop(keys):
        np.testing.assert_allclose(got[col].astype(float), expected[col].astype(float), rtol=1e-9, atol=1e-12,
                                   equal_nan=True, err_msg=f"{col} for {case}")


def _slices(rng) -> list[dict]:
    """Slices with bounds at midnight, inside days, inside one day, open on either side."""
    hour = pd.Timedelta(hours=1)
    day_a, day_b = BASE + pd.Timedelta(days=int(rng.integers(3, 15))), BASE + pd.Timedelta(days=int(rng.integers(20, 40)))
    return [{}, {"business_lines": ["酒店", "新业务"]}, {"version": 2},
            {"since": day_a, "until": day_b},
            {"since": day_a + 7 * hour + pd.Timedelta(minutes=13), "until": day_b + 15 * hour, "version": 1},
            {"since": day_a + 3 * hour, "until": day_a + 20 * hour},
            {"since": day_a + 9 * hour, "until": day_a + pd.Timedelta(days=1, hours=4)},
            {"since": day_b + 11 * hour, "business_lines": ["图书"]}, {"until": day_a + 30 * hour}]


def test_statistics_equal_a_recomputation_from_the_log_after_random_writes(seeded_store):
    rng = np.random.default_rng(17)
    _random_writes(seeded_store, rng)
    thresholds = [0.6, 0.5, 0.8, 0.73, 0.99, 1.0, 0.655]  # 0.655 is between buckets: read from the log
    with seeded_store.connect():  # one open database for all the reads below
        _check_slices(seeded_store, rng, thresholds)


def _check_slices(seeded_store, rng, thresholds) -> None:
    for i, where in enumerate(_slices(rng)):
        for by in ("day", "week", "month"):
            low = thresholds[(i + len(by)) % len(thresholds)]
            case = (by, low, where)
            by_line, overall = stats.stats_by_line_and_overall(seeded_store, M, by, low_confidence=low, **where)
            _assert_same(by_line, _recomputed(seeded_store, by, low, **where), case)
            _assert_same(overall, _recomputed(seeded_store, by, low, by_line=False, **where), case)
            alone = stats.stats_by_line_and_period(seeded_store, M, by, low_confidence=low, by_line=False, **where)
            _assert_same(alone, overall, case)


def test_compaction_merges_rows_and_changes_no_figure(seeded_store):
    rng = np.random.default_rng(5)
    _random_writes(seeded_store, rng, rounds=2)
    for _ in range(4):  # written after the last compaction
        _log_batch(seeded_store, rng, _model_id(seeded_store))
    before = {by: stats.stats_by_line_and_period(seeded_store, M, by, low_confidence=0.7) for by in ("day", "month")}
    assert stats.compact_rollups(seeded_store) > 0
    assert stats.compact_rollups(seeded_store) == 0  # nothing left to merge
    for by, table in before.items():
        _assert_same(stats.stats_by_line_and_period(seeded_store, M, by, low_confidence=0.7), table, by)
        _assert_same(table, _recomputed(seeded_store, by, 0.7), by)


def test_a_bound_inside_a_day_counts_only_that_part_of_the_day(seeded_store):
    day = pd.Timestamp("2026-12-15")
    frame = pd.DataFrame({"text": ["早", "晚"], "norm_text": ["早", "晚"], "business_line": "边界",
                          "label": ["正面", "负面"], "top_prob": [0.9, 0.55], "probs": [[0.9, 0.1], [0.45, 0.55]],
                          "created_at": [day + pd.Timedelta(hours=9), day + pd.Timedelta(hours=15)]})
    with seeded_store.transaction() as con:
        db.insert_predictions(con, _model_id(seeded_store), 1, frame, "test", "tester")
    afternoon = stats.stats_by_line_and_period(seeded_store, M, "day", "边界", since=day + pd.Timedelta(hours=12))
    morning = stats.stats_by_line_and_period(seeded_store, M, "day", "边界", since=day,
                                             until=day + pd.Timedelta(hours=12))
    assert afternoon["volume"].tolist() == [1] and afternoon["low_conf_share"].tolist() == [1.0]
    assert morning["volume"].tolist() == [1] and morning["low_conf_share"].tolist() == [0.0]
    whole = stats.stats_by_line_and_period(seeded_store, M, "week", "边界", since=day, until=day + pd.Timedelta(days=1))
    assert whole["volume"].tolist() == [2]


def _before_migration(store, folder, migration: str, tables: list[str]) -> Path:
    """A copy of `store` as it was before `migration`: its tables dropped and its record deleted."""
    older = folder / "older.duckdb"
    shutil.copy(store.path, older)
    if Path(f"{store.path}.wal").exists():
        shutil.copy(f"{store.path}.wal", f"{older}.wal")
    con = duckdb.connect(str(older))
    con.execute("".join(f"DROP TABLE {t}; " for t in tables))
    con.execute("DELETE FROM schema_migrations WHERE name = ?", [migration])
    con.close()
    return older


def test_a_store_from_before_the_rollups_gets_them_from_its_log(seeded_store, tmp_path):
    rng = np.random.default_rng(3)
    _random_writes(seeded_store, rng, rounds=2)
    expected = _recomputed(seeded_store, "week", 0.6)
    older = _before_migration(seeded_store, tmp_path, "statistics rollups", ["prediction_rollups", "label_rollups"])
    _assert_same(stats.stats_by_line_and_period(Store(older), M, "week", low_confidence=0.6), expected, "migrated")
    overview = stats.prediction_overview(Store(older), M)
    assert sorted(overview["business_lines"]) == sorted(expected["business_line"].unique())


# The audited accuracy's counts as they were read before labelled_predictions (a frozen reference):
# the labels joined to the log itself.
AUDIT_FROM_THE_LOG = """
    WITH f AS (SELECT f.prediction_id, f.label AS truth FROM {decided} f
               WHERE f.model_id = ? AND NOT list_contains(?, f.label)
                 AND hash(f.prediction_id, 'mms-audit') < ? * 18446744073709551615.0),
    judged AS (SELECT p.business_line, date_trunc(?, p.created_at) AS period, p.label, f.truth
               FROM f JOIN predictions p USING (prediction_id) WHERE {where})
    SELECT business_line, period, count(*) AS audited, count(*) FILTER (WHERE truth = label) AS audit_correct
    FROM judged GROUP BY GROUPING SETS ((business_line, period), (period))"""


def _audit_matches_the_log(store, rng) -> None:
    model_id, keys = _model_id(store), ["business_line", "period"]
    with store.connect() as con:
        copied = con.execute("SELECT count(*), count(DISTINCT prediction_id) FROM labelled_predictions").fetchone()
        assert copied[0] == copied[1] > 0  # a prediction labelled again after an undo is not copied twice
        for where in _slices(rng):
            for share, by in ((1.0, "day"), (0.3, "week"), (0.6, "month")):
                got = db.audit_statistics(con, model_id, by, share, list(NOT_TRAINING_LABELS), **where)
                sql_where, args = db._prediction_filters(model_id, **where)
                expected = con.execute(AUDIT_FROM_THE_LOG.format(decided=db._DECIDED, where=sql_where),
                                       [model_id, list(NOT_TRAINING_LABELS), share, by] + args).df()
                sort = lambda t: t.sort_values(keys, na_position="first").reset_index(drop=True)
                pd.testing.assert_frame_equal(sort(got), sort(expected), check_dtype=False, obj=f"{share} {by} {where}")


def test_the_audited_counts_equal_the_labels_joined_to_the_log_after_labels_and_undos(seeded_store):
    rng = np.random.default_rng(23)
    _random_writes(seeded_store, rng, rounds=4)
    with seeded_store.connect() as con:  # an undone label's prediction, labelled again
        again = con.execute("""SELECT prediction_id FROM labelled_predictions
                               WHERE prediction_id NOT IN (SELECT prediction_id FROM feedback) LIMIT 3""").fetchall()
    assert again, "the random writes undid no label"
    feedback.record_labels(seeded_store, M, pd.DataFrame({"prediction_id": [i for (i,) in again], "label": "正面"}),
                           "tester")
    _audit_matches_the_log(seeded_store, rng)


def test_a_store_from_before_labelled_predictions_gets_them_from_its_log(seeded_store, tmp_path):
    rng = np.random.default_rng(29)
    _random_writes(seeded_store, rng, rounds=2)
    older = _before_migration(seeded_store, tmp_path, "labelled predictions' slice fields", ["labelled_predictions"])
    _audit_matches_the_log(Store(older), rng)


def test_hard_example_counts_are_the_labels_of_hard_batches_only_after_every_kind_of_label(seeded_store):
    """Labels of drawn hard examples count; the demo's, imported ones, a random batch's and an audit
    batch's do not, and an undone hard label leaves the count; per line x period and overall."""
    from core import monitoring, sampling

    rng = np.random.default_rng(31)
    _random_writes(seeded_store, rng, rounds=2)  # labels without a batch, as an import gives them
    given = {}
    for strategy in ("least_confidence", "margin", "random"):
        found = sampling.select_hard_examples(seeded_store, M, 15, "tester", strategy)
        labels = rng.choice(["正面", "负面", "unclear"], size=len(found.examples))
        given[strategy] = feedback.record_labels(
            seeded_store, M, pd.DataFrame({"prediction_id": found.examples["prediction_id"], "label": labels}),
            "tester", batch_id=found.batch_id)
    audit = monitoring.select_audit_batch(seeded_store, M, 10, "tester")
    feedback.record_labels(seeded_store, M, pd.DataFrame({"prediction_id": audit.examples["prediction_id"],
                                                          "label": "正面"}), "tester", batch_id=audit.batch_id)
    feedback.undo_labels(seeded_store, M, given["margin"][:3], "tester")
    with seeded_store.connect() as con:
        log = con.execute("""SELECT p.business_line, date_trunc('week', p.created_at) AS period, p.label, f.label AS truth
                             FROM feedback f JOIN predictions p USING (prediction_id)
                             JOIN sample_batches b ON b.batch_id = f.batch_id
                             WHERE b.strategy IN ('least_confidence', 'margin')
                               AND f.label NOT IN ('skip', 'unclear')""").df()
    assert 0 < len(log) < 30
    table = stats.stats_by_line_and_period(seeded_store, M, "week")
    assert table["labelled"].sum() > 3 * table["hard_labelled"].sum()  # the demo's and imported labels are many
    expected = log.assign(right=log["truth"] == log["label"]).groupby(["business_line", "period"])["right"].agg(
        ["size", "mean"])
    got = table.set_index(["business_line", "period"])
    for key, row in expected.iterrows():
        assert got.loc[key, "hard_labelled"] == row["size"]
        assert got.loc[key, "hard_example_accuracy"] == pytest.approx(row["mean"])
    assert got["hard_labelled"].sum() == len(log)
    overall = stats.stats_by_line_and_period(seeded_store, M, "week", by_line=False)
    assert overall["hard_labelled"].sum() == len(log)
