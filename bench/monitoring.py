"""What monitoring costs beside the statistics, on bench/stats_scale.py's cached stores (1M and 10M
predictions under /tmp/mms-bench-stats; run that first to build them).

Prints, per store: the statistics the Monitor reads (stats_by_line_and_overall by week, which now
carries the estimate and the audit counts), the estimate's own share of it (the sum_var column
in the same rollup query: measured as the audit query alone, the one part that reads the log),
and drift by week cold (its cache emptied: every line x week sampled and measured) and warm (the
cache hit that every later render gets). Never decides pass/fail.

    python bench/monitoring.py [--rows 1000000 10000000]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import demo, drift, registry, settings, stats  # noqa: E402
from core import store as db  # noqa: E402
from core.registry import NOT_TRAINING_LABELS  # noqa: E402
from core.store import Store  # noqa: E402

CACHE = Path("/tmp/mms-bench-stats")


def best_of(fn, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(store: Store) -> None:
    with store.connect() as con:
        model = registry.find_model(con, demo.MODEL)
        rows = con.execute("SELECT count(*) FROM predictions").fetchone()[0]
    by_line, _ = stats.stats_by_line_and_overall(store, demo.MODEL, "week")
    page = best_of(lambda: stats.stats_by_line_and_overall(store, demo.MODEL, "week"))

    def audit_only():
        with store.connect() as con:
            db.audit_statistics(con, model.model_id, "week", float(settings.get("audit_share")),
                                list(NOT_TRAINING_LABELS))

    audit = best_of(audit_only)
    with store.transaction() as con:
        con.execute("DELETE FROM drift_cells WHERE model_id = ?", [model.model_id])
    drift._references.clear()
    start = time.perf_counter()
    report = drift.drift_by_line_and_period(store, demo.MODEL, "week", by_line)
    cold = time.perf_counter() - start
    warm = best_of(lambda: drift.drift_by_line_and_period(store, demo.MODEL, "week", by_line))
    print(f"{rows:>11,} predictions, {len(by_line)} line x weeks, {int(report.cells['flagged'].sum())} flagged")
    print(f"  statistics by week (estimate + audit included): {page * 1000:8.0f} ms")
    print(f"    of which the audit counts (reads the log):    {audit * 1000:8.0f} ms")
    print(f"  drift by week, cold (every cell measured):      {cold * 1000:8.0f} ms "
          f"({cold / max(len(by_line), 1) * 1000:.0f} ms per cell)")
    print(f"  drift by week, warm (cache hit):                {warm * 1000:8.0f} ms "
          f"(ratio to statistics: {warm / page:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    args = parser.parse_args()
    for rows in args.rows:
        folder = CACHE / f"v2-{rows}"
        if not (folder / "complete").exists():
            print(f"{folder}: no cached store; run bench/stats_scale.py first")
            continue
        measure(Store(folder / "bench.duckdb"))


if __name__ == "__main__":
    main()
