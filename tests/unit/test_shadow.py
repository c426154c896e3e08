"""Shadow versions: a version that scores the live predictions beside the active one, never answering."""
import json
import threading
import time

import numpy as np
import pandas as pd
import pytest

import storeprobe
from core import demo, feedback, predict, registry, shadow
from core import store as db
from core.errors import InvalidInput, ModelNotFound, PermissionDenied, VersionNotFound
from core.server import Server

M = demo.MODEL
LINES = ["书籍", "酒店", "综合"]


@pytest.fixture
def texts(reviews):
    return reviews["text"].iloc[-90:].tolist()  # reviews the seeded store never saw


@pytest.fixture
def calibrated_enough(monkeypatch):
    """Both versions' estimates shown: the small seeded store's versions miss the default calibration bar."""
    monkeypatch.setenv("MMS_ESTIMATE_MAX_ECE", "0.5")


def _log_count(store) -> int:
    with store.connect() as con:
        return storeprobe.prediction_count(con)


def _traffic(store, texts) -> pd.DataFrame:
    return predict.predict_texts(store, M, texts, "tester", business_line=[LINES[i % 3] for i in range(len(texts))])


def _shadow_answers(store, texts) -> np.ndarray:
    """Version 2's labels for `texts`, scored directly (what the shadow must have found)."""
    version = registry.get_version(store, M, 2)
    model = registry.get_model(store, M)
    return np.asarray(model.labels)[predict.score_texts(store, version, model.labels, texts).argmax(axis=1)]


def test_a_version_in_shadow_scores_what_was_logged_and_never_answers(worse_v2, texts, calibrated_enough):
    store = worse_v2
    started = shadow.start(store, M, 2, "tester")
    assert (started.model, started.version, started.by) == (M, 2, "tester")
    assert shadow.current(store, M) == 2
    before = _log_count(store)
    answers = _traffic(store, texts)
    assert (answers["version"] == 1).all()  # the active version answers, as before
    assert _log_count(store) == before + len(texts)  # answered = logged, nothing more
    assert shadow.pending(store, M) == len(texts)

    assert shadow.catch_up(store, M) == len(texts)
    assert shadow.catch_up(store, M) == 0  # nothing scored twice
    assert _log_count(store) == before + len(texts)  # the shadow logs no prediction of its own
    assert shadow.pending(store, M) == 0
    assert shadow.scored_since(store, M, started.since) == len(texts)
    assert shadow.scored_since(store, M, pd.Timestamp.now() + pd.Timedelta(hours=1)) == 0

    mine = _shadow_answers(store, texts)
    table = shadow.evidence(store, M, "day")
    assert list(table.columns) == shadow.EVIDENCE_COLUMNS
    assert sorted(table["business_line"]) == sorted(LINES) and table["n"].sum() == len(texts)
    for line, row in table.set_index("business_line").iterrows():
        mask = answers["business_line"].eq(line).to_numpy()
        assert row["agreement"] == pytest.approx(np.mean(mine[mask] == answers["label"].to_numpy()[mask]))
        assert row["disagreements"] == int(np.sum(mine[mask] != answers["label"].to_numpy()[mask]))
        assert row["active_versions"] == "v1" and row["shadow_version"] == 2
        assert 0 < row["active_estimate"] <= 1 and 0 < row["shadow_estimate"] <= 1
        assert row["active_estimate_error"] > 0 and row["shadow_estimate_error"] > 0
    whole = shadow.summary(store, M)
    assert whole["n"] == len(texts) and whole["in_shadow"] and whole["pending"] == 0
    assert whole["agreement"] == pytest.approx(np.mean(mine == answers["label"].to_numpy()))
    assert min(table["active_estimate"]) <= whole["active_estimate"] <= max(table["active_estimate"])


def test_where_the_two_disagree_the_labels_say_who_was_right(worse_v2, texts, monkeypatch):
    monkeypatch.setenv("MMS_AUDIT_SHARE", "1.0")  # every prediction in the audit sample
    store = worse_v2
    shadow.start(store, M, 2, "tester")
    answers = _traffic(store, texts)
    shadow.catch_up(store, M)
    mine = _shadow_answers(store, texts)
    differ = np.flatnonzero(mine != answers["label"].to_numpy())
    same = np.flatnonzero(mine == answers["label"].to_numpy())
    assert len(differ) >= 4, "version 2 was chosen to disagree with version 1"
    # two disagreements decided for the answer, the rest for the shadow; two agreements labelled wrong for both
    truth = {int(i): answers["label"][i] for i in differ[:2]} | {int(i): mine[i] for i in differ[2:4]}
    other = {label for label in registry.get_model(store, M).labels}
    truth |= {int(i): (other - {answers["label"][i]}).pop() for i in same[:2]}
    labels = pd.DataFrame({"prediction_id": [answers["prediction_id"][i] for i in truth], "label": list(truth.values())})
    feedback.record_labels(store, M, labels, "tester")

    whole = shadow.summary(store, M)
    assert whole["disagreements_labelled"] == 4
    assert whole["active_accuracy_on_disagreements"] == pytest.approx(0.5)
    assert whole["shadow_accuracy_on_disagreements"] == pytest.approx(0.5)
    assert whole["audited"] == 6
    assert whole["active_audited_accuracy"] == pytest.approx(2 / 6)
    assert whole["shadow_audited_accuracy"] == pytest.approx(2 / 6)
    table = shadow.evidence(store, M, "week")
    assert table["disagreements_labelled"].sum() == 4 and table["audited"].sum() == 6


def test_one_shadow_per_model_and_every_change_is_audited(worse_v2):
    store = worse_v2
    from core import train

    train.train_version(store, M, "tester", activate=False)  # version 3
    shadow.start(store, M, 2, "tester")
    shadow.start(store, M, 3, "olga")
    assert shadow.current(store, M) == 3 and shadow.status(store, M).by == "olga"
    shadow.start(store, M, 3, "olga")  # the same again: nothing changes
    assert shadow.stop(store, M, "olga") == 3
    assert shadow.current(store, M) is None
    assert shadow.stop(store, M, "olga") is None  # nothing in shadow: nothing changed
    events = registry.events_table(store, M)
    shadows = events[events["action"].str.startswith("shadow")].iloc[::-1]
    assert shadows["action"].tolist() == ["shadow_start", "shadow_start", "shadow_stop"]
    assert [json.loads(d) for d in shadows["details"]] == [{"version": 2, "replaced": None},
                                                           {"version": 3, "replaced": 2}, {"version": 3}]


@pytest.mark.parametrize("model, version, sentence", [
    (M, 9, f"model '{M}' has no version 9"),
    (M, 1, f"version 1 is the active version of '{M}': it answers already; put another version in shadow"),
    ("nope", 2, "unknown model 'nope'; known models: " + M),
    (M, "two", "the version must be a number like 2, not 'two'"),
])
def test_bad_input_gets_a_sentence_and_changes_nothing(worse_v2, model, version, sentence):
    store = worse_v2
    with store.connect() as con:
        before = storeprobe.table_counts(con)
    with pytest.raises((InvalidInput, VersionNotFound, ModelNotFound)) as refused:
        shadow.start(store, model, version, "tester")
    assert str(refused.value) == sentence
    with store.connect() as con:
        assert storeprobe.table_counts(con) == before
    assert shadow.current(store, M) is None


def test_an_analyst_may_not_put_a_version_in_shadow(team):
    from core import train

    train.train_version(team, M, "olga", activate=False)
    with pytest.raises(PermissionDenied):
        shadow.start(team, M, 2, "anna")
    assert shadow.current(team, M) is None
    shadow.start(team, M, 2, "olga")
    with pytest.raises(PermissionDenied):
        shadow.stop(team, M, "lars")
    assert shadow.current(team, M) == 2


def test_activating_the_version_in_shadow_ends_its_shadow_and_keeps_its_evidence(worse_v2, texts):
    store = worse_v2
    shadow.start(store, M, 2, "tester")
    _traffic(store, texts[:30])
    shadow.catch_up(store, M)
    registry.activate_version(store, M, 2, "tester", "the shadow convinced us", force=True)
    assert shadow.current(store, M) is None  # it answers now: nothing left to shadow
    _traffic(store, texts[30:60])
    assert shadow.catch_up(store, M) == 0
    registry.activate_version(store, M, 1, "tester", "back")
    assert shadow.current(store, M) is None  # a rollback does not bring the old shadow back
    assert shadow.evidence(store, M, "day")["n"].sum() == 30  # what it scored while in shadow, still readable
    assert shadow.summary(store, M)["in_shadow"] is False


def test_a_model_with_nothing_in_shadow_has_empty_evidence(seeded_store):
    assert shadow.evidence(seeded_store, M, "week").empty
    assert shadow.summary(seeded_store, M) is None
    assert shadow.current(seeded_store, M) is None and shadow.scored_since(seeded_store, M, "2020-01-01") == 0
    with pytest.raises(InvalidInput, match="the period must be one of day, week, month"):
        shadow.evidence(seeded_store, M, "year")


def test_the_server_scores_the_shadow_in_the_background(worse_v2, texts, monkeypatch):
    monkeypatch.setenv("MMS_SHADOW_SECONDS", "0.2")
    monkeypatch.setattr(shadow, "SCORER_START_SECONDS", 0.0)
    store = worse_v2
    shadow.start(store, M, 2, "tester")
    serving = Server(store, None)  # the server process: it holds the store and starts the scorer
    serving.start()
    try:
        answers = _traffic(store, texts)
        assert (answers["version"] == 1).all()
        deadline = time.monotonic() + 120  # a bound, not a timing: the server looks every 0.2 s here
        while shadow.pending(store, M) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert shadow.pending(store, M) == 0
        assert shadow.evidence(store, M, "day")["n"].sum() == len(texts)
    finally:
        serving.stop()
    deadline = time.monotonic() + 30
    while any(t.name == shadow.Scorer.name for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(t.name == shadow.Scorer.name for t in threading.enumerate())  # it ended with the serving


def _draw(store, texts):
    """What sampling hands a strategy's order: the pool (one prediction per text), the scoring version's
    probabilities for it, the store and the model."""
    from types import SimpleNamespace

    from core import store as db

    model = registry.get_model(store, M)
    answers = _traffic(store, texts)
    pool = answers[["prediction_id", "text", "business_line"]]
    active = registry.get_version(store, M, 1)
    proba = predict.score_texts(store, active, model.labels, pool["text"].tolist())
    return SimpleNamespace(store=store, model=model, pool=pool, proba=proba, k=10, seed=0), db


def test_the_disagreement_strategy_draws_the_texts_the_two_versions_label_differently(worse_v2, texts):
    from core import disagreement
    from core.errors import EmptyPool

    store = worse_v2
    with pytest.raises(EmptyPool, match="no version of '评论情感' is in shadow"):
        disagreement.order(_draw(store, texts[:5])[0])
    shadow.start(store, M, 2, "tester")
    draw, _ = _draw(store, texts)
    draw.scores = 1 - draw.proba.max(axis=1)
    shadow.catch_up(store, M)
    mine = _shadow_answers(store, texts)
    theirs = np.asarray(draw.model.labels)[draw.proba.argmax(axis=1)]
    differ = np.flatnonzero(mine != theirs)
    picked = disagreement.order(draw)
    assert sorted(picked.tolist()) == list(range(len(texts)))  # every text, the disagreements first
    assert sorted(picked[:len(differ)].tolist()) == differ.tolist()
    shadow_proba = predict.score_texts(store, registry.get_version(store, M, 2), draw.model.labels, texts)
    apart = disagreement.js_divergence(draw.proba[picked], shadow_proba[picked])
    assert (np.diff(apart[:len(differ)]) <= 1e-12).all()  # the two versions furthest apart first
    assert (np.diff(apart[len(differ):]) <= 1e-12).all()  # then the agreements, furthest apart first
    assert disagreement.js_divergence(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))[0] == pytest.approx(np.log(2))


def test_a_labeller_draws_the_disagreements_as_a_batch_of_hard_examples(worse_v2, texts):
    from core import sampling
    from core.errors import EmptyPool

    store = worse_v2
    assert "disagreement" in sampling.strategies_for(registry.get_model(store, M))
    with pytest.raises(EmptyPool, match="is in shadow"):
        sampling.select_hard_examples(store, M, 5, "tester", strategy="disagreement")
    shadow.start(store, M, 2, "tester")
    answers = _traffic(store, texts)
    shadow.catch_up(store, M)
    differ = set(answers["text"][_shadow_answers(store, texts) != answers["label"].to_numpy()])
    batch = sampling.select_hard_examples(store, M, len(differ), "tester", strategy="disagreement",
                                          near_duplicate=None, spread_lines=False)
    assert batch.strategy == "disagreement" and batch.batch_id is not None
    assert set(batch.examples["text"]) == differ  # the disagreements first
    more = sampling.select_hard_examples(store, M, len(differ) + 20, "tester", strategy="disagreement",
                                         near_duplicate=None, spread_lines=False, record=False).examples
    assert len(more) == len(differ) + 20 and more["prediction_id"].is_unique  # then the next most informative
    assert (batch.examples["version"] == 1).all()  # scored by the version the labels are for


def test_a_shadow_another_server_is_scoring_is_left_to_it_until_its_lease_lapses(worse_v2, texts):
    """Several servers on one DuckLake: the one holding a model's shadow lease scores it; another
    scores nothing meanwhile (it would write the same answers twice), and takes over once it lapses."""
    store = worse_v2
    shadow.start(store, M, 2, "tester")
    _traffic(store, texts)
    model_id = registry.get_model(store, M).model_id
    with store.transaction() as con:
        db.put_lease(con, shadow._lease(model_id), "another-host:4242:777", db.now() + pd.Timedelta(seconds=60))
    assert shadow.catch_up(store, M) == 0 and shadow.pending(store, M) == len(texts)
    with store.transaction() as con:  # that server stopped renewing it
        db.put_lease(con, shadow._lease(model_id), "another-host:4242:777", db.now() - pd.Timedelta(seconds=1))
    assert shadow.catch_up(store, M) == len(texts) and shadow.pending(store, M) == 0
