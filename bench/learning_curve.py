"""Learning curve of the labelling loop: accuracy per round for each hard-example strategy against
random, with labels taken from the demo's known answers; then incremental (sgd + replay) against a
full sgd retrain on the same labels.

Each strategy starts from a copy of one store: version 1 trained on --train reviews (config chosen
by model selection once, then pinned so every round differs only in its labels), --pool reviews
logged as predictions; each round draws --k hard examples (re-scored by the active version),
labels them with their true labels, retrains in full and activates.

    python bench/learning_curve.py [--train 2000] [--test 2000] [--pool 6000] [--rounds 5] [--k 500]
                                   [--only strategies|incremental] [--strategies least_confidence,random]
                                   [--sizes 2000,4000,8000] [--config '{"estimator": "linear_svc", ...}'] [--shuffle 1]

--sizes runs the strategies once per starting size (same test split and pool), so a gain is never read
from one size alone; --config pins version 1's config instead of choosing it by model selection (saves
selection's minute per size on a loaded machine; every size then learns with the same model).
"""
import json
import argparse
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from _common import header, timer
from core import demo, feedback, imports, predict, registry, sampling, train
from core.store import Store

USER, MODEL = "bench", "curve"
os.environ.update({"MMS_GUARD_OVERALL": "1", "MMS_GUARD_CLASS_RECALL": "1", "MMS_GUARD_LINE_ACCURACY": "1"})


def base_store(folder: Path, reviews: pd.DataFrame, args, config: dict | None) -> tuple[Store, dict]:
    """A store with train/test imported, version 1 trained and the pool logged; v1's config."""
    store = Store(folder / "mms.duckdb")
    registry.create_model(store, MODEL, ["正面", "负面"], USER, model_config=config)
    # test, then pool, then training rows: every starting size sees the same test split and pool
    test, pool = reviews.iloc[:args.test], reviews.iloc[args.test:args.test + args.pool]
    imports.import_frame(store, MODEL, test, "test", USER)
    imports.import_frame(store, MODEL, reviews.iloc[args.test + args.pool:].iloc[:args.train], "train", USER)
    v1 = train.train_version(store, MODEL, USER)
    predict.predict_texts(store, MODEL, pool["text"].tolist(), USER, business_line=pool["business_line"].tolist())
    return store, v1


def run_rounds(store: Store, truth: dict, strategy: str, args, incremental: bool = False) -> list[tuple]:
    """(accuracy, seconds to train) after each round."""
    out = []
    store.hold()  # as the server holds its store: no round pays for opening and closing the file
    try:
        for r in range(args.rounds):
            out.append(_round(store, truth, strategy, args, r, incremental))
    finally:
        store.unhold()
    return out


# How each strategy draws: least confidence as the product drew before (no line spread); the others
# with the product's defaults (lines kept to their share of the pool).
DRAW_OPTIONS = {"least_confidence": {"spread_lines": False}}


def _round(store: Store, truth: dict, strategy: str, args, r: int, incremental: bool) -> tuple:
    """One batch drawn (re-scored by the active version), labelled from the known answers, trained on."""
    batch = sampling.select_hard_examples(store, MODEL, args.k, USER, strategy, seed=r,
                                          **DRAW_OPTIONS.get(strategy, {})).examples
    labels = pd.DataFrame({"prediction_id": batch["prediction_id"], "label": batch["text"].map(truth)})
    feedback.record_labels(store, MODEL, labels, USER)
    with timer() as t:
        v = train.train_version(store, MODEL, USER, incremental=incremental, activate=True)
    return v.metrics["accuracy"], t.seconds


def copy(store: Store, to: Path) -> Store:
    shutil.copytree(store.path.parent, to)
    return Store(to / store.path.name)


def main() -> None:
    p = argparse.ArgumentParser()
    for name, default in (("train", 2000), ("test", 2000), ("pool", 6000), ("rounds", 5), ("k", 500)):
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--only", choices=("strategies", "incremental"), help="run one half of the bench")
    p.add_argument("--strategies", default=",".join(sampling.STRATEGIES), help="comma-separated; keep random")
    p.add_argument("--sizes", help="comma-separated starting training sizes (the strategies' half, one run each)")
    p.add_argument("--config", type=json.loads, help="version 1's config as JSON, pinned (default: model selection)")
    p.add_argument("--shuffle", type=int, default=None, help="seed of the reviews' order (default: the demo's)")
    p.add_argument("--seeds", help="comma-separated orders of the reviews (each: another test split, pool and "
                                   "training rows); prints the label efficiency's mean and spread over them")
    p.add_argument("--tune", help="NAME=v1,v2,...: values of the knob sampling.NAME (SPREAD_PENALTY, "
                                  "SPREAD_CANDIDATES) to compare on a split of the training pool (the demo's test "
                                  "split left out): prints the one to choose")
    p.add_argument("--knob", action="append", default=[], help="NAME=value: set sampling.NAME for this run")
    p.add_argument("--fast", help="comma-separated variants (see VARIANTS) compared outside the store on "
                                  "validation splits of the training pool (the demo's test split left out), "
                                  "one per --seeds, from each of --sizes; prints mean ± sd over the seeds")
    args = p.parse_args()
    if args.fast:
        import loop_variants
        return loop_variants.compare(args)
    for knob in args.knob:
        name, _, value = knob.partition("=")
        setattr(sampling, name, type(getattr(sampling, name))(value))
    if args.tune:
        return tune(args)
    if args.seeds:
        return over_seeds(args)
    header(f"learning curve: train {args.sizes or args.train}, test {args.test}, pool {args.pool}, "
           f"{args.rounds} rounds x {args.k}")
    shuffle = demo.SEED if args.shuffle is None else args.shuffle  # another order: another test split and pool
    reviews = demo.load_reviews().sample(frac=1.0, random_state=shuffle).reset_index(drop=True)
    reviews["business_line"] = reviews["text"].map(demo.business_line)
    truth = dict(zip(reviews["text"], reviews["label"]))
    work = Path(tempfile.mkdtemp(prefix="mms-curve-"))
    try:
        if args.only != "incremental":
            for size in (args.sizes.split(",") if args.sizes else [args.train]):
                strategies(work / f"from-{size}", reviews, truth, argparse.Namespace(**{**vars(args), "train": int(size)}))
        if args.only != "strategies":
            for size in (args.sizes.split(",") if args.sizes else [args.train]):
                incremental_vs_full(work / f"sgd-from-{size}", reviews, truth,
                                    argparse.Namespace(**{**vars(args), "train": int(size)}))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


def strategies(work: Path, reviews: pd.DataFrame, truth: dict, args) -> None:
    """Every strategy's rounds from one version 1 (chosen by selection, then pinned), against random."""
    with timer() as t:
        base, v1 = base_store(work / "base", reviews, args, args.config)
    print(f"from {args.train} rows (load {os.getloadavg()[0]:.1f}): version 1: {v1.model_config['estimator']} in {t.seconds:.0f} s, accuracy {v1.metrics['accuracy']:.4f}, "
          f"ECE {v1.metrics['ece']:.4f}; {_chosen(v1)}; "
          f"probabilities: {v1.data['calibration']}")
    registry.update_model(base, MODEL, USER, model_config=v1.model_config)  # pinned: rounds differ in labels only
    start = v1.metrics["accuracy"]
    gains, curves = {}, {}
    for strategy in args.strategies.split(","):
        with timer() as t:
            curve = run_rounds(copy(base, work / strategy), truth, strategy, args)
        curves[strategy] = [start] + [a for a, _ in curve]
        gains[strategy] = curve[-1][0] - start
        print(f"{strategy:17s} " + " ".join(f"{a:.4f}" for a, _ in curve) + f"   gain {100 * gains[strategy]:+.2f} pt"
              f"   ({t.seconds:.0f} s)", flush=True)
    for strategy, gain in gains.items():
        if strategy != "random" and "random" in gains:  # without random there is nothing to compare with
            ratio = gain / gains["random"] if gains["random"] > 0 else float("nan")
            print(f"from {args.train}: {strategy}: {100 * gain:+.2f} pt, {ratio:.1f}x random's "
                  f"{100 * gains['random']:+.2f} pt")
    return curves


def labels_to_reach(curve: list[float], target: float, k: int) -> float:
    """Labels a curve (accuracy at 0, k, 2k, ... labels) needs to reach `target`, linear between
    rounds; inf when it never does."""
    for r in range(1, len(curve)):
        if curve[r] >= target:
            before, after = curve[r - 1], curve[r]
            if before >= target:
                return (r - 1) * k
            return (r - 1) * k + k * (target - before) / (after - before)
    return float("inf")


def over_seeds(args) -> None:
    """Every strategy from every starting size, once per order of the reviews; per strategy its gain,
    the ratio to random's, and the default's label efficiency: the labels it needs to reach random's
    accuracy after all rounds, as a share of random's labels (mean and spread over the seeds)."""
    sizes = [int(x) for x in (args.sizes.split(",") if args.sizes else [args.train])]
    header(f"learning curve over seeds {args.seeds}: train {sizes}, test {args.test}, pool {args.pool}, "
           f"{args.rounds} rounds x {args.k}; strategies {args.strategies}; "
           f"SPREAD_CANDIDATES {sampling.SPREAD_CANDIDATES}, SPREAD_PENALTY {sampling.SPREAD_PENALTY}")
    results = []  # (seed, size, curves)
    work = Path(tempfile.mkdtemp(prefix="mms-curve-"))
    try:
        for seed in (int(x) for x in args.seeds.split(",")):
            reviews = demo.load_reviews().sample(frac=1.0, random_state=seed).reset_index(drop=True)
            reviews["business_line"] = reviews["text"].map(demo.business_line)
            truth = dict(zip(reviews["text"], reviews["label"]))
            for size in sizes:
                print(f"-- seed {seed}, from {size} rows, load {os.getloadavg()[0]:.1f}", flush=True)
                curves = strategies(work / f"s{seed}-from-{size}", reviews, truth,
                                    argparse.Namespace(**{**vars(args), "train": size}))
                results.append((seed, size, curves))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summarise(results, args)


def summarise(results: list, args) -> None:
    import numpy as np

    labels = args.rounds * args.k
    default = sampling.DEFAULT_STRATEGY
    print(f"\nsummary (load {os.getloadavg()[0]:.1f}): gain after {labels} labels, mean ± sd over seeds; "
          f"ratio = mean gain / random's mean gain; label efficiency = labels {default} needs to reach "
          f"random's accuracy after {labels}, as a share of {labels} (target ≤ 50 %)")
    for size in sorted({size for _, size, _ in results}):
        runs = [curves for _, s, curves in results if s == size]
        random_gain = np.mean([c["random"][-1] - c["random"][0] for c in runs]) if "random" in runs[0] else None
        for strategy in runs[0]:
            gains = np.array([c[strategy][-1] - c[strategy][0] for c in runs]) * 100
            ratio = f"{gains.mean() / (100 * random_gain):.1f}x random" if random_gain and strategy != "random" else ""
            print(f"from {size}: {strategy:17s} gain {gains.mean():+.2f} ± {gains.std(ddof=1) if len(gains) > 1 else 0:.2f} pt "
                  f"(per seed {', '.join(f'{g:+.2f}' for g in gains)})  {ratio}")
        for strategy in [s for s in runs[0] if s != "random" and random_gain is not None]:
            shares = np.array([labels_to_reach(c[strategy], c["random"][-1], args.k) / labels for c in runs])
            finite = shares[np.isfinite(shares)]
            print(f"from {size}: label efficiency of {strategy}: "
                  + ", ".join("never" if not np.isfinite(x) else f"{100 * x:.0f} %" for x in shares)
                  + (f"; mean {100 * finite.mean():.0f} % ± {100 * finite.std(ddof=1) if len(finite) > 1 else 0:.0f}"
                     f" over the {len(finite)} seeds that reach it" if len(finite) else ""))
    if not all(default in c and "random" in c for _, _, c in results):
        return
    every = np.array([labels_to_reach(c[default], c["random"][-1], args.k) / labels for _, _, c in results])
    capped = np.minimum(every, 1.0)  # a seed that never reaches random's accuracy counts as all labels
    print(f"all sizes and seeds: {default} label efficiency mean {100 * capped.mean():.0f} % ± "
          f"{100 * capped.std(ddof=1) if len(capped) > 1 else 0:.0f} (never-reached counted as 100 %, "
          f"{int((~np.isfinite(every)).sum())} of {len(every)})")


def tune(args) -> None:
    """A knob of the default strategy chosen without the test split: the demo's test rows left out,
    the rest reordered and split again into a validation split, a pool and training rows; each
    value's final accuracy on that validation split, mean over the seeds; the best is the one to choose."""
    import numpy as np

    knob, _, listed = args.tune.partition("=")
    kind = type(getattr(sampling, knob))
    values = [kind(x) for x in listed.split(",")]
    seeds = [int(x) for x in (args.seeds or "1").split(",")]
    header(f"tuning {knob} over {values} on a validation split of the training pool, seeds {seeds}, "
           f"train {args.train}, validation {args.test}, pool {args.pool}, {args.rounds} rounds x {args.k}")
    finals = {m: [] for m in values}
    work = Path(tempfile.mkdtemp(prefix="mms-tune-"))
    try:
        for seed in seeds:
            everything = demo.load_reviews().sample(frac=1.0, random_state=demo.SEED).reset_index(drop=True)
            reviews = everything.iloc[args.test:].sample(frac=1.0, random_state=seed).reset_index(drop=True)
            reviews["business_line"] = reviews["text"].map(demo.business_line)
            truth = dict(zip(reviews["text"], reviews["label"]))
            base, v1 = base_store(work / f"s{seed}-base", reviews, args, args.config)
            registry.update_model(base, MODEL, USER, model_config=v1.model_config)
            for m in values:
                setattr(sampling, knob, m)
                curve = run_rounds(copy(base, work / f"s{seed}-m{m}"), truth, sampling.DEFAULT_STRATEGY, args)
                finals[m].append(curve[-1][0])
                print(f"seed {seed}, {knob} {m} (load {os.getloadavg()[0]:.1f}): validation "
                      f"{v1.metrics['accuracy']:.4f} -> " + " ".join(f"{a:.4f}" for a, _ in curve), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = max(values, key=lambda m: np.mean(finals[m]))
    print("mean final validation accuracy: " + ", ".join(f"{m}: {np.mean(finals[m]):.4f}" for m in values)
          + f"; choose {knob} = {best} (load {os.getloadavg()[0]:.1f})")


def _chosen(version) -> str:
    selection = version.data.get("selection")
    return (selection.get("reason") or selection.get("fallback")) if selection else "config pinned"


def incremental_vs_full(work: Path, reviews: pd.DataFrame, truth: dict, args) -> None:
    """The same least-confidence rounds on an sgd model: incremental (replay) vs full retrain."""
    base, _ = base_store(work / "sgd", reviews, args, {"estimator": "sgd"})
    stores = {mode: copy(base, work / f"sgd-{mode}") for mode in ("incremental", "full")}
    results = {mode: [] for mode in stores}
    for store in stores.values():
        store.hold()
    try:  # the two modes' rounds in turns, so a change in the machine's load hits both alike
        for r in range(args.rounds):
            for mode, store in stores.items():
                results[mode].append(_round(store, truth, "least_confidence", args, r, mode == "incremental"))
    finally:
        for store in stores.values():
            store.unhold()
    for mode, curve in results.items():
        print(f"sgd {mode:11s} " + " ".join(f"{a:.4f}" for a, _ in curve) +
              f"   train time {sum(s for _, s in curve):.1f} s")
    gap = results["full"][-1][0] - results["incremental"][-1][0]
    ratio = sum(s for _, s in results["full"]) / max(sum(s for _, s in results["incremental"]), 1e-9)
    print(f"from {args.train} rows (load {os.getloadavg()[0]:.1f}): incremental after {args.rounds} rounds: "
          f"{100 * gap:.2f} pt below full, {ratio:.1f}x faster", flush=True)


if __name__ == "__main__":
    main()
