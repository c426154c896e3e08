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

# What each accuracy is, in the words every face (Monitor, CLI, API) uses.
ACCURACIES = {
    "estimated_accuracy": "estimated without labels: the mean calibrated top probability (confidence-based "
                          "performance estimation), ± estimate_error (one standard error)",
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


def estimate(n, sum_top_prob, sum_var, versions, problems: dict[int, str]) -> pd.DataFrame:
    """Estimated accuracy per row: for calibrated probabilities the expected share correct is the
    mean top probability, and the number correct has variance sum p(1 - p) (a sum of Bernoullis),
    hence the expected error sqrt(sum p(1 - p)) / n. A row with a version in `problems` gets no
    estimate (the reasons are `problems`' sentences)."""
    n = np.asarray(n, dtype=float)
    value = np.asarray(sum_top_prob, dtype=float) / np.maximum(n, 1)
    error = np.sqrt(np.maximum(np.asarray(sum_var, dtype=float), 0)) / np.maximum(n, 1)
    bad = np.array([any(v in problems for v in vs) for vs in versions], dtype=bool) | (n <= 0)
    return pd.DataFrame({"estimated_accuracy": np.where(bad, np.nan, value),
                         "estimate_error": np.where(bad, np.nan, error)})


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
