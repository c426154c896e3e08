"""What monitoring costs beside the statistics, on a copy of bench/stats_scale.py's cached stores (1M
and 10M predictions under /tmp/mms-bench-stats; run that first to build them). The cache itself is
never written: drift's cache is emptied and filled in the copy.

Prints, per store: the statistics' own rollup query (volume, confidence, labelled accuracy per line
x week), each monitoring part beside it (the estimate: the confidence histogram from the same rollups
mapped through the version's held-out reliability curve; the audit counts; drift read from its cache),
the whole stats_by_line_and_overall the Monitor reads, and filling drift's cache once (what the
server does at start: every line x week sampled and measured). Never decides pass/fail.

    python bench/monitoring.py [--rows 1000000 10000000] [--work /tmp/mms-bench-monitoring]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import demo, drift, monitoring, registry, server, settings, stats  # noqa: E402
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


def parts(store: Store) -> dict[str, float]:
    """Seconds (best of 3) of the statistics' rollup query and of each monitoring part beside it, on
    one connection."""
    share, low = float(settings.get("audit_share")), float(settings.get("low_confidence"))
    with store.connect() as con:
        model = registry.find_model(con, demo.MODEL)

        def estimate():
            histogram = db.confidence_histogram(con, model.model_id, "week")
            versions = {int(v): registry.find_version(con, model, int(v)).metrics for v in histogram["version"].unique()}
            monitoring.estimate(histogram, versions, {})

        times = {"statistics": best_of(lambda: db.line_period_statistics(con, model.model_id, "week", low, model.labels,
                                                                           list(NOT_TRAINING_LABELS))),
                 "estimate": best_of(estimate),
                 "audit": best_of(lambda: db.audit_statistics(con, model.model_id, "week", share,
                                                              list(NOT_TRAINING_LABELS)))}
    return times | {"page": best_of(lambda: stats.stats_by_line_and_overall(store, demo.MODEL, "week"))}


def measure(store: Store) -> None:
    with store.connect() as con:
        rows = con.execute("SELECT count(*) FROM predictions").fetchone()[0]
        model_id = registry.find_model(con, demo.MODEL).model_id
    with store.transaction() as con:
        con.execute("DELETE FROM drift_cells WHERE model_id = ?", [model_id])
    drift._references.clear()
    start = time.perf_counter()
    server.measure_drift(store)  # the server's pass at start: every model's line x weeks
    fill = time.perf_counter() - start
    by_line, _ = stats.stats_by_line_and_overall(store, demo.MODEL, "week")
    warm = best_of(lambda: drift.drift_by_line_and_period(store, demo.MODEL, "week", by_line, budget_seconds=0))
    t = parts(store)
    base = t["statistics"]
    print(f"{rows:>11,} predictions, {len(by_line)} line x weeks; load average {os.getloadavg()[0]:.1f}")
    print(f"  statistics' rollup query by week:             {base * 1000:8.0f} ms")
    print(f"  estimate (confidence histogram + curve map):  {t['estimate'] * 1000:8.0f} ms  ({t['estimate'] / base:.2f} x)")
    print(f"  audit counts (labels joined to predictions):  {t['audit'] * 1000:8.0f} ms  ({t['audit'] / base:.2f} x)")
    print(f"  drift by week from its cache:                 {warm * 1000:8.0f} ms  ({warm / base:.2f} x)")
    print(f"  estimate + drift (the issue's target: <= 1 x): {(t['estimate'] + warm) * 1000:7.0f} ms  "
          f"({(t['estimate'] + warm) / base:.2f} x)")
    print(f"  the Monitor's statistics (all of the above but drift): {t['page'] * 1000:.0f} ms")
    print(f"  filling drift's cache once (server start):    {fill:8.0f} s  "
          f"({fill / max(len(by_line), 1):.1f} s per line x week)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--work", default="/tmp/mms-bench-monitoring", help="where the store is copied")
    args = parser.parse_args()
    for rows in args.rows:
        folder = CACHE / f"v2-{rows}"
        if not (folder / "complete").exists():
            print(f"{folder}: no cached store; run bench/stats_scale.py first")
            continue
        work = Path(args.work) / f"{rows}"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(folder, work)
        store = Store(work / "bench.duckdb")
        try:
            with store.connect():  # held open, as a server holds its store: no part pays for opening the file
                measure(store)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
