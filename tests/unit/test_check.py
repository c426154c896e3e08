"""`python -m core check` and check.at_start (issue 12, item 9)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import artifacts, check, registry
from core import store as db
from lakefixtures import lake_store, pg_cluster  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
M = "评论情感"

# A real training run whose model file is still being written when it is killed: the file write
# is held open (part written, then a long wait), so the kill lands mid-write every time.
TRAIN_UNTIL_WRITING = """
import sys, time
sys.path.insert(0, sys.argv[1])
import joblib
def held_dump(obj, path):
    with open(path, "wb") as f:
        f.write(b"part of a model file")
    print("writing", path, flush=True)
    time.sleep(600)
joblib.dump = held_dump
from core import train
from core.store import Store
train.train_version(Store(sys.argv[2]), sys.argv[3], "ops", model_config={"estimator": "complement_nb"})
"""


def _check_cli(store):
    return subprocess.run([sys.executable, "-m", "core", "--store", str(store.path), "check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.mark.stress
def test_check_removes_the_partial_file_of_a_killed_training(seeded_store):
    versions_before = len(registry.list_versions(seeded_store, M))
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_UNTIL_WRITING, str(ROOT), str(seeded_store.path), M],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("writing"), f"training ended before writing its model file (exit {proc.wait()})"
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the kill did not happen"
    partial = Path(line.split(maxsplit=1)[1].strip())
    assert partial.suffix == artifacts.PARTIAL and partial.exists()
    assert partial in artifacts.strays(seeded_store)

    fresh = _check_cli(seeded_store)  # as young as a run in flight: kept
    assert fresh.returncode == 0, fresh.stderr
    assert partial.exists() and "kept 1 unreferenced model file" in fresh.stdout

    _age(partial, check.STRAY_SECONDS + 60)
    old = _check_cli(seeded_store)
    assert old.returncode == 0, old.stderr
    assert not partial.exists()
    assert f"removed 1 model file(s) no version references: {partial.parent.name}/{partial.name}" in old.stdout
    assert artifacts.strays(seeded_store) == []
    assert len(registry.list_versions(seeded_store, M)) == versions_before


def test_a_tampered_model_file_is_reported_and_check_exits_2(seeded_store):
    assert check.check_store(seeded_store).ok
    version = registry.get_version(seeded_store, M, 1)
    with open(seeded_store.path.parent / version.artifact, "ab") as f:
        f.write(b"tampered")
    report = check.check_store(seeded_store)
    assert report.problems == [f"model {M!r}: version 1's model file has been altered: its sha256 differs "
                               f"from the registry's, so it will not be loaded"]
    result = _check_cli(seeded_store)
    assert result.returncode == 2
    assert "version 1's model file has been altered" in result.stdout
    assert "1 problem(s) above need you" in result.stderr


def test_a_missing_model_file_is_reported(seeded_store):
    version = registry.get_version(seeded_store, M, 1)
    (seeded_store.path.parent / version.artifact).unlink()
    assert "version 1's model file is missing" in check.check_store(seeded_store).problems[0]


def test_an_active_version_that_does_not_exist_is_reported_at_start_too(seeded_store):
    model = registry.get_model(seeded_store, M)
    with seeded_store.transaction() as con:
        db.set_active_version(con, model.model_id, 99)
    expected = [f"model {M!r}: its active version 99 does not exist; activate one of its versions (1)"]
    assert check.at_start(seeded_store) == expected
    assert check.check_store(seeded_store).problems == expected


def test_at_start_removes_old_strays_and_keeps_young_ones(seeded_store):
    folder = seeded_store.artifacts_dir / str(registry.get_model(seeded_store, M).model_id)
    old, young = folder / "old.partial", folder / "young.partial"
    old.write_bytes(b"left by a killed run")
    young.write_bytes(b"a run still writing")
    _age(old, check.STRAY_SECONDS + 60)
    assert check.at_start(seeded_store) == []
    assert not old.exists() and young.exists()
    assert artifacts.strays(seeded_store) == [young]


def test_an_interrupted_save_leaves_no_partial_file(store, monkeypatch):
    def dump_then_fail(obj, path):
        Path(path).write_bytes(b"half")
        raise KeyboardInterrupt  # what a Ctrl-C in the middle of writing looks like
    monkeypatch.setattr(artifacts.joblib, "dump", dump_then_fail)
    with pytest.raises(KeyboardInterrupt):
        artifacts.save(store, 1, {"model": "x"})
    assert artifacts.strays(store) == []  # an interrupted save cleans up after itself


# --- Parquet files no snapshot references (issue 27, item 14) --------------------------------------

def test_parquet_files_no_snapshot_references_are_found_and_compact_orphans_removes_them(lake_store, reviews):
    """A writer killed before its commit (a killed `migrate --to`, an import) leaves Parquet files in the
    lake's data path that no snapshot references; plain compaction never deletes them."""
    import duckdb

    from conftest import make_model
    from core import compact, imports

    make_model(lake_store, reviews, n_train=1500, n_test=200)  # past the inlining limit: real Parquet files
    compact.compact(lake_store)
    data = Path(lake_store.data_path)
    real = sorted(data.rglob("*.parquet"))
    assert real
    orphan = real[0].with_name("ducklake-killed-writer.parquet")
    duckdb.execute(f"COPY (SELECT range AS x FROM range(100000)) TO '{orphan}' (FORMAT parquet)")
    hours_ago = time.time() - 2 * 3600
    os.utime(orphan, (hours_ago, hours_ago))
    rows = imports.data_summary(lake_store, "m")["rows"].sum()

    report = check.check_store(lake_store)
    [problem] = [p for p in report.problems if "Parquet" in p]
    assert "1 Parquet file(s)" in problem and "referenced by no snapshot" in problem and "compact --orphans" in problem
    compact.compact(lake_store)
    assert orphan.exists()  # only `--orphans` deletes what no snapshot ever referenced
    assert compact.compact(lake_store, orphans=True)["orphan_files_deleted"] == 1
    assert not orphan.exists() and all(p.exists() for p in sorted(data.rglob("*.parquet")))
    assert imports.data_summary(lake_store, "m")["rows"].sum() == rows
    assert not [p for p in check.check_store(lake_store).problems if "Parquet" in p]


def test_a_young_unreferenced_file_may_be_a_running_writers_and_is_kept(lake_store, reviews):
    import duckdb

    from conftest import make_model
    from core import compact

    make_model(lake_store, reviews, n_train=1500, n_test=200)
    compact.compact(lake_store)
    folder = sorted(Path(lake_store.data_path).rglob("*.parquet"))[0].parent
    young = folder / "ducklake-in-flight.parquet"
    duckdb.execute(f"COPY (SELECT 1 AS x) TO '{young}' (FORMAT parquet)")
    assert not [p for p in check.check_store(lake_store).problems if "Parquet" in p]
    assert compact.compact(lake_store, orphans=True)["orphan_files_deleted"] == 0 and young.exists()
