"""Prediction statistics per business line and period, computed in SQL, returned as DataFrames.

A slice with no labels, or with labels of one class only, has empty (NaN) accuracy / macro-F1
rather than an error or a misleading number."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import registry, settings
from . import store as db
from .registry import NOT_TRAINING_LABELS
from .slices import PERIOD_STEP, Slice, check_period
from .store import Store

COLUMNS = ["business_line", "period", "volume", "mean_top_prob", "low_conf_share", "labelled",
           "accuracy", "macro_f1", "mix_shift"]


def _macro_f1_by(conf: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Macro-F1 per slice over the labels seen there (true or predicted), from (truth, predicted, n)
    counts; NaN where a slice has fewer than two true labels. F1 = 2tp / (true + predicted)."""
    tp = conf[conf["truth"] == conf["predicted"]].groupby(keys + ["truth"])["n"].sum()
    true = conf.groupby(keys + ["truth"])["n"].sum()
    pred = conf.groupby(keys + ["predicted"])["n"].sum()
    for s in (tp, true, pred):
        s.index = s.index.set_names(keys + ["label"])
    counts = pd.concat({"tp": tp, "true": true, "pred": pred}, axis=1).fillna(0)
    f1 = (2 * counts["tp"] / (counts["true"] + counts["pred"])).groupby(level=keys).mean()
    return f1.where(conf.groupby(keys)["truth"].nunique() >= 2)


ALL_LINES = "(all)"  # the business line of the figures over all lines together


def stats_by_line_and_period(store: Store, name: str, by: str = "day", business_lines=None, since=None,
                             until=None, version: int | None = None, low_confidence: float | None = None,
                             by_line: bool = True) -> pd.DataFrame:
    """Per business line (or all lines together) and period: volume, class shares, mean top
    probability, share below the low-confidence threshold, labelled count, accuracy and macro-F1
    on labelled predictions, and mix_shift (total variation distance between the slice's class
    mix and the line's mix over the whole range: a simple drift signal).

    The slice's fields are given loose (a line or a list, dates as text) and checked by Slice.of."""
    labels, agg, conf = _aggregates(store, name, by, Slice.of(business_lines, since, until, version), low_confidence)
    if not by_line:
        agg, conf = _all_lines(agg), _all_lines(conf)
    return _table(agg, conf, labels)


def stats_by_line_and_overall(store: Store, name: str, by: str = "day", business_lines=None, since=None,
                              until=None, version: int | None = None,
                              low_confidence: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """stats_by_line_and_period by line and over all lines, both from one read of the aggregates."""
    labels, agg, conf = _aggregates(store, name, by, Slice.of(business_lines, since, until, version), low_confidence)
    return _table(agg, conf, labels), _table(_all_lines(agg), _all_lines(conf), labels)


def _aggregates(store: Store, name: str, by: str, where: Slice, low_confidence: float | None):
    """The model's labels, and the per line, period and label sums and labelled counts (store rollups)."""
    check_period(by)
    low = float(settings.get("low_confidence") if low_confidence is None else low_confidence)
    filters = where.filters()
    with store.connect() as con:
        model = registry.find_model(con, name)
        agg = db.prediction_aggregates(con, model.model_id, by, low, **filters)
        conf = db.labelled_confusion(con, model.model_id, by, list(NOT_TRAINING_LABELS), **filters)
    return model.labels, agg, conf


def _all_lines(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(business_line=ALL_LINES)


def _table(agg: pd.DataFrame, conf: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """The statistics table from the sums: rows of agg and conf that share a key add up."""
    share_cols = [f"share_{label}" for label in labels]
    if agg.empty:
        return pd.DataFrame(columns=COLUMNS + share_cols)
    keys = ["business_line", "period"]
    out = agg.groupby(keys)[["n", "sum_top_prob", "n_low"]].sum()
    out["volume"] = out["n"]
    out["mean_top_prob"] = out["sum_top_prob"] / out["n"]
    out["low_conf_share"] = out["n_low"] / out["n"]
    if conf.empty:
        out["labelled"], out["accuracy"], out["macro_f1"] = 0, np.nan, np.nan
    else:
        correct = conf[conf["truth"] == conf["predicted"]].groupby(keys)["n"].sum()
        out["labelled"] = conf.groupby(keys)["n"].sum().reindex(out.index, fill_value=0)
        out["accuracy"] = (correct.reindex(out.index, fill_value=0) / out["labelled"]).where(out["labelled"] > 0)
        out["macro_f1"] = _macro_f1_by(conf, keys).reindex(out.index)
    mix = agg.pivot_table(index=keys, columns="label", values="n", aggfunc="sum", fill_value=0)
    mix = mix.reindex(columns=labels, fill_value=0)
    shares = mix.div(mix.sum(axis=1), axis=0)
    line_mix = mix.groupby(level="business_line").sum()
    line_shares = line_mix.div(line_mix.sum(axis=1), axis=0)
    shift = 0.5 * (shares - line_shares.reindex(shares.index.get_level_values(0)).to_numpy()).abs().sum(axis=1)
    shares.columns = share_cols
    out = out.join(shares).join(shift.rename("mix_shift")).reset_index()
    out["period"] = pd.to_datetime(out["period"])
    return out[COLUMNS + share_cols].sort_values(keys).reset_index(drop=True)


def prediction_overview(store: Store, name: str) -> dict:
    """What the filters can offer: business lines, and the first and last day with predictions
    (midnight timestamps, None without predictions), from the rollups."""
    with store.connect() as con:
        model = registry.find_model(con, name)
        lines = db.business_lines(con, model.model_id)
        first, last = db.prediction_day_range(con, model.model_id)
    return {"business_lines": lines, "first": None if first is None else pd.Timestamp(first),
            "last": None if last is None else pd.Timestamp(last)}


def compact_rollups(store: Store) -> int:
    """Merge the rollup rows that written batches appended (the server and `python -m core check`
    call this now and then); returns how many rows fewer the rollups hold."""
    with store.transaction() as con:
        return db.compact_rollups(con)


def without_running_period(stats: pd.DataFrame, by: str, now=None) -> tuple[pd.DataFrame, pd.Timestamp | None]:
    """The statistics without a period that has not ended yet (a half-finished week would read
    as a collapse in volume), and that period's start; unchanged when nothing else is left."""
    if stats.empty:
        return stats, None
    now = pd.Timestamp.now() if now is None else pd.Timestamp(now)
    last = stats["period"].max()
    if last + PERIOD_STEP[by] <= now or stats["period"].nunique() < 2:
        return stats, None
    return stats[stats["period"] != last], last


def compare_last_periods(stats: pd.DataFrame) -> dict:
    """Headline numbers over all lines: the latest period and its change against the previous one.

    `stats` is the output of stats_by_line_and_period(..., by_line=False)."""
    metrics = ["volume", "mean_top_prob", "low_conf_share", "accuracy"]
    if stats.empty:
        return {m: (None, None) for m in metrics}
    ordered = stats.sort_values("period")
    last = ordered.iloc[-1]
    prev = ordered.iloc[-2] if len(ordered) > 1 else None
    result = {}
    for m in metrics:
        value = last[m]
        delta = None if prev is None or pd.isna(prev[m]) or pd.isna(value) else value - prev[m]
        result[m] = (None if pd.isna(value) else value, delta)
    return result


def class_mix_by_line(stats: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Each business line's share of predictions per predicted label over all its periods
    (columns business_line, label, share), from stats_by_line_and_period's output."""
    share_cols = [f"share_{label}" for label in labels]
    if stats.empty:
        return pd.DataFrame(columns=["business_line", "label", "share"])
    counts = stats[share_cols].mul(stats["volume"], axis=0).groupby(stats["business_line"]).sum()
    mix = counts.div(counts.sum(axis=1), axis=0).rename(columns=dict(zip(share_cols, labels)))
    return mix.reset_index().melt(id_vars="business_line", var_name="label", value_name="share")
