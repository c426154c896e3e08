"""Leases (core.leases): work one process of a deployment does at a time, taken over when it lapses."""
import subprocess
import sys

import pandas as pd
import pytest

from core import leases
from core import store as db
from core.errors import LeaseLost
from lakefixtures import lake_store, pg_cluster  # noqa: F401  (fixtures)

ELSEWHERE = "another-host:4242:777"


def holder_of(store, name: str) -> str | None:
    with store.connect() as con:
        row = db.lease_row(con, name)
    return row and row["holder"]


def test_a_live_lease_is_refused_to_others_and_taken_once_it_lapses(store):
    assert leases.take_now(store, "work", ELSEWHERE) is None
    assert leases.take_now(store, "work") == ELSEWHERE  # another host's, not lapsed: left alone
    with store.transaction() as con:
        db.put_lease(con, "work", ELSEWHERE, db.now() - pd.Timedelta(seconds=1))  # its renewals stopped
    assert leases.take_now(store, "work") is None
    assert holder_of(store, "work") == leases.me()
    assert leases.take_now(store, "work") is None  # its holder takes it again


def test_a_lease_whose_holder_on_this_host_is_gone_is_free_at_once(store):
    gone = subprocess.run([sys.executable, "-c", "from core import leases; print(leases.me())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert leases.alive(gone) is False and leases.alive(ELSEWHERE) is None and leases.alive(leases.me())
    assert leases.take_now(store, "work", gone) is None
    assert leases.take_now(store, "work") is None


@pytest.mark.parametrize("backend", ["store", "lake_store"])
def test_a_process_that_lost_its_lease_writes_nothing(backend, request):
    store = request.getfixturevalue(backend)
    leases.take_now(store, "work")
    leases.take_now(store, "work", ELSEWHERE)  # not taken: it is ours and live
    assert holder_of(store, "work") == leases.me()
    with store.transaction() as con:
        db.put_lease(con, "work", ELSEWHERE, db.now() + pd.Timedelta(seconds=60))  # taken over meanwhile
    with pytest.raises(LeaseLost, match="no longer holds work"):
        with store.transaction() as con:
            leases.renew(con, "work")
            con.execute("INSERT INTO lease_claims VALUES (99)")  # a write the lease guards
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM lease_claims WHERE n = 99").fetchone()[0] == 0
    leases.release(store, "work")  # not ours: nothing changes
    assert leases.take_now(store, "work") == ELSEWHERE
