"""The three accuracies a Monitor shows, never mixed: estimated from calibrated probabilities (no
labels), audited (a random sample labelled on purpose, with a Wilson interval), and on labelled
hard examples (chosen for being hard, so biased by construction). Arithmetic on the sums the
store returns, and the audit queue's draw; no SQL here."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import auth, registry, settings
from . import store as db
from .errors import EmptyPool
from .estimators import proba_frame
from .sampling import EVERY_STRATEGY, HardExamples
from .slices import Slice
from .store import Store

AUDIT = "audit"  # the strategy name an audit batch is recorded under: what marks its items as audit

Z95 = 1.959963984540054  # the normal quantile of a two-sided 95 % interval
PRIOR_ITEMS = 100  # how many items of all lines' held-out bin a line's own bin is weighed against
TRUSTED_WIDENING = 0.15  # a shift that widens the estimate's 95 % interval by more: it cannot be trusted there

# What each accuracy is, in the words every face (Monitor, CLI, API) uses.
ACCURACIES = {
    "estimated_accuracy": "estimated without labels: the accuracy the version reached on its held-out test split "
                          "at each prediction's confidence, averaged (confidence-based performance estimation), "
                          "± estimate_error (one standard error); estimate_low..estimate_high is its 95 % interval, "
                          "widened on a line flagged for drift or new (estimate_note says why, and when the "
                          "estimate cannot be trusted there)",
    "audited_accuracy": "on the audit sample: a random share of each line × period labelled on purpose "
                        "(audited of about audit_items); audit_low..audit_high is its Wilson 95 % interval",
    "hard_example_accuracy": "on labelled hard examples (hard_labelled): labels given to predictions that a "
                             "hard-example strategy drew (least confidence, margin, entropy, ...), never imported, "
                             "audit, random-batch or demo labels; chosen for being hard, so biased (usually low) by "
                             "construction; never an estimate of accuracy",
}
COLUMNS = ["estimated_accuracy", "estimate_error", "estimate_low", "estimate_high", "audit_items", "audited", "audited_accuracy",
           "audit_low", "audit_high", "hard_labelled", "hard_example_accuracy"]


def buckets(top_prob) -> np.ndarray:
    """Each top probability's confidence bucket (0..100), as bucket_accuracy indexes them."""
    return np.clip(np.floor(np.asarray(top_prob, dtype=float) * 100).astype(int), 0, 100)


def wilson_interval(correct, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion correct/n, elementwise (NaN where n is 0): unlike
    p ± z·se it stays inside [0, 1] and keeps its coverage for small samples and p near 0 or 1."""
    correct, n = np.asarray(correct, dtype=float), np.asarray(n, dtype=float)
    safe = np.maximum(n, 1)
    p = correct / safe
    centre = (p + z * z / (2 * safe)) / (1 + z * z / safe)
    half = z * np.sqrt(p * (1 - p) / safe + z * z / (4 * safe * safe)) / (1 + z * z / safe)
    empty = n <= 0
    return np.where(empty, np.nan, centre - half), np.where(empty, np.nan, centre + half)


def calibration_problems(eces: dict[int, float | None], max_ece: float) -> dict[int, str]:
    """Per version whose probabilities may not be read as accuracies: the reason, in a sentence."""
    problems = {}
    for version, ece in eces.items():
        if ece is None or pd.isna(ece):
            problems[version] = f"v{version} has no calibration error on record"
        elif ece > max_ece:
            problems[version] = (f"v{version}'s probabilities are not calibrated (ECE {ece:.3f} > {max_ece:.3f}, "
                                 "MMS_ESTIMATE_MAX_ECE)")
    return problems


def bucket_accuracy(metrics: dict, line: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per confidence bucket (0..100, top_prob in [b / 100, (b + 1) / 100)): the accuracy a version
    reached at that confidence on its held-out test split, that figure's variance and the curve's bin
    it comes from; NaN (bin -1) for a bucket the test split had no predictions near (its confidence
    is then taken as it is).

    Probabilities calibrated by cross-validation inside the training split run over-confident on
    new texts (4 points on the demo's reviews); the test split's reliability curve measures by how
    much, as NannyML's CBPE calibrates on labelled reference data. A line's own curve is pulled
    toward all lines' by PRIOR_ITEMS items per bin, so a bin with a few dozen of the line's rows
    barely moves it and one with hundreds speaks for itself (lines differ: 综合 is 3 points harder)."""
    acc, var, which = np.full(101, np.nan), np.zeros(101), np.full(101, -1)
    everyone = metrics.get("reliability") or []
    own = {b["low"]: b for b in (metrics.get("by_business_line", {}).get(line, {}).get("reliability") or [])}
    middles = (np.arange(101) + 0.5) / 100
    for i, b in enumerate(everyone):
        last = i == len(everyone) - 1 and b["high"] >= 1
        inside = (middles >= b["low"]) & ((middles < b["high"]) | last)
        q_all, n_all = b["accuracy"], b["count"]
        mine = own.get(b["low"], {"accuracy": 0.0, "count": 0})
        n_own = mine["count"]
        q = (mine["accuracy"] * n_own + PRIOR_ITEMS * q_all) / (n_own + PRIOR_ITEMS)
        acc[inside], which[inside] = q, i
        var[inside] = (n_own * q * (1 - q) + PRIOR_ITEMS ** 2 * q_all * (1 - q_all) / n_all) / (n_own + PRIOR_ITEMS) ** 2
    return acc, var, which


def estimate(histogram: pd.DataFrame, metrics: dict[int, dict], problems: dict[int, str]) -> pd.DataFrame:
    """Estimated accuracy per business line × period and per period over all lines (business_line
    None), from confidence_histogram's rows and each version's metrics: the expected share correct
    when each prediction is right with its bucket's held-out accuracy (bucket_accuracy). Its expected
    error adds two variances: the traffic's own (a sum of Bernoullis, sum q(1 - q)) and the held-out
    map's (per bin, its items squared times the bin accuracy's variance; lines' bins are taken as
    independent though they share all lines' prior, so the overall error is a little low). A cell
    with a version in `problems` gets no estimate (the reasons are `problems`' sentences)."""
    keys = ["business_line", "period"]
    if histogram.empty:
        return pd.DataFrame(columns=keys + ["estimated_accuracy", "estimate_error"])
    n = histogram["n"].to_numpy(dtype=float)
    line, lines = pd.factorize(histogram["business_line"])  # integer codes: pandas' MultiIndex costs more than the sums
    period, periods = pd.factorize(pd.to_datetime(histogram["period"]))
    version, versions = pd.factorize(histogram["version"])
    pairs, pair = np.unique(version * len(lines) + line, return_inverse=True)
    maps = [bucket_accuracy(metrics.get(int(versions[k // len(lines)])) or {}, lines[k % len(lines)]) for k in pairs]
    acc, var, which = (np.stack([m[i] for m in maps]) for i in range(3))
    bucket = histogram["bucket"].clip(0, 100).to_numpy()
    q = acc[pair, bucket]
    q = np.where(np.isnan(q), histogram["sum_top_prob"].to_numpy(dtype=float) / np.maximum(n, 1), q)
    # one held-out bin per (version, line, bin): its variance counts once per cell, times its items squared
    held_out = pair * (which.max() + 2) + which[pair, bucket] + 1
    h = dict(n=n, right=n * q, traffic_var=n * q * (1 - q), held_out=held_out, bin_var=var[pair, bucket],
             bad=histogram["version"].isin(list(problems)).to_numpy())
    cells, cell = np.unique(line * len(periods) + period, return_inverse=True)
    by_line = pd.DataFrame({"business_line": np.asarray(lines)[cells // len(periods)],
                            "period": periods[cells % len(periods)]})
    overall = pd.DataFrame({"business_line": None, "period": periods})
    return pd.concat([by_line.assign(**_estimate_rows(h, cell, len(cells))),
                      overall.assign(**_estimate_rows(h, period, len(periods)))], ignore_index=True)


def _estimate_rows(h: dict, group: np.ndarray, size: int) -> dict:
    """estimate's figures per group (codes 0..size-1 of the histogram's rows)."""
    def total(values, by=group):
        return np.bincount(by, weights=values, minlength=size)

    held_out = group.astype("int64") * (int(h["held_out"].max()) + 1) + h["held_out"]
    keys, at = np.unique(held_out, return_inverse=True)
    bin_var = np.zeros(len(keys))
    bin_var[at] = h["bin_var"]
    map_var = total(np.bincount(at, weights=h["n"]) ** 2 * bin_var, by=keys // (int(h["held_out"].max()) + 1))
    n, bad = total(h["n"]), total(h["bad"].astype(float)) > 0
    value = total(h["right"]) / np.maximum(n, 1)
    error = np.sqrt(total(h["traffic_var"]) + map_var) / np.maximum(n, 1)
    return {"estimated_accuracy": np.where(bad, np.nan, value), "estimate_error": np.where(bad, np.nan, error)}


def hard_strategies() -> list[str]:
    """The strategies whose batches are hard examples: every strategy that scores the pool ("random"
    draws at random, a control; the audit sample is random too), so only their labels make the
    hard-example accuracy."""
    return [name for name, strategy in EVERY_STRATEGY.items() if strategy.score is not None]


def accuracies(audit_items, audited, audit_correct, hard, hard_correct) -> pd.DataFrame:
    """Audited accuracy with its Wilson interval, and accuracy on the labelled hard examples (labels
    given to predictions a hard-example batch drew), from the counts per row: two sets of labels
    that never mix, whatever else was labelled."""
    audited, audit_correct = np.asarray(audited, dtype=float), np.asarray(audit_correct, dtype=float)
    hard, hard_correct = np.asarray(hard, dtype=float), np.asarray(hard_correct, dtype=float)
    low, high = wilson_interval(audit_correct, audited)
    return pd.DataFrame({"audit_items": np.asarray(audit_items, dtype="int64"), "audited": audited.astype("int64"),
                         "audited_accuracy": np.where(audited > 0, audit_correct / np.maximum(audited, 1), np.nan),
                         "audit_low": low, "audit_high": high, "hard_labelled": hard.astype("int64"),
                         "hard_example_accuracy": np.where(hard > 0, hard_correct / np.maximum(hard, 1), np.nan)})


def select_audit_batch(store: Store, name: str, k: int, user: str, business_lines=None, since=None, until=None,
                       version: int | None = None) -> HardExamples:
    """The next k unlabelled predictions of the audit sample in the slice, in random order, recorded
    as one batch under the strategy "audit". EmptyPool when every audit item there is labelled."""
    filters = Slice.of(business_lines, since, until, version).filters()
    share = float(settings.get("audit_share"))
    with store.transaction() as con:
        auth.require(con, user, "sample")
        model = registry.find_model(con, name)
        found = db.audit_queue(con, model.model_id, share, int(k), **filters)
        if found.empty:
            raise EmptyPool(f"every audit item of {name!r} in these filters is labelled")
        params = {"k": int(k), "audit_share": share, **filters}
        batch_id = db.insert_batch(con, model.model_id, AUDIT, params, found["prediction_id"].tolist(), user)
    probs = proba_frame(found.pop("probs").tolist(), model.labels)
    return HardExamples(batch_id, AUDIT, pd.concat([found, probs], axis=1))


def audit_left(store: Store, name: str, business_lines=None, since=None, until=None,
               version: int | None = None) -> int:
    """How many audit items in the slice have no label yet."""
    filters = Slice.of(business_lines, since, until, version).filters()
    with store.connect() as con:
        model = registry.find_model(con, name)
        return len(db.audit_queue(con, model.model_id, float(settings.get("audit_share")), 10 ** 9, **filters))


def shift_aware(by_line: pd.DataFrame, overall: pd.DataFrame | None, chance: float) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The estimate's 95 % interval (estimate_low, estimate_high) and estimate_note, per line x period
    and per period over all lines, honest under shift.

    The estimate maps confidence to the accuracy the test split showed at that confidence; that map
    holds for texts like the test split's. Where drift is not flagged the interval is the estimate
    ± Z95 x estimate_error. On a line x period flagged for drift or as a new line (by_line's
    drift_flagged), drift.support_check's held-out check decides how far the map still holds:

    - on the share of texts the test split has something like (1 - u), the map's error there is
      measured by weighting the held-out texts like the current ones: the interval is widened by
      that error |support_gap| and its standard error support_se (in quadrature with estimate_error);
    - on the share u of texts unlike any held-out text (unsupported_share), the version's accuracy
      was never measured: anything from `chance` (1 / labels: a model that learned nothing that
      carries over) to 1. The interval mixes the two: low = (1 - u) x low_supported + u x chance,
      high = (1 - u) x high_supported + u.

    A flagged cell without that check (a window reference has no labels; too few texts) gets no
    interval and a note that the estimate cannot be trusted there; so does one whose interval the
    shift widens by more than TRUSTED_WIDENING (it keeps the interval). Over all lines, each line's
    widening beyond its own ± Z95 x error is added, weighed by its volume (a line without an interval
    counts as chance..1)."""
    by_line = by_line.copy()
    if by_line.empty:
        for frame in (by_line, overall):
            if frame is not None:
                frame[["estimate_low", "estimate_high"]], frame["estimate_note"] = np.nan, ""
        return by_line, overall if overall is None else overall.copy()
    e, err = by_line["estimated_accuracy"].to_numpy(float), by_line["estimate_error"].to_numpy(float)
    flagged = by_line.get("drift_flagged", pd.Series(False, index=by_line.index)).fillna(False).to_numpy(bool)
    u, gap, se = (by_line.get(c, pd.Series(np.nan, index=by_line.index)).astype(float).to_numpy()
                  for c in ("unsupported_share", "support_gap", "support_se"))
    spread = Z95 * np.sqrt(err ** 2 + np.nan_to_num(se) ** 2) + np.abs(np.nan_to_num(gap))
    u0 = np.nan_to_num(u)
    low = np.where(flagged, (1 - u0) * (e - spread) + u0 * chance, e - Z95 * err)
    high = np.where(flagged, (1 - u0) * (e + spread) + u0, e + Z95 * err)
    unchecked = flagged & np.isnan(u)
    low, high = np.clip(np.where(unchecked, np.nan, low), 0, 1), np.clip(np.where(unchecked, np.nan, high), 0, 1)
    notes = by_line.get("estimate_note", pd.Series("", index=by_line.index)).fillna("").astype(str).tolist()
    moved = by_line.get("drift_moved", pd.Series("", index=by_line.index)).fillna("").astype(str).tolist()
    for i in np.flatnonzero(flagged & ~np.isnan(e)):
        why = f"drift flagged ({moved[i] or 'see drift'})"
        if unchecked[i]:
            notes[i] = f"cannot be trusted here: {why}, and no held-out check of these texts (not measured yet, " \
                       "a window reference without labels, or too few texts)"
        elif high[i] - low[i] - 2 * Z95 * err[i] > TRUSTED_WIDENING:
            notes[i] = (f"cannot be trusted here: {why}; {u0[i]:.0%} of its texts are unlike any in the test split "
                        f"and the held-out check leaves a 95 % interval of {low[i]:.1%}-{high[i]:.1%}")
        else:
            notes[i] = f"{why}: interval widened by the held-out check ({u0[i]:.0%} of texts unlike the test split)"
    by_line = by_line.assign(estimate_low=low, estimate_high=high, estimate_note=notes)
    if overall is None:
        return by_line, None
    return by_line, _overall_interval(by_line, overall, chance)


def _overall_interval(by_line: pd.DataFrame, overall: pd.DataFrame, chance: float) -> pd.DataFrame:
    """shift_aware over all lines: the overall estimate ± Z95 x its error, widened by each line's
    widening weighed by its volume."""
    e = by_line["estimated_accuracy"].to_numpy(float)
    base_low, base_high = e - Z95 * by_line["estimate_error"].to_numpy(float), e + Z95 * by_line["estimate_error"]
    low = by_line["estimate_low"].fillna(chance).to_numpy(float)
    high = by_line["estimate_high"].fillna(1.0).to_numpy(float)
    weight = by_line["volume"].to_numpy(float)
    extra = pd.DataFrame({"period": pd.to_datetime(by_line["period"]).to_numpy(),
                          "below": np.where(np.isnan(e), 0, np.maximum(base_low - low, 0) * weight),
                          "above": np.where(np.isnan(e), 0, np.maximum(high - base_high.to_numpy(float), 0) * weight),
                          "volume": weight,
                          "flagged": by_line["estimate_note"].astype(str).str.len().to_numpy() > 0,
                          "line": by_line["business_line"].to_numpy()})
    lines = extra[extra["flagged"]].groupby("period")["line"].agg(lambda x: ", ".join(sorted(map(str, x))))
    extra = extra.groupby("period")[["below", "above", "volume"]].sum()
    out = overall.copy()
    at = pd.to_datetime(out["period"])
    volume = at.map(extra["volume"]).fillna(0).to_numpy(float)
    below = at.map(extra["below"]).fillna(0).to_numpy(float) / np.maximum(volume, 1)
    above = at.map(extra["above"]).fillna(0).to_numpy(float) / np.maximum(volume, 1)
    e, err = out["estimated_accuracy"].to_numpy(float), out["estimate_error"].to_numpy(float)
    out["estimate_low"] = np.clip(e - Z95 * err - below, 0, 1)
    out["estimate_high"] = np.clip(e + Z95 * err + above, 0, 1)
    widened = [w if isinstance(w, str) else "" for w in at.map(lines)]
    notes = out.get("estimate_note", pd.Series("", index=out.index)).fillna("").astype(str).tolist()
    for i, which in enumerate(widened):
        if which and not np.isnan(e[i]):
            wide = out["estimate_high"].iloc[i] - out["estimate_low"].iloc[i] - 2 * Z95 * err[i] > TRUSTED_WIDENING
            notes[i] = (("cannot be trusted here: " if wide else "")
                        + f"widened for drift on {which} (see each line's note)")
    out["estimate_note"] = notes
    return out
