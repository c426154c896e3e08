"""Hard examples drawn faster without drawing anything else: a version's scores kept between draws
(after a retrain only the first draw scores the pool), never served for another version, and the
near-duplicate check over texts read only as far as the walk goes."""
import numpy as np
import pandas as pd
import pytest

from core import registry, sampling, train

M = "评论情感"
COLUMNS = ["prediction_id", "text", "label", "top_prob", "score"]


def _draw(store, version: int) -> pd.DataFrame:
    return sampling.select_hard_examples(store, M, 20, "lab", "least_confidence", for_version=version).examples


@pytest.fixture
def scored(monkeypatch) -> list[int]:
    """How many texts each call into the scoring function scored, with a fresh score cache."""
    monkeypatch.setattr(sampling, "_SCORES", sampling._ScoreCache(sampling.SCORES_KEPT))
    calls, real = [], sampling.score_pool
    monkeypatch.setattr(sampling, "score_pool", lambda *a: calls.append(len(a[3])) or real(*a))
    return calls


def _keep_nothing(store, monkeypatch) -> None:
    """Draws from here on keep no scores, in this process or in the store (none kept so far either)."""
    monkeypatch.setattr(sampling, "_SCORES", sampling._ScoreCache(0))
    monkeypatch.setattr(sampling, "_keep_in_store", lambda *a: None)
    monkeypatch.setattr(sampling, "keep_scores", lambda *a: None)
    with store.transaction() as con:
        con.execute("DELETE FROM version_scores")


def test_after_a_retrain_only_the_first_draw_scores_and_picks_the_same(seeded_store, scored, monkeypatch):
    """v2 logged nothing: its first draw scores the pool, the second scores nothing and picks the
    same texts with the same probabilities as a draw that keeps nothing."""
    train.train_version(seeded_store, M, "lab", model_config={"estimator": "complement_nb"})
    first = _draw(seeded_store, 2)
    assert len(scored) == 1 and scored[0] > len(first)
    second = _draw(seeded_store, 2)
    assert len(scored) == 1  # nothing scored again
    _keep_nothing(seeded_store, monkeypatch)
    uncached = _draw(seeded_store, 2)
    assert len(scored) == 2 and scored[1] == scored[0]
    for drawn in (first, second):
        pd.testing.assert_frame_equal(drawn[COLUMNS], uncached[COLUMNS])


def test_a_version_is_never_served_another_versions_scores(seeded_store, scored, monkeypatch):
    """v2 and v3 are different models: v3's draw after v2's scores the whole pool itself and picks
    what v3 picks, not what v2 scored."""
    train.train_version(seeded_store, M, "lab", model_config={"estimator": "complement_nb"})
    train.train_version(seeded_store, M, "lab", model_config={"estimator": "logreg"})
    by_v2 = _draw(seeded_store, 2)
    by_v3 = _draw(seeded_store, 3)
    assert len(scored) == 2 and scored[1] == scored[0]
    assert not by_v2[COLUMNS].equals(by_v3[COLUMNS])
    _keep_nothing(seeded_store, monkeypatch)
    pd.testing.assert_frame_equal(_draw(seeded_store, 3)[COLUMNS], by_v3[COLUMNS])


def test_the_cache_holds_at_most_its_rows(seeded_store, monkeypatch):
    """Bounded: with room for 5 rows, a draw over a larger pool keeps 5 and still picks the same."""
    train.train_version(seeded_store, M, "lab", model_config={"estimator": "complement_nb"})
    monkeypatch.setattr(sampling, "_SCORES", sampling._ScoreCache(5))
    small = _draw(seeded_store, 2)
    assert sum(map(len, sampling._SCORES._versions.values())) == 5
    _keep_nothing(seeded_store, monkeypatch)
    pd.testing.assert_frame_equal(small[COLUMNS], _draw(seeded_store, 2)[COLUMNS])


def test_picks_read_from_a_column_equal_picks_from_an_array():
    """The walk reads texts from a DataFrame column's array as from a numpy array: same picks."""
    rng = np.random.default_rng(3)
    base = "这家酒店的房间很干净，服务也非常周到，早餐种类不多但味道不错"
    texts = ["".join(rng.choice(list(base + "好差贵"), size=rng.integers(0, 30))) for _ in range(1500)]
    texts += [base] * 40 + [""] * 5
    order = rng.permutation(len(texts))
    column = pd.Series(texts, dtype="str").array
    for k in (1, 10, 700):
        assert sampling._pick(column, order, k, 0.9) == sampling._pick(np.array(texts, dtype=object), order, k, 0.9)


def test_a_newly_active_version_has_its_pool_scored_before_the_first_batch(seeded_store, scored, monkeypatch):
    """What the server's Prescorer does after an activation: the first batch by the new version then
    scores nothing, and the picks are the ones a draw without kept scores makes."""
    train.train_version(seeded_store, M, "lab", model_config={"estimator": "complement_nb"})
    registry.activate_version(seeded_store, M, 2, "owner", "retrained", force=True)
    prescorer = sampling.Prescorer(seeded_store, seconds=60)
    prescorer.once()
    assert len(scored) == 1 and scored[0] > 20
    first = sampling.select_hard_examples(seeded_store, M, 20, "lab").examples
    assert len(scored) == 1 and (first["version"] == 2).all()
    prescorer.once()  # the same active version: nothing looked at again
    assert len(scored) == 1
    _keep_nothing(seeded_store, monkeypatch)
    uncached = sampling.select_hard_examples(seeded_store, M, 20, "lab").examples
    pd.testing.assert_frame_equal(first[COLUMNS], uncached[COLUMNS])


def test_the_prescorer_scores_nothing_for_a_version_that_logged_its_pool(seeded_store, scored):
    """The demo's active version logged every pool text: its own answers, nothing to score."""
    assert sampling.prescore(seeded_store, M) == 0
    assert scored == []
