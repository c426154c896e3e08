"""Leases: work that one process of a deployment does at a time (a model's policy run, its shadow
scoring), with several servers on one DuckLake store as with one server on its file.

A process takes a lease for SECONDS and renews it while it works (`Held`); each write the work
makes renews it in the same transaction (`renew`), so a process that lost its lease (it stalled
past SECONDS and another took over) writes nothing more. A lease is free when nobody took it, when
it lapsed, or when its holder is a process of this host that is gone (a restarted server need not
wait the lease out). Hosts' clocks are assumed to agree to well within SECONDS.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path

import pandas as pd

from . import store as db
from .errors import Conflict, LeaseLost
from .store import Store

log = logging.getLogger("mms.leases")

SECONDS = 60.0  # a lease lapses this long after its last renewal
RENEW_EVERY = SECONDS / 4  # a live holder renews this often: three renewals may fail before it lapses
# one take at a time in this process: two would conflict on lease_claims' row (another process's take
# still may, and loses with Conflict); hold it around the transaction that calls `take`
claiming = threading.RLock()


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


_ME = f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def me() -> str:
    """This process as a holder: host, pid and the pid's start time (a pid is reused)."""
    global _ME
    if _ME.split(":")[1] != str(os.getpid()):  # a forked process
        _ME = f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"
    return _ME


def alive(holder: str) -> bool | None:
    """Whether the holding process still runs: True or False on this host, None for another host's
    (only its own host can tell: its lease says, by lapsing)."""
    host, _, rest = holder.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname():
        return None
    if not pid.isdigit():
        return False
    return _start_time(int(pid)) == started and started != "None"


def _until(seconds: float | None = None):
    return db.now() + pd.Timedelta(seconds=SECONDS if seconds is None else seconds)


def take(con, name: str, holder: str | None = None, seconds: float | None = None) -> str | None:
    """Take the lease `name` in the caller's transaction: None when it is now `holder`'s (this
    process by default), else who holds it. Two takes at once conflict on commit (Conflict)."""
    holder = holder or me()
    row = db.lease_row(con, name)
    if row is not None and row["holder"] != holder and pd.Timestamp(row["until"]) > db.now() \
            and alive(row["holder"]) is not False:
        return row["holder"]
    db.put_lease(con, name, holder, _until(seconds))
    return None


def take_now(store: Store, name: str, holder: str | None = None) -> str | None:
    """`take` in a transaction of its own; a take that lost a race to another process's says so."""
    try:
        with claiming, store.transaction() as con:
            return take(con, name, holder)
    except Conflict:
        return "another process (it took the lease at the same moment)"


def renew(con, name: str, holder: str | None = None) -> None:
    """Renew the lease in the caller's transaction, before the writes it guards; LeaseLost when it
    is no longer the holder's (the transaction is then rolled back: nothing is written)."""
    if not db.renew_lease(con, name, holder or me(), _until()):
        raise LeaseLost(f"this process no longer holds {name}: another took it over after it lapsed; "
                        "nothing more was written")


def release(store: Store, name: str, holder: str | None = None) -> None:
    """Let the lease lapse now, if it is the holder's: the next process to look may take it."""
    try:
        with store.transaction() as con:
            db.renew_lease(con, name, holder or me(), db.now() - pd.Timedelta(microseconds=1))
    except Conflict:
        pass  # it lapses by itself


def retrying(store: Store, write, attempts: int = 5):
    """write(con) in a transaction, again while it conflicts with another process's write (on
    DuckLake two writes to one table conflict, whichever rows they touch)."""
    for attempt in range(attempts):
        try:
            with store.transaction() as con:
                return write(con)
        except Conflict:
            if attempt == attempts - 1:
                raise
            threading.Event().wait(0.05 * (attempt + 1))


class Held:
    """A block during which this process renews the lease `name` every RENEW_EVERY seconds (on a
    thread), then lets it lapse. `lost` is set when a renewal found the lease taken over."""

    def __init__(self, store: Store, name: str):
        self.store, self.name, self.holder = store, name, me()
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"mms-lease-{name}", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join(timeout=10)
        if not self.lost.is_set():
            release(self.store, self.name, self.holder)

    def _beat(self) -> None:
        while not self._done.wait(RENEW_EVERY):
            try:
                with self.store.transaction() as con:
                    renew(con, self.name, self.holder)
            except LeaseLost as e:
                log.warning("MMS: %s", e)
                self.lost.set()
                return
            except Exception as e:  # a conflict or a catalog outage: the next beat tries again
                log.warning("MMS: lease %s not renewed this time: %s", self.name, e)
