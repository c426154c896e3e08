"""Issue 25: a model in the default mode ("auto") can be updated incrementally, keeping its
parent's selection and fitted features, and the owner chooses whether a full retrain re-selects."""
import numpy as np
import pandas as pd
import pytest

from conftest import make_model
from core import artifacts, feedback, predict, registry, selection, train
from core.errors import TrainingError

BUDGET = 3.0  # seconds of model selection: the first candidates, enough to have a choice and alternatives


def label_some(store, rest: pd.DataFrame, n: int, start: int = 0) -> pd.DataFrame:
    chosen = rest.iloc[start:start + n]
    logged = predict.predict_texts(store, "m", chosen["text"].tolist(), "u")
    feedback.record_labels(store, "m", pd.DataFrame({"prediction_id": logged["prediction_id"],
                                                     "label": chosen["label"].tolist()}), "labeller")
    return chosen


def test_an_incremental_update_of_a_default_model_keeps_its_parents_selection_and_features(store, reviews):
    _, _, rest = make_model(store, reviews)  # estimator "auto": the default mode
    v1 = train.train_version(store, "m", "u", budget=BUDGET)
    # the default mode's record: its choice among the scored alternatives, and what the owner asked
    record = v1.data["selection"]
    scored = [t["config"] for t in record["tried"] if "cv_macro_f1" in t]
    assert record["chosen"] == v1.model_config and record["chosen"] in scored and record["asked"] == "default (re-select)"
    new = label_some(store, rest, 60)
    plan = train.training_plan(store, "m")
    assert plan.incremental_possible, plan.reason
    v2 = train.train_version(store, "m", "u", incremental=True, activate=True)
    assert (v2.mode, v2.parent_version, v2.data["new_rows"]) == ("incremental", 1, 60)
    assert v2.model_config == v1.model_config  # no new search
    record = v2.data["selection"]
    assert record["reused"] == {"selected_in": 1, "from_version": 1, "why": "an incremental update keeps its parent's choice"}
    assert record["tried"] == v1.data["selection"]["tried"]  # the choice's alternatives stay on record
    assert v2.data["refit"]["rows"] == 360 and v2.data["rows_by_source"] == {"import": 300, "feedback": 60}
    before, after = (artifacts.load(store, v)["pipeline"] for v in (v1, v2))
    assert after.named_steps["features"].vocabulary_ == before.named_steps["features"].vocabulary_
    tokens = artifacts.load(store, v2)["tokenizer"].cut_many(new["text"])
    agree = lambda p: (p.predict(tokens) == new["label"].to_numpy()).mean()
    assert agree(after) >= agree(before)
    assert registry.versions_table(store, "m").set_index("version").loc[2, "selected"] == "parent's (incremental)"

    # a second round continues from v2 (active): the choice is still the one v1's search made
    label_some(store, rest, 40, start=60)
    v3 = train.train_version(store, "m", "u", incremental=True, activate=True)
    assert v3.data["selection"]["reused"]["selected_in"] == 1 and v3.data["selection"]["reused"]["from_version"] == 2
    with pytest.raises(TrainingError, match="no new labels since version 3"):
        train.train_version(store, "m", "u", incremental=True)


def test_a_pinned_non_sgd_config_is_still_refused_an_incremental_update(store, reviews):
    _, _, rest = make_model(store, reviews, config={"estimator": "linear_svc"})
    train.train_version(store, "m", "u")
    label_some(store, rest, 30)
    assert "cannot learn incrementally" in train.training_plan(store, "m").reason
    with pytest.raises(TrainingError, match="cannot learn incrementally"):
        train.train_version(store, "m", "u", incremental=True)


def test_the_owners_choice_to_refit_or_reselect_is_honoured_and_recorded(store, reviews, monkeypatch):
    _, _, rest = make_model(store, reviews)
    v1 = train.train_version(store, "m", "u", budget=BUDGET)
    assert v1.data["selection"]["asked"] == "default (re-select)"
    assert "re-selects by cross-validation" in train.training_plan(store, "m").full_retrain
    label_some(store, rest, 50)

    searched = []
    real_select = selection.select
    monkeypatch.setattr(selection, "select", lambda *a, **k: searched.append(1) or real_select(*a, **k))
    v2 = train.train_version(store, "m", "u", reselect=False)
    assert not searched  # refit: no model selection ran
    assert (v2.mode, v2.model_config) == ("full", v1.model_config)
    assert v2.data["selection"]["asked"] == "refit" and v2.data["selection"]["reused"]["selected_in"] == 1
    assert v2.data["rows"] == 350
    row = registry.versions_table(store, "m").set_index("version").loc[2]
    assert row["selected"] == "v1's choice, refit (no search)"
    assert "the owner chose to refit version 1's choice" in selection.why_chosen(v2)

    v3 = train.train_version(store, "m", "u", reselect=True, budget=BUDGET)
    assert searched == [1]
    assert v3.data["selection"]["asked"] == "re-select" and "reused" not in v3.data["selection"]

    with pytest.raises(TrainingError, match="keeps its parent's selection"):
        train.train_version(store, "m", "u", incremental=True, reselect=True)
    registry.update_model(store, "m", "tester", model_config={"estimator": "logreg"})
    with pytest.raises(TrainingError, match="nothing to re-select"):
        train.train_version(store, "m", "u", reselect=True)
    assert len(registry.list_versions(store, "m")) == 3  # the refusals changed nothing


def test_refit_without_an_active_version_selects_and_says_so(store, reviews):
    make_model(store, reviews)
    v1 = train.train_version(store, "m", "u", budget=BUDGET, reselect=False)
    assert "tried" in v1.data["selection"] and "no active version" in v1.data["selection"]["asked"]


def test_an_ordinal_model_in_the_default_mode_is_updated_the_same_way(store):
    from core import imports
    from gradedfixtures import GRADES, graded_frame

    rng = np.random.default_rng(25)
    registry.create_model(store, "g", GRADES, "tester", task="ordinal")
    imports.import_frame(store, "g", graded_frame(rng, 80), "test", "tester")
    imports.import_frame(store, "g", graded_frame(rng, 200), "train", "tester")
    v1 = train.train_version(store, "g", "tester", budget=BUDGET)
    imports.import_frame(store, "g", graded_frame(rng, 40), "train", "tester", "more.csv")
    v2 = train.train_version(store, "g", "tester", incremental=True)
    assert (v2.mode, v2.model_config, v2.data["new_rows"]) == ("incremental", v1.model_config, 40)
    assert v2.data["selection"]["scoring"] == "qwk" and "each grade threshold" in v2.data["calibration"]
    assert v2.metrics["ordinal"]["qwk"] > 0.5


def test_the_cli_and_the_api_pass_the_owners_refit_choice(store, reviews, capsys):
    import json

    from fastapi.testclient import TestClient

    from core import api, cli

    make_model(store, reviews)  # "auto"; version 1 given a config, so no search is needed to have a choice
    train.train_version(store, "m", "u", model_config={"estimator": "logreg"})
    assert cli.main(["--store", str(store.path), "--format", "json", "train", "m", "--refit"]) == 0
    printed = json.loads(capsys.readouterr().out)
    v2 = registry.get_version(store, "m", printed["version"])
    assert (v2.version, v2.model_config["estimator"], v2.data["selection"]["asked"]) == (2, "logreg", "refit")
    assert printed["selected"] == "v1's choice, refit (no search)"

    client = TestClient(api.create_app(store), client=("127.0.0.1", 50000))
    answer = client.post("/models/m/train", json={"reselect": False})
    assert answer.status_code == 201, answer.text
    v3 = registry.get_version(store, "m", answer.json()["version"])
    assert v3.data["selection"]["asked"] == "refit" and v3.data["selection"]["reused"]["from_version"] == 1
    refused = client.post("/models/m/train", json={"reselect": "sometimes"})
    assert refused.status_code == 422
