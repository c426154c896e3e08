"""Hard-example strategies compared quickly, outside the store: `python bench/learning_curve.py --fast
default,random,... --seeds 1,2,3 --sizes 2000,4000`.

The demo's test split (the first --test reviews in the demo's order) is left out and never read. Per seed
the other reviews are reordered: the first --pool are the unlabelled pool, the next max(--sizes) the
training rows (a start of --size uses the first --size of them), and every review after those is the
validation split (5,000+ reviews: a smaller standard error than 2,000). Each round fits exactly the model
training fits (estimators.build_pipeline of the pinned --config, calibration folds included) on the
labelled rows, scores the rest of the pool, and draws --k with the product's selector
(sampling._hard_picks: line shares, near-duplicates) over the variant's order; labels are the known
answers. Rounds differ in labels only, as in the store-backed bench, which this one mirrors minus the store.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd

from _common import header
from core import demo, sampling
from core.estimators import ModelConfig, build_pipeline, calibration_folds, predict_proba
from core.preprocess import Tokenizer

LABELS = ["正面", "负面"]
DEFAULT_CONFIG = {"estimator": "linear_svc", "C": 0.5, "word_ngrams": [1, 2]}


def _knobbed(name: str, **knobs):
    """uncertain_spread's order with sampling's knobs set for the draw."""
    def order(draw):
        kept = {k: getattr(sampling, k) for k in knobs}
        for k, v in knobs.items():
            setattr(sampling, k, v)
        try:
            return sampling._uncertain_spread(draw)
        finally:
            for k, v in kept.items():
                setattr(sampling, k, v)
    return sampling.Strategy(name, "", sampling._margin, order)


def _by_label_in_turns(draw):
    """The default's order, then the predicted labels in turns (a class-balance term)."""
    order = sampling._uncertain_spread(draw)
    return sampling._in_turns_by(order, draw.proba[order].argmax(axis=1))


def _gradient_kmeanspp(candidates: int | None):
    """BADGE for a linear model: k-means++ seeding over (p - onehot(argmax p)) ⊗ x, x the text's unit
    character TF-IDF row, over the `candidates` x k most uncertain texts (None: the whole pool).
    |g_i - g_j|^2 = |u_i|^2 + |u_j|^2 - 2 (u_i . u_j)(x_i . x_j) with u = p - onehot."""
    def order(draw):
        ranked = sampling._by_score(draw)
        n = len(ranked) if candidates is None else min(len(ranked), candidates * draw.k)
        if draw.k < 2 or n <= draw.k:
            return ranked
        head = ranked[:n]
        X = sampling._char_tfidf(draw.pool["text"].to_numpy()[head])
        u = draw.proba[head].copy()
        u[np.arange(n), u.argmax(axis=1)] -= 1
        sq = (u * u).sum(axis=1)
        rng = np.random.default_rng(draw.seed)
        picks = [int(np.argmax(sq))]
        d2 = np.full(n, np.inf)
        for _ in range(draw.k - 1):
            c = picks[-1]
            sim = (X @ X[c].T).toarray().ravel()
            d2 = np.minimum(d2, np.maximum(sq + sq[c] - 2 * (u @ u[c]) * sim, 0))
            d2[picks] = 0
            total = d2.sum()
            if total <= 0:
                break
            picks.append(int(rng.choice(n, p=d2 / total)))
        rest = np.setdiff1d(np.arange(n), picks, assume_unique=False)
        return np.concatenate([head[picks], head[rest], ranked[n:]])
    return order


def _dense(weight: float):
    """Information density: among the 4 x k smallest margins, uncertainty (rank value 1 .. 0) plus
    `weight` x the text's mean cosine similarity to the other candidates (rank value), then MMR."""
    def order(draw):
        ranked = sampling._by_score(draw)
        n = min(len(ranked), sampling.SPREAD_CANDIDATES * draw.k)
        if draw.k < 2 or n <= draw.k:
            return ranked
        head = ranked[:n]
        X = sampling._char_tfidf(draw.pool["text"].to_numpy()[head])
        density = np.asarray(X @ np.asarray(X.mean(axis=0)).ravel()).ravel()
        value = (1 - np.arange(n) / n) + weight * (np.argsort(np.argsort(density)) / n)
        head = head[np.argsort(-value, kind="stable")]
        chosen = sampling._least_alike(draw.pool["text"].to_numpy()[head], draw.k)
        rest = np.setdiff1d(np.arange(n), chosen, assume_unique=True)
        return np.concatenate([head[chosen], head[rest], ranked[n:]])
    return order


def _with_previous(weight: float):
    """The default's order over a score that adds the loop's own disagreement: the margin score plus
    `weight` x |p - p_previous| (the version before the active one, column "p_previous" of the pool;
    the same as the active one in round 1)."""
    def order(draw):
        moved = np.abs(draw.proba[:, 0] - draw.pool["p_previous"].to_numpy())
        scores = sampling._margin(draw.proba) + weight * moved
        return sampling._uncertain_spread(sampling.Draw(draw.pool, draw.proba, scores, draw.k, draw.seed))
    return order


def _variants() -> dict:
    """name -> (Strategy, spread_lines)."""
    S = sampling.Strategy
    return {
        "default": (sampling.STRATEGIES["uncertain_spread"], True),
        "default_no_lines": (sampling.STRATEGIES["uncertain_spread"], False),
        "least_confidence": (sampling.STRATEGIES["least_confidence"], False),
        "margin_lines": (sampling.STRATEGIES["margin"], True),
        "random": (sampling.STRATEGIES["random"], True),
        "cand2": (_knobbed("cand2", SPREAD_CANDIDATES=2), True),
        "cand3": (_knobbed("cand3", SPREAD_CANDIDATES=3), True),
        "cand6": (_knobbed("cand6", SPREAD_CANDIDATES=6), True),
        "cand8": (_knobbed("cand8", SPREAD_CANDIDATES=8), True),
        "penalty1": (_knobbed("penalty1", SPREAD_PENALTY=1.0), True),
        "penalty0.25": (_knobbed("penalty0.25", SPREAD_PENALTY=0.25), True),
        "balanced": (S("balanced", "", sampling._margin, _by_label_in_turns), True),
        "badge": (S("badge", "", sampling._margin, _gradient_kmeanspp(None)), True),
        "badge4": (S("badge4", "", sampling._margin, _gradient_kmeanspp(4)), True),
        "badge10": (S("badge10", "", sampling._margin, _gradient_kmeanspp(10)), True),
        "dense0.5": (S("dense0.5", "", sampling._margin, _dense(0.5)), True),
        "dense1": (S("dense1", "", sampling._margin, _dense(1.0)), True),
        "previous1": (S("previous1", "", sampling._margin, _with_previous(1.0)), True),
        "previous2": (S("previous2", "", sampling._margin, _with_previous(2.0)), True),
    }


WHOLE_POOL = "whole_pool"  # not a strategy: the training rows plus every pool text, labelled
VARIANTS = tuple(_variants()) + (WHOLE_POOL,)


def _fit(config: ModelConfig, tokens: list, labels: list):
    pipeline = build_pipeline(config, calibration_folds(labels))
    return pipeline.fit(tokens, labels)


def _accuracy(pipeline, tokens: list, labels: np.ndarray) -> float:
    return float((np.asarray(LABELS)[predict_proba(pipeline, tokens, LABELS).argmax(axis=1)] == labels).mean())


def run(variant, config: ModelConfig, train: pd.DataFrame, pool: pd.DataFrame, val: pd.DataFrame,
        tok: dict, args, start: float) -> list[float]:
    """Validation accuracy at 0, k, 2k, ... labels."""
    strategy, spread_lines = variant
    labelled = np.zeros(len(pool), dtype=bool)
    val_tokens, val_labels = [tok[t] for t in val["text"]], val["label"].to_numpy()
    curve, previous = [start], None
    pipeline = _fit(config, [tok[t] for t in train["text"]], train["label"].tolist())
    for r in range(args.rounds):
        left = np.flatnonzero(~labelled)
        frame = pool.iloc[left].reset_index(drop=True)
        pool_tokens = [tok[t] for t in frame["text"]]
        proba = predict_proba(pipeline, pool_tokens, LABELS)
        if "previous" in strategy.name:  # the version before the active one scores the pool too
            frame["p_previous"] = predict_proba(previous or pipeline, pool_tokens, LABELS)[:, 0]
        previous = pipeline
        scores = strategy.score(proba) if strategy.score else np.random.default_rng(r).random(len(frame))
        draw = sampling.Draw(frame, proba, scores, args.k, r)
        picked = sampling._hard_picks(draw, strategy, False, spread_lines, sampling.NEAR_DUPLICATE)
        labelled[left[picked]] = True
        rows = pd.concat([train, pool[labelled]])
        pipeline = _fit(config, [tok[t] for t in rows["text"]], rows["label"].tolist())
        curve.append(_accuracy(pipeline, val_tokens, val_labels))
    return curve


def compare(args) -> None:
    variants = {**_variants(), WHOLE_POOL: None}
    names = args.fast.split(",")
    unknown = [n for n in names if n not in variants]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(variants)}")
    seeds = [int(x) for x in (args.seeds or "1").split(",")]
    sizes = [int(x) for x in (args.sizes.split(",") if args.sizes else [args.train])]
    config = ModelConfig.from_dict(args.config or DEFAULT_CONFIG)
    header(f"hard-example variants outside the store: {names}; seeds {seeds}, starts {sizes}, pool {args.pool}, "
           f"{args.rounds} x {args.k}; {config.describe()}; the demo's first {args.test} reviews (its test split) "
           f"left out")
    everything = demo.load_reviews().sample(frac=1.0, random_state=demo.SEED).reset_index(drop=True)
    rest = everything.iloc[args.test:].reset_index(drop=True)
    rest["business_line"] = rest["text"].map(demo.business_line)
    started = time.perf_counter()
    tok = dict(zip(rest["text"], Tokenizer().cut_many(rest["text"].tolist())))
    print(f"tokenised {len(rest)} reviews in {time.perf_counter() - started:.0f} s (load {os.getloadavg()[0]:.1f})",
          flush=True)
    curves = {}  # (size, name) -> list of curves over seeds
    for seed in seeds:
        reviews = rest.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        pool = reviews.iloc[:args.pool].reset_index(drop=True)
        pool.insert(0, "prediction_id", np.arange(len(pool)))
        trains = reviews.iloc[args.pool:args.pool + max(sizes)]
        val = reviews.iloc[args.pool + max(sizes):]
        for size in sizes:
            train = trains.iloc[:size]
            v1 = _fit(config, [tok[t] for t in train["text"]], train["label"].tolist())
            start = _accuracy(v1, [tok[t] for t in val["text"]], val["label"].to_numpy())
            for name in names:
                t0 = time.perf_counter()
                if name == WHOLE_POOL:  # what labelling every pool text gives: the bound of any strategy's gain
                    rows = pd.concat([train, pool])
                    curve = [start, _accuracy(_fit(config, [tok[t] for t in rows["text"]], rows["label"].tolist()),
                                              [tok[t] for t in val["text"]], val["label"].to_numpy())]
                else:
                    curve = run(variants[name], config, train, pool, val, tok, args, start)
                curves.setdefault((size, name), []).append(curve)
                print(f"seed {seed}, from {size} (validation {len(val)}), {name:16s} "
                      + " ".join(f"{a:.4f}" for a in curve) + f"  gain {100 * (curve[-1] - curve[0]):+.2f} pt"
                      f"  ({time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.1f})", flush=True)
    summary(curves, names, sizes, seeds)


def summary(curves: dict, names: list, sizes: list, seeds: list) -> None:
    print(f"\nsummary over seeds {seeds} (load {os.getloadavg()[0]:.1f}): gain after all rounds, mean ± sd; "
          "ratio = mean gain / random's mean gain; vs default: paired difference of the final accuracy and "
          "of the mean accuracy over rounds 1..n, mean ± sd over seeds")
    for size in sizes:
        base = np.array(curves.get((size, "default"), []))
        rand = np.array(curves.get((size, "random"), []))
        rgain = (rand[:, -1] - rand[:, 0]).mean() * 100 if len(rand) else float("nan")
        for name in names:
            c = np.array(curves[(size, name)])
            g = (c[:, -1] - c[:, 0]) * 100
            line = f"from {size}: {name:16s} gain {g.mean():+.2f} ± {g.std(ddof=1) if len(g) > 1 else 0:.2f} pt"
            if name != "random" and len(rand):
                line += f", {g.mean() / rgain:.2f}x random's {rgain:+.2f}"
            if len(base) and name != "default":
                d = (c[:, -1] - base[:, -1]) * 100
                a = (c[:, 1:].mean(axis=1) - base[:, 1:].mean(axis=1)) * 100
                sd = (lambda x: x.std(ddof=1) if len(x) > 1 else 0)
                line += (f"; vs default: final {d.mean():+.2f} ± {sd(d):.2f}, "
                         f"mean over rounds {a.mean():+.2f} ± {sd(a):.2f} pt")
            print(line)
