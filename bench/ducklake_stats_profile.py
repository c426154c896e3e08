"""Where the DuckLake statistics query spends the time it adds over the embedded store.

    python bench/ducklake_stats_profile.py [--rows 1000000] [--repeat 5]

stats_scale's cached store (copied) and the same store migrated into a DuckLake (PostgreSQL catalog
in a throwaway loopback cluster, Parquet under /tmp), each held open as a server holds it. For one
line x day statistics call it prints: the seconds of each store query the call makes on both
backends, the cost of an empty query on one DuckLake table (the per-table catalog work that every
query pays), and how many SQL statements the catalog in PostgreSQL received during one call.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _common import ROOT, header, machine, timer
from core import demo, migrate, stats
from core import store as db
from core.store import Store
from stats_scale import cached_store

sys.path.insert(0, str(ROOT / "tests"))
import pgcluster  # noqa: E402

QUERIES = ("line_period_statistics", "audit_statistics", "confidence_histogram", "version_row", "model_by_name")


def timed_queries(store: Store, repeat: int) -> tuple[float, dict[str, float]]:
    """Median seconds of a whole statistics call, and of each store query inside it (per call)."""
    spent: dict[str, list[float]] = defaultdict(list)
    originals = {name: getattr(db, name) for name in QUERIES}

    def wrap(name, fn):
        def timed(*args, **kwargs):
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name].append(time.perf_counter() - began)
        return timed

    totals = []
    with store.connect():  # held open, as a server holds its store
        stats.stats_by_line_and_period(store, demo.MODEL, "day")  # warm: first reads, caches
        for name, fn in originals.items():
            setattr(db, name, wrap(name, fn))
        try:
            for _ in range(repeat):
                with timer() as t:
                    stats.stats_by_line_and_period(store, demo.MODEL, "day")
                totals.append(t.seconds)
        finally:
            for name, fn in originals.items():
                setattr(db, name, fn)
    return statistics.median(totals), {n: sum(v) / repeat for n, v in spent.items()}


class _Explained:
    """A connection stand-in that runs a store query under EXPLAIN ANALYZE."""

    def __init__(self, con):
        self.con = con

    def execute(self, sql, args=()):
        return self.con.execute("EXPLAIN ANALYZE " + sql, args)


def explain(store: Store, query: str) -> str:
    """The operator tree with timings of one store query of the statistics call."""
    with store.connect() as con:
        model_id = db.model_by_name(con, demo.MODEL)["model_id"]
        fn = getattr(db, query)
        if query == "audit_statistics":
            frame = fn(_Explained(con), model_id, "day", 0.02, ["skip", "unclear"])
        else:
            frame = fn(_Explained(con), model_id, "day")
    return frame.iloc[0, 1]


def empty_query_seconds(store: Store, table: str, repeat: int) -> float:
    with store.connect() as con:
        con.execute(f"SELECT count(*) FROM {table} WHERE false").fetchone()
        times = []
        for _ in range(repeat):
            with timer() as t:
                con.execute(f"SELECT count(*) FROM {table} WHERE false").fetchone()
            times.append(t.seconds)
    return statistics.median(times)


def catalog_statements(cluster: pgcluster.Cluster, lake: Store) -> tuple[int, dict[str, int]]:
    """SQL statements PostgreSQL logged during one statistics call, and the commonest kinds."""
    psql = [str(cluster.bin / "psql"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "-qc"]
    log = cluster.folder / "log"
    subprocess.run([*psql, "ALTER SYSTEM SET log_statement = 'all'"], check=True, capture_output=True)
    subprocess.run([*psql, "SELECT pg_reload_conf()"], check=True, capture_output=True)
    time.sleep(1)
    with lake.connect():
        start = log.stat().st_size
        stats.stats_by_line_and_period(lake, demo.MODEL, "day")
        time.sleep(0.5)
    with open(log, "rb") as f:
        f.seek(start)
        lines = [line.decode("utf-8", "replace") for line in f if b"statement: " in line]
    kinds: dict[str, int] = defaultdict(int)
    for line in lines:
        sql = line.split("statement: ", 1)[1].strip()
        kinds[" ".join(sql.split()[:4])[:70]] += 1
    subprocess.run([*psql, "ALTER SYSTEM RESET log_statement"], check=True, capture_output=True)
    subprocess.run([*psql, "SELECT pg_reload_conf()"], check=True, capture_output=True)
    return len(lines), dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:8])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000, help="predictions in the store (stats_scale's cache)")
    p.add_argument("--repeat", type=int, default=5, help="statistics calls measured per backend")
    p.add_argument("--explain", nargs="*", default=[], help="store queries to print EXPLAIN ANALYZE of, e.g. "
                                                             "audit_statistics confidence_histogram")
    args = p.parse_args()
    header(f"DuckLake statistics profile at {args.rows:,} predictions")
    print(machine())
    work = Path(tempfile.mkdtemp(prefix="mms-bench-lakeprof-"))
    cluster = pgcluster.Cluster().start()
    try:
        cached = cached_store(args.rows, rebuild=False)
        embedded = Store(work / "embedded" / "mms.duckdb")
        shutil.copytree(cached.path.parent, embedded.path.parent, ignore=shutil.ignore_patterns("complete"))
        (embedded.path.parent / cached.path.name).rename(embedded.path)
        lake = Store(cluster.create_db("proflake"), str(work / "lake") + "/")
        migrate.migrate(embedded, lake, "bench")
        for label, store in (("embedded", embedded), ("DuckLake", lake)):
            total, parts = timed_queries(store, args.repeat)
            inside = " + ".join(f"{n} {s:.3f}" for n, s in sorted(parts.items(), key=lambda kv: -kv[1]))
            print(f"{label:9}: call {total:.3f} s (median of {args.repeat}); store queries per call: {inside}")
        for query in args.explain:
            for label, store in (("embedded", embedded), ("DuckLake", lake)):
                print(f"--- {query} on {label}:\n{explain(store, query)}")
        for table in ("prediction_rollups", "models"):
            e, l = empty_query_seconds(embedded, table, args.repeat), empty_query_seconds(lake, table, args.repeat)
            print(f"empty query on {table}: embedded {e * 1000:.1f} ms, DuckLake {l * 1000:.1f} ms")
        with lake.connect() as con:
            print(f"DuckLake data files read by the current snapshot: {db.lake_file_count(con)}")
        n, kinds = catalog_statements(cluster, lake)
        print(f"catalog statements in PostgreSQL during one DuckLake statistics call: {n}")
        for kind, count in kinds.items():
            print(f"  {count:4d}  {kind}")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
