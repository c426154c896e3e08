"""Compaction: merge what many small writes leave behind, so reads stay fast.

Rollup rows that batches appended are merged per key (both backends). On DuckLake, rows that small
inserts kept inlined in the catalog are written out as Parquet, small adjacent files are merged,
and files no recent snapshot needs are deleted. The server runs it every MMS_COMPACT_SECONDS;
`python -m core compact` runs it once."""
from __future__ import annotations

import logging
import threading

from . import settings, stats
from . import store as db
from .errors import Conflict, MMSError
from .store import Store

log = logging.getLogger("mms.compact")


def compact(store: Store) -> dict[str, int]:
    """Compact once; returns what changed (rollup rows merged; on DuckLake rows flushed, files merged and deleted).

    A concurrent writer may win the race for a rollup table: Conflict, and the next run merges it."""
    done = {"rollup_rows_merged": stats.compact_rollups(store)}
    if store.is_lake:
        with store.connect() as con:
            done.update(db.compact_lake_files(con))
    return done


class Compactor:
    """The server's compaction thread: every `seconds`, until stopped; failures are logged, never raised."""

    def __init__(self, store: Store, seconds: float | None = None):
        self.store = store
        self.seconds = float(settings.get("compact_seconds") if seconds is None else seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mms-compact", daemon=True)

    def start(self) -> "Compactor":
        if self.seconds > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                done = compact(self.store)
                log.info("MMS: compacted %s", done)
            except Conflict:
                log.info("MMS: compaction met a concurrent write; it runs again in %.0f s", self.seconds)
            except MMSError as e:
                log.warning("MMS: compaction: %s", e)
            except Exception:
                log.exception("MMS: compaction failed")
