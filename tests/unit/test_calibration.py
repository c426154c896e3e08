"""Calibration that holds for many classes: ten topics' probabilities are neither under- nor
over-confident on the test split, so the Monitor shows an estimate; two classes stay as they were."""
import numpy as np
import pytest

from core import artifacts, estimators, imports, predict, registry, settings, stats, train
from core.calibration import MAP_NAMES, CalibratedScores, ScoreMap
from core.metrics import expected_calibration_error

from conftest import make_model
from topicfixtures import CLASSES, topic_frame

TOPICS = "新闻分类"


@pytest.fixture(scope="module")
def ten_classes(tmp_path_factory):
    """A ten-class model (3,000 generated titles to train, 2,000 to test) and its version 1,
    pinned to the config selection tries first."""
    from core.store import Store

    store = Store(tmp_path_factory.mktemp("topics") / "mms.duckdb")
    config = {"estimator": "linear_svc", "C": 0.5, "word_ngrams": [1, 2], "char_ngrams": [1, 3]}
    registry.create_model(store, TOPICS, CLASSES, "u", model_config=config)
    imports.import_frame(store, TOPICS, topic_frame(1, 3000), "train", "u")
    imports.import_frame(store, TOPICS, topic_frame(2, 2000), "test", "u")
    return store, train.train_version(store, TOPICS, "u")


def test_ten_classes_are_calibrated_within_three_points_on_the_test_split(ten_classes):
    _, v = ten_classes
    assert 0.7 < v.metrics["accuracy"] < 0.95  # a hard task: calibration matters
    assert v.metrics["ece"] <= 0.03
    high = [b for b in v.metrics["reliability"] if b["low"] >= 0.5 and b["count"] >= 50]
    assert high and all(abs(b["confidence"] - b["accuracy"]) < 0.08 for b in high)


def test_the_monitor_shows_the_estimate_for_a_ten_class_model(ten_classes):
    store, v = ten_classes
    texts = topic_frame(3, 200)["text"].tolist()
    predict.predict_texts(store, TOPICS, texts, "u", business_line="新闻")
    by_line, overall = stats.stats_by_line_and_overall(store, TOPICS, by="week")
    assert v.metrics["ece"] <= float(settings.get("estimate_max_ece"))
    assert overall.attrs["not_estimated"] == {}
    estimated = [c for c in overall.columns if c.startswith("estimated")]
    assert estimated and overall[estimated[0]].notna().all()


def test_the_map_is_chosen_among_the_multiclass_maps_by_cross_validation(ten_classes):
    store, v = ten_classes
    model = artifacts.load(store, v)["pipeline"].named_steps["clf"]
    assert set(model.cv_log_loss_) == {"temperature", "vector", "matrix"}  # no one-vs-rest map
    assert model.method_ == min(model.cv_log_loss_, key=model.cv_log_loss_.get)
    assert MAP_NAMES[model.method_] in v.data["calibration"]


def test_two_class_models_stay_as_well_calibrated_as_with_one_vs_rest_sigmoid(store, reviews):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline

    train_rows, test_rows, _ = make_model(store, reviews, n_train=2000, n_test=1000, config={"estimator": "logreg"})
    v = train.train_version(store, "m", "u")
    cut = artifacts.load(store, v)["tokenizer"].cut_many
    config = estimators.ModelConfig(estimator="logreg")
    before = Pipeline([("features", estimators.features(config)), ("clf", CalibratedClassifierCV(
        estimators.classifier(config), cv=StratifiedKFold(3, shuffle=True, random_state=config.seed)))])
    before.fit(cut(train_rows["text"]), train_rows["label"].tolist())
    proba = before.predict_proba(cut(test_rows["text"]))
    correct = before.classes_[proba.argmax(axis=1)] == test_rows["label"].to_numpy()
    assert v.metrics["ece"] <= expected_calibration_error(proba.max(axis=1), correct) + 0.005
    assert v.metrics["accuracy"] >= correct.mean() - 0.01


@pytest.mark.parametrize("method, k", [("sigmoid", 2), ("isotonic", 2), ("temperature", 4), ("vector", 4),
                                       ("matrix", 4)])
def test_every_map_gives_distributions_that_follow_the_scores(method, k):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, k, 600)
    scores = np.eye(k)[codes] * 2 + rng.normal(0, 1, (600, k))
    scores = scores[:, 1:] - scores[:, :1] if k == 2 else scores  # two classes: one score column
    proba = ScoreMap(method, k).fit(scores, codes).predict_proba(scores)
    assert proba.shape == (600, k) and np.allclose(proba.sum(axis=1), 1) and (proba >= 0).all()
    assert (proba.argmax(axis=1) == codes).mean() > 0.6


def test_a_calibrated_model_refuses_a_single_class():
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(ValueError, match="at least two classes"):
        CalibratedScores(LogisticRegression()).fit(np.zeros((9, 2)), np.array(["a"] * 9))
