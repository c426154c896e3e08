"""DuckLake with its data path on S3-compatible object storage (issue 11): a PostgreSQL catalog and an
`s3://bucket/prefix` data path on moto's S3 server on loopback. The store contract runs here as on a
folder, model files go to the bucket (never to local disk) so a version trained in one process is
served by another, and a wrong endpoint, credentials or bucket is one sentence naming the setting."""
import dataclasses
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core import artifacts, check, registry
from core.errors import ArtifactError, StoreError
from core.store import Store
from lakefixtures import pg_cluster  # noqa: F401  (fixture)
from s3server import s3_server  # noqa: F401  (fixture)
# the whole contract again, on the fixtures below: every store here is a DuckLake with its data on S3
from test_store_contract import (trained, test_a_model_name_is_taken_once,  # noqa: F401
                                 test_activate_roll_back_and_audit, test_an_import_lands_whole_and_a_bad_one_not_at_all,
                                 test_incremental_training_sees_labels_given_after_its_parent,
                                 test_predict_label_hard_examples_and_stats,
                                 test_two_writers_labelling_one_prediction_store_one_label)
from test_ducklake import (test_a_killed_writer_leaves_no_partial_batch,  # noqa: F401
                           test_small_writes_are_inlined_and_compaction_writes_them_out,
                           test_three_processes_writing_one_lake_keep_every_row_and_one_active_version)

ROOT = Path(__file__).resolve().parents[2]
M = "m"
_names = itertools.count(1)


def _s3_lake(cluster, server) -> Store:
    n = next(_names)
    bucket = server.create_bucket(f"mms-test-{os.getpid()}-{n}")
    return Store(cluster.create_db(f"s3lake{n}"), f"{bucket}/lake/")


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture
def any_store(pg_cluster, s3_env):
    return _s3_lake(pg_cluster, s3_env)


@pytest.fixture
def lake_store(any_store):
    return any_store


def _bucket_keys(server, store: Store) -> list[str]:
    bucket = store.data_path[len("s3://"):].split("/")[0]
    return server.keys(bucket)


def test_model_files_go_to_the_bucket_and_are_checked_like_files(trained, s3_env):
    store, _, _ = trained
    version = registry.get_version(store, M, 1)
    assert f"lake/{version.artifact}" in _bucket_keys(s3_env, store)
    assert artifacts.verify(store, version) == f"{store.data_path}{version.artifact}"
    assert check.check_store(store).ok

    rel, _ = artifacts.save(store, version.model_id, {"left": "by a killed run"})
    assert [str(p) for p in artifacts.strays(store)] == [rel]
    assert artifacts.remove_strays(store, older_than_seconds=3600) == []  # young: a run may still register it
    assert [str(p) for p in artifacts.remove_strays(store, older_than_seconds=0)] == [rel]
    assert f"lake/{rel}" not in _bucket_keys(s3_env, store) and artifacts.strays(store) == []

    s3_env.client().put_object(Bucket=store.data_path[5:].split("/")[0], Key=f"lake/{version.artifact}",
                               Body=b"not the model that was trained")
    with pytest.raises(ArtifactError, match="has been altered"):
        artifacts.verify(store, version)
    with pytest.raises(ArtifactError, match="outside the store's data path"):
        artifacts.verify(store, dataclasses.replace(version, artifact="../elsewhere.joblib"))


def _cli(env: dict, cwd: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", "--user", "ops", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_version_trained_in_one_process_is_served_by_another_from_s3(pg_cluster, s3_env, reviews, tmp_path):
    """The loop across processes with nothing on local disk: each command is its own process."""
    store = _s3_lake(pg_cluster, s3_env)
    env = {**os.environ, **s3_env.env(), "PYTHONPATH": str(ROOT), "MMS_STORE": store.url,
           "MMS_DATA_PATH": store.data_path}
    work = tmp_path / "work"
    work.mkdir()
    reviews.iloc[:60].to_csv(tmp_path / "test.csv", index=False)
    reviews.iloc[60:360].to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"text": reviews["text"].iloc[400:420]}).to_csv(tmp_path / "traffic.csv", index=False)
    for args in (["create-model", M, "--labels", "正面,负面"], ["import", M, tmp_path / "test.csv", "--split", "test"],
                 ["import", M, tmp_path / "train.csv", "--split", "train"], ["train", M, "--activate"]):
        done = _cli(env, work, *args)
        assert done.returncode == 0, f"{args[0]}: {done.stderr}"

    served = _cli(env, work, "--format", "json", "predict", M, tmp_path / "traffic.csv", "--out", tmp_path / "out.csv")
    assert served.returncode == 0, served.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == 20 and set(out["version"]) == {1} and set(out["label"]) <= {"正面", "负面"}
    assert _cli(env, work, "check").returncode == 0

    keys = _bucket_keys(s3_env, store)
    assert any(k.startswith("lake/artifacts/") and k.endswith(".joblib") for k in keys), keys
    assert list(work.rglob("*")) == [], "something was written to the local disk"


@pytest.mark.parametrize("wrong, named", [
    ({"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, "AWS_ENDPOINT_URL"),
    ({"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "AWS_SECRET_ACCESS_KEY"),
    ({"AWS_ACCESS_KEY_ID": "AKIANOBODYKNOWS0000"}, "AWS_ACCESS_KEY_ID"),
    ("no such bucket", "MMS_DATA_PATH"),
])
def test_a_wrong_endpoint_credentials_or_bucket_is_one_sentence_naming_the_setting(
        pg_cluster, s3_env, monkeypatch, tmp_path, wrong, named):
    good = _s3_lake(pg_cluster, s3_env)
    data_path = "s3://mms-no-such-bucket/lake/" if wrong == "no such bucket" else good.data_path
    store = Store(good.url, data_path)
    for name, value in ({} if wrong == "no such bucket" else wrong).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(StoreError) as caught:
        registry.create_model(store, M, ["a", "b"], "owner")
    sentence = str(caught.value)
    assert named in sentence and "nothing was changed" in sentence and "\n" not in sentence

    env = {**os.environ, "PYTHONPATH": str(ROOT), "MMS_STORE": store.url, "MMS_DATA_PATH": data_path}
    done = _cli(env, tmp_path, "create-model", M, "--labels", "a,b")
    assert done.returncode != 0 and named in done.stderr and "Traceback" not in done.stderr

    monkeypatch.undo()
    for name, value in s3_env.env().items():
        monkeypatch.setenv(name, value)
    assert registry.list_models(good) == []  # nothing was written to the catalog either


def test_a_store_migrated_to_s3_and_back_answers_the_same(seeded_store, pg_cluster, s3_env, tmp_path):
    from test_migrate import answers, assert_same, predicted
    from core import migrate

    before = answers(seeded_store)
    lake = _s3_lake(pg_cluster, s3_env)
    assert migrate.migrate(seeded_store, lake, "tester").model_files == 1
    [version] = registry.list_versions(lake, "评论情感")
    assert f"lake/{version.artifact}" in _bucket_keys(s3_env, lake)
    assert_same(answers(lake), before)
    back = Store(tmp_path / "back" / "mms.duckdb")
    migrate.migrate(lake, back, "tester")
    assert (back.path.parent / version.artifact).is_file()
    artifacts._loaded.clear()  # each store's model read from its own copy
    pd.testing.assert_frame_equal(predicted(lake), predicted(seeded_store))
    pd.testing.assert_frame_equal(predicted(back), predicted(seeded_store))
