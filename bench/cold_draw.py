"""Drawing 500 hard examples with the CLI from a new process, as a labeller's every round does.

A store with --pool distinct unlabelled texts logged by version 1, then version 2 trained and
activated: every draw is scored by version 2, which logged nothing. Each draw is
`python -m core hard-examples M --k 500 --out FILE` in a new process:

1. the first draw after the retrain (version 2 scores the whole pool; the scores go into the store);
2. a second draw in another new process (the scores read back from the store; issue 24's case);
3. after the batch is labelled with the CLI, the next round's draw in a new process;
4. for scale, a new process that only imports the CLI and exits.

    python bench/cold_draw.py [--pool 20000] [--k 500] [--strategy uncertain_spread]
"""
import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from _common import ROOT, header, timer
from core import demo, imports, predict, registry, train
from core.store import Store

USER, MODEL = "bench", "cold"
CONFIG = {"estimator": "linear_svc", "C": 0.5, "word_ngrams": [1, 2], "char_ngrams": [1, 3]}


def cli(store: Store, *args) -> tuple[float, float]:
    """Wall and CPU seconds (the process and its children) of a new `python -m core` process for
    `args` on the store (it must succeed)."""
    env = {**os.environ, "MMS_STORE": str(store.path), "MMS_USER": USER}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with timer() as t:
        done = subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"python -m core {' '.join(args)} failed: {done.stderr.strip()}")
    return t.seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def build(folder: Path, pool: int) -> Store:
    """Version 1 on 3,000 reviews, `pool` other reviews logged by it, version 2 (another C) active."""
    reviews = demo.load_reviews().sample(frac=1.0, random_state=demo.SEED).reset_index(drop=True)
    reviews["business_line"] = reviews["text"].map(demo.business_line)
    store = Store(folder / "mms.duckdb")
    registry.create_model(store, MODEL, ["正面", "负面"], USER, model_config=CONFIG)
    imports.import_frame(store, MODEL, reviews.iloc[:1000], "test", USER)
    imports.import_frame(store, MODEL, reviews.iloc[1000:4000], "train", USER)
    train.train_version(store, MODEL, USER)
    logged = reviews.iloc[4000:4000 + pool]
    for start in range(0, len(logged), 2000):
        part = logged.iloc[start:start + 2000]
        predict.predict_texts(store, MODEL, part["text"].tolist(), USER, business_line=part["business_line"].tolist())
    train.train_version(store, MODEL, USER, model_config={**CONFIG, "C": 1.0})
    registry.activate_version(store, MODEL, 2, USER, "bench: a retrain", force=True)
    return store


def copy_of(folder: Path, work: Path) -> Store:
    """A copy of the kept store, so every run starts from version 2 with nothing scored."""
    shutil.copytree(folder, work / "store")
    return Store(work / "store" / "mms.duckdb")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pool", type=int, default=20000)
    p.add_argument("--k", type=int, default=500)
    p.add_argument("--strategy", default="uncertain_spread")
    p.add_argument("--keep", help="build the store in this folder and keep it (reused when it is there already)")
    args = p.parse_args()
    header(f"cold CLI draw: {args.k} hard examples by {args.strategy} from a pool of {args.pool} texts, "
           f"each draw a new process")
    work = Path(tempfile.mkdtemp(prefix="mms-cold-"))
    try:
        kept = Path(args.keep) if args.keep else None
        with timer() as t:
            if kept and (kept / "mms.duckdb").exists():
                store = copy_of(kept, work)
            else:
                store = build(kept or work / "store", args.pool)
                store = copy_of(kept, work) if kept else store
        print(f"store built in {t.seconds:.0f} s (load {os.getloadavg()[0]:.1f})")
        out = work / "batch.csv"
        draw = ("hard-examples", MODEL, "--k", str(args.k), "--strategy", args.strategy, "--out", str(out))
        rows = [("a new process importing the CLI (--help)", cli(store, "--help"))]
        rows.append(("first draw after the retrain (scores the pool, keeps the scores)", cli(store, *draw)))
        rows.append(("second draw, another new process (scores read from the store)", cli(store, *draw)))
        batch = pd.read_csv(out)
        truth = dict(zip(demo.load_reviews()["text"], demo.load_reviews()["label"]))
        labelled = work / "labels.csv"
        pd.DataFrame({"prediction_id": batch["prediction_id"], "label": batch["text"].map(truth)}).to_csv(
            labelled, index=False)
        rows.append(("labelling the batch with the CLI", cli(store, "label", MODEL, str(labelled))))
        rows.append(("the next round's draw, a new process", cli(store, *draw)))
        for what, (wall, cpu) in rows:
            print(f"{what:68s} {wall:6.2f} s wall, {cpu:6.2f} s CPU   (load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
