"""Train page (issue 25): the owner chooses whether a full retrain of a model in the default mode
re-selects by cross-validation or refits the active version's choice."""
from core import registry

MODEL = "评论情感"


def test_the_owner_can_refit_the_active_choice_instead_of_reselecting(app, seeded_store):
    at = app("pages/train.py")
    assert not at.exception
    # the seeded model is pinned (logreg): nothing to choose, and the page says what a full retrain does
    assert not list(at.get("radio")) or all(r.key != "train_reselect" for r in at.radio)
    assert any("refits the pinned config" in c.value for c in at.caption)

    registry.update_model(seeded_store, MODEL, "tester", model_config={"estimator": "auto"})
    at = app("pages/train.py")
    choice = at.radio(key="train_reselect")
    assert choice.value.startswith("Re-select")
    choice.set_value("Refit the active version's choice (no search)").run()
    at.button(key="train_full").click().run()
    assert not at.exception
    newest = registry.list_versions(seeded_store, MODEL)[-1]
    assert (newest.version, newest.mode, newest.model_config["estimator"]) == (2, "full", "logreg")
    assert newest.data["selection"]["asked"] == "refit"
    assert newest.data["selection"]["reused"]["from_version"] == 1
    assert any("Chosen in version 1, not searched again" in c.value for c in at.caption)
