"""Alerts (issue 26): thresholds per model raise alerts once, an owner or analyst acknowledges them,
and a webhook receives them as JSON, retried after an outage, every attempt recorded."""
import threading
import time

import pandas as pd
import pytest

from conftest import WORSE_CONFIG
from core import alerts, demo, policy, predict, registry
from core.errors import AlertNotFound, InvalidInput, ModelNotFound, PermissionDenied
from servers import free_port
from webhook import Receiver

MODEL = demo.MODEL


def until(condition, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "waited too long"
        time.sleep(0.05)


def table(store, **kw) -> pd.DataFrame:
    return alerts.alerts_table(store, MODEL, **kw)


def test_thresholds_raise_each_alert_once(seeded_store):
    assert alerts.check_model(seeded_store, MODEL) == []  # all off by default
    alerts.set_settings(seeded_store, MODEL, "olga", estimated_below=0.99, audited_upper_below=0.99)
    raised = alerts.check_model(seeded_store, MODEL)
    kinds = {a.kind for a in raised}
    assert kinds == {"estimated_accuracy", "audited_upper"}
    overall = next(a for a in raised if a.kind == "estimated_accuracy" and a.subject == "(all) 2026-10-26")
    assert "estimated accuracy" in overall.message and "on all lines, the week of 2026-10-26, below 99%" in overall.message
    assert all(a.state == "open" and a.delivery == "none" for a in raised)
    assert alerts.check_model(seeded_store, MODEL) == []  # raised once
    assert len(table(seeded_store)) == len(raised)
    assert "alert" in set(registry.events_table(seeded_store, MODEL)["action"])


def test_a_fall_in_volume_against_the_period_before(seeded_store):
    reviews = demo.load_reviews().sample(200, random_state=3)
    predict.predict_texts(seeded_store, MODEL, reviews["text"].tolist(), "lars", business_line="酒店",
                          created_at=[pd.Timestamp("2026-10-21 09:00")] * len(reviews))
    alerts.set_settings(seeded_store, MODEL, "olga", volume_drop_percent=30)
    raised = {a.subject: a for a in alerts.check_model(seeded_store, MODEL)}
    assert "酒店 2026-10-26" in raised and "down" in raised["酒店 2026-10-26"].message
    assert raised["酒店 2026-10-26"].details["volume_before"] > raised["酒店 2026-10-26"].details["volume"]
    assert "数码 2026-10-26" not in raised  # a line whose volume did not fall


def test_drift_flagged_on_a_line(seeded_store):
    reviews = demo.load_reviews().sample(80, random_state=5)
    predict.predict_texts(seeded_store, MODEL, reviews["text"].tolist(), "lars", business_line="外卖",
                          created_at=[pd.Timestamp("2026-10-28 10:00")] * len(reviews))
    alerts.set_settings(seeded_store, MODEL, "olga", drift=True)
    raised = alerts.check_model(seeded_store, MODEL)
    assert any(a.kind == "drift" and a.subject.startswith("外卖 2026-10-26") for a in raised)


def test_a_policy_run_refused_by_the_guard_is_an_alert_unless_turned_off(seeded_store):
    registry.update_model(seeded_store, MODEL, "olga", model_config=WORSE_CONFIG)
    alerts.set_settings(seeded_store, MODEL, "olga", policy_refused=False)
    policy.set_policy(seeded_store, MODEL, "olga", enabled=True, new_labels=10)
    policy.check_model(seeded_store, MODEL)
    assert policy.runs_table(seeded_store, MODEL).iloc[0]["state"] == "refused"
    assert table(seeded_store).empty


def test_an_owner_or_analyst_acknowledges_an_alert_once(team):
    alerts.set_settings(team, MODEL, "olga", estimated_below=0.99)
    first = alerts.check_model(team, MODEL)[0]
    with pytest.raises(PermissionDenied, match="lars is a labeller and may not acknowledge alerts"):
        alerts.acknowledge(team, first.alert_id, "lars")
    alerts.acknowledge(team, first.alert_id, "anna")
    row = table(team).set_index("alert_id").loc[first.alert_id]
    assert (row["state"], row["acknowledged_by"]) == ("acknowledged", "anna")
    with pytest.raises(InvalidInput, match=f"alert {first.alert_id} was acknowledged already, by anna"):
        alerts.acknowledge(team, first.alert_id, "olga")
    with pytest.raises(AlertNotFound, match="there is no alert 999999"):
        alerts.acknowledge(team, 999999, "olga")
    assert len(table(team, state="open")) == len(table(team)) - 1


def test_the_webhook_receives_each_alert_as_json(seeded_store):
    with Receiver() as receiver:
        alerts.set_settings(seeded_store, MODEL, "olga", webhook=receiver.url, estimated_below=0.99)
        raised = alerts.check_model(seeded_store, MODEL)
        assert all(a.delivery == "pending" for a in raised)
        alerts.deliver_due(seeded_store)
        assert len(receiver.bodies) == len(raised)
    body = next(b for b in receiver.bodies if b["alert_id"] == raised[0].alert_id)
    assert (body["model"], body["kind"], body["message"], body["state"], body["attempt"]) == (
        MODEL, raised[0].kind, raised[0].message, "open", 1)
    assert set(table(seeded_store)["delivery"]) == {"sent"}
    attempts = alerts.deliveries(seeded_store, raised[0].alert_id)
    assert attempts[["attempt", "ok", "status", "error"]].values.tolist() == [[1, True, 200, ""]]
    # the audit log names the webhook without its query, where tokens ride
    details = registry.events_table(seeded_store, MODEL).query("action == 'set_alerts'")["details"].iloc[0]
    assert "secret" not in details and f"127.0.0.1:{receiver.port}/hook" in details


def test_a_receiver_that_is_down_gets_the_alert_when_it_is_back(seeded_store, monkeypatch):
    monkeypatch.setenv("MMS_ALERT_RETRY_SECONDS", "0.05")
    port = free_port()  # nothing listens there yet: the receiver is down
    alerts.set_settings(seeded_store, MODEL, "olga", webhook=f"http://127.0.0.1:{port}/hook", estimated_below=0.99)
    alert = alerts.check_model(seeded_store, MODEL)[0]
    alerts.deliver_due(seeded_store)
    row = table(seeded_store).set_index("alert_id").loc[alert.alert_id]
    assert (row["state"], row["delivery"], row["attempts"]) == ("open", "pending", 1)  # kept, to be retried
    assert "the receiver could not be reached" in row["last_error"]
    with Receiver(port, status=[503, 200]) as receiver:  # back, but busy for one more answer
        until(lambda: alerts.deliver_due(seeded_store) >= 0 and
              table(seeded_store).set_index("alert_id").loc[alert.alert_id, "delivery"] == "sent")
    attempts = alerts.deliveries(seeded_store, alert.alert_id)
    assert attempts["ok"].tolist()[-1] and not any(attempts["ok"].tolist()[:-1])
    assert "HTTP 503" in " ".join(attempts["error"]) and len(attempts) >= 3
    assert alert.alert_id in {b["alert_id"] for b in receiver.bodies}


def test_a_delivery_that_keeps_failing_is_recorded_as_failed_and_kept(seeded_store, monkeypatch):
    monkeypatch.setenv("MMS_ALERT_RETRY_SECONDS", "0.01")
    monkeypatch.setenv("MMS_ALERT_ATTEMPTS", "3")
    with Receiver(status=500) as receiver:
        alerts.set_settings(seeded_store, MODEL, "olga", webhook=receiver.url, estimated_below=0.99)
        alert = alerts.check_model(seeded_store, MODEL)[0]
        until(lambda: alerts.deliver_due(seeded_store) >= 0 and
              table(seeded_store).set_index("alert_id").loc[alert.alert_id, "delivery"] == "failed")
    row = table(seeded_store).set_index("alert_id").loc[alert.alert_id]
    assert (row["state"], row["attempts"]) == ("open", 3)
    assert "HTTP 500" in row["last_error"] and "gave up after 3 attempts" in row["last_error"]


def test_two_delivery_passes_at_once_send_each_alert_once(seeded_store):
    """The server's sender and a due check by hand may deliver at the same moment."""
    with Receiver() as receiver:
        alerts.set_settings(seeded_store, MODEL, "olga", webhook=receiver.url, estimated_below=0.99)
        raised = alerts.check_model(seeded_store, MODEL)
        passes = [threading.Thread(target=alerts.deliver_due, args=(seeded_store,)) for _ in range(3)]
        for t in passes:
            t.start()
        for t in passes:
            t.join()
    assert sorted(b["alert_id"] for b in receiver.bodies) == sorted(a.alert_id for a in raised)


def test_the_sender_thread_never_makes_the_raiser_wait(seeded_store):
    with Receiver() as receiver:
        receiver.hold = threading.Event()  # the receiver takes its time answering
        alerts.set_settings(seeded_store, MODEL, "olga", webhook=receiver.url, estimated_below=0.99)
        sender = alerts.Sender(seeded_store).start()
        try:
            alert = alerts.raise_alert(seeded_store, MODEL, "estimated_accuracy", "by hand", "a test alert")
            assert alert.delivery == "pending" and receiver.bodies == []  # returned while the receiver still holds
            receiver.hold.set()
            until(lambda: alert.alert_id in {b["alert_id"] for b in receiver.bodies})
        finally:
            sender.stop()


@pytest.mark.parametrize("change, says", [
    ({"webhook": "ftp://example.com/hook"}, "a webhook URL must start with http:// or https://"),
    ({"webhook": "javascript:alert(1)"}, "a webhook URL must start with http:// or https://"),
    ({"webhook": "example.com/hook"}, "a webhook URL must start with http:// or https://"),
    ({"webhook": "http:///nohost"}, "name a host"),
    ({"estimated_below": 1.5}, "estimated_below must be a share above 0 and at most 1"),
    ({"estimated_below": -0.2}, "estimated_below must be a share above 0 and at most 1"),
    ({"audited_upper_below": "high"}, "audited_upper_below must be a number between 0 and 1"),
    ({"volume_drop_percent": 0}, "volume_drop_percent must be a percentage above 0 and at most 100"),
    ({"volume_drop_percent": 250}, "volume_drop_percent must be a percentage above 0 and at most 100"),
    ({"drift": "maybe"}, "drift must be on or off"),
    ({"period": "hour"}, "period must be one of day, week, month"),
])
def test_bad_alert_settings_get_a_sentence_and_change_nothing(seeded_store, change, says):
    alerts.set_settings(seeded_store, MODEL, "olga", estimated_below=0.8, webhook="https://hooks.example/x")
    before = (alerts.get_settings(seeded_store, MODEL), len(registry.events_table(seeded_store, MODEL)))
    with pytest.raises(InvalidInput) as e:
        alerts.set_settings(seeded_store, MODEL, "olga", **change)
    assert says in str(e.value)
    assert (alerts.get_settings(seeded_store, MODEL), len(registry.events_table(seeded_store, MODEL))) == before


def test_alerts_of_an_unknown_model_are_refused(seeded_store):
    with pytest.raises(ModelNotFound, match="unknown model 'nope'"):
        alerts.set_settings(seeded_store, "nope", "olga", drift=True)
    with pytest.raises(ModelNotFound):
        alerts.alerts_table(seeded_store, "nope")
