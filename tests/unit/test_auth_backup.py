"""Roles are checked in core on every write; backups round-trip."""
import pytest

from core import auth, backup, feedback, predict, registry, sampling, train
from core.errors import InvalidInput, PermissionDenied, SignInRefused

import storeprobe as probe

M = "评论情感"


def test_open_mode_until_the_first_user(seeded_store):
    assert auth.is_open(seeded_store)
    with pytest.raises(InvalidInput, match="the first user must be an owner"):
        auth.add_user(seeded_store, "lars", "labeller", "labeller-pass", by="setup")
    auth.add_user(seeded_store, "olga", "owner", "owner-pass-1", by="setup")
    assert not auth.is_open(seeded_store)


def test_a_labeller_is_refused_an_activation_in_core(team):
    train.train_version(team, M, "olga", model_config={"estimator": "complement_nb"})
    with pytest.raises(PermissionDenied, match="lars is a labeller and may not activate a version"):
        registry.activate_version(team, M, 2, "lars")
    assert registry.get_model(team, M).active_version == 1
    registry.activate_version(team, M, 2, "olga", "ok", force=True)  # the weaker NB version needs forcing
    assert registry.get_model(team, M).active_version == 2


def test_each_role_gets_what_it_may_do_and_nothing_else(team):
    with team.connect() as con:
        before = probe.table_counts(con)
    refused = [
        lambda: train.train_version(team, M, "lars"),
        lambda: registry.create_model(team, "x", ["a", "b"], "lars"),
        lambda: feedback.label_prediction(team, M, 1, "正面", "anna"),
        lambda: sampling.select_hard_examples(team, M, 5, "anna"),
        lambda: predict.predict_texts(team, M, ["好"], "mallory"),
    ]
    for attempt in refused:
        with pytest.raises(PermissionDenied):
            attempt()
    with team.connect() as con:
        assert probe.table_counts(con) == before
    batch = sampling.select_hard_examples(team, M, 1, "lars")
    feedback.label_prediction(team, M, int(batch.examples["prediction_id"].iloc[0]), "正面", "lars")
    predict.predict_texts(team, M, ["好"], "anna")
    events = registry.events_table(team, M)
    assert {"lars"} <= set(events.loc[events.action == "label", "user"])


def test_passwords_and_tokens_are_stored_hashed(team):
    assert auth.sign_in(team, "olga", "owner-pass-1", "cli").role == "owner"
    for name, password in [("olga", "wrong"), ("nobody", "owner-pass-1")]:  # no hint which part was wrong
        with pytest.raises(SignInRefused, match=auth.WRONG_PASSWORD):
            auth.sign_in(team, name, password, "cli")
    token = auth.create_token(team, "lars", by="olga")
    assert auth.token_identity(team, token) == auth.Identity("lars", "labeller")
    assert auth.token_identity(team, token + "x") is None
    with pytest.raises(PermissionDenied):
        auth.create_token(team, "lars", by="lars")
    raw = team.path.read_bytes() if team.path.exists() else b""
    with team.connect() as con:
        stored = con.execute("SELECT password_hash FROM users UNION ALL SELECT token_hash FROM api_tokens").fetchall()
    assert all(s[0] not in ("owner-pass-1", token) for s in stored)
    assert b"owner-pass-1" not in raw


def test_backup_and_restore_round_trip(seeded_store, tmp_path):
    with seeded_store.connect() as con:
        before = probe.table_counts(con)
    backup.backup(seeded_store, tmp_path / "bk", "ops")
    train.train_version(seeded_store, M, "ops", model_config={"estimator": "complement_nb"})
    registry.activate_version(seeded_store, M, 2, "ops", "round trip", force=True)
    kept = backup.restore(seeded_store, tmp_path / "bk", "ops")
    assert kept.exists()
    with seeded_store.connect() as con:
        after = probe.table_counts(con)
    assert {k: v for k, v in after.items() if k != "events"} == {k: v for k, v in before.items() if k != "events"}
    assert registry.get_model(seeded_store, M).active_version == 1
    assert predict.predict_texts(seeded_store, M, ["很好"], "ops")["version"].iloc[0] == 1
    # sequences survive: new ids do not collide with restored ones
    ids = predict.predict_texts(seeded_store, M, ["很好"], "ops")["prediction_id"]
    with seeded_store.connect() as con:
        assert con.execute("SELECT count(*) FROM predictions WHERE prediction_id = ?", [int(ids.iloc[0])]).fetchone()[0] == 1
    with pytest.raises(InvalidInput, match="not empty"):
        backup.backup(seeded_store, tmp_path / "bk", "ops")
    with pytest.raises(InvalidInput, match="not an MMS backup"):
        backup.restore(seeded_store, tmp_path, "ops")
