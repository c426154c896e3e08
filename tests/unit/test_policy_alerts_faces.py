"""The policy and alerts through the command line (in this process) and the HTTP API (TestClient):
the same core, each mistake one sentence that changes nothing (issue 26)."""
import io
import json
import time

import pytest
from fastapi.testclient import TestClient

from core import alerts, api, cli, demo, policy
from webhook import Receiver

MODEL = demo.MODEL
LOCAL = ("127.0.0.1", 50000)  # an open store answers this machine only


def run(store, *args, code=0, user="olga"):
    out, err = io.StringIO(), io.StringIO()
    console = cli.Console(out=out, err=err, stdin=io.StringIO(), user="", token="", terminal=False,
                          ask_password=lambda prompt: pytest.fail(f"asked {prompt!r}"))
    argv = ["--store", str(store.path), "--user", user, *map(str, args)]
    got = cli.main(argv, console)
    assert got == code, err.getvalue()
    return out.getvalue(), err.getvalue()


def test_the_command_line_sets_a_policy_runs_a_due_check_and_lists_runs(seeded_store):
    out, _ = run(seeded_store, "policy", "show", MODEL, "--format", "json")
    assert json.loads(out)["enabled"] is False
    out, _ = run(seeded_store, "policy", "set", MODEL, "--on", "--new-labels", 50, "--format", "json")
    assert json.loads(out)["policy"].startswith("on: a full retrain when 50 new labels have arrived")
    out, _ = run(seeded_store, "policy", "check", "--format", "json")
    assert "activated" in json.loads(out)[0]["what"]
    out, _ = run(seeded_store, "policy", "runs", MODEL, "--format", "json")
    run_row = json.loads(out)[0]
    assert (run_row["trigger"], run_row["state"], run_row["version"], run_row["guard"]) == ("labels", "activated", 2, "passed")


@pytest.mark.parametrize("args, says", [
    (("policy", "set", MODEL, "--on", "--new-labels", 0), "new_labels must be a whole number from 1"),
    (("policy", "set", MODEL, "--every-hours", -3), "every_hours must be a number of hours"),
    (("policy", "set", MODEL, "--on"), "a policy that is on needs a trigger"),
    (("policy", "set", "nope", "--on", "--new-labels", 5), "unknown model 'nope'"),
    (("policy", "set", MODEL), "policy set needs at least one setting"),
    (("alerts", "set", MODEL, "--webhook", "ftp://example.com/x"), "a webhook URL must start with http:// or https://"),
    (("alerts", "set", MODEL, "--estimated-below", 85), "estimated_below must be a share above 0 and at most 1"),
    (("alerts", "ack", "seven"), "an alert id is a whole number, not 'seven'"),
])
def test_command_line_mistakes_are_one_sentence_and_change_nothing(seeded_store, args, says):
    _, err = run(seeded_store, *args, code=2)
    assert says in err and "Traceback" not in err
    assert policy.get_policy(seeded_store, MODEL) == policy.Policy()
    assert alerts.get_settings(seeded_store, MODEL) == alerts.AlertSettings()


def test_the_command_line_sets_alerts_lists_and_acknowledges_them(seeded_store):
    with Receiver() as receiver:
        run(seeded_store, "alerts", "set", MODEL, "--estimated-below", 0.99, "--webhook", receiver.url)
        out, _ = run(seeded_store, "policy", "check", "--format", "json")  # checks alert thresholds too, and sends
        assert "alert:" in json.loads(out)[0]["what"]
    out, _ = run(seeded_store, "alerts", "list", MODEL, "--state", "open", "--format", "json")
    listed = json.loads(out)
    assert listed and {a["delivery"] for a in listed} == {"sent"} and "url" not in listed[0]
    out, _ = run(seeded_store, "alerts", "ack", listed[0]["alert_id"], "--format", "json")
    assert json.loads(out)["state"] == "acknowledged"
    out, _ = run(seeded_store, "alerts", "deliveries", listed[0]["alert_id"], "--format", "json")
    assert [d["ok"] for d in json.loads(out)] == [True]
    assert len(receiver.bodies) == len(listed)


@pytest.fixture
def client(seeded_store):
    return TestClient(api.create_app(seeded_store), client=LOCAL)


def test_the_api_sets_a_policy_runs_it_and_lists_its_runs(client, seeded_store):
    assert client.get(f"/models/{MODEL}/policy").json()["enabled"] is False
    answer = client.put(f"/models/{MODEL}/policy", json={"enabled": True, "new_labels": 50})
    assert answer.status_code == 200 and answer.json()["new_labels"] == 50
    said = client.post(f"/models/{MODEL}/policy/check").json()["said"]
    assert said.endswith("running in the background")  # the request does not wait for the training
    deadline = time.monotonic() + 120
    while client.get(f"/models/{MODEL}/policy/runs").json()[0]["state"] in policy.OPEN_STATES:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    runs = client.get(f"/models/{MODEL}/policy/runs").json()
    assert runs[0]["state"] == "activated" and runs[0]["trigger"] == "labels"


@pytest.mark.parametrize("path, body, says", [
    ("policy", {"enabled": True, "new_labels": -1}, "new_labels"),
    ("policy", {"enabled": True}, "a policy that is on needs a trigger"),
    ("alert-settings", {"webhook": "file:///etc/passwd"}, "a webhook URL must start with http:// or https://"),
    ("alert-settings", {"volume_drop_percent": 300}, "volume_drop_percent"),
    ("alert-settings", {"colour": "red"}, "colour"),
])
def test_api_mistakes_are_a_sentence_and_change_nothing(client, seeded_store, path, body, says):
    answer = client.put(f"/models/{MODEL}/{path}", json=body)
    assert answer.status_code == 422 and says in answer.json()["error"]
    assert policy.get_policy(seeded_store, MODEL) == policy.Policy()
    assert alerts.get_settings(seeded_store, MODEL) == alerts.AlertSettings()


def test_the_api_lists_and_acknowledges_alerts(client, seeded_store):
    assert client.put(f"/models/{MODEL}/alert-settings", json={"estimated_below": 0.99}).status_code == 200
    alerts.check_model(seeded_store, MODEL)
    listed = client.get(f"/models/{MODEL}/alerts", params={"state": "open"}).json()
    assert listed and listed[0]["state"] == "open"
    first = listed[0]["alert_id"]
    assert client.post(f"/alerts/{first}/acknowledge").json()["state"] == "acknowledged"
    again = client.post(f"/alerts/{first}/acknowledge")
    assert again.status_code == 422 and "acknowledged already" in again.json()["error"]
    assert client.get("/models/nope/alerts").status_code == 404
    assert client.post("/alerts/999999/acknowledge").status_code == 404
