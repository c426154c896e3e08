"""Compaction: merge what many small writes leave behind, so reads stay fast.

Rollup rows that batches appended are merged per key (both backends). On DuckLake, rows that small
inserts kept inlined in the catalog are written out as Parquet, small adjacent files are merged,
and files no recent snapshot needs are deleted. The server runs it every MMS_COMPACT_SECONDS;
`python -m core compact` runs it once."""
from __future__ import annotations

import logging

from . import settings, stats
from . import store as db
from .background import Every
from .errors import Conflict, MMSError
from .store import Store

log = logging.getLogger("mms.compact")


ORPHAN_SECONDS = 3600  # a Parquet file no snapshot references, this old, is no running writer's


def compact(store: Store, orphans: bool = False, orphan_seconds: float = ORPHAN_SECONDS) -> dict[str, int]:
    """Compact once; returns what changed (rollup rows merged; on DuckLake rows flushed, files merged and
    deleted, and with `orphans` the Parquet files no snapshot references, older than `orphan_seconds`,
    that a writer killed before its commit left: `ducklake_cleanup_old_files` never sees those).

    A concurrent writer may win the race for a rollup table: Conflict, and the next run merges it."""
    done = {"rollup_rows_merged": stats.compact_rollups(store)}
    if store.is_lake:
        with store.connect() as con:
            done.update(db.compact_lake_files(con))
            if orphans:
                done["orphan_files_deleted"] = len(db.orphan_files(con, orphan_seconds, delete=True))
    return done


class Compactor(Every):
    """The server's compaction thread: every `seconds`, until stopped; failures are logged, never raised."""
    name = "mms-compact"

    def __init__(self, store: Store, seconds: float | None = None):
        self.store = store
        super().__init__(settings.get("compact_seconds") if seconds is None else seconds)

    def once(self) -> None:
        try:
            done = compact(self.store)
            log.info("MMS: compacted %s", done)
        except Conflict:
            log.info("MMS: compaction met a concurrent write; it runs again in %.0f s", self.seconds)
        except MMSError as e:
            log.warning("MMS: compaction: %s", e)
