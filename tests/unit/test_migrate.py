"""python -m core migrate: an embedded store into a DuckLake and back, all or nothing."""
from pathlib import Path

import pandas as pd
import pytest

from core import cli, feedback, migrate, predict, registry, stats
from core import store as db
from core.errors import ArtifactError, InvalidInput
from core.store import Store
from lakefixtures import new_lake, pg_cluster  # noqa: F401  (fixtures)

import storeprobe as probe

MODEL = "评论情感"
TEXTS = ["房间很干净，服务也很好", "快递太慢了，包装也破了", "一般般吧"]


def answers(store: Store) -> dict:
    """What a user sees of a store: models, versions, statistics, and how it predicts."""
    versions = [(v.version, v.mode, v.sha256, v.metrics.get("accuracy")) for v in registry.list_versions(store, MODEL)]
    table = stats.stats_by_line_and_period(store, MODEL, "day").reset_index(drop=True)
    with store.connect() as con:
        counts = {k: n for k, n in probe.table_counts(con).items() if k != "events"}
    return {"models": registry.models_overview(store).to_dict("records"), "versions": versions,
            "stats": table, "counts": counts}


def assert_same(a: dict, b: dict) -> None:
    assert a["models"] == b["models"] and a["versions"] == b["versions"] and a["counts"] == b["counts"]
    pd.testing.assert_frame_equal(a["stats"], b["stats"])


def predicted(store: Store) -> pd.DataFrame:
    out = predict.predict_texts(store, MODEL, TEXTS, "tester", business_line="酒店")
    return out[["label", *[c for c in out.columns if c.startswith("p_")]]]


def test_a_store_migrated_to_a_lake_and_back_answers_the_same(seeded_store, pg_cluster, tmp_path):
    before = answers(seeded_store)
    lake = new_lake(pg_cluster, tmp_path)
    done = migrate.migrate(seeded_store, lake, "tester")
    assert done.rows["predictions"] == before["counts"]["predictions"] and done.model_files == 1
    assert_same(answers(lake), before)
    back = Store(tmp_path / "back" / "mms.duckdb")
    migrate.migrate(lake, back, "tester")
    assert_same(answers(back), before)
    pd.testing.assert_frame_equal(predicted(back), predicted(seeded_store))
    pd.testing.assert_frame_equal(predicted(lake), predicted(seeded_store))
    with lake.connect() as con:
        [event] = db.events(con, action="migrate").to_dict("records")
    assert "password" not in event["details"] and str(seeded_store.path) in event["details"]


def test_new_ids_on_the_migrated_stores_follow_the_copied_ones(seeded_store, pg_cluster, tmp_path):
    lake = new_lake(pg_cluster, tmp_path)
    migrate.migrate(seeded_store, lake, "tester")
    back = Store(tmp_path / "back" / "mms.duckdb")
    migrate.migrate(lake, back, "tester")
    for store in (lake, back):
        with store.connect() as con:
            top = con.execute("SELECT max(prediction_id) FROM predictions").fetchone()[0]
        [new] = predict.predict_texts(store, MODEL, ["还行"], "tester")["prediction_id"]
        assert new > top
        feedback.label_prediction(store, MODEL, int(new), "正面", "tester")  # a new label id, no conflict
        another = registry.create_model(store, "another", ["a", "b"], "tester")
        assert another.model_id > registry.get_model(store, MODEL).model_id


def test_a_copy_failing_half_way_leaves_no_store_and_no_model_files(seeded_store, pg_cluster, tmp_path,
                                                                   monkeypatch):
    lake = new_lake(pg_cluster, tmp_path / "first")
    migrate.migrate(seeded_store, lake, "tester")  # the source of the failing copy back to a file
    real_copy, copied = db.copy_table, []

    def copy_then_fail(con, table):
        if len(copied) == 4:
            raise OSError("disk full (simulated)")
        copied.append(table)
        return real_copy(con, table)

    monkeypatch.setattr(db, "copy_table", copy_then_fail)
    second_lake, back = new_lake(pg_cluster, tmp_path / "second"), Store(tmp_path / "back" / "mms.duckdb")
    for source, target in ((seeded_store, second_lake), (lake, back)):
        copied.clear()
        with pytest.raises(OSError):
            migrate.migrate(source, target, "tester")
        assert len(copied) == 4 and not target.exists()
        assert not [p for p in target.artifacts_dir.rglob("*") if p.is_file()]
    assert not list((tmp_path / "back").glob("mms.duckdb*"))
    monkeypatch.setattr(db, "copy_table", real_copy)
    for source, target in ((seeded_store, second_lake), (lake, back)):  # left as they were: a new try succeeds
        migrate.migrate(source, target, "tester")
        assert registry.get_model(target, MODEL).active_version == 1


def test_a_model_file_path_leading_out_of_the_store_is_refused_not_read(seeded_store, pg_cluster, tmp_path):
    outside = tmp_path / "secret.joblib"
    outside.write_bytes(b"not a model file of this store")
    with seeded_store.transaction() as con:  # a crafted (or corrupted) registry row
        con.execute("UPDATE versions SET artifact = ?", [str(Path("..") / ".." / outside.relative_to("/"))])
    lake = new_lake(pg_cluster, tmp_path / "lake")
    with pytest.raises(ArtifactError, match="points outside the store's folder"):
        migrate.migrate(seeded_store, lake, "tester")
    assert not lake.exists() and not [p for p in lake.artifacts_dir.rglob("*") if p.is_file()]


def test_a_target_that_holds_a_store_is_refused_and_left_alone(seeded_store, tmp_path, pg_cluster):
    lake = new_lake(pg_cluster, tmp_path)
    migrate.migrate(seeded_store, lake, "tester")
    with lake.connect() as con:
        before = probe.table_counts(con)
    with pytest.raises(InvalidInput, match="already holds a store"):
        migrate.migrate(seeded_store, lake, "tester")
    with pytest.raises(InvalidInput, match="already an embedded file"):
        migrate.migrate(seeded_store, Store(tmp_path / "other.duckdb"), "tester")
    with lake.connect() as con:
        assert probe.table_counts(con) == before


def test_migrate_from_the_command_line(seeded_store, pg_cluster, tmp_path, capsys, monkeypatch):
    url = pg_cluster.create_db("cli_target")
    data = str(tmp_path / "lakedata") + "/"
    code = cli.main(["--store", str(seeded_store.path), "migrate", "--to", url, "--data-path", data])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "predictions" in out and "password" not in out
    assert registry.get_model(Store(url, data), MODEL).active_version == 1
    assert cli.main(["--store", str(seeded_store.path), "migrate", "--to", url, "--data-path", data]) == 2
    assert "already holds a store" in capsys.readouterr().err


# --- the audit event commits with the data; a killed migrate's files are found and removed (issue 27) ---

def test_a_migration_dying_right_after_its_commit_still_has_its_audit_event(seeded_store, pg_cluster, tmp_path,
                                                                            monkeypatch):
    lake = new_lake(pg_cluster, tmp_path)

    def dies(self):  # the process is killed at its next transaction, after the copy committed
        raise SystemExit("killed")

    monkeypatch.setattr(Store, "transaction", dies)
    try:
        migrate.migrate(seeded_store, lake, "tester")
    except SystemExit:
        pass
    monkeypatch.undo()
    assert lake.exists()
    with lake.connect() as con:
        assert len(db.events(con, action="migrate")) == 1


@pytest.mark.stress
def test_a_killed_migrate_leaves_files_that_check_finds_and_compact_orphans_removes(seeded_store, pg_cluster,
                                                                                   tmp_path):
    """kill -9 a `migrate --to` DuckLake as soon as it has written Parquet files, then check, compact
    --orphans."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from core import check, compact

    url = pg_cluster.create_db("killed_target")
    data = tmp_path / "lakedata"
    root = Path(__file__).resolve().parents[2]
    for attempt in range(5):
        proc = subprocess.Popen([sys.executable, "-m", "core", "--store", str(seeded_store.path), "--user", "tester",
                                 "migrate", "--to", url, "--data-path", str(data) + "/"], cwd=root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and not list(data.rglob("*.parquet")):
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.returncode == -signal.SIGKILL and list(data.rglob("*.parquet")):
            break
    else:
        pytest.skip("the migration always finished before it could be killed")
    target = Store(url, str(data) + "/")
    left = list(data.rglob("*.parquet"))
    old = time.time() - 2 * 3600
    for path in left:
        os.utime(path, (old, old))
    size = sum(p.stat().st_size for p in left)
    report = check.check_store(target)
    assert any("referenced by no snapshot" in p for p in report.problems), report.problems
    assert compact.compact(target, orphans=True)["orphan_files_deleted"] == len(left)
    assert not list(data.rglob("*.parquet"))
    print(f"\nkilled migrate: {len(left)} orphan Parquet file(s), {size / 1e6:.1f} MB, found by check and removed")
