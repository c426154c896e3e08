import subprocess
import sys
import textwrap

import pytest

from core import store as db
from core.errors import StoreBusy, StoreError
from core.store import MIGRATIONS

import storeprobe as probe


def test_migrations_are_recorded_once(store):
    with store.connect() as con:
        assert probe.schema_version(con) == len(MIGRATIONS)
    db._migrated.clear()
    with store.connect() as con:  # a second start applies nothing twice
        assert con.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)


def test_a_store_whose_migrations_are_not_this_codes_is_refused_by_name(store, monkeypatch):
    with store.connect():
        pass
    db._migrated.clear()
    renamed = [(f"{name} (renumbered)", sql) if i == 3 else (name, sql) for i, (name, sql) in enumerate(MIGRATIONS)]
    monkeypatch.setattr(db.schema, "MIGRATIONS", renamed)
    with pytest.raises(StoreError, match=r"migration 4 '.*', which this version of MMS knows as '.*\(renumbered\)'"):
        with store.connect():
            pass
    monkeypatch.setattr(db.schema, "MIGRATIONS", MIGRATIONS[:-1])
    with pytest.raises(StoreError, match="does not know"):
        with store.connect():
            pass


def test_transaction_rolls_back_on_error(store):
    with store.connect() as con:
        before = probe.table_counts(con)
    with pytest.raises(RuntimeError):
        with store.transaction() as con:
            db.insert_model(con, "x", "", "classification", ["a", "b"], {}, {}, "u")
            raise RuntimeError("boom")
    with store.connect() as con:
        assert probe.table_counts(con) == before


def test_lock_held_by_another_process_is_reported_with_its_pid(store, monkeypatch):
    with store.connect():
        pass
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(store.path)!r})
        print('locked', flush=True)
        time.sleep(30)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("MMS_LOCK_TIMEOUT", "0.3")
        with pytest.raises(StoreBusy, match=rf"store is busy \(held by PID {holder.pid}\)"):
            with store.connect():
                pass
    finally:
        holder.kill()
        holder.wait()
    with store.connect() as con:  # free again once the other process is gone
        assert probe.schema_version(con) >= 1
