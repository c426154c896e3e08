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
from .sampling import HardExamples
from .slices import Slice
from .store import Store

AUDIT = "audit"  # the strategy name an audit batch is recorded under: what marks its items as audit

Z95 = 1.959963984540054  # the normal quantile of a two-sided 95 % interval
PRIOR_ITEMS = 100  # how many items of all lines' held-out bin a line's own bin is weighed against

# What each accuracy is, in the words every face (Monitor, CLI, API) uses.
ACCURACIES = {
    "estimated_accuracy": "estimated without labels: the accuracy the version reached on its held-out test split "
                          "at each prediction's confidence, averaged (confidence-based performance estimation), "
                          "± estimate_error (one standard error)",
    "audited_accuracy": "on the audit sample: a random share of each line × period labelled on purpose "
                        "(audited of about audit_items); audit_low..audit_high is its Wilson 95 % interval",
    "hard_example_accuracy": "on labelled hard examples outside the audit sample: chosen for being hard, so "
                             "biased (usually low) by construction; never an estimate of accuracy",
}
COLUMNS = ["estimated_accuracy", "estimate_error", "audit_items", "audited", "audited_accuracy",
           "audit_low", "audit_high", "hard_labelled", "hard_example_accuracy"]


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
    h = histogram.assign(period=pd.to_datetime(histogram["period"]), q=np.nan, map_var=0.0, bin=-1.0)
    for (version, line), rows in h.groupby(["version", "business_line"]).groups.items():
        acc, var, which = bucket_accuracy(metrics.get(int(version)) or {}, line)
        buckets = h.loc[rows, "bucket"].clip(0, 100).to_numpy()
        h.loc[rows, "q"], h.loc[rows, "map_var"], h.loc[rows, "bin"] = acc[buckets], var[buckets], which[buckets]
    h["q"] = h["q"].fillna(h["sum_top_prob"] / h["n"])
    h = h.assign(right=h["n"] * h["q"], traffic_var=h["n"] * h["q"] * (1 - h["q"]),
                 bad=h["version"].isin(list(problems)))
    per_bin = h.groupby(keys + ["version", "bin"]).agg(n=("n", "sum"), map_var=("map_var", "first")).reset_index()
    per_bin["map_var"] = per_bin["n"] ** 2 * per_bin["map_var"]
    lines = _estimate_rows(h, per_bin, keys)
    overall = _estimate_rows(h, per_bin, ["period"]).assign(business_line=None)
    return pd.concat([lines, overall[keys + ["estimated_accuracy", "estimate_error"]]], ignore_index=True)


def _estimate_rows(h: pd.DataFrame, per_bin: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """estimate's figures grouped by `keys`."""
    sums = h.groupby(keys).agg(n=("n", "sum"), right=("right", "sum"), traffic_var=("traffic_var", "sum"),
                               bad=("bad", "any"))
    sums["map_var"] = per_bin.groupby(keys)["map_var"].sum()
    value = sums["right"] / sums["n"]
    error = np.sqrt(sums["traffic_var"] + sums["map_var"]) / sums["n"]
    return pd.DataFrame({"estimated_accuracy": value.where(~sums["bad"]),
                         "estimate_error": error.where(~sums["bad"])}).reset_index()


def accuracies(labelled, correct, audit_items, audited, audit_correct) -> pd.DataFrame:
    """Audited accuracy with its Wilson interval, and accuracy on the labelled predictions outside
    the audit sample (the hard examples), from the counts per row."""
    labelled, correct = np.asarray(labelled, dtype=float), np.asarray(correct, dtype=float)
    audited, audit_correct = np.asarray(audited, dtype=float), np.asarray(audit_correct, dtype=float)
    low, high = wilson_interval(audit_correct, audited)
    hard, hard_correct = labelled - audited, correct - audit_correct
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
