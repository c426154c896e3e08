"""The contract every query strategy keeps: one name in sampling and in the store's SQL, k
unique predictions from the unlabelled pool, the best by its score, and a clear error when the
pool is used up."""
import numpy as np
import pandas as pd
import pytest

from core import feedback, sampling
from core import store as db
from core.errors import EmptyPool, InvalidInput

import storeprobe as probe

M = "评论情感"


def _pool(store) -> pd.DataFrame:
    """Unlabelled predictions (the texts nobody labelled yet), with their probabilities."""
    with store.connect() as con:
        return con.execute("""SELECT prediction_id, text_key, probs FROM predictions
                              WHERE text_key NOT IN (SELECT text_key FROM feedback)""").df()


def test_sampling_and_the_store_know_the_same_strategies():
    assert set(sampling.STRATEGIES) == set(db.STRATEGY_SCORES)
    for name, strategy in sampling.STRATEGIES.items():
        assert str(strategy) == strategy.name == name
        assert strategy.description


@pytest.mark.parametrize("name", list(sampling.STRATEGIES))
def test_a_strategy_returns_k_unique_predictions_from_the_pool_and_records_its_name(seeded_store, name):
    pool = _pool(seeded_store)
    found = sampling.select_hard_examples(seeded_store, M, 30, "lab", sampling.STRATEGIES[name])
    ids = found.examples["prediction_id"]
    assert len(ids) == 30 and ids.is_unique and ids.isin(pool["prediction_id"]).all()
    with seeded_store.connect() as con:
        assert probe.batch_row(con, found.batch_id)["strategy"] == name == found.strategy


@pytest.mark.parametrize("name", [n for n, s in sampling.STRATEGIES.items() if s.score is not None])
def test_the_store_picks_the_best_by_the_strategys_own_score(seeded_store, name):
    strategy = sampling.STRATEGIES[name]
    pool = _pool(seeded_store)
    pool["score"] = strategy.score(np.array(pool["probs"].tolist()))
    found = sampling.select_hard_examples(seeded_store, M, 25, "lab", name).examples
    chosen = pool.set_index("prediction_id").loc[found["prediction_id"]]
    assert np.allclose(found["score"], chosen["score"])  # the SQL computes the same score
    passed_over = pool[~pool["text_key"].isin(chosen["text_key"])]
    assert passed_over["score"].max() <= chosen["score"].min() + 1e-12


def test_an_exhausted_pool_says_so_and_an_unknown_strategy_is_refused(seeded_store):
    rest = sampling.select_hard_examples(seeded_store, M, 100_000, "lab", "random").examples
    feedback.record_labels(seeded_store, M, pd.DataFrame({"prediction_id": rest["prediction_id"],
                                                          "label": "skip"}), "lab")
    for name in sampling.STRATEGIES:
        with pytest.raises(EmptyPool, match="no unlabelled predictions of '评论情感' match these filters"):
            sampling.select_hard_examples(seeded_store, M, 5, "lab", name)
    assert sampling.queue_size(seeded_store, M) == 0
    with pytest.raises(InvalidInput, match="strategy must be one of least_confidence, margin, entropy, random"):
        sampling.select_hard_examples(seeded_store, M, 5, "lab", "newest")
