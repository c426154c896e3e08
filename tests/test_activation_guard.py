"""The promotion guard: a version worse than the active one is refused everywhere unless forced with a reason."""
import json

import pytest
from fastapi.testclient import TestClient

from core import api, cli, registry, train
from core.errors import InvalidInput, Regression

MODEL = "评论情感"


def last_activation(store) -> dict:
    events = registry.events_table(store, MODEL)
    return json.loads(events[events["action"] == "activate"].iloc[0]["details"])


def test_core_refuses_a_worse_version_with_what_regressed(worse_v2):
    before = len(registry.events_table(worse_v2, MODEL))
    with pytest.raises(Regression, match="version 2 is worse than version 1 on the same test set: accuracy") as e:
        registry.activate_version(worse_v2, MODEL, 2, "tester", "looks fine")
    assert "accuracy" in {r["what"] for r in e.value.regressions}
    assert registry.get_model(worse_v2, MODEL).active_version == 1
    assert len(registry.events_table(worse_v2, MODEL)) == before  # nothing written


def test_forcing_needs_a_reason_and_is_audited_as_forced(worse_v2):
    with pytest.raises(InvalidInput, match="needs a reason"):
        registry.activate_version(worse_v2, MODEL, 2, "tester", "  ", force=True)
    registry.activate_version(worse_v2, MODEL, 2, "tester", "hotel line first", force=True)
    assert registry.get_model(worse_v2, MODEL).active_version == 2
    details = last_activation(worse_v2)
    assert (details["forced"], details["reason"], details["from_version"]) == (True, "hotel line first", 1)
    assert {"what", "base", "candidate", "drop", "tolerance"} == set(details["regressions"][0])


def test_a_better_version_and_a_rollback_to_a_better_one_need_no_force(worse_v2):
    registry.activate_version(worse_v2, MODEL, 2, "tester", "try it", force=True)
    registry.activate_version(worse_v2, MODEL, 1, "tester", "roll back")  # version 1 is better than 2
    details = last_activation(worse_v2)
    assert registry.get_model(worse_v2, MODEL).active_version == 1 and "forced" not in details


def test_a_rollback_to_a_worse_version_is_a_regression_too(worse_v2):
    registry.activate_version(worse_v2, MODEL, 2, "tester", "try it", force=True)
    train.train_version(worse_v2, MODEL, "tester", model_config={"estimator": "complement_nb", "alpha": 1.0})
    registry.activate_version(worse_v2, MODEL, 1, "tester", "back to logreg")
    with pytest.raises(Regression, match="version 2 is worse than version 1"):
        registry.activate_version(worse_v2, MODEL, 2, "tester", "roll back to nb")


def test_tolerances_are_settings(worse_v2, monkeypatch):
    for name in ("MMS_GUARD_OVERALL", "MMS_GUARD_CLASS_RECALL", "MMS_GUARD_LINE_ACCURACY"):
        monkeypatch.setenv(name, "0.5")
    registry.activate_version(worse_v2, MODEL, 2, "tester", "within loose tolerances")
    assert "forced" not in last_activation(worse_v2)


def test_cli_activate_exits_2_with_the_sentence_and_changes_nothing(worse_v2, capsys):
    code = cli.main(["--store", str(worse_v2.path), "activate", MODEL, "2", "--reason", "why not"])
    err = capsys.readouterr().err
    assert code == 2 and "version 2 is worse than version 1" in err
    assert registry.get_model(worse_v2, MODEL).active_version == 1
    assert cli.main(["--store", str(worse_v2.path), "activate", MODEL, "2", "--force"]) == 2
    assert "needs a reason" in capsys.readouterr().err
    assert cli.main(["--store", str(worse_v2.path), "activate", MODEL, "2", "--force", "--reason", "on purpose"]) == 0
    assert registry.get_model(worse_v2, MODEL).active_version == 2 and last_activation(worse_v2)["forced"] is True


def test_cli_train_activate_keeps_a_refused_version_and_says_how_to_force(seeded_store, capsys):
    code = cli.main(["--store", str(seeded_store.path), "train", MODEL, "--config", '{"estimator": "complement_nb"}',
                     "--activate"])
    err = capsys.readouterr().err
    assert code == 2
    assert "version 2 was trained and kept but not activated" in err
    assert f"python -m core activate {MODEL} 2 --force --reason" in err
    assert [v.version for v in registry.list_versions(seeded_store, MODEL)] == [1, 2]
    assert registry.get_model(seeded_store, MODEL).active_version == 1


def test_cli_compare_prints_deltas_and_json(worse_v2, capsys):
    assert cli.main(["--store", str(worse_v2.path), "compare", MODEL, "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "version 2 beside version 1" in out and "per business line" in out and "regressions: accuracy" in out
    assert cli.main(["--store", str(worse_v2.path), "--format", "json", "compare", MODEL, "1", "2"]) == 0
    plain = json.loads(capsys.readouterr().out)
    v1, v2 = registry.get_version(worse_v2, MODEL, 1), registry.get_version(worse_v2, MODEL, 2)
    accuracy = next(d for d in plain["overall"] if d["measure"] == "accuracy")
    assert accuracy["delta"] == pytest.approx(v2.metrics["accuracy"] - v1.metrics["accuracy"])
    assert (plain["base"], plain["candidate"], plain["comparable"]) == (1, 2, True)


@pytest.fixture
def client(worse_v2):
    return TestClient(api.create_app(worse_v2), client=("127.0.0.1", 50000))  # an open store answers this machine


def test_api_answers_409_with_the_regressions_unless_forced(client, worse_v2):
    refused = client.post(f"/models/{MODEL}/versions/2/activate", json={"reason": "why not"})
    assert refused.status_code == 409
    assert "version 2 is worse than version 1" in refused.json()["error"]
    assert "accuracy" in {r["what"] for r in refused.json()["regressions"]}
    assert registry.get_model(worse_v2, MODEL).active_version == 1
    assert client.post(f"/models/{MODEL}/versions/2/activate", json={"force": True}).status_code == 422
    forced = client.post(f"/models/{MODEL}/versions/2/activate", json={"force": True, "reason": "A/B on hotels"})
    assert forced.status_code == 200 and forced.json()["status"] == "active"
    assert last_activation(worse_v2)["forced"] is True


def test_api_compare_route(client, worse_v2):
    answer = client.get(f"/models/{MODEL}/compare", params={"a": 1, "b": 2})
    assert answer.status_code == 200
    assert answer.json()["candidate"] == 2 and answer.json()["regressions"]
    assert client.get(f"/models/{MODEL}/compare", params={"a": 1, "b": 9}).status_code == 404


def test_training_with_activate_keeps_a_refused_version_inactive(seeded_store):
    with pytest.raises(Regression, match="version 2 was trained and kept but not activated") as e:
        train.train_version(seeded_store, MODEL, "tester", model_config={"estimator": "complement_nb"}, activate=True)
    assert e.value.version == 2
    versions = registry.list_versions(seeded_store, MODEL)
    assert [v.version for v in versions] == [1, 2]
    assert registry.get_model(seeded_store, MODEL).active_version == 1
    assert registry.activate_version(seeded_store, MODEL, 2, "tester", "nb anyway", force=True).status == "active"
