import numpy as np
import pandas as pd
import pytest

from core import artifacts, estimators, feedback, predict, registry, train
from core.errors import ArtifactError, InvalidInput, ModelExists, ModelNotFound, TrainingError, VersionNotFound

from conftest import make_model
import storeprobe as probe


def test_create_model_validates_and_refuses_duplicates(store):
    with pytest.raises(InvalidInput, match="at least two labels"):
        registry.create_model(store, "m", ["正面"], "u")
    with pytest.raises(InvalidInput, match="reserved"):
        registry.create_model(store, "m", ["正面", "skip"], "u")
    with pytest.raises(InvalidInput, match="estimator must be one of"):
        registry.create_model(store, "m", ["a", "b"], "u", model_config={"estimator": "bert"})
    registry.create_model(store, "m", ["a", "b"], "u")
    with pytest.raises(ModelExists):
        registry.create_model(store, "m", ["a", "b"], "u")
    with pytest.raises(ModelNotFound, match="unknown model 'x'; known models: m"):
        registry.get_model(store, "x")


def test_first_version_is_active_and_records_what_it_saw(store, reviews):
    make_model(store, reviews)
    v = train.train_version(store, "m", "owner")
    assert (v.version, v.status, v.mode, v.parent_version) == (1, "active", "full", None)
    assert v.data["rows_by_source"] == {"import": 300} and v.data["test_rows"] == 100
    assert len(v.data["fingerprint"]) == 64
    assert v.model_config["seed"] == 42
    m = v.metrics
    assert 0.6 < m["accuracy"] <= 1 and 0 < m["macro_f1"] <= 1 and m["log_loss"] > 0 and 0 <= m["ece"] < 1
    assert set(m["per_class"]) == {"正面", "负面"}
    assert np.array(m["confusion"]["matrix"]).sum() == 100
    assert sum(b["n"] for b in m["by_business_line"].values()) == 0  # imported without business lines


def test_same_data_config_and_seed_give_the_same_model(store, reviews):
    make_model(store, reviews)
    texts = reviews["text"].iloc[500:540].tolist()
    for config in ({"estimator": "logreg"}, {"estimator": "sgd"}, {"estimator": "linear_svc"}):
        a = train.train_version(store, "m", "u", model_config=config)
        b = train.train_version(store, "m", "u", model_config=config)
        assert a.data["fingerprint"] == b.data["fingerprint"]
        pa = predict.predict_texts(store, "m", texts, "u", version=a.version)
        pb = predict.predict_texts(store, "m", texts, "u", version=b.version)
        assert np.array_equal(pa["p_正面"].to_numpy(), pb["p_正面"].to_numpy()), config
        assert a.metrics == b.metrics


def test_every_estimator_trains(store, reviews):
    make_model(store, reviews)
    for estimator in estimators.ESTIMATORS:
        v = train.train_version(store, "m", "u", model_config={"estimator": estimator, "char_ngrams": [1, 2]})
        assert v.metrics["accuracy"] > 0.6, estimator


def test_incremental_update_learns_from_the_new_labels_only(store, reviews):
    train_rows, _, rest = make_model(store, reviews, config={"estimator": "sgd"})
    v1 = train.train_version(store, "m", "u")
    with pytest.raises(TrainingError, match="no new labels since version 1"):
        train.train_version(store, "m", "u", incremental=True)
    logged = predict.predict_texts(store, "m", rest["text"].iloc[:60].tolist(), "u")
    feedback.record_labels(store, "m", pd.DataFrame({"prediction_id": logged["prediction_id"],
                                                     "label": rest["label"].iloc[:60].tolist()}), "labeller")
    v2 = train.train_version(store, "m", "u", incremental=True, activate=True)
    assert (v2.mode, v2.parent_version, v2.data["new_rows"]) == ("incremental", 1, 60)
    assert v2.data["rows_by_source"] == {"import": 300, "feedback": 60}
    before = estimators.incremental_core(artifacts.load(store, v1)["pipeline"]).coef_
    after = estimators.incremental_core(artifacts.load(store, v2)["pipeline"]).coef_
    assert not np.allclose(before, after)
    # the 60 new labels went through partial_fit: the updated model agrees with them more
    tokens = artifacts.load(store, v2)["tokenizer"].cut_many(rest["text"].iloc[:60])
    agree = lambda v: (artifacts.load(store, v)["pipeline"].predict(tokens) == rest["label"].iloc[:60]).mean()
    assert agree(v2) >= agree(v1)
    # and an update that repeats on the same labels is refused: nothing new since v2
    with pytest.raises(TrainingError, match="no new labels since version 2"):
        train.train_version(store, "m", "u", incremental=True)


def test_incremental_is_refused_for_configs_that_cannot_learn_incrementally(store, reviews):
    make_model(store, reviews, config={"estimator": "logreg"})  # pinned: "auto" refits (tests/unit/test_default_model_updates.py)
    train.train_version(store, "m", "u")
    with pytest.raises(TrainingError, match="cannot learn incrementally"):
        train.train_version(store, "m", "u", incremental=True)


def test_training_with_one_class_is_refused(store, reviews):
    registry.create_model(store, "m", ["正面", "负面"], "u")
    with pytest.raises(TrainingError, match="at least two labels"):
        train.train_version(store, "m", "u")
    with store.connect() as con:
        assert probe.table_counts(con)["versions"] == 0


def test_activation_switches_atomically_and_is_audited(store, reviews):
    make_model(store, reviews)
    train.train_version(store, "m", "u")
    train.train_version(store, "m", "u", model_config={"estimator": "complement_nb"})
    assert registry.get_model(store, "m").active_version == 1
    # complement_nb scores below logreg here: the promotion guard needs it forced
    registry.activate_version(store, "m", 2, "owner", "better F1", force=True)
    statuses = {v.version: v.status for v in registry.list_versions(store, "m")}
    assert statuses == {1: "inactive", 2: "active"}
    # ... and v1, better overall, recalls one 负面 row of 40 fewer: the roll back is forced too
    registry.activate_version(store, "m", 1, "owner", "roll back", force=True)
    history = registry.activation_history(store, "m")
    assert history[["from_version", "to_version", "reason"]].values.tolist()[:2] == [
        [2, 1, "roll back"], [1, 2, "better F1"]]
    assert set(history["user"].iloc[:2]) == {"owner"}
    with pytest.raises(VersionNotFound):
        registry.activate_version(store, "m", 7, "owner")


def test_altered_or_missing_model_file_is_never_loaded_or_activated(store, reviews):
    make_model(store, reviews)
    v1 = train.train_version(store, "m", "u")
    v2 = train.train_version(store, "m", "u")
    path = store.path.parent / v2.artifact
    assert path.parent == store.artifacts_dir / str(v2.model_id)  # named by ids only
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(ArtifactError, match="version 2's model file has been altered"):
        registry.activate_version(store, "m", 2, "owner")
    path.unlink()
    with pytest.raises(ArtifactError, match="version 2's model file is missing"):
        predict.predict_texts(store, "m", ["不错"], "u", version=2)
    assert registry.get_model(store, "m").active_version == v1.version


def test_training_plan_counts_new_rows(seeded_store):
    plan = train.training_plan(seeded_store, "评论情感")
    assert plan.active_version == 1
    assert plan.rows_by_source["import"] == 400
    assert plan.new_since_active.get("feedback", 0) > 0
    assert not plan.incremental_possible and "cannot learn incrementally" in plan.reason
