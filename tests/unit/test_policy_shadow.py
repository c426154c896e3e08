"""A policy run's shadow step: the new version scores live traffic in shadow for a set volume (or
time) before the guard judges it."""
import pandas as pd

from core import demo, policy, predict, registry, shadow

MODEL = demo.MODEL


def _predict(store, n: int, seed: int) -> None:
    reviews = demo.load_reviews().sample(n, random_state=seed)
    predict.predict_texts(store, MODEL, reviews["text"].tolist(), "lars", business_line="酒店")


def test_a_run_shadows_its_version_for_a_volume_then_activates_it(seeded_store):
    policy.set_policy(seeded_store, MODEL, "olga", enabled=True, new_labels=10, shadow_predictions=20)
    said = policy.check_model(seeded_store, MODEL)
    assert said.endswith("shadow: version 2 trained; in shadow")
    run = policy.runs_table(seeded_store, MODEL).iloc[0]
    assert (run["state"], run["version"]) == ("shadow", 2)
    assert shadow.current(seeded_store, MODEL) == 2 and registry.get_model(seeded_store, MODEL).active_version == 1
    assert policy.due(seeded_store, MODEL) is None  # one run at a time: the shadowed run is open
    _predict(seeded_store, 10, 1)
    shadow.catch_up(seeded_store, MODEL)
    assert policy.check_model(seeded_store, MODEL).endswith("in shadow: shadow: version 2 trained; in shadow")
    _predict(seeded_store, 15, 2)
    shadow.catch_up(seeded_store, MODEL)
    said = policy.check_model(seeded_store, MODEL)
    assert "activated" in said
    done = policy.get_run(seeded_store, int(run["run_id"]))
    assert done.state == "activated" and done.details["shadow"]["scored"] >= 20
    assert done.details["shadow"]["ended"].startswith("it scored") and done.details["shadow"]["evidence"]
    assert shadow.current(seeded_store, MODEL) is None  # the shadow ends with the run
    assert registry.get_model(seeded_store, MODEL).active_version == 2


def test_a_shadow_time_that_is_over_ends_the_shadow_step(seeded_store):
    policy.set_policy(seeded_store, MODEL, "olga", enabled=True, new_labels=10, shadow_hours=2)
    policy.check_model(seeded_store, MODEL)
    assert policy.runs_table(seeded_store, MODEL).iloc[0]["state"] == "shadow"
    later = pd.Timestamp.now() + pd.Timedelta(hours=3)
    run = policy.get_run(seeded_store, int(policy.runs_table(seeded_store, MODEL).iloc[0]["run_id"]))
    run = policy._finish_shadow_if_due(seeded_store, run, now=later)
    assert run.state == "judging" and run.details["shadow"]["ended"] == "its shadow time is over"
    assert "activated" in policy.check_model(seeded_store, MODEL)
