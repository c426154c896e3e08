"""Shadow versions: a version that scores the live predictions beside the active one, never answering.

An owner puts one version per model in shadow (`start`, `stop`: each an audit event). In the server
a background thread (`Scorer`) reads the predictions logged since the shadow started that it has
not scored yet, scores them with the shadow version in one worker process of low priority (so it
takes only the CPU the answers leave), and appends its answers to a table of their own. The request
path does not change: a prediction is answered and logged exactly as before, and the shadow reads
it from the log afterwards. The command line runs the same catch-up (`catch_up`) without a server.
With several servers on one DuckLake, one process at a time scores a model's shadow: it holds the
model's shadow lease (core.leases), and each batch is written only while it still does.

The evidence compares the two versions on the same predictions, per business line x period: how
often they agree, both estimated accuracies (monitoring.estimate, each version with its own
held-out reliability), and where labels exist, who was right: on the labelled disagreements, and
on the audit sample (a random share labelled on purpose: each version's accuracy on the same rows).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import artifacts, auth, leases, monitoring, predict, registry, settings, stats, workers
from . import store as db
from .background import Every
from .errors import InvalidInput, LeaseLost, MMSError, VersionNotFound
from .registry import NOT_TRAINING_LABELS
from .slices import check_period
from .store import Store

log = logging.getLogger("mms.shadow")

BATCH = 500  # predictions scored and written per step: a step's commit stays small
LOOKBACK = pd.Timedelta(seconds=60)  # how far before the newest scored prediction the log is read again
SCORER_START_SECONDS = 10.0  # a starting server draws its first pages before the shadow scores

EVIDENCE_COLUMNS = ["business_line", "period", "n", "agreement", "active_versions", "shadow_version",
                    "active_estimate", "active_estimate_error", "shadow_estimate", "shadow_estimate_error",
                    "disagreements", "disagreements_labelled", "active_accuracy_on_disagreements",
                    "shadow_accuracy_on_disagreements", "audited", "active_audited_accuracy",
                    "shadow_audited_accuracy"]

# What each figure is, in the words every face (Versions and Train pages, CLI, API) uses.
ABOUT = {
    "n": "predictions the shadow version scored (those logged while it was in shadow, answered by another version)",
    "agreement": "share of those where the shadow's label is the answer's",
    "active_estimate": "estimated accuracy of the version that answered, on the same predictions: from its "
                       "calibrated confidence and its held-out test split, no labels (± one standard error)",
    "shadow_estimate": "estimated accuracy of the shadow version on the same predictions, the same way",
    "accuracy_on_disagreements": "where the two disagree and a label came back: the share each version got right "
                                 "(labels drawn as hard examples, often by the disagreement strategy: a comparison "
                                 "of the two, never an accuracy of either)",
    "audited_accuracy": "on the audit sample's labelled items among them (a random share labelled on purpose): "
                        "each version's accuracy on the same rows",
}


@dataclass(frozen=True)
class Shadow:
    """The version in shadow of a model, since when and by whom."""
    model: str
    version: int
    since: pd.Timestamp
    by: str


# --- the one writer of a model's shadow -----------------------------------------------------------

def _version_number(version) -> int:
    try:
        number = int(str(version).strip().removeprefix("v"))
    except (TypeError, ValueError):
        raise InvalidInput(f"the version must be a number like 2, not {version!r}") from None
    if number < 1:
        raise InvalidInput(f"the version must be a number like 2, not {version!r}")
    return number


def start(store: Store, model_name: str, version, user: str) -> Shadow:
    """Put `version` in shadow (one per model: it replaces the one there); an audit event
    {version, replaced}. Refused with a sentence, nothing changed: an unknown model or version, the
    active version itself, a model with no active version, a version whose model file is missing
    or altered. Putting the version in shadow again changes nothing."""
    number = _version_number(version)
    with store.connect() as con:
        auth.require(con, user, "activate")
        model = registry.find_model(con, model_name)
        target = registry.find_version(con, model, number)
    _check_shadowable(model, number)
    artifacts.verify(store, target)  # the background scorer would fail on every step
    with store.transaction() as con:
        auth.require(con, user, "activate")
        model = registry.find_model(con, model_name)
        _check_shadowable(model, number)
        now = _current(con, model)
        if now is not None and now["version"] == number:
            return Shadow(model.name, number, now["at"], now["by"])
        db.insert_shadow(con, model.model_id, number, user)
        db.add_event(con, user, "shadow_start", model.model_id,
                     {"version": number, "replaced": now["version"] if now else None})
        now = _current(con, model)
    return Shadow(model.name, number, now["at"], now["by"])


def _check_shadowable(model: registry.Model, version: int) -> None:
    if model.active_version is None:
        raise InvalidInput(f"model {model.name!r} has no active version: a shadow is compared with the version "
                           "that answers, so activate one first")
    if version == model.active_version:
        raise InvalidInput(f"version {version} is the active version of {model.name!r}: it answers already; "
                           "put another version in shadow")


def stop(store: Store, model_name: str, user: str) -> int | None:
    """Take the model's version out of shadow (an audit event {version}); the version it was, or
    None when none was (nothing changed). Its evidence stays readable."""
    with store.transaction() as con:
        auth.require(con, user, "activate")
        model = registry.find_model(con, model_name)
        now = _current(con, model)
        if now is None:
            return None
        db.insert_shadow(con, model.model_id, None, user)
        db.add_event(con, user, "shadow_stop", model.model_id, {"version": now["version"]})
        return int(now["version"])


def _current(con, model: registry.Model) -> dict | None:
    """The model's shadow row (version, at, by), or None: none started, stopped, or its version
    activated since."""
    rows = db.current_shadows(con, model.model_id)
    return rows[0] if rows else None


def current(store: Store, model_name: str) -> int | None:
    """The version of the model in shadow, or None."""
    found = status(store, model_name)
    return found.version if found else None


def status(store: Store, model_name: str) -> Shadow | None:
    """The model's shadow (version, since, by), or None."""
    with store.connect() as con:
        model = registry.find_model(con, model_name)
        now = _current(con, model)
    return Shadow(model.name, int(now["version"]), now["at"], now["by"]) if now else None


def scored_since(store: Store, model_name: str, since) -> int:
    """Predictions logged at or after `since` that the version now in shadow has scored (0: none in shadow)."""
    since = pd.Timestamp(since)
    with store.connect() as con:
        model = registry.find_model(con, model_name)
        now = _current(con, model)
        return 0 if now is None else int(db.shadow_scored_count(con, model.model_id, int(now["version"]), since))


def pending(store: Store, model_name: str) -> int:
    """Predictions logged since the shadow started that it has not scored yet (0: none in shadow)."""
    with store.connect() as con:
        model = registry.find_model(con, model_name)
        now = _current(con, model)
        return 0 if now is None else int(db.shadow_pending_count(con, model.model_id, int(now["version"]), now["at"]))


# --- scoring, off the request path -------------------------------------------------------------------

_scoring = threading.Lock()  # one catch-up at a time in a process: two would score the same rows
LANE = "shadow"  # workers.in_background's lane: the shadow's model is loaded there, not in the server


def _score(store: Store, version: registry.Version, labels: list[str], texts: list[str], background: bool) -> np.ndarray:
    if not background:
        return predict.score_texts(store, version, labels, texts)
    # a killed worker fails this step (logged) and the next starts another
    return workers.in_background(LANE, predict.score_texts, store, version, labels, texts, 1)


def catch_up(store: Store, model_name: str | None = None, background: bool = False, stopping=None) -> int:
    """Score every prediction the versions in shadow have not scored yet (of the model named, or of
    every model); how many were scored. `background`: in the low-priority worker process (the
    server's Scorer, and a command the server runs for the command line); `stopping()` ends it early."""
    with _scoring:
        with store.connect() as con:
            models = ([registry.find_model(con, model_name)] if model_name is not None
                      else [registry.find_model(con, r["name"]) for r in db.all_models(con)])
            shadows = [(m, _current(con, m)) for m in models]
        scored = 0
        for model, row in shadows:
            if row is None:
                continue
            lease = _lease(model.model_id)
            holder = leases.take_now(store, lease)
            if holder is not None:  # another server scores this model's shadow now
                log.info("MMS: the shadow of %s is scored by %s", model.name, holder)
                continue
            try:
                scored += _catch_up_one(store, model, row, background, stopping, lease)
            except LeaseLost as e:  # it stalled past its lease and another server took over
                log.warning("MMS: shadow scoring of %s: %s", model.name, e)
            finally:
                leases.release(store, lease)
        return scored


def _lease(model_id: int) -> str:
    """The lease a process holds while it scores the model's shadow: with several servers on one
    DuckLake, one scores and writes at a time, so no prediction is scored (and written) twice."""
    return f"shadow:{int(model_id)}"


def _catch_up_one(store: Store, model: registry.Model, row: dict, background: bool, stopping, lease: str) -> int:
    scored, number = 0, int(row["version"])
    while not (stopping and stopping()):
        with store.connect() as con:
            mark = db.shadow_watermark(con, model.model_id, number)
            since = row["at"] if mark is None else max(row["at"], mark - LOOKBACK)
            todo = db.shadow_pending(con, model.model_id, number, since, BATCH)
            if todo.empty:
                break
            version = registry.find_version(con, model, number)
        proba = _score(store, version, model.labels, todo["text"].tolist(), background)
        answers = todo.drop(columns=["text"]).rename(columns={"version": "active_version", "label": "active_label",
                                                              "top_prob": "active_top_prob"})
        answers = answers.assign(model_id=model.model_id, version=number,
                                 label=np.asarray(model.labels)[proba.argmax(axis=1)], top_prob=proba.max(axis=1),
                                 probs=list(proba))


        def write(con, answers=answers) -> int:
            leases.renew(con, lease)  # written only while this process still holds the lease
            return db.insert_shadow_predictions(con, answers)
        scored += leases.retrying(store, write)
        if len(todo) < BATCH:
            break
    return scored


class Scorer(Every):
    """The server's shadow thread: every MMS_SHADOW_SECONDS, the predictions the versions in shadow
    have not scored yet, scored in the low-priority worker. It ends by itself once the server no
    longer logs predictions into the store (its stop); failures are logged, never raised."""
    name = "mms-shadow"

    def __init__(self, store: Store, seconds: float | None = None):
        self.store = store
        super().__init__(settings.get("shadow_seconds") if seconds is None else seconds, SCORER_START_SECONDS)

    def once(self) -> None:
        if self.store.serving is None:  # the server stopped serving the store
            self._stop.set()
            return
        try:
            started = time.perf_counter()
            n = catch_up(self.store, background=True, stopping=self.stopping)
            if n:
                log.info("MMS: the versions in shadow scored %d predictions in %.1f s", n, time.perf_counter() - started)
        except MMSError as e:
            log.warning("MMS: shadow scoring: %s", e)


# --- the evidence ------------------------------------------------------------------------------------

def _evidence_version(con, model: registry.Model, version) -> int | None:
    """The version whose shadow evidence to read: the one given (it must exist), else the one in
    shadow now, else the newest that scored in shadow; None when no version ever did."""
    if version is not None:
        return registry.find_version(con, model, _version_number(version)).version
    now = _current(con, model)
    if now is not None:
        return int(now["version"])
    scored = db.shadow_versions_scored(con, model.model_id)
    return scored[0] if scored else None


def evidence(store: Store, model_name: str, period: str = "week", version=None) -> pd.DataFrame:
    """One row per business line x period of the predictions the shadow version scored (the one in
    shadow now unless `version` is given): EVIDENCE_COLUMNS, ABOUT says what each is. Empty when
    the version has scored nothing."""
    check_period(period)
    with store.connect() as con:
        model = registry.find_model(con, model_name)
        number = _evidence_version(con, model, version)
        if number is None:
            return pd.DataFrame(columns=EVIDENCE_COLUMNS)
        counts, histogram, metrics = _evidence_sums(con, model, number, period)
    return _evidence_table(counts, histogram, metrics, number)


def summary(store: Store, model_name: str, version=None) -> dict | None:
    """The evidence over every line and the whole run: the keys of EVIDENCE_COLUMNS but line and
    period, plus in_shadow, since and by (while in shadow), pending (logged, not scored yet) and
    not_estimated (why an estimate is missing: a version not calibrated); None when the version
    (by default the one in shadow, else the last one) is not in shadow and never scored there."""
    with store.connect() as con:
        model = registry.find_model(con, model_name)
        number = _evidence_version(con, model, version)
        if number is None:
            return None
        counts, histogram, metrics = _evidence_sums(con, model, number, "day")
        now = _current(con, model)
        in_shadow = now is not None and int(now["version"]) == number
        if counts.empty and not in_shadow:
            return None
        waiting = db.shadow_pending_count(con, model.model_id, number, now["at"]) if in_shadow else 0
    whole = _evidence_table(counts, histogram, metrics, number, overall=True)
    row = whole.iloc[0].to_dict() if len(whole) else {c: None for c in EVIDENCE_COLUMNS}
    row = {k: v for k, v in row.items() if k not in ("business_line", "period")}
    return {"model": model.name, **row, "n": int(row["n"] or 0), "shadow_version": number, "in_shadow": in_shadow,
            "since": now["at"] if in_shadow else None, "by": now["by"] if in_shadow else None,
            "pending": int(waiting), "not_estimated": "; ".join(whole.attrs.get("not_estimated", {}).values())}


def _evidence_sums(con, model: registry.Model, version: int, period: str):
    counts = db.shadow_counts(con, model.model_id, version, period, float(settings.get("audit_share")),
                              list(NOT_TRAINING_LABELS))
    histogram = db.shadow_histogram(con, model.model_id, version, period)
    metrics = {}
    for v in sorted({int(x) for x in histogram["version"]}):
        try:
            metrics[v] = registry.find_version(con, model, v).metrics
        except VersionNotFound:
            metrics[v] = None
    return counts, histogram, metrics


def _evidence_table(counts: pd.DataFrame, histogram: pd.DataFrame, metrics: dict, version: int,
                    overall: bool = False) -> pd.DataFrame:
    """The evidence from the store's sums; `overall`: one row over every line and period (the
    estimate's own overall rows, which weigh each line's reliability as the Monitor's do)."""
    if counts.empty:
        return pd.DataFrame(columns=EVIDENCE_COLUMNS)
    if overall:
        whole = pd.Timestamp(counts["period"].min())
        versions = sorted({int(v) for vs in counts["active_versions"] for v in vs})
        counts = counts.drop(columns=["business_line", "period", "active_versions"]).sum().to_frame().T.assign(
            business_line=stats.ALL_LINES, period=whole, active_versions=[versions])
        histogram = histogram.assign(period=whole)
    problems = monitoring.calibration_problems({v: (m or {}).get("ece") for v, m in metrics.items()},
                                               float(settings.get("estimate_max_ece")))
    keys = ["business_line", "period"]
    table = counts.assign(period=pd.to_datetime(counts["period"]))
    for side in ("active", "shadow"):
        rows = histogram[histogram["side"] == side].drop(columns="side")
        found = monitoring.estimate(rows, metrics, problems)
        found = (found[found["business_line"].isna()].assign(business_line=stats.ALL_LINES) if overall
                 else found[found["business_line"].notna()]).assign(period=lambda f: pd.to_datetime(f["period"]))
        found = found.rename(columns={"estimated_accuracy": f"{side}_estimate", "estimate_error": f"{side}_estimate_error"})
        table = table.merge(found[keys + [f"{side}_estimate", f"{side}_estimate_error"]], on=keys, how="left")
    n, agree = table["n"].to_numpy(float), table["agree"].to_numpy(float)
    labelled, audited = table["disagree_labelled"].to_numpy(float), table["audited"].to_numpy(float)

    def share(part, whole):
        return np.where(whole > 0, np.asarray(part, dtype=float) / np.maximum(whole, 1), np.nan)

    table = table.assign(
        agreement=share(agree, n), disagreements=(n - agree).astype("int64"), shadow_version=int(version),
        active_versions=[", ".join(f"v{v}" for v in vs) for vs in table["active_versions"]],
        disagreements_labelled=labelled.astype("int64"),
        active_accuracy_on_disagreements=share(table["active_right"], labelled),
        shadow_accuracy_on_disagreements=share(table["shadow_right"], labelled),
        audited=audited.astype("int64"),
        active_audited_accuracy=share(table["active_audit_correct"], audited),
        shadow_audited_accuracy=share(table["shadow_audit_correct"], audited))
    table = table[EVIDENCE_COLUMNS].sort_values(keys, ignore_index=True)
    table.attrs["not_estimated"] = problems  # why a version's estimate is missing, as the Monitor says it
    return table


def report(store: Store, model_name: str, period: str = "week", version=None) -> dict:
    """What the command line and the API answer about a model's shadow, JSON-ready (NaN as None,
    times as ISO text): in_shadow (the version, or None), summary (None before any evidence), the
    evidence rows per line x period, and what each figure is (ABOUT)."""
    table = evidence(store, model_name, period, version)
    found = summary(store, model_name, version)
    return {"model": model_name, "in_shadow": current(store, model_name), "summary": _plain(found) if found else None,
            "evidence": [_plain(row) for row in table.to_dict("records")], "about": ABOUT}


def _plain(row: dict) -> dict:
    def value(v):
        if isinstance(v, (pd.Timestamp, np.datetime64)) or hasattr(v, "isoformat"):
            return pd.Timestamp(v).isoformat()
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            return None if np.isnan(v) else float(v)
        return v
    return {k: value(v) for k, v in row.items()}
