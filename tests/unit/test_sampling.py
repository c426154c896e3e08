"""The contract every query strategy keeps: k unique texts from the unlabelled pool, the best by
its own score as the chosen version scores them when the batch is drawn, near-duplicates passed
over, lines in turns on request, and a clear error when the pool is used up."""
import numpy as np
import pandas as pd
import pytest

from core import artifacts, estimators, feedback, predict, registry, sampling, train
from core.errors import EmptyPool, InvalidInput

import storeprobe as probe

M = "评论情感"


def _pool(store) -> pd.DataFrame:
    """Unlabelled texts, each as its newest prediction (what a batch is drawn from)."""
    with store.connect() as con:
        return con.execute("""SELECT max(prediction_id) AS prediction_id, any_value(text) AS text, text_key,
                                     any_value(business_line) AS business_line
                              FROM predictions WHERE text_key NOT IN (SELECT text_key FROM feedback)
                              GROUP BY text_key""").df()


def _probabilities(store, version: int, texts) -> np.ndarray:
    """The version's probabilities computed here, straight from its model file."""
    model = registry.get_model(store, M)
    artifact = artifacts.load(store, registry.get_version(store, M, version))
    tokens = artifact["tokenizer"].cut_many(list(texts))
    return estimators.predict_proba(artifact["pipeline"], tokens, model.labels)


def test_every_strategy_is_named_and_described():
    for name, strategy in sampling.STRATEGIES.items():
        assert str(strategy) == strategy.name == name
        assert strategy.description


@pytest.mark.parametrize("name", [n for n in sampling.STRATEGIES if n != "disagreement"])  # needs a shadow: unit/test_shadow.py
def test_a_strategy_returns_k_unique_predictions_from_the_pool_and_records_its_name(seeded_store, name):
    pool = _pool(seeded_store)
    found = sampling.select_hard_examples(seeded_store, M, 30, "lab", sampling.STRATEGIES[name])
    ids = found.examples["prediction_id"]
    assert len(ids) == 30 and ids.is_unique and ids.isin(pool["prediction_id"]).all()
    with seeded_store.connect() as con:
        assert probe.batch_row(con, found.batch_id)["strategy"] == name == found.strategy


@pytest.mark.parametrize("name", [n for n, s in sampling.STRATEGIES.items() if s.score and s.order is None])
def test_the_batch_is_the_best_by_the_strategys_own_score(seeded_store, name):
    strategy = sampling.STRATEGIES[name]
    pool = _pool(seeded_store)
    pool["score"] = strategy.score(_probabilities(seeded_store, 1, pool["text"]))
    found = sampling.select_hard_examples(seeded_store, M, 25, "lab", name, near_duplicate=None,
                                          spread_lines=False).examples
    chosen = pool.set_index("prediction_id").loc[found["prediction_id"]]
    assert np.allclose(found["score"], chosen["score"])
    passed_over = pool[~pool["prediction_id"].isin(found["prediction_id"])]
    assert passed_over["score"].max() <= chosen["score"].min() + 1e-12


def test_the_batch_follows_the_version_the_labels_are_for_not_the_logged_probabilities(seeded_store):
    """v1 logged every prediction; v2 (complement NB) ranks the pool differently; asking for v2 gets v2's picks."""
    train.train_version(seeded_store, M, "owner", model_config={"estimator": "complement_nb", "alpha": 1.0})
    pool = _pool(seeded_store)
    picks = {}
    for version in (1, 2):
        found = sampling.select_hard_examples(seeded_store, M, 20, "lab", "least_confidence", for_version=version,
                                              near_duplicate=None, spread_lines=False).examples
        score = 1 - _probabilities(seeded_store, version, pool["text"]).max(axis=1)
        best = pool.assign(score=score).sort_values(["score", "prediction_id"], ascending=[False, False])
        assert found["prediction_id"].tolist() == best["prediction_id"].head(20).tolist()
        assert (found["version"] == version).all()
        picks[version] = set(found["prediction_id"])
    assert picks[1] != picks[2]


def test_texts_a_labeller_skipped_come_after_every_other_text(seeded_store):
    first = sampling.select_hard_examples(seeded_store, M, 20, "lab").examples["prediction_id"].tolist()
    for prediction_id in first:  # the whole batch skipped on the Label page
        feedback.skip_prediction(seeded_store, M, prediction_id, "lab")
    again = sampling.select_hard_examples(seeded_store, M, 20, "lab").examples["prediction_id"].tolist()
    assert not set(again) & set(first)  # new texts, not the same twenty forever
    other = sampling.select_hard_examples(seeded_store, M, 20, "kim").examples["prediction_id"].tolist()
    assert other == first  # another labeller's queue is not changed by lab's skips


def test_identical_and_near_identical_texts_are_labelled_once(seeded_store):
    twins = ["这家酒店的房间很干净，服务也非常周到，下次还会再来住的。",
             "这家酒店的房间很干净，服务也非常周到，下次还会再来住的！",   # one character differs
             "这家酒店的房间很干净，服务也非常周到，下次还会再来住的。"]   # identical
    predict.predict_texts(seeded_store, M, twins, "u", business_line="酒店")
    everything = sampling.select_hard_examples(seeded_store, M, 100_000, "lab", "random", near_duplicate=None)
    assert everything.examples["text"].isin(twins).sum() == 2  # identical texts are one already
    for _ in range(2):  # drawn again: the first batch's texts are still unlabelled
        suppressed = sampling.select_hard_examples(seeded_store, M, 100_000, "lab", "random").examples
        assert suppressed["text"].isin(twins).sum() == 1


def test_balanced_batches_take_the_business_lines_in_turns(seeded_store):
    pool = _pool(seeded_store)
    lines = pool["business_line"].value_counts()
    assert len(lines) >= 3 and lines.min() >= 10  # the seeded store spreads its traffic over lines
    k = 3 * len(lines)
    found = sampling.select_hard_examples(seeded_store, M, k, "lab", "least_confidence", balance_lines=True).examples
    assert found["business_line"].value_counts().to_dict() == {line: 3 for line in lines.index}


def test_an_exhausted_pool_says_so_and_an_unknown_strategy_is_refused(seeded_store):
    rest = sampling.select_hard_examples(seeded_store, M, 100_000, "lab", "random", near_duplicate=None).examples
    feedback.record_labels(seeded_store, M, pd.DataFrame({"prediction_id": rest["prediction_id"],
                                                          "label": "skip"}), "lab")
    for name in sampling.STRATEGIES:
        with pytest.raises(EmptyPool, match="no unlabelled predictions of '评论情感' match these filters"):
            sampling.select_hard_examples(seeded_store, M, 5, "lab", name)
    assert sampling.queue_size(seeded_store, M) == 0
    with pytest.raises(InvalidInput, match="strategy must be one of least_confidence, margin, entropy, random"):
        sampling.select_hard_examples(seeded_store, M, 5, "lab", "newest")


def test_texts_the_scoring_version_answered_itself_are_not_scored_again(seeded_store, monkeypatch):
    """The seeded traffic was all answered by v1, the active version: its logged probabilities are
    v1's answer, so drawing a batch for v1 tokenises nothing; for another version it scores again."""
    from core import sampling, train

    def never(*args, **kwargs):
        raise AssertionError("scored again texts the version had answered itself")

    with monkeypatch.context() as m:
        m.setattr(sampling, "score_pool", never)
        own = sampling.select_hard_examples(seeded_store, M, 10, "lab", "least_confidence", near_duplicate=None)
    assert len(own.examples) == 10 and set(own.examples["version"]) == {1}
    train.train_version(seeded_store, M, "lab", model_config={"estimator": "complement_nb"})
    scored = []
    real = sampling.score_pool
    monkeypatch.setattr(sampling, "score_pool", lambda *a: scored.append(len(a[3])) or real(*a))
    other = sampling.select_hard_examples(seeded_store, M, 10, "lab", "least_confidence", for_version=2)
    assert scored and scored[0] > 0 and set(other.examples["version"]) == {2}


def _pairwise_picks(texts, order, k, threshold) -> list[int]:
    """The near-duplicate check as every pair's comparison: the reference the indexed one must equal."""
    picked, kept = [], []
    for i in order:
        mine = sampling._shingles(texts[i])
        if any(len(mine & other) >= threshold * len(mine | other) for other in kept):
            continue
        kept.append(mine)
        picked.append(int(i))
        if len(picked) == k:
            break
    return picked


def test_near_duplicates_are_the_ones_every_pair_compared_would_find():
    """Short texts over a few characters (similarities land on the thresholds exactly) and reviews
    with a few characters changed: the same picks, in the same order, at every threshold."""
    rng = np.random.default_rng(7)
    short = ["".join(rng.choice(list("好差房间干净 A"), size=rng.integers(0, 12))) for _ in range(400)]
    base = "这家酒店的房间很干净，服务也非常周到，早餐种类不多但味道不错，下次还会再来住的。"
    edited = []
    for _ in range(400):
        chars = list(base[:rng.integers(20, len(base) + 1)])
        for at in rng.integers(0, len(chars), size=rng.integers(0, 6)):
            chars[at] = rng.choice(list("好差贵便宜！。"))
        edited.append("".join(chars))
    texts = np.array(short + edited, dtype=object)
    order = rng.permutation(len(texts))
    for threshold in (0.2, 0.5, 0.6, 2 / 3, 0.75, 0.8, 0.9, 0.95, 1.0):
        picks = sampling._pick(texts, order, 300, threshold)
        assert picks == _pairwise_picks(texts, order, 300, threshold), threshold
    assert len(sampling._pick(texts, order, 800, 0.9)) < len(set(texts))  # the fixture has near-duplicates to pass over
