"""The store's own trouble said as the server's, never the client's: a full disk (507), a database DuckDB
invalidated (reopened), a DuckLake catalog that cannot be reached or goes away (503), each with a
sentence and a Retry-After, never a traceback; and the hard-example draw as a POST."""
import logging
from urllib.parse import quote

import duckdb
import pytest
from fastapi.testclient import TestClient

from core import demo, registry
from core import store as db
from core.errors import DiskFull, StoreUnavailable
from core.serving import Serving
from core.store import Store

import pgcluster
import storeprobe as probe
from lakefixtures import new_lake, pg_cluster  # noqa: F401  (fixtures)
from test_api import served

M = f"/api/models/{quote(demo.MODEL)}"
FULL = ("TransactionContext Error: Failed to commit: could not write to file \"mms.duckdb.wal\": "
        "No space left on device")


class _FullDisk:
    """A cursor whose commit fails the way DuckDB's does when the disk is full."""

    def __init__(self, cur):
        self._cur = cur

    def commit(self):
        raise duckdb.TransactionException(FULL)

    def __getattr__(self, name):
        return getattr(self._cur, name)


@pytest.fixture
def full_disk(monkeypatch):
    acquire = db._SharedDatabase.acquire
    monkeypatch.setattr(db._SharedDatabase, "acquire", lambda self, store: _FullDisk(acquire(self, store)))


@pytest.fixture
def client(seeded_store):
    with TestClient(served(seeded_store), client=("127.0.0.1", 50000)) as c:
        yield c


def _counts(store):
    with store.connect() as con:
        return probe.table_counts(con)


def test_a_full_disk_is_507_saying_so_not_a_write_conflict_and_is_logged(seeded_store, client, full_disk, caplog):
    before = None
    with caplog.at_level(logging.ERROR, logger="mms.store"):
        r = client.post(f"{M}/predict", json={"texts": ["质量很好"]})
        assert r.status_code == 507, r.text
        assert "disk" in r.json()["error"] and "full" in r.json()["error"] and "another change" not in r.json()["error"]
        assert int(r.headers["Retry-After"]) > 0
        r = client.post(f"{M}/feedback", json={"prediction_id": 1, "label": "正面"})
        assert r.status_code == 507, r.text
    assert any("full" in rec.getMessage() for rec in caplog.records)
    with pytest.raises(DiskFull, match="the disk holding the store is full"):
        with seeded_store.transaction() as con:
            before = probe.table_counts(con)
            db.add_event(con, "tester", "x", None, {})
    assert before is not None


def test_a_full_disk_changes_nothing(seeded_store, full_disk):
    with seeded_store.connect() as con:
        before = probe.table_counts(con)
    with pytest.raises(DiskFull):
        with seeded_store.transaction() as con:
            db.add_event(con, "tester", "x", None, {})
    with seeded_store.connect() as con:
        assert probe.table_counts(con) == before


def test_an_invalidated_database_is_reopened_and_health_says_so_meanwhile(seeded_store, client, monkeypatch):
    """DuckDB invalidates a database after an internal error: every statement on it fails until it is
    reopened. The server holds its store, so it must notice and reopen it itself."""
    seeded_store.hold()
    try:
        shared = db._shared_for(seeded_store.key)
        poisoned = shared.root
        all_models = db.all_models

        def invalidated(con):
            if shared.root is poisoned:
                raise duckdb.InternalException("INTERNAL Error: Attempted to access index 0 within vector of size 0")
            return all_models(con)

        monkeypatch.setattr(db, "all_models", invalidated)
        r = client.get("/api/health")
        assert r.status_code == 503, r.text
        assert "reopened" in r.json()["error"] and "Retry-After" in r.headers
        r = client.get("/api/health")
        assert r.status_code == 200 and r.json()["ok"], r.text
        assert client.post(f"{M}/predict", json={"texts": ["很好"]}).status_code == 200
    finally:
        seeded_store.unhold()


def test_an_unreachable_catalog_is_503_with_a_sentence_not_400(tmp_path):
    lake = Store("ducklake:postgres:dbname=none host=127.0.0.1 port=1 user=postgres", str(tmp_path / "lake"))
    with TestClient(served(lake), client=("127.0.0.1", 50000)) as c:
        for path in ("/api/health", "/api/models"):
            r = c.get(path)
            assert r.status_code == 503, r.text
            assert r.json()["error"].startswith("the DuckLake catalog") and "cannot be reached" in r.json()["error"]
            assert int(r.headers["Retry-After"]) > 0


def test_predictions_that_could_not_be_logged_are_503(seeded_store, client, monkeypatch):
    def refused(*args, **kwargs):
        raise duckdb.ConversionException("Conversion Error: a value the table refuses")

    monkeypatch.setattr(db, "insert_predictions", refused)
    seeded_store.hold()
    serving = Serving(seeded_store).start()  # as the server logs predictions
    try:
        r = client.post(f"{M}/predict", json={"texts": ["很好"]})
        assert r.status_code == 503 and "could not be logged" in r.json()["error"], r.text
    finally:
        serving.stop()
        seeded_store.unhold()


def test_a_catalog_that_goes_away_and_comes_back_is_503_meanwhile_then_answers(reviews, tmp_path):
    """A lake whose PostgreSQL stops under a running API: lookups, reads and writes are 503 with a
    sentence (never a 500 and a traceback); once it is back, the same requests answer."""
    if pgcluster.pg_bin() is None:
        pytest.skip("PostgreSQL is not installed")
    from conftest import make_model
    cluster = pgcluster.Cluster().start()
    try:
        lake = new_lake(cluster, tmp_path)
        make_model(lake, reviews, n_train=120, n_test=40)
        from core import train
        train.train_version(lake, "m", "tester", model_config={"estimator": "sgd"})
        lake.hold()
        with TestClient(served(lake), client=("127.0.0.1", 50000)) as c:
            assert c.post("/api/models/m/predict", json={"texts": ["很好"]}).status_code == 200
            pgcluster.pause(cluster)
            for method, path, body in [("get", "/api/health", None), ("get", "/api/models/m", None),
                                       ("post", "/api/models/m/predict", {"texts": ["很好"]}),
                                       ("post", "/api/models/m/feedback", {"prediction_id": 1, "label": "正面"})]:
                r = c.request(method.upper(), path, json=body)
                assert r.status_code == 503, (path, r.text)
                assert "cannot be reached" in r.json()["error"] and "Retry-After" in r.headers
            with pytest.raises(StoreUnavailable):
                registry.list_models(lake)
            pgcluster.resume(cluster)
            assert c.get("/api/health").status_code == 200
            assert c.post("/api/models/m/predict", json={"texts": ["很好"]}).status_code == 200
        lake.unhold()
    finally:
        cluster.stop()


# --- the hard-example draw: a POST records, a GET only previews --------------------------------

def _batches(store) -> int:
    with store.connect() as con:
        return con.execute("SELECT count(*) FROM sample_batches").fetchone()[0]


def test_get_hard_examples_records_nothing_and_post_records_one_batch(seeded_store, client):
    before = _batches(seeded_store)
    preview = client.get(f"{M}/hard-examples", params={"k": 5})
    assert preview.status_code == 200 and preview.json()["batch_id"] is None and len(preview.json()["items"]) == 5
    assert _batches(seeded_store) == before
    drawn = client.post(f"{M}/hard-examples", params={"k": 5})
    assert drawn.status_code == 201, drawn.text
    assert drawn.json()["batch_id"] is not None and _batches(seeded_store) == before + 1
    assert [i["prediction_id"] for i in drawn.json()["items"]] == [i["prediction_id"] for i in preview.json()["items"]]


@pytest.mark.stress
def test_a_real_full_disk_is_said_as_such_and_writes_resume_once_space_is_freed(reviews, tmp_path):
    """The store on a small tmpfs filled to the brim (needs root to mount; skipped otherwise)."""
    import os
    import subprocess

    from conftest import make_model
    from core import imports

    disk = tmp_path / "small"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)],
                                           capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        store = Store(disk / "mms.duckdb")
        make_model(store, reviews, n_train=200, n_test=50)
        store.hold()  # as the server holds it
        filler = disk / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        more = reviews.iloc[2000:2600]
        with store.connect() as con:
            before = con.execute("SELECT count(*) FROM examples").fetchone()[0]
        seen = []
        for _ in range(3):
            with pytest.raises((DiskFull, StoreUnavailable)) as caught:
                imports.import_frame(store, "m", more, "train", "tester")
            seen.append(caught.value)
        assert isinstance(seen[0], DiskFull) and "the disk holding the store is full" in str(seen[0])
        filler.unlink()
        imports.import_frame(store, "m", more, "train", "tester")
        with store.connect() as con:
            assert con.execute("SELECT count(*) FROM examples").fetchone()[0] == before + len(more)
        store.unhold()
        print(f"\nfull tmpfs: {[type(e).__name__ for e in seen]}, then the import succeeded once space was freed")
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
