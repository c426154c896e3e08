"""Hard examples worth their labels (issue 25) and drawn fast from any process (issue 24): the pool
reaches old texts, no business line takes more than its share by default, the default strategy
still finds the model's mistakes in a later round, and scores a version gave are kept in the store
for a new process and never served to another version."""
import math
import shutil

import numpy as np
import pandas as pd

from core import demo, feedback, predict, registry, sampling, train
from core.store import Store

M = demo.MODEL


def _unlabelled(store) -> pd.DataFrame:
    """Each unlabelled text's newest prediction: prediction_id, created_at, business_line, text."""
    with store.connect() as con:
        return con.execute("""SELECT max(prediction_id) AS prediction_id, max(created_at) AS created_at,
                                     any_value(business_line) AS business_line, any_value(text) AS text
                              FROM predictions WHERE text_key NOT IN (SELECT text_key FROM feedback)
                              GROUP BY text_key""").df()


def test_the_pool_reaches_old_texts_not_only_the_newest(seeded_store, monkeypatch):
    """A pool of 60 out of ~450 unlabelled texts: a sample of the whole history (half its texts older
    than the median), not the newest 60; a retrained version looks at another sample."""
    monkeypatch.setenv("MMS_HARD_EXAMPLE_POOL", "60")
    history = _unlabelled(seeded_store)
    assert len(history) > 5 * 60
    drawn = sampling.select_hard_examples(seeded_store, M, 60, "lab", "random", near_duplicate=None,
                                          spread_lines=False, record=False).examples
    assert len(drawn) == 60
    older = drawn["created_at"] < history["created_at"].median()
    assert older.mean() > 0.25  # the newest 60 would all be newer than the median
    train.train_version(seeded_store, M, "owner", model_config={"estimator": "complement_nb"})
    again = sampling.select_hard_examples(seeded_store, M, 60, "lab", "random", near_duplicate=None,
                                          spread_lines=False, record=False, for_version=2).examples
    assert set(again["prediction_id"]) != set(drawn["prediction_id"])


def test_no_line_takes_more_than_its_share_unless_told(seeded_store):
    """The seeded 酒店 line is 31 % of the unlabelled texts but holds almost half the 40 most
    uncertain: by default it gets its share of the batch (rounded up), the other lines the rest;
    `spread_lines=False` gives the strategy's own picks back."""
    shares = _unlabelled(seeded_store)["business_line"].value_counts(normalize=True)
    k = 40
    own = sampling.select_hard_examples(seeded_store, M, k, "lab", "least_confidence", spread_lines=False,
                                        record=False).examples["business_line"].value_counts()
    over = [line for line in own.index if own[line] > math.ceil(k * shares[line])]
    assert over  # the fixture: one line would take more than its share
    for strategy in ("least_confidence", "uncertain_spread"):
        spread = sampling.select_hard_examples(seeded_store, M, k, "lab", strategy,
                                               record=False).examples["business_line"].value_counts()
        assert spread.sum() == k
        assert all(spread[line] <= math.ceil(k * shares[line]) for line in spread.index), spread.to_dict()


def _one_kind(store, truth: dict, n: int) -> list[str]:
    """`n` copies of the review version 1 is least sure of but right about, each with another order
    number (as texts pasted with an id arrive): one kind of text, not near-duplicates by the check."""
    pool = sampling.select_hard_examples(store, M, 100_000, "lab", "least_confidence", spread_lines=False,
                                         record=False).examples
    right = pool[(pool["label"] == pool["text"].map(truth)) & (pool["text"].str.len() >= 20)]
    base = right.iloc[0]["text"]
    rng = np.random.default_rng(5)
    return [f"{base}（订单号{rng.integers(10 ** 7, 10 ** 8)}）" for _ in range(n)]


def test_the_default_strategy_still_finds_mistakes_in_a_later_round(seeded_store, tmp_path):
    """Sixty texts of one kind that version 1 answers right but unsure crowd the top of the ranking.
    Each strategy draws a batch, it is labelled, and the next batch is drawn: least confidence's
    second batch is mostly more of that kind, the default's reaches texts the model gets wrong."""
    truth = dict(zip(demo.load_reviews()["text"], demo.load_reviews()["label"]))
    family = _one_kind(seeded_store, truth, 60)
    logged = predict.predict_texts(seeded_store, M, family, "app", business_line="综合")
    truth.update(zip(logged["text"], logged["label"]))  # the model is right about every text of the kind
    shutil.copytree(seeded_store.path.parent, tmp_path / "copy")
    stores = {"least_confidence": seeded_store, "uncertain_spread": Store(tmp_path / "copy" / seeded_store.path.name)}
    mistakes = {}
    for strategy, store in stores.items():
        for _ in range(2):
            batch = sampling.select_hard_examples(store, M, 20, "lab", strategy, spread_lines=False).examples
            assert batch["text"].isin(truth).all()
            feedback.record_labels(store, M, pd.DataFrame({"prediction_id": batch["prediction_id"],
                                                           "label": batch["text"].map(truth)}), "lab")
        mistakes[strategy] = int((batch["label"] != batch["text"].map(truth)).sum())
    assert mistakes["uncertain_spread"] > mistakes["least_confidence"], mistakes


def _draw(store, version: int) -> pd.DataFrame:
    return sampling.select_hard_examples(store, M, 20, "lab", "least_confidence", for_version=version,
                                         record=False).examples


def test_scores_a_version_gave_are_reused_by_another_process_and_never_by_another_version(seeded_store,
                                                                                        monkeypatch):
    """Version 2 logged nothing: its first draw scores the pool and keeps the scores in the store. A new
    Store and an empty process cache (as in a new process) then score nothing and pick the same. Version
    3 is another model: it is never handed version 2's scores."""
    train.train_version(seeded_store, M, "owner", model_config={"estimator": "complement_nb"})
    scored, real = [], sampling.score_pool
    monkeypatch.setattr(sampling, "score_pool", lambda *a: scored.append(len(a[3])) or real(*a))
    monkeypatch.setattr(sampling, "_SCORES", sampling._ScoreCache(sampling.SCORES_KEPT))
    first = _draw(seeded_store, 2)
    assert len(scored) == 1 and scored[0] > 20

    monkeypatch.setattr(sampling, "_SCORES", sampling._ScoreCache(sampling.SCORES_KEPT))  # a new process
    elsewhere = Store(seeded_store.path)
    again = _draw(elsewhere, 2)
    assert len(scored) == 1  # nothing scored: read from the store
    pd.testing.assert_frame_equal(again, first)

    train.train_version(seeded_store, M, "owner", model_config={"estimator": "logreg"})
    by_v3 = _draw(elsewhere, 3)
    assert len(scored) == 2 and scored[1] == scored[0]  # the whole pool scored anew by version 3
    assert (by_v3["version"] == 3).all()
    proba = predict.score_texts(seeded_store, registry.get_version(seeded_store, M, 3),
                                registry.get_model(seeded_store, M).labels, by_v3["text"].tolist())
    assert np.allclose(by_v3["top_prob"], proba.max(axis=1))
