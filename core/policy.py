"""The loop that runs itself: a per-model retraining policy, its runs, and the server's due checks.

A policy (off by default; owners set it) says when to retrain (N new labels, drift flagged on a
line, a schedule), how (full or incremental), and whether the new version first scores live
traffic in shadow for a time or a volume. A run then trains, optionally shadows, and activates
only through the one activation writer and its promotion guard (registry.activate_version); a
refused version is kept and the owner is told why by an alert.

One run at a time per model, its state in the store, with several servers on one DuckLake as with
one: a process carries a run on only while it holds the model's lease (core.leases), renewed while
it works and by each of the run's writes. A run whose process died (a server restart) or whose
lease lapsed (its host is gone) is taken up again by the next due check of any server. Each step is
audited in the run's row and the events. A server fits in a low-priority worker process of its own
(workers.in_background), the store's reads and writes staying in the server's process: serving
keeps the GIL and the CPU's first turn.
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, fields

import pandas as pd

from . import alerts, auth, drift, leases, registry, settings, shadow, stats, train, workers
from . import store as db
from .background import Every
from .estimators import ModelConfig
from .errors import Conflict, InvalidInput, MMSError, Regression, VersionNotFound
from .registry import FULL, INCREMENTAL
from .slices import PERIODS
from .store import Store

log = logging.getLogger("mms.policy")

LABELS, DRIFT, SCHEDULE = "labels", "drift", "schedule"
TRAINING, SHADOW, JUDGING = "training", "shadow", "judging"  # a run that is open
ACTIVATED, REFUSED, FAILED = "activated", "refused", "failed"  # a run that is over
OPEN_STATES = (TRAINING, SHADOW, JUDGING)
MAX_NEW_LABELS = 10_000_000
MIN_EVERY_HOURS, MAX_HOURS = 0.01, 24 * 366


@dataclass(frozen=True)
class Policy:
    """When a model retrains by itself and how; off until an owner turns it on."""
    enabled: bool = False
    new_labels: int | None = None        # retrain once this many new labels arrived since the newest version
    on_drift: bool = False               # retrain when drift is flagged on a line (latest two periods)
    every_hours: float | None = None     # retrain on this schedule (when there is anything new)
    mode: str = FULL                     # full | incremental
    shadow_hours: float | None = None    # shadow the new version this long first ...
    shadow_predictions: int | None = None  # ... or until it scored this many live predictions (whichever first)
    period: str = "week"                 # the line x period drift is read per

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def shadowed(self) -> bool:
        return bool(self.shadow_hours) or bool(self.shadow_predictions)

    def describe(self) -> str:
        """The policy in one sentence."""
        if not self.enabled:
            return "off: nothing retrains by itself"
        when = []
        if self.new_labels:
            when.append(f"{self.new_labels} new labels have arrived")
        if self.on_drift:
            when.append(f"drift is flagged on a line (per {self.period}) and there are new labels")
        if self.every_hours:
            when.append(f"every {self.every_hours:g} h when there is anything new")
        shadowed = ""
        if self.shadowed:
            parts = ([f"{self.shadow_hours:g} h"] if self.shadow_hours else []) + \
                    ([f"{self.shadow_predictions} predictions"] if self.shadow_predictions else [])
            shadowed = f", shadowed for {' or '.join(parts)} (whichever comes first)"
        return (f"on: a {self.mode} retrain when {' or '.join(when)}{shadowed}; the new version is activated "
                f"only if the promotion guard passes")


def _whole(name: str, value, lo: int, hi: int) -> int | None:
    if value is None or value == "" or value == 0 and name.startswith("shadow"):
        return None
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise InvalidInput(f"{name} must be a whole number from {lo} to {hi:,}, not {value!r}")
    try:
        number = int(str(value).strip()) if not isinstance(value, float) else int(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number from {lo} to {hi:,}, not {value!r}") from None
    if not lo <= number <= hi:
        raise InvalidInput(f"{name} must be a whole number from {lo} to {hi:,}, not {number}")
    return number


def _hours(name: str, value, lo: float) -> float | None:
    if value is None or value == "" or value == 0 and name.startswith("shadow"):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a number of hours, not {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number) or not lo <= number <= MAX_HOURS:
        raise InvalidInput(f"{name} must be a number of hours from {lo:g} to {MAX_HOURS:,}, not {value}")
    return number


def validate(values: dict, model: registry.Model | None = None, active: registry.Version | None = None) -> Policy:
    """A Policy from loose values (CLI, API, page), every field checked: impossible numbers, a policy
    that is on without a trigger, incremental updates of a version that cannot learn incrementally.
    InvalidInput names the field."""
    unknown = set(values) - {f.name for f in fields(Policy)}
    if unknown:
        raise InvalidInput(f"unknown policy setting(s): {', '.join(sorted(unknown))}")
    mode = values.get("mode", FULL)
    if mode not in (FULL, INCREMENTAL):
        raise InvalidInput(f"mode must be {FULL} or {INCREMENTAL}, not {mode!r}")
    period = values.get("period", "week")
    if period not in PERIODS:
        raise InvalidInput(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    chosen = Policy(enabled=alerts.on_or_off("enabled", values.get("enabled", False)),
                    new_labels=_whole("new_labels", values.get("new_labels"), 1, MAX_NEW_LABELS),
                    on_drift=alerts.on_or_off("on_drift", values.get("on_drift", False)),
                    every_hours=_hours("every_hours", values.get("every_hours"), MIN_EVERY_HOURS),
                    mode=mode, shadow_hours=_hours("shadow_hours", values.get("shadow_hours"), MIN_EVERY_HOURS),
                    shadow_predictions=_whole("shadow_predictions", values.get("shadow_predictions"), 1, MAX_NEW_LABELS),
                    period=period)
    if chosen.enabled and not (chosen.new_labels or chosen.on_drift or chosen.every_hours):
        raise InvalidInput("a policy that is on needs a trigger: a number of new labels, drift, or a schedule in hours")
    if chosen.enabled and mode == INCREMENTAL and active is not None:
        if not train.updatable(model, ModelConfig.from_dict(active.model_config)):
            raise InvalidInput(f"incremental mode needs an active version that learns incrementally; version "
                               f"{active.version} of {model.name!r} uses {active.model_config.get('estimator')}: "
                               f"choose full mode")
    return chosen


def get_policy(store: Store, name: str) -> Policy:
    """The model's policy (off until an owner sets one)."""
    with store.connect() as con:
        row = db.policy_row(con, registry.find_model(con, name).model_id)
    return Policy(**json.loads(row["settings"])) if row else Policy()


def set_policy(store: Store, name: str, user: str, **changes) -> Policy:
    """The one writer of a model's policy (owners): the given fields change, the others stay. A bad
    value is refused with a sentence and nothing changes. Runs act as the owner who set it last."""
    with store.transaction() as con:
        auth.require(con, user, "manage")
        auth.require(con, user, "activate")
        model = registry.find_model(con, name)
        row = db.policy_row(con, model.model_id)
        current = json.loads(row["settings"]) if row else Policy().to_dict()
        active = registry.resolve_version(con, model) if model.active_version else None
        chosen = validate({**current, **changes}, model, active)
        db.insert_policy(con, model.model_id, json.dumps(chosen.to_dict()), user)
        db.add_event(con, user, "set_policy", model.model_id, chosen.to_dict())
    return chosen


# --- runs ---------------------------------------------------------------------------------------

LANE = "policy"  # workers.in_background's lane for a server's fits


def _worker() -> str:
    """This process, as a run's worker (leases.me: host, pid and the pid's start time)."""
    return leases.me()


def worker_alive(worker: str) -> bool:
    """Whether the process that runs a step is still there. A process on another host (DuckLake) is
    taken to be alive: only its lease can tell, by lapsing."""
    return leases.alive(worker) is not False


def _lease(model_id: int) -> str:
    """The lease a process holds while it carries one of the model's runs on."""
    return f"policy:{int(model_id)}"


@dataclass(frozen=True)
class Run:
    run_id: int
    model: str
    trigger: str
    details: dict
    mode: str
    state: str
    version: int | None
    result: str
    worker: str
    run_by: str
    started_at: pd.Timestamp
    finished_at: pd.Timestamp | None

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES


def _run(row: dict, model: str) -> Run:
    return Run(int(row["run_id"]), model, row["trigger"], json.loads(row["details"]), row["mode"], row["state"],
               None if row["version"] is None or pd.isna(row["version"]) else int(row["version"]), row["result"],
               row["worker"], row["run_by"], pd.Timestamp(row["started_at"]),
               None if row["finished_at"] is None or pd.isna(row["finished_at"]) else pd.Timestamp(row["finished_at"]))


_claims = threading.Lock()  # one check-then-insert of a run at a time in this process
_here: set[int] = set()  # runs whose step runs in this process now


def start_run(store: Store, name: str, trigger: str, why: dict, user: str | None = None) -> Run | None:
    """Open a run of the model's policy (state training, this process its worker and the model's
    lease its own) unless one is open or another process holds the lease; None then. `user`
    defaults to the owner who set the policy."""
    try:
        with _claims, leases.claiming:
            return _start_run(store, name, trigger, why, user)
    except Conflict:  # another server opened one at the same moment
        return None


def _start_run(store: Store, name: str, trigger: str, why: dict, user: str | None) -> Run | None:
    with store.transaction() as con:
        model = registry.find_model(con, name)
        if db.run_rows(con, model.model_id, list(OPEN_STATES), limit=1):
            return None
        if leases.take(con, _lease(model.model_id)) is not None:
            return None
        row = db.policy_row(con, model.model_id)
        chosen = Policy(**json.loads(row["settings"])) if row else Policy()
        user = user or (row["set_by"] if row else "policy")
        auth.require(con, user, "train")
        run_id = db.new_event_id(con)
        details = {"why": why}
        db.insert_run(con, run_id, model.model_id, trigger, json.dumps(details, ensure_ascii=False, default=str),
                      chosen.mode, TRAINING, _worker(), user)
        db.add_event_with_id(con, run_id, user, "policy_run", model.model_id,
                             {"run_id": run_id, "trigger": trigger, "why": why.get("sentence", ""), "mode": chosen.mode})
        return _run(db.run_row(con, run_id), name)


def get_run(store: Store, run_id: int) -> Run:
    with store.connect() as con:
        row = db.run_row(con, int(run_id))
        if row is None:
            raise InvalidInput(f"there is no policy run {run_id}")
        name = next(m["name"] for m in db.all_models(con) if m["model_id"] == row["model_id"])
    return _run(row, name)


def _update(store: Store, run: Run, state: str | None = None, result: str | None = None, **details) -> Run:
    """A run's next state, with `details` merged into its record; a closed state is audited as the run's result."""
    merged = {**run.details, **details}
    changes = {"details": json.dumps(merged, ensure_ascii=False, default=str), "worker": _worker()}
    if state is not None:
        changes["state"] = state
    if result is not None:
        changes["result"] = result
    if "trained" in details and details["trained"].get("version") is not None:
        changes["version"] = int(details["trained"]["version"])
    closing = state is not None and state not in OPEN_STATES
    if closing:
        changes["finished_at"] = db.now()

    def write(con) -> Run:
        model = registry.find_model(con, run.model)
        leases.renew(con, _lease(model.model_id))  # a process that lost the run writes nothing more
        db.update_run(con, run.run_id, **changes)
        if closing:
            db.add_event(con, run.run_by, "policy_run_result", model.model_id,
                         {"run_id": run.run_id, "state": state, "version": changes.get("version", run.version),
                          "result": result or run.result})
        return _run(db.run_row(con, run.run_id), run.model)
    return leases.retrying(store, write)


def execute(store: Store, run: Run, off_process: bool = False) -> Run:
    """Carry a run on from its state as far as it can go now, holding the model's lease (the caller
    took it): train, then shadow (it stays open until the shadow is over) or judge and activate.
    `off_process`: fit in the low-priority worker process (a server's runs)."""
    with _claims:
        if run.run_id in _here:
            return run
        _here.add(run.run_id)
    try:
        with store.connect() as con:
            model_id = registry.find_model(con, run.model).model_id
        with leases.Held(store, _lease(model_id)):
            if run.state == TRAINING:
                run = _train(store, run, off_process)
            if run.state == SHADOW:
                run = _finish_shadow_if_due(store, run)
            if run.state == JUDGING:
                run = _judge(store, run)
        return run
    finally:
        with _claims:
            _here.discard(run.run_id)


def _fit_here(job: train.Job) -> tuple[train.Fitted, int]:
    """train.fit_job, and the process it ran in (recorded with the run)."""
    return train.fit_job(job), os.getpid()


def _train(store: Store, run: Run, off_process: bool = False) -> Run:
    chosen = get_policy(store, run.model)
    began = time.perf_counter()
    try:  # read here, fitted in the worker process, registered here: only this process opens the store
        job = train.prepare(store, run.model, run.run_by, incremental=run.mode == INCREMENTAL)
        fitted, pid = workers.in_background(LANE, _fit_here, job) if off_process else _fit_here(job)
        version = train.finish(store, run.run_by, job, fitted)
    except Regression as e:  # a model's first version, below the trivial answer: kept, not activated
        trained = {"version": e.version, "mode": run.mode, "seconds": round(time.perf_counter() - began, 1)}
        return _refused(store, run, str(e), trained=trained, guard={"passed": False, "sentence": str(e)})
    except MMSError as e:
        return _update(store, run, FAILED, f"training failed: {e}")
    trained = {"version": version.version, "mode": version.mode, "parent": version.parent_version,
               "rows": version.data.get("rows"), "new_rows": version.data.get("new_rows"),
               "estimator": version.model_config.get("estimator"), "macro_f1": version.metrics.get("macro_f1"),
               "accuracy": version.metrics.get("accuracy"), "seconds": round(time.perf_counter() - began, 1),
               "fitted_in": "a worker process" if pid != os.getpid() else "the process that ran the step",
               "fit_pid": pid}
    if version.status == registry.ACTIVE:  # the model's first version goes active by training's own guard
        return _update(store, run, ACTIVATED, f"version {version.version} trained and activated as the model's "
                                              f"first version (it beats the trivial answer)", trained=trained)
    if chosen.shadowed:
        try:
            shadow.start(store, run.model, version.version, run.run_by)
        except MMSError as e:
            return _update(store, run, FAILED, f"version {version.version} trained and kept, but its shadow could "
                                               f"not start: {e}", trained=trained)
        until = db.now() + pd.Timedelta(hours=chosen.shadow_hours) if chosen.shadow_hours else None
        return _update(store, run, SHADOW, f"version {version.version} trained; in shadow", trained=trained,
                       shadow={"started_at": db.now(), "until": until, "predictions": chosen.shadow_predictions,
                               "period": chosen.period})
    return _update(store, run, JUDGING, f"version {version.version} trained", trained=trained)


def _finish_shadow_if_due(store: Store, run: Run, now=None) -> Run:
    plan = run.details.get("shadow", {})
    now = db.now() if now is None else pd.Timestamp(now)
    started = pd.Timestamp(plan["started_at"])
    scored = shadow.scored_since(store, run.model, started)
    timed_out = plan.get("until") is not None and now >= pd.Timestamp(plan["until"])
    enough = plan.get("predictions") is not None and scored >= int(plan["predictions"])
    still = shadow.current(store, run.model) == run.version
    if not (timed_out or enough or not still):
        return run
    ended = ("its shadow time is over" if timed_out else f"it scored {scored} live predictions in shadow" if enough
             else "its shadow was stopped by someone else")
    try:
        evidence = _plain(shadow.evidence(store, run.model, plan.get("period", "week")))
    except MMSError as e:
        evidence = {"not_read": str(e)}
    if still:
        shadow.stop(store, run.model, run.run_by)
    return _update(store, run, JUDGING, f"version {run.version}: {ended}",
                   shadow={**plan, "ended_at": db.now(), "scored": scored, "ended": ended, "evidence": evidence})


def _plain(value):
    """Shadow evidence as JSON-able data (a table becomes its rows)."""
    if isinstance(value, pd.DataFrame):
        return json.loads(value.to_json(orient="records", date_format="iso", force_ascii=False))
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    if hasattr(value, "__dataclass_fields__"):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _judge(store: Store, run: Run) -> Run:
    """The promotion guard's answer on the run's version, and its activation through the one writer if it passes."""
    guard = {}
    try:
        verdict = registry.guard_verdict(store, run.model, run.version)
        guard = {"passed": not verdict.refused, "against": verdict.base, "sentence": verdict.sentence(),
                 "notes": list(verdict.notes)}
        why = run.details.get("why", {}).get("sentence", run.trigger)
        registry.activate_version(store, run.model, run.version, run.run_by,
                                  reason=f"policy run {run.run_id}: {why}")
    except Regression as e:
        return _refused(store, run, str(e), guard={**guard, "passed": False, "sentence": str(e)})
    except (MMSError, VersionNotFound) as e:
        return _update(store, run, FAILED, f"version {run.version} was kept; its activation failed: {e}")
    return _update(store, run, ACTIVATED, f"version {run.version} activated: the promotion guard passed"
                                          + (f" ({'; '.join(guard['notes'])})" if guard["notes"] else ""), guard=guard)


def _refused(store: Store, run: Run, sentence: str, **details) -> Run:
    version = details.get("trained", {}).get("version", run.version)
    run = _update(store, run, REFUSED, f"version {version} was kept, not activated: {sentence}", **details)
    alerts.raise_alert(store, run.model, alerts.REFUSED, f"run {run.run_id}",
                       f"{run.model}: policy run {run.run_id} trained version {version}, which the promotion guard "
                       f"refused: {sentence}", {"run_id": run.run_id, "version": version, "trigger": run.trigger},
                       user=run.run_by)
    return run


# --- due checks ---------------------------------------------------------------------------------

def due(store: Store, name: str, now=None) -> tuple[str, dict] | None:
    """Why the model's policy wants a run now ((trigger, why) with a sentence), or None: off, a run
    open, or no trigger met. Drift on a line x period is a trigger once, and drift or a schedule only
    when there are new labels to learn from."""
    now = db.now() if now is None else pd.Timestamp(now)
    with store.connect() as con:
        model = registry.find_model(con, name)
        row = db.policy_row(con, model.model_id)
        chosen = Policy(**json.loads(row["settings"])) if row else Policy()
        if not chosen.enabled or db.run_rows(con, model.model_id, list(OPEN_STATES), limit=1):
            return None
        newest = db.newest_max_example_id(con, model.model_id)
        new = sum(db.examples_since(con, model.model_id, newest).values())
        runs = [_run(r, name) for r in db.run_rows(con, model.model_id, limit=10000)]
    since = "since the newest version" if newest >= 0 else "and no version yet"
    if chosen.new_labels and new >= chosen.new_labels:
        return LABELS, {"sentence": f"{new} new labels {since} (policy: {chosen.new_labels})", "new_labels": new}
    if chosen.on_drift and model.active_version is not None and new > 0:  # nothing new: a retrain learns nothing
        cells = _unhandled_drift(store, name, chosen.period, runs)
        if cells:
            lines = sorted({c["business_line"] for c in cells})
            return DRIFT, {"sentence": f"drift flagged on {', '.join(lines)} against version {cells[0]['reference_version']}",
                           "cells": cells, "new_labels": new}
    if chosen.every_hours and new > 0:
        last = max([r.started_at for r in runs] + [pd.Timestamp(row["set_at"])])
        if now - last >= pd.Timedelta(hours=chosen.every_hours):
            return SCHEDULE, {"sentence": f"scheduled every {chosen.every_hours:g} h; {new} new labels {since}",
                              "new_labels": new}
    return None


def _unhandled_drift(store: Store, name: str, by: str, runs: list[Run]) -> list[dict]:
    """Flagged line x periods of the latest two periods that no earlier run was triggered by."""
    lines = stats.stats_by_line_and_period(store, name, by)
    if lines.empty:
        return []
    recent = sorted(lines["period"].unique())[-2:]
    report = drift.drift_by_line_and_period(store, name, by, lines[lines["period"].isin(recent)].reset_index(drop=True),
                                            budget_seconds=20.0)
    # once per line x period: a version trained for it is compared with that period again, and what
    # retraining could not fix there must not start a run on every check
    handled = {(c["business_line"], str(pd.Timestamp(c["period"]))) for r in runs
               for c in r.details.get("why", {}).get("cells", [])}
    cells = [{"business_line": c.business_line, "period": str(pd.Timestamp(c.period)), "reference_version": report.version}
             for c in report.flagged().itertuples()]
    return [c for c in cells if (c["business_line"], c["period"]) not in handled]


def check_model(store: Store, name: str, wait: bool = True, now=None) -> str:
    """One due check of a model's policy: carry its open run on (taking up one whose process died or
    whose lease lapsed), or start one if a trigger is met. `wait`: train here and now; else on a
    thread of its own that fits in the low-priority worker process (the server). Returns what
    happened, in a sentence."""
    with store.connect() as con:
        model = registry.find_model(con, name)
        open_runs = [_run(r, name) for r in db.run_rows(con, model.model_id, list(OPEN_STATES))]
    for run in open_runs:
        if run.run_id in _here:
            return f"run {run.run_id} is {run.state} in this process"
        holder, before = _claim(store, model, run)
        if holder is not None:
            return f"run {run.run_id} is {run.state} in process {holder}"
        if run.state == SHADOW:  # waiting: any process checks it in turn
            return _go(store, run, wait, "in shadow")
        if before in (None, _worker()):  # left by a step of this process that raised
            return _go(store, run, wait, "carried on")
        run = _update(store, run, resumed=run.details.get("resumed", []) + [
            {"at": db.now(), "state": run.state, "from": before}])
        log.warning("MMS: policy run %d of %s taken up again (%s; its process %s is gone or its lease lapsed)",
                    run.run_id, name, run.state, before)
        return _go(store, run, wait, "taken up again")
    trigger = due(store, name, now)
    if trigger is None:
        return "nothing due"
    run = start_run(store, name, *trigger)
    if run is None:
        return "a run is open already"
    return _go(store, run, wait, f"started ({trigger[1]['sentence']})")


def _claim(store: Store, model: registry.Model, run: Run) -> tuple[str | None, str | None]:
    """Take the model's lease for an open run: (None, who held it before) when this process holds
    it now, else (who holds it, None)."""
    try:
        with _claims, leases.claiming, store.transaction() as con:
            before = db.lease_row(con, _lease(model.model_id))
            return leases.take(con, _lease(model.model_id)), before and before["holder"]
    except Conflict:
        return "another process (it took the run at the same moment)", None


def _go(store: Store, run: Run, wait: bool, what: str) -> str:
    if wait:
        run = execute(store, run)
        return f"run {run.run_id} {what}: {run.state}: {run.result}"
    threading.Thread(target=_in_background, args=(store, run), name=f"mms-policy-run-{run.run_id}", daemon=True).start()
    return f"run {run.run_id} {what}: running in the background"


def _in_background(store: Store, run: Run) -> None:
    """A server's run step, on a thread of its own; its fit runs in the low-priority worker process."""
    try:
        execute(store, run, off_process=True)
    except Exception:
        log.exception("MMS: policy run %d of %s failed", run.run_id, run.model)


def check_all(store: Store, wait: bool = True, now=None, deliver: bool = True) -> dict[str, str]:
    """One due check of every model with a policy (or an open run), then of every model's alert
    thresholds, then (`deliver`) one attempt at every due alert delivery: what `python -m core policy check`
    and the server's loop run. Returns what happened per model."""
    with store.connect() as con:
        names = [r["name"] for r in db.models_with_policy(con)]
    done = {}
    for name in names:
        try:
            done[name] = check_model(store, name, wait, now)
        except MMSError as e:
            done[name] = f"not checked: {e}"
            log.warning("MMS: policy of %s not checked: %s", name, e)
    for alert in alerts.check_all(store):
        done.setdefault(alert.model, "")
        done[alert.model] = (done[alert.model] + f"; alert: {alert.message}").lstrip("; ")
    if deliver:  # the server's sender thread delivers there
        alerts.deliver_due(store)
    return done


RUN_COLUMNS = ["run_id", "trigger", "why", "mode", "state", "version", "guard", "result", "started_at",
               "finished_at", "seconds", "run_by"]


def runs_table(store: Store, name: str, limit: int = 1000) -> pd.DataFrame:
    """The model's runs, newest first: trigger and why, mode, state, the version trained, the guard's
    answer, the result, and how long it took."""
    with store.connect() as con:
        model = registry.find_model(con, name)
        runs = [_run(r, name) for r in db.run_rows(con, model.model_id, limit=limit)]
    rows = []
    for r in runs:
        guard = r.details.get("guard")
        rows.append({"run_id": r.run_id, "trigger": r.trigger, "why": r.details.get("why", {}).get("sentence", ""),
                     "mode": r.mode, "state": r.state, "version": r.version,
                     "guard": "" if not guard else ("passed" if guard.get("passed") else "refused"),
                     "result": r.result, "started_at": r.started_at, "finished_at": r.finished_at,
                     "seconds": None if r.finished_at is None else (r.finished_at - r.started_at).total_seconds(),
                     "run_by": r.run_by})
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


class Loop(Every):
    """The server's due checks: every MMS_POLICY_SECONDS, policies and alert thresholds of every model
    (a run steps on a thread of its own and fits in the low-priority worker process), plus the alert
    sender; until `stopped()` says the server stopped."""
    name = "mms-policy"

    def __init__(self, store: Store, stopped=lambda: False, seconds: float | None = None):
        self.store, self.stopped = store, stopped
        self.sender = alerts.Sender(store, stopped)
        super().__init__(settings.get("policy_seconds") if seconds is None else seconds, min(10.0, seconds or 10.0))

    def start(self):
        if self.seconds > 0:
            self.sender.start()
        return super().start()

    def stop(self) -> None:
        self.sender.stop()
        super().stop()

    def once(self) -> None:
        if self.stopped():
            self._stop.set()
            return
        try:
            for name, what in check_all(self.store, wait=False, deliver=False).items():
                if what != "nothing due":
                    log.warning("MMS: policy of %s: %s", name, what)
        except MMSError as e:
            log.warning("MMS: policy due check: %s", e)
