"""Prediction statistics per business line and period, computed in SQL, returned as DataFrames.

A slice with no labels, or with labels of one class only, has empty (NaN) accuracy / macro-F1
rather than an error or a misleading number."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import drift, monitoring, registry, settings
from . import store as db
from .errors import VersionNotFound
from .registry import NOT_TRAINING_LABELS
from .slices import PERIOD_STEP, SHARE_PREFIX, Slice, check_period
from .store import Store

# labelled counts every label that came back (audit, hard examples, imported); macro_f1 is over
# them. No accuracy over them all: the three accuracies (monitoring.COLUMNS) are kept apart.
COLUMNS = ["business_line", "period", "volume", "mean_top_prob", "low_conf_share", "labelled",
           "macro_f1", "mix_shift"]


ALL_LINES = "(all)"  # the business line of the figures over all lines together


def stats_by_line_and_period(store: Store, name: str, by: str = "day", business_lines=None, since=None,
                             until=None, version: int | None = None, low_confidence: float | None = None,
                             by_line: bool = True) -> pd.DataFrame:
    """Per business line (or all lines together) and period: volume, class shares, mean top
    probability, share below the low-confidence threshold, labelled count, accuracy and macro-F1
    on labelled predictions, and mix_shift (total variation distance between the slice's class
    mix and the line's mix over the whole range: a simple drift signal).

    The slice's fields are given loose (a line or a list, dates as text) and checked by Slice.of."""
    lines, overall = stats_by_line_and_overall(store, name, by, business_lines, since, until, version, low_confidence)
    return lines if by_line else overall


def stats_by_line_and_overall(store: Store, name: str, by: str = "day", business_lines=None, since=None,
                              until=None, version: int | None = None,
                              low_confidence: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """stats_by_line_and_period by line and over all lines, both from one query of the rollups."""
    check_period(by)
    low = float(settings.get("low_confidence") if low_confidence is None else low_confidence)
    filters = Slice.of(business_lines, since, until, version).filters()
    with store.connect() as con:
        model = registry.find_model(con, name)
        sums = db.line_period_statistics(con, model.model_id, by, low, model.labels, list(NOT_TRAINING_LABELS),
                                         **filters)
        audit = db.audit_statistics(con, model.model_id, by, float(settings.get("audit_share")),
                                    list(NOT_TRAINING_LABELS), **filters)
        hard = db.hard_example_statistics(con, model.model_id, by, monitoring.hard_strategies(),
                                          list(NOT_TRAINING_LABELS), **filters)
        histogram = db.confidence_histogram(con, model.model_id, by, **filters)
        grades = _grade_sums(con, model, by, filters) if registry.is_ordinal(model) else None
        versions = {int(v) for vs in sums["versions"] for v in vs}
        metrics = {v: _metrics(con, model, v) for v in sorted(versions)}
    problems = monitoring.calibration_problems({v: (m or {}).get("ece") for v, m in metrics.items()},
                                               float(settings.get("estimate_max_ece")))
    sums = _with_estimate(_with_audit(sums, audit, hard, float(settings.get("audit_share"))),
                          monitoring.estimate(histogram, metrics, problems))
    overall = sums["business_line"].isna()
    tables = (_table(sums[~overall], model.labels), _table(sums[overall].assign(business_line=ALL_LINES), model.labels))
    if grades is not None:
        tables = tuple(with_grades(t, grades, model.labels) for t in tables)
    for t in tables:  # why a row has no estimate: per version, so not a column of every row
        t.attrs["not_estimated"] = {v: problems[v] for v in versions if v in problems}
    return tables


def stats_with_drift(store: Store, name: str, by: str = "week", business_lines=None, since=None, until=None,
                     version: int | None = None, window=None, with_drift: bool = True) -> tuple[pd.DataFrame, dict]:
    """stats_by_line_and_period with, per row, why there is no estimate (estimate_note) and the drift
    verdict (drift_flagged, drift_status, drift_moved and the main measures); and what the CLI and
    the API say beside it: what each accuracy is, the reference and each line's reference."""
    table = stats_by_line_and_period(store, name, by, business_lines, since, until, version)
    not_estimated = table.attrs.get("not_estimated", {})
    notes = "; ".join(not_estimated.values())
    table["estimate_note"] = np.where(table["estimated_accuracy"].isna(), notes, "") if len(table) else []
    about = {"accuracies": monitoring.ACCURACIES, "not_estimated": {str(v): r for v, r in not_estimated.items()}}
    if with_drift and len(table):
        report = drift.drift_by_line_and_period(store, name, by, table, window=window, version=version)
        table = monitoring.shift_aware(with_drift_columns(table, report.cells), None, _chance(table))[0]
        about |= {"reference": report.reference, "reference_version": report.version,
                  "references": report.references}
    return table, about


def with_drift_columns(table: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """The statistics with each line x period's drift verdict and main measures beside them (drift_flagged,
    drift_status, drift_moved, text_auc, unseen_share, ...): what `stats --out` and the Monitor's download write."""
    kept = cells[["business_line", "period", "flagged", "status", "moved", "text_auc", "unseen_share",
                  "class_mix_distance", *[c for c in ("grade_reference", "grade_shift") if c in cells],
                  *drift.SUPPORT]].rename(columns={"flagged": "drift_flagged", "status": "drift_status",
                                                   "moved": "drift_moved"})
    kept = kept.assign(period=pd.to_datetime(kept["period"]))
    return (table.drop(columns=[c for c in kept.columns[2:] if c in table])
            .assign(period=pd.to_datetime(table["period"])).merge(kept, on=["business_line", "period"], how="left"))


def with_shift(by_line: pd.DataFrame, overall: pd.DataFrame, cells: pd.DataFrame | None
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The statistics by line and over all lines with the estimate's interval honest under shift
    (monitoring.shift_aware) from a drift report's cells (None: no drift measured, the plain interval)."""
    if cells is None or by_line.empty:
        return by_line, overall
    keyed = cells[["business_line", "period", "flagged", "moved", *drift.SUPPORT]].rename(
        columns={"flagged": "drift_flagged", "moved": "drift_moved"}).assign(period=lambda c: pd.to_datetime(c["period"]))
    merged = by_line.drop(columns=[c for c in keyed.columns[2:] if c in by_line]).assign(
        period=pd.to_datetime(by_line["period"])).merge(keyed, on=["business_line", "period"], how="left")
    lines, over = monitoring.shift_aware(merged, overall, _chance(by_line))
    lines.attrs, over.attrs = by_line.attrs, overall.attrs
    return lines.drop(columns=keyed.columns[2:]), over


def _chance(table: pd.DataFrame) -> float:
    """The accuracy of a guess among the model's labels (the statistics carry a share per label)."""
    return 1 / max(sum(c.startswith(SHARE_PREFIX) for c in table.columns), 1)


def _metrics(con, model: registry.Model, version: int) -> dict | None:
    """A version's metrics on its test split (calibration error, reliability curves); None for a
    version the registry lacks."""
    try:
        return registry.find_version(con, model, version).metrics
    except VersionNotFound:
        return None


def _with_estimate(sums: pd.DataFrame, estimates: pd.DataFrame) -> pd.DataFrame:
    """The statistics' sums with estimated accuracy and its error beside them (overall rows too)."""
    keyed = estimates.assign(line=estimates["business_line"].fillna(ALL_LINES),
                             period=pd.to_datetime(estimates["period"])).drop(columns="business_line")
    # periods as datetimes on both sides: an empty slice's columns come back as plain objects
    merged = sums.assign(line=sums["business_line"].fillna(ALL_LINES), period=pd.to_datetime(sums["period"])
                         ).merge(keyed, on=["line", "period"], how="left")
    return merged.drop(columns="line")


def _with_audit(sums: pd.DataFrame, audit: pd.DataFrame, hard: pd.DataFrame, share: float) -> pd.DataFrame:
    """The statistics' sums with the audit sample's and the hard examples' counts beside them (0 where
    a cell has none), and audit_items: the sample's expected size, share x volume (counting it exactly
    would read the log)."""
    keys = ["business_line", "period"]
    merged = sums.assign(period=pd.to_datetime(sums["period"]))
    for counts in (audit, hard):
        merged = merged.merge(counts.assign(period=pd.to_datetime(counts["period"])), on=keys, how="left")
    merged = merged.fillna({c: 0 for c in ("audited", "audit_correct", "hard_labelled", "hard_correct")})
    return merged.assign(audit_items=(merged["n"].astype(float) * share).round())


def _table(sums: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """The statistics table from line_period_statistics' sums (one group of rows: by line, or overall),
    with the three accuracies apart (monitoring.ACCURACIES says which is which)."""
    share_cols = [SHARE_PREFIX + label for label in labels]
    if sums.empty:
        return pd.DataFrame(columns=COLUMNS + share_cols + monitoring.COLUMNS)
    column = {c: sums[c].to_numpy(dtype=float) for c in ("n", "sum_top_prob", "n_low", "labelled", "correct", "macro_f1")}
    n, labelled = column["n"], column["labelled"]
    counts = sums[[f"n_{i}" for i in range(len(labels))]].fillna(0).to_numpy(dtype=float)
    out = pd.DataFrame({"business_line": sums["business_line"].to_numpy(),
                        "period": pd.to_datetime(sums["period"]).to_numpy(), "volume": n.astype("int64"),
                        "mean_top_prob": column["sum_top_prob"] / n, "low_conf_share": column["n_low"] / n,
                        "labelled": labelled.astype("int64"), "macro_f1": column["macro_f1"]})
    shares = counts / n[:, None]
    line_counts = pd.DataFrame(counts).groupby(out["business_line"].to_numpy()).transform("sum").to_numpy()
    line_shares = line_counts / line_counts.sum(axis=1, keepdims=True)
    out["mix_shift"] = 0.5 * np.abs(shares - line_shares).sum(axis=1)
    out[share_cols] = shares
    estimated = sums[["estimated_accuracy", "estimate_error"]].astype(float).reset_index(drop=True)
    # the interval without drift measured; with_shift widens it where drift is flagged
    estimated["estimate_low"] = (estimated["estimated_accuracy"] - monitoring.Z95 * estimated["estimate_error"]).clip(0, 1)
    estimated["estimate_high"] = (estimated["estimated_accuracy"] + monitoring.Z95 * estimated["estimate_error"]).clip(0, 1)
    judged = monitoring.accuracies(sums["audit_items"], sums["audited"], sums["audit_correct"],
                                   sums["hard_labelled"], sums["hard_correct"])
    out = pd.concat([out, estimated, judged], axis=1)
    return out.sort_values(["business_line", "period"]).reset_index(drop=True)


# An ordinal model's statistics, besides the others: labelled_mae is over every label that came
# back (audit and hard examples together, as labelled counts them).
GRADE_COLUMNS = ["mean_grade", "mean_expected_grade", "labelled_mae"]


def _grade_sums(con, model: registry.Model, by: str, filters: dict) -> pd.DataFrame:
    """An ordinal model's sums per line (or all lines) and period: predictions and their expected
    grades, labelled predictions and their errors in grades, keyed as the statistics tables are."""
    expected = db.grade_statistics(con, model.model_id, by, **filters)
    errors = db.grade_label_errors(con, model.model_id, by, model.labels, list(NOT_TRAINING_LABELS), **filters)
    keyed = [f.assign(business_line=f["business_line"].fillna(ALL_LINES), period=pd.to_datetime(f["period"]))
             for f in (expected, errors)]
    return keyed[0].merge(keyed[1], on=["business_line", "period"], how="left")


def with_grades(table: pd.DataFrame, sums: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """An ordinal model's statistics with mean_grade (the mean position of the predicted grades,
    1 = lowest), mean_expected_grade (the mean of the predicted distributions' expected grades: it
    moves before the most likely grade flips) and labelled_mae (the mean distance in grades between
    the labels given and the grades predicted; NaN without labels), from _grade_sums."""
    if table.empty:
        return table.reindex(columns=[*table.columns, *GRADE_COLUMNS])
    shares = table[[SHARE_PREFIX + label for label in labels]].fillna(0).to_numpy(dtype=float)
    labelled = sums["graded_labels"].fillna(0).to_numpy(dtype=float)
    keyed = pd.DataFrame({"business_line": sums["business_line"].to_numpy(), "period": sums["period"].to_numpy(),
                          "mean_expected_grade": sums["sum_expected_grade"].to_numpy(dtype=float)
                          / np.maximum(sums["n"].to_numpy(dtype=float), 1),
                          "labelled_mae": np.where(labelled > 0, sums["sum_abs_error"].to_numpy(dtype=float)
                                                   / np.maximum(labelled, 1), np.nan)})
    out = table.assign(mean_grade=shares @ np.arange(1, len(labels) + 1), period=pd.to_datetime(table["period"]))
    out = out.merge(keyed, on=["business_line", "period"], how="left")
    after = list(table.columns).index(SHARE_PREFIX + labels[-1]) + 1  # beside the grade shares, not past the accuracies
    return out[[*table.columns[:after], *GRADE_COLUMNS, *table.columns[after:]]]


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
    metrics = ["volume", "mean_top_prob", "low_conf_share"]
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
