"""Backup and restore through the command line (issue 12, item 10): a restore into a new folder,
no store made up by a read-only command, and no altered model file carried into a backup."""
import json

import pytest

from core import cli, registry
from core.store import Store

M = "评论情感"


def call(store_path, *args, capsys):
    try:
        code = cli.main(["--store", str(store_path), "--user", "tester", "--format", "json", *map(str, args)])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_restore_into_a_folder_that_does_not_exist(seeded_store, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MMS_BACKUP_KEY", "a key the owner keeps apart from the store")  # a new store keeps none
    assert call(seeded_store.path, "backup", tmp_path / "bk", capsys=capsys)[0] == 0
    target = tmp_path / "new" / "deeper" / "mms.duckdb"
    code, out, err = call(target, "restore", tmp_path / "bk", capsys=capsys)
    assert code == 0, err
    assert json.loads(out) == {"restored": str(target)}  # no previous store to speak of
    assert list(target.parent.glob("*.before-restore-*")) == []
    code, out, err = call(target, "models", capsys=capsys)
    assert code == 0 and json.loads(out)[0]["model"] == M and json.loads(out)[0]["active_version"] == 1
    # a second restore over it keeps the one it replaces, and says where
    code, out, err = call(target, "restore", tmp_path / "bk", capsys=capsys)
    kept = json.loads(out)["previous_store_kept_as"]
    assert code == 0 and Store(kept).exists() and kept.startswith(str(target) + ".before-restore-")


@pytest.mark.parametrize("command", [["models"], ["versions", M], ["stats", M], ["events"], ["users"],
                                     ["hard-examples", M], ["train", M], ["backup", "{tmp}/bk"]])
def test_commands_do_not_make_up_a_store_where_there_is_none(tmp_path, capsys, command):
    missing = tmp_path / "typo" / "mms.duckdb"
    code, _, err = call(missing, *[a.format(tmp=tmp_path) for a in command], capsys=capsys)
    assert code == 2 and err.strip() == (f"error: no store at {missing}; run `python -m core demo` "
                                         f"or create a model")
    assert not missing.parent.exists() and not (tmp_path / "bk").exists()


def test_create_model_may_start_a_store(tmp_path, capsys):
    path = tmp_path / "fresh" / "mms.duckdb"
    assert call(path, "create-model", "m", "--labels", "a,b", capsys=capsys)[0] == 0
    assert [m.name for m in registry.list_models(Store(path))] == ["m"]


def test_backup_refuses_an_altered_model_file_and_leaves_nothing(seeded_store, tmp_path, capsys):
    model_file = seeded_store.path.parent / registry.get_version(seeded_store, M, 1).artifact
    model_file.write_bytes(model_file.read_bytes() + b"tampered")
    code, _, err = call(seeded_store.path, "backup", tmp_path / "bk", capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"model '{M}' version 1's model file has been altered" in err and "nothing was backed up" in err
    assert not (tmp_path / "bk").exists()
    events = registry.events_table(seeded_store)
    assert events[events.action == "backup"].empty


def test_backup_refuses_a_missing_model_file(seeded_store, tmp_path, capsys):
    (seeded_store.path.parent / registry.get_version(seeded_store, M, 1).artifact).unlink()
    (tmp_path / "bk").mkdir()  # an empty folder the user made is kept, still empty
    code, _, err = call(seeded_store.path, "backup", tmp_path / "bk", capsys=capsys)
    assert code == 2 and "model file is missing" in err
    assert list((tmp_path / "bk").iterdir()) == []


def test_a_clean_backup_records_its_model_files(seeded_store, tmp_path, capsys):
    code, out, err = call(seeded_store.path, "backup", tmp_path / "bk", capsys=capsys)
    assert code == 0 and json.loads(out) == {"backup": str(tmp_path / "bk")}, err
    events = registry.events_table(seeded_store)
    details = json.loads(events.loc[events.action == "backup", "details"].iloc[0])
    assert details["model_files"] == 1


def test_a_store_path_that_is_not_a_store_is_one_sentence(tmp_path, capsys):
    junk = tmp_path / "notes.duckdb"
    junk.write_bytes(b"not a database")
    code, _, err = call(junk, "models", capsys=capsys)
    assert code == 2 and err.startswith(f"error: {junk} cannot be opened as a store") and "Traceback" not in err
    assert junk.read_bytes() == b"not a database"
    code, _, err = call(tmp_path, "models", capsys=capsys)
    assert code == 2 and err.startswith(f"error: --store {tmp_path} is a folder")
    code, _, err = call(junk / "sub" / "mms.duckdb", "create-model", "m", "--labels", "a,b", capsys=capsys)
    assert code == 2 and "cannot be created" in err and len(err.strip().splitlines()) == 1
