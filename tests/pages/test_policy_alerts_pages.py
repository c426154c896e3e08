"""The Train page's retraining policy and the Monitor's alerts (issue 26), in Streamlit's AppTest."""
from core import alerts, demo, policy
from pages import _alerts

MODEL = demo.MODEL


def button(at, label: str):
    return next(b for b in at.button if b.label == label)


def test_an_owner_sets_a_policy_and_runs_a_due_check_on_the_train_page(app, seeded_store):
    at = app("pages/train.py")
    assert not at.exception
    assert any("Policy off: nothing retrains by itself" in m.value for m in at.markdown)
    at.toggle(key="policy_enabled").set_value(True)
    at.number_input(key="policy_new_labels").set_value(50)
    button(at, "Save policy").click().run()
    assert not at.exception and not at.error
    assert policy.get_policy(seeded_store, MODEL).new_labels == 50
    at.button(key="policy_check").click().run()
    assert not at.exception and not at.error
    runs = next(d.value for d in at.dataframe if "guard" in d.value.columns)
    assert runs.iloc[0][["trigger", "state", "version", "guard"]].tolist() == ["labels", "activated", 2, "passed"]


def test_an_impossible_policy_is_a_sentence_on_the_train_page(app, seeded_store):
    at = app("pages/train.py")
    at.toggle(key="policy_enabled").set_value(True)  # on, but without a trigger
    button(at, "Save policy").click().run()
    assert [e.value for e in at.error] == ["a policy that is on needs a trigger: a number of new labels, drift, or "
                                           "a schedule in hours"]
    assert policy.get_policy(seeded_store, MODEL) == policy.Policy()


def alerts_line(at) -> str:
    """The Monitor's one-line alert summary."""
    return next(m.value for m in at.markdown if "Alerts:" in m.value)


def open_list(at) -> None:
    """Unfold the alert list, as a click on it does (the page draws the list only while it is open)."""
    at.session_state[_alerts.LISTING] = True
    at.run()
    assert not at.exception


def test_an_analyst_acknowledges_an_alert_on_the_monitor(app, seeded_store):
    alerts.set_settings(seeded_store, MODEL, "tester", estimated_below=0.99)
    raised = alerts.check_model(seeded_store, MODEL)
    at = app("pages/monitor.py", role="analyst")
    assert not at.exception
    assert f"**Alerts: {len(raised)} open**" in alerts_line(at) and "acknowledged" not in alerts_line(at)
    assert at.expander[0].label == "Alert list and thresholds"  # the list, folded below the line
    assert not [d for d in at.dataframe if "webhook" in d.value.columns]  # folded: not drawn at all
    open_list(at)
    shown = next(d.value for d in at.dataframe if "webhook" in d.value.columns)
    assert list(shown.columns) == ["#", "raised", "state", "kind", "webhook", "message"]  # readable, and it fits
    assert set(shown["state"]) == {"open"} and len(shown) == len(raised)
    assert set(shown["kind"]) == {"estimated accuracy"} and set(shown["webhook"]) == {"no webhook"}
    first = at.selectbox(key="alerts_pick").value
    at.button(key="alerts_ack").click().run()
    assert not at.exception
    row = alerts.alerts_table(seeded_store, MODEL).set_index("alert_id").loc[first]
    assert (row["state"], row["acknowledged_by"]) == ("acknowledged", "tester")
    assert f"Alerts: {len(raised) - 1} open" in alerts_line(at) or len(raised) == 1
    assert "1 acknowledged" in alerts_line(at)


def test_a_labeller_sees_alerts_but_no_acknowledge_button_or_settings(app, seeded_store):
    alerts.set_settings(seeded_store, MODEL, "tester", estimated_below=0.99)
    alerts.check_model(seeded_store, MODEL)
    at = app("pages/monitor.py", role="labeller")
    assert not at.exception
    open_list(at)
    assert [d for d in at.dataframe if "webhook" in d.value.columns]  # the list is there for a labeller
    assert not [b for b in at.button if b.key == "alerts_ack"]
    assert not [b for b in at.button if b.label == "Save alert settings"]


def test_a_webhook_that_is_not_http_is_a_sentence_on_the_monitor(app, seeded_store):
    at = app("pages/monitor.py")
    open_list(at)
    at.text_input(key="alerts_webhook").set_value("ftp://example.com/hook")
    button(at, "Save alert settings").click().run()
    assert any("a webhook URL must start with http:// or https://" in e.value for e in at.error)
    assert alerts.get_settings(seeded_store, MODEL) == alerts.AlertSettings()
