"""Issue 17's table from one run: the serving-path benchmarks one after another, each on the size
its target names, then every figure beside its target.

    python bench/serving_table.py [--seconds 20] [--texts 20000] [--store10m PATH] [--skip NAME,...]

Runs, in this order (each prints its own figures as it goes; they are collected through
`_common.record` into one file):

1. predict_throughput.py --texts N: predict + log in one process, and on all cores, against bare jieba;
2. stats_scale.py: statistics at 10M and 1M, hard examples at 10M, the Monitor through AppTest
   after live traffic (it builds the cached 1M and 10M stores first if they are missing);
3. api_load.py --store <10M>: batches of 1 (8 clients) and 100 (4 clients) against a real
   `streamlit run app.py` on a copy of stats_scale's 10M store, then 2 clients while the CLI trains
   and activates through the server;
4. cold_start.py --runs 1 --store <a copy of the 10M store>: `streamlit run` on the 10M store, the
   Monitor drawn in chromium, then a fresh browser session's Monitor on that server; then the very
   first start on an empty folder (the demo store built while the browser waits) to the Monitor.

The 10M store is stats_scale's cache (built by its first run, ~12 min). The copies go to a
temporary folder and are removed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, header

BENCH = Path(__file__).resolve().parent
STORE_10M = Path("/tmp/mms-bench-stats/v2-10000000/bench.duckdb")

# (key, what the issue calls it, target, met(value) -> bool, how the value is shown)
ROWS = (
    ("api_batch1_rps", "API, 1 text per request, 8 clients: requests/s", ">= 400", lambda v: v >= 400, "{:.0f}"),
    ("api_batch1_p50_ms", "API, 1 text: p50 latency", "<= 10 ms", lambda v: v <= 10, "{:.0f} ms"),
    ("api_batch1_p99_ms", "API, 1 text: p99 latency", "<= 50 ms", lambda v: v <= 50, "{:.0f} ms"),
    ("api_batch1_cpu_ms", "  (server CPU per 1-text request, its process group)", "", None, "{:.2f} ms"),
    ("api_batch100_ratio", "API, 100 texts per request: texts/s / bare jieba, one core", ">= 0.8", lambda v: v >= 0.8,
     "{:.2f}"),
    ("one_process_ratio", "predict + log in one process / bare jieba", ">= 0.85", lambda v: v >= 0.85, "{:.2f}"),
    ("one_process_cpu_ratio", "  (the same by CPU time)", "", None, "{:.2f}"),
    ("all_cores_ratio", "predict on all cores / bare jieba on one core", ">= 1.6", lambda v: v >= 1.6, "{:.2f}"),
    ("stats_first_s", "stats line x day at 10M, first call", "<= 0.1 s", lambda v: v <= 0.1, "{:.3f} s"),
    ("stats_growth", "stats at 10M / stats at 1M (first calls)", "<= 1.3", lambda v: v <= 1.3, "{:.2f}"),
    ("stats_growth_later", "  (the same, later calls' medians)", "", None, "{:.2f}"),
    ("monitor_apptest_miss_s", "Monitor render at 10M after live traffic (cache miss), AppTest", "<= 1 s",
     lambda v: v <= 1, "{:.2f} s"),
    ("chromium_start_drawn_s", "  (`streamlit run` on the 10M store to the Monitor's last element, chromium)", "",
     None, "{:.2f} s"),
    ("chromium_fresh_session_s", "Monitor drawn to its last element in chromium, fresh session at 10M", "<= 3 s",
     lambda v: v <= 3, "{:.2f} s"),
    ("chromium_first_run_s", "  (first `streamlit run` on an empty folder to the Monitor's last element, the demo "
     "store built meanwhile, chromium)", "", None, "{:.1f} s"),
    ("hard_later_s", "hard examples, top 500, one line, one week, at 10M (later calls' median)", "<= 0.1 s",
     lambda v: v <= 0.1, "{:.3f} s"),
    ("hard_first_s", "  (the first call after opening the store)", "", None, "{:.3f} s"),
    ("hard_rescored_s", "  (three draws by a version that logged none of the pool, as after a retrain)", "", None,
     None),
    ("cli_refused", "predictions refused while the CLI trains and activates", "0", lambda v: v == 0, "{}"),
    ("cli_rate_ratio", "rate during / before", ">= 0.5", lambda v: v >= 0.5, "{:.2f}"),
    ("answered_logged", "predictions answered / logged", "equal", lambda v: v[0] == v[1], None),
)


def run(name: str, args: list[str], figures: Path) -> None:
    print(f"\n## {name} {' '.join(args)} (load average {os.getloadavg()[0]:.1f} at start)", flush=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(BENCH / name), *args], cwd=ROOT,
                          env={**os.environ, "MMS_BENCH_FIGURES": str(figures)})
    print(f"## {name}: exit {done.returncode} after {time.perf_counter() - started:.0f} s", flush=True)


def copy_store(source: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    shutil.copyfile(source, folder / source.name)
    shutil.copytree(source.parent / "artifacts", folder / "artifacts")
    return folder / source.name


def show(fmt, value) -> str:
    if isinstance(value, list):
        return " / ".join(f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" for v in value)
    return fmt.format(value) if fmt else str(value)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20, help="each api_load phase (default 20)")
    p.add_argument("--texts", type=int, default=20000, help="predict_throughput's texts (default 20,000)")
    p.add_argument("--store10m", type=Path, default=STORE_10M, help="stats_scale's 10M store")
    p.add_argument("--skip", default="", help="benchmarks to leave out, comma-separated (e.g. cold_start)")
    args = p.parse_args()
    skip = {s.strip().removesuffix(".py") for s in args.skip.split(",") if s.strip()}
    header("issue 17's table, one run")
    with tempfile.TemporaryDirectory(prefix="mms-bench-table-") as tmp:
        figures = Path(tmp) / "figures.jsonl"
        figures.touch()
        if "predict_throughput" not in skip:
            run("predict_throughput.py", ["--texts", str(args.texts)], figures)
        if "stats_scale" not in skip:  # before api_load: builds the 10M store if it is not cached yet
            run("stats_scale.py", [], figures)
        if "api_load" not in skip:
            run("api_load.py", ["--seconds", str(args.seconds), "--store", str(args.store10m)], figures)
        if "cold_start" not in skip:
            copy = copy_store(args.store10m, Path(tmp) / "cold")
            run("cold_start.py", ["--runs", "1", "--store", str(copy)], figures)
        got = {}
        for line in figures.read_text().splitlines():
            row = json.loads(line)
            got[row["key"]] = (row["value"], row["load"])
    print("\n| measure | measured | load | target | |\n|---|---|---|---|---|")
    for key, label, target, met, fmt in ROWS:
        if key not in got:
            print(f"| {label} | not measured | | {target} | |")
            continue
        value, load = got[key]
        verdict = "" if met is None else ("met" if met(value) else "missed")
        print(f"| {label} | {show(fmt, value)} | {load:.1f} | {target} | {verdict} |")


if __name__ == "__main__":
    main()
