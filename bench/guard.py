"""The promotion guard with statistics: what its verdict costs and what it says on real retrains.

Builds a demo store (default sizes: 4,000 training and 2,000 test reviews), trains a few versions
beside version 1 with pinned configs, and for each prints the guard's verdict against version 1
(which figures fell significantly, notes, the baseline) and the time of the verdict: cold (the
first in the process: both model files loaded and the 2,000 test rows predicted) and warm (the
answers kept per model file; only the statistics run).

    python bench/guard.py [--n-train 4000] [--n-test 2000]
"""
import argparse
import os
import shutil
import tempfile
from pathlib import Path

from _common import header, timer
from core import compare, demo, registry, train
from core.store import Store

CONFIGS = [{"estimator": "logreg", "C": 2.0}, {"estimator": "sgd"}, {"estimator": "complement_nb"},
           {"estimator": "complement_nb", "max_features": 50}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--n-test", type=int, default=2000)
    args = parser.parse_args()
    header("promotion guard: paired tests on the shared test rows, trivial baseline")
    folder = Path(tempfile.mkdtemp(prefix="mms-guard-"))
    try:
        store = Store(folder / "mms.duckdb")
        with timer() as t:
            v1 = demo.build_store(store, n_train=args.n_train, n_test=args.n_test, n_traffic=0)
        print(f"demo store built in {t.seconds:.1f} s; version 1 active: {registry.get_model(store, demo.MODEL).active_version}")
        print(f"  {compare.baseline(v1).sentence()}")
        for config in CONFIGS:
            v = train.train_version(store, demo.MODEL, "bench", model_config=config)
            registry._answers.clear()  # cold: as in a fresh process
            with timer() as cold:
                verdict = registry.guard_verdict(store, demo.MODEL, v.version)
            with timer() as warm:
                registry.guard_verdict(store, demo.MODEL, v.version)
            print(f"\nv{v.version} {config}: accuracy {v.metrics['accuracy']:.3f} (v1 {v1.metrics['accuracy']:.3f}); "
                  f"verdict cold {cold.seconds * 1000:.0f} ms, warm {warm.seconds * 1000:.0f} ms "
                  f"(load now {os.getloadavg()[0]:.1f})")
            print("  " + (verdict.sentence() or "not refused"))
            for note in verdict.notes:
                print(f"  note: {note}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
