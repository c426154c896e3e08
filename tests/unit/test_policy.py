"""The loop that runs itself (issue 26): a per-model policy retrains on new labels, drift or a schedule,
activates only through the promotion guard, runs one at a time and survives its process dying."""
import os
import subprocess
import sys
import socket
import threading
import time

import pandas as pd
import pytest

from conftest import ROOT, WORSE_CONFIG
from core import alerts, demo, feedback, leases, policy, predict, registry
from core.errors import InvalidInput, LeaseLost, ModelNotFound, PermissionDenied

MODEL = demo.MODEL
SEEDED_NEW_LABELS = 50  # labels the seeded store's demo gave after version 1 was trained


def runs(store) -> pd.DataFrame:
    return policy.runs_table(store, MODEL)


def actions(store) -> list[str]:
    return registry.events_table(store, MODEL)["action"].tolist()


def test_a_policy_is_off_by_default_and_nothing_retrains(seeded_store):
    assert policy.get_policy(seeded_store, MODEL) == policy.Policy()
    assert policy.get_policy(seeded_store, MODEL).describe().startswith("off")
    assert policy.check_all(seeded_store) == {}
    assert runs(seeded_store).empty and registry.get_model(seeded_store, MODEL).active_version == 1


def test_n_new_labels_start_a_run_that_trains_and_activates_through_the_guard(seeded_store):
    policy.set_policy(seeded_store, MODEL, "olga", enabled=True, new_labels=SEEDED_NEW_LABELS + 1)
    assert policy.check_model(seeded_store, MODEL) == "nothing due"
    policy.set_policy(seeded_store, MODEL, "olga", new_labels=SEEDED_NEW_LABELS)
    said = policy.check_model(seeded_store, MODEL)
    assert "started (50 new labels since the newest version" in said and "activated" in said
    run = runs(seeded_store).iloc[0].to_dict()
    assert (run["trigger"], run["mode"], run["state"], run["version"], run["guard"], run["run_by"]) == (
        "labels", "full", "activated", 2, "passed", "olga")
    assert registry.get_model(seeded_store, MODEL).active_version == 2
    activation = registry.activation_history(seeded_store, MODEL).iloc[0]
    assert activation.reason.startswith(f"policy run {run['run_id']}: 50 new labels")
    assert {"set_policy", "policy_run", "policy_run_result", "activate"} <= set(actions(seeded_store))
    # the labels are in version 2 now: nothing is due until new ones arrive
    assert policy.check_model(seeded_store, MODEL) == "nothing due"


def test_incremental_mode_updates_the_active_version(seeded_store):
    from core import train

    train.train_version(seeded_store, MODEL, "olga", model_config={"estimator": "sgd"}, activate=True)
    _label_new_traffic(seeded_store, 30)
    policy.set_policy(seeded_store, MODEL, "olga", enabled=True, new_labels=30, mode="incremental")
    policy.check_model(seeded_store, MODEL)
    run = runs(seeded_store).iloc[0].to_dict()
    version = registry.get_version(seeded_store, MODEL, int(run["version"]))
    assert (run["mode"], version.mode, version.parent_version, version.data["new_rows"]) == ("incremental", "incremental", 2, 30)


def test_a_refused_version_is_kept_and_the_owner_is_told_why_by_an_alert(seeded_store):
    registry.update_model(seeded_store, MODEL, "olga", model_config=WORSE_CONFIG)
    policy.set_policy(seeded_store, MODEL, "olga", enabled=True, new_labels=10)
    policy.check_model(seeded_store, MODEL)
    run = runs(seeded_store).iloc[0].to_dict()
    assert (run["state"], run["version"], run["guard"]) == ("refused", 2, "refused")
    assert "version 2 was kept, not activated" in run["result"] and "worse than version 1" in run["result"]
    assert registry.get_model(seeded_store, MODEL).active_version == 1
    assert [v.version for v in registry.list_versions(seeded_store, MODEL)] == [1, 2]  # kept
    alert = alerts.alerts_table(seeded_store, MODEL).iloc[0]
    assert (alert.kind, alert.state, alert.subject) == ("policy_refused", "open", f"run {run['run_id']}")
    assert "the promotion guard refused" in alert.message and "worse than version 1" in alert.message
    # version 2 saw these labels: the refusal does not start the same run again and again
    assert policy.check_model(seeded_store, MODEL) == "nothing due"


def test_a_schedule_retrains_when_there_is_something_new(seeded_store):
    policy.set_policy(seeded_store, MODEL, "olga", enabled=True, every_hours=24)
    assert policy.due(seeded_store, MODEL) is None  # set just now
    later = pd.Timestamp.now() + pd.Timedelta(hours=25)
    trigger, why = policy.due(seeded_store, MODEL, now=later)
    assert trigger == "schedule" and why["sentence"].startswith("scheduled every 24 h; 50 new labels")
    policy.check_model(seeded_store, MODEL, now=later)
    assert runs(seeded_store).iloc[0].state == "activated"
    assert policy.due(seeded_store, MODEL, now=later + pd.Timedelta(hours=25)) is None  # nothing new since


def test_drift_on_a_line_starts_a_run_once(seeded_store):
    rows = _label_new_traffic(seeded_store, 5, line="外卖", n=80)  # a line the model never saw: drift at once
    policy.set_policy(seeded_store, MODEL, "olga", enabled=True, new_labels=1000, on_drift=True)
    trigger, why = policy.due(seeded_store, MODEL)
    assert trigger == "drift" and "drift flagged on 外卖 against version 1" in why["sentence"]
    policy.check_model(seeded_store, MODEL)
    assert runs(seeded_store).iloc[0].trigger == "drift"
    feedback.record_labels(seeded_store, MODEL, pd.DataFrame({"prediction_id": rows["prediction_id"][5:8],
                                                              "label": "正面"}), "lars")
    again = policy.due(seeded_store, MODEL)  # new labels, and the new version may see drift elsewhere ...
    assert again is None or "外卖" not in {c["business_line"] for c in again[1].get("cells", [])}  # ... not here again


def test_one_run_at_a_time_per_model(seeded_store):
    policy.set_policy(seeded_store, MODEL, "olga", enabled=True, new_labels=1)
    started = []
    threads = [threading.Thread(target=lambda: started.append(policy.start_run(seeded_store, MODEL, "labels",
                                                                                 {"sentence": "by hand"})))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in started) == 1
    assert policy.start_run(seeded_store, MODEL, "labels", {"sentence": "again"}) is None
    assert policy.due(seeded_store, MODEL) is None  # a run is open
    assert runs(seeded_store).shape[0] == 1


def test_a_run_whose_process_died_is_taken_up_again(seeded_store):
    """A server killed mid-training leaves its run open in the store; the next check (after a restart)
    sees its process gone and carries the run on to its end."""
    policy.set_policy(seeded_store, MODEL, "olga", enabled=True, new_labels=10)
    script = ("import os, sys; from core.store import Store; from core import policy, demo;"
              "policy.start_run(Store(sys.argv[1]), demo.MODEL, 'labels', "
              "{'sentence': 'started by a process that then died'}); os._exit(9)")
    died = subprocess.run([sys.executable, "-c", script, str(seeded_store.path)], cwd=ROOT, timeout=120)
    assert died.returncode == 9
    left = runs(seeded_store).iloc[0]
    assert (left.state, left.version) == ("training", None)
    assert not policy.worker_alive(policy.get_run(seeded_store, int(left.run_id)).worker)
    said = policy.check_model(seeded_store, MODEL)
    assert said.startswith(f"run {left.run_id} taken up again") and "activated" in said
    run = policy.get_run(seeded_store, int(left.run_id))
    assert (run.state, run.version) == ("activated", 2) and run.details["resumed"][0]["state"] == "training"
    assert runs(seeded_store).shape[0] == 1  # the same run, not a second one


def hand_lease(store, holder: str, seconds: float) -> None:
    """Give the model's policy lease to `holder` for `seconds` (negative: lapsed that long ago)."""
    with store.transaction() as con:
        model = registry.find_model(con, MODEL)
        policy.db.put_lease(con, policy._lease(model.model_id), holder, policy.db.now() + pd.Timedelta(seconds=seconds))


def test_a_run_held_by_a_live_process_is_left_alone(seeded_store):
    policy.set_policy(seeded_store, MODEL, "olga", enabled=True, new_labels=10)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run = policy.start_run(seeded_store, MODEL, "labels", {"sentence": "elsewhere"})
        other = f"{socket.gethostname()}:{sleeper.pid}:{leases._start_time(sleeper.pid)}"
        hand_lease(seeded_store, other, 60)
        assert policy.check_model(seeded_store, MODEL) == f"run {run.run_id} is training in process {other}"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert "taken up again" in policy.check_model(seeded_store, MODEL)  # its holder died: no need to wait


def test_a_run_of_a_server_on_another_host_is_taken_over_once_its_lease_lapses(seeded_store):
    """Several servers on one DuckLake: a run held by another host is left alone while its lease is
    renewed, and taken over by the next check of this one once the lease lapsed (that host is gone)."""
    policy.set_policy(seeded_store, MODEL, "olga", enabled=True, new_labels=10)
    run = policy.start_run(seeded_store, MODEL, "labels", {"sentence": "on another host"})
    elsewhere = "another-host:4242:777"
    hand_lease(seeded_store, elsewhere, 60)
    assert policy.check_model(seeded_store, MODEL) == f"run {run.run_id} is training in process {elsewhere}"
    assert policy.start_run(seeded_store, MODEL, "labels", {"sentence": "a second one"}) is None
    hand_lease(seeded_store, elsewhere, -1)  # its renewals stopped
    said = policy.check_model(seeded_store, MODEL)
    assert said.startswith(f"run {run.run_id} taken up again") and "activated" in said
    assert runs(seeded_store).shape[0] == 1


def test_a_process_that_lost_its_runs_lease_writes_nothing_more(seeded_store):
    policy.set_policy(seeded_store, MODEL, "olga", enabled=True, new_labels=10)
    run = policy.start_run(seeded_store, MODEL, "labels", {"sentence": "stalled"})
    hand_lease(seeded_store, "another-host:1:1", 60)  # taken over while this process stalled
    with pytest.raises(LeaseLost, match="no longer holds policy:"):
        policy._update(seeded_store, run, policy.FAILED, "written by a process that lost the run")
    assert policy.get_run(seeded_store, run.run_id).state == "training"


def test_the_servers_loop_runs_a_due_policy_in_the_background(seeded_store):
    policy.set_policy(seeded_store, MODEL, "olga", enabled=True, new_labels=10)
    stopped = threading.Event()
    loop = policy.Loop(seeded_store, stopped=stopped.is_set, seconds=0.2).start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (runs(seeded_store).empty or runs(seeded_store).iloc[0].state != "activated"):
            time.sleep(0.2)
    finally:
        stopped.set()
        loop.stop()
    assert runs(seeded_store).iloc[0].state == "activated"
    assert registry.get_model(seeded_store, MODEL).active_version == 2
    trained = policy.get_run(seeded_store, int(runs(seeded_store).iloc[0].run_id)).details["trained"]
    assert trained["fitted_in"] == "a worker process" and trained["fit_pid"] != os.getpid()  # serving keeps the GIL


@pytest.mark.parametrize("change, says", [
    ({"new_labels": 0}, "new_labels must be a whole number from 1"),
    ({"new_labels": -5}, "new_labels must be a whole number from 1"),
    ({"new_labels": 2.5}, "new_labels must be a whole number"),
    ({"new_labels": "many"}, "new_labels must be a whole number"),
    ({"every_hours": 0}, "every_hours must be a number of hours from 0.01"),
    ({"every_hours": -1}, "every_hours must be a number of hours"),
    ({"every_hours": float("nan")}, "every_hours must be a number of hours"),
    ({"shadow_hours": -2}, "shadow_hours must be a number of hours"),
    ({"shadow_predictions": -1}, "shadow_predictions must be a whole number"),
    ({"mode": "partial"}, "mode must be full or incremental, not 'partial'"),
    ({"new_labels": None}, "a policy that is on needs a trigger"),
    ({"mode": "incremental"}, "incremental mode needs an active version that learns incrementally; version 1"),
    ({"period": "year"}, "period must be one of day, week, month"),
    ({"colour": "red"}, "unknown policy setting(s): colour"),
])
def test_impossible_policies_get_a_sentence_and_change_nothing(seeded_store, change, says):
    policy.set_policy(seeded_store, MODEL, "olga", enabled=True, new_labels=100)
    before = (policy.get_policy(seeded_store, MODEL), len(registry.events_table(seeded_store, MODEL)))
    with pytest.raises(InvalidInput) as e:
        policy.set_policy(seeded_store, MODEL, "olga", **change)
    assert says in str(e.value)
    assert (policy.get_policy(seeded_store, MODEL), len(registry.events_table(seeded_store, MODEL))) == before


def test_an_unknown_model_or_a_non_owner_is_refused(team):
    with pytest.raises(ModelNotFound, match="unknown model 'nope'"):
        policy.set_policy(team, "nope", "olga", enabled=True, new_labels=5)
    with pytest.raises(PermissionDenied, match="anna is an analyst and may not create or change models"):
        policy.set_policy(team, MODEL, "anna", enabled=True, new_labels=5)
    assert policy.get_policy(team, MODEL) == policy.Policy()


def _label_new_traffic(store, k: int, line: str = "综合", n: int | None = None) -> pd.DataFrame:
    """`n` (default k) fresh reviews predicted on `line` in the seeded store's last week, the first `k` labelled."""
    reviews = demo.load_reviews().sample(frac=1.0, random_state=7).reset_index(drop=True).iloc[:n or k]
    logged = predict.predict_texts(store, MODEL, reviews["text"].tolist(), "lars", business_line=line,
                                   created_at=[pd.Timestamp("2026-10-28 10:00")] * len(reviews))
    feedback.record_labels(store, MODEL, pd.DataFrame({"prediction_id": logged["prediction_id"][:k],
                                                       "label": reviews["label"][:k].to_numpy()}), "lars")
    return logged
