"""DuckLake-only behaviour: several processes writing one store at once, small writes inlined, compaction."""
import json
import subprocess
import sys
import textwrap

import duckdb
import pandas as pd
import pytest

from core import compact, predict, registry, train
from core import store as db
from lakefixtures import lake_store, pg_cluster  # noqa: F401  (fixtures)
from conftest import ROOT, make_model

M = "m"

WRITER = textwrap.dedent("""
    import json, sys, time
    import pandas as pd
    sys.path.insert(0, {root!r})
    from core import feedback, predict, registry
    from core.errors import Conflict
    from core.store import Store

    store, me, rounds = Store({url!r}, {data!r}), int(sys.argv[1]), int(sys.argv[2])
    sent = labelled = 0
    activations = []
    for i in range(rounds):
        out = predict.predict_texts(store, "m", [f"第{{me}}号进程的第{{i}}条评论，还行", "太差了"], "w", business_line=f"line{{me}}")
        sent += len(out)
        while True:  # a label racing another process's label commit conflicts: the caller tries again
            try:
                feedback.label_prediction(store, "m", int(out["prediction_id"].iloc[0]), "正面", "w")
                labelled += 1
                break
            except Conflict:
                time.sleep(0.05)
        if i % 3 == me % 3:
            version = 1 + (i + me) % 2
            while True:
                try:
                    registry.activate_version(store, "m", version, "w", f"process {{me}}", force=True)
                    activations.append(version)
                    break
                except Conflict:
                    time.sleep(0.05)
    print(json.dumps({{"sent": sent, "labelled": labelled, "activations": activations}}))
""")


@pytest.mark.stress
def test_three_processes_writing_one_lake_keep_every_row_and_one_active_version(lake_store, reviews):
    make_model(lake_store, reviews, n_train=150, n_test=50, name=M)
    train.train_version(lake_store, M, "owner", activate=True)
    train.train_version(lake_store, M, "owner", model_config={"estimator": "complement_nb"})
    code = WRITER.format(root=str(ROOT), url=lake_store.url, data=lake_store.data_path)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(me), "12"], stdout=subprocess.PIPE, text=True)
             for me in range(3)]
    results = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
    with lake_store.connect() as con:
        logged = con.execute("SELECT count(*) FROM predictions WHERE created_by = 'w'").fetchone()[0]
        labels = con.execute("SELECT count(*), count(DISTINCT prediction_id) FROM feedback").fetchone()
        audited = con.execute("SELECT count(*) FROM events WHERE action = 'activate' AND \"user\" = 'w'"
                              ).fetchone()[0]
        ids = con.execute("SELECT count(*) = count(DISTINCT prediction_id) FROM predictions").fetchone()[0]
    assert logged == sum(r["sent"] for r in results) and ids
    assert labels[0] == labels[1] == sum(r["labelled"] for r in results)
    assert audited == sum(len(r["activations"]) for r in results)
    assert registry.get_model(lake_store, M).active_version in (1, 2)


def test_small_writes_are_inlined_and_compaction_writes_them_out(lake_store, reviews):
    make_model(lake_store, reviews, n_train=150, n_test=50, name=M)
    train.train_version(lake_store, M, "owner", activate=True)
    with lake_store.connect() as con:
        files_before = db.lake_file_count(con)
    for i in range(5):
        predict.predict_texts(lake_store, M, [f"第{i}条，还不错"], "u")
    with lake_store.connect() as con:
        assert db.lake_file_count(con) == files_before  # five one-row batches: no new Parquet file
    done = compact.compact(lake_store)
    assert done["rows_flushed"] > 0
    with lake_store.connect() as con:
        assert con.execute("SELECT count(*) FROM predictions WHERE created_by = 'u'").fetchone()[0] == 5


def test_a_killed_writer_leaves_no_partial_batch(lake_store, reviews):
    make_model(lake_store, reviews, n_train=150, n_test=50, name=M)
    train.train_version(lake_store, M, "owner", activate=True)
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from core import store as db
        from core.store import Store
        import pandas as pd
        store = Store({lake_store.url!r}, {lake_store.data_path!r})
        frame = pd.DataFrame({{"text": ["x"] * 5000, "norm_text": ["x"] * 5000, "business_line": "k",
                               "label": "正面", "top_prob": 0.9, "probs": [[0.9, 0.1]] * 5000, "created_at": None}})
        with store.transaction() as con:
            db.insert_predictions(con, 1, 1, frame, "kill", "k")
            os._exit(9)  # dies before commit, as a kill -9 would
    """)
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    with lake_store.connect() as con:
        assert con.execute("SELECT count(*) FROM predictions WHERE source = 'kill'").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM prediction_rollups WHERE business_line = 'k'").fetchone()[0] == 0


OPENER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from core import registry
    from core.store import Store
    print(registry.get_model(Store({url!r}, {data!r}), "m").name)
""")


def test_processes_starting_together_on_one_lake_all_start(lake_store, reviews):
    # Seen in CI: three processes opening one lake at once each rewrote the inlining option, and
    # PostgreSQL refused two of them ("could not serialize access due to concurrent update").
    make_model(lake_store, reviews, n_train=150, n_test=50, name=M)
    code = OPENER.format(root=str(ROOT), url=lake_store.url, data=lake_store.data_path)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outcomes = [p.communicate(timeout=300) for p in procs]
    assert [out.strip() for out, _ in outcomes] == [M] * 4, [err[-600:] for _, err in outcomes]


def test_a_catalog_serialization_failure_at_open_is_retried(lake_store, monkeypatch):
    original, calls = db.Store._apply_migrations, []

    def racing(self, con):
        calls.append(1)
        if len(calls) == 1:
            raise duckdb.Error('Failed to execute query "UPDATE ducklake_metadata": ERROR:  could not serialize '
                               'access due to concurrent update')
        return original(self, con)

    monkeypatch.setattr(db.Store, "_apply_migrations", racing)
    with lake_store.connect() as con:
        assert con.execute("SELECT count(*) FROM models").fetchone()[0] == 0
    assert len(calls) == 2


def test_an_error_at_open_that_is_not_a_conflict_is_not_retried(lake_store, monkeypatch):
    calls = []

    def broken(self, con):
        calls.append(1)
        raise duckdb.Error("Catalog Error: something else")

    monkeypatch.setattr(db.Store, "_apply_migrations", broken)
    with pytest.raises(duckdb.Error, match="something else"):
        with lake_store.connect():
            pass
    assert len(calls) == 1
