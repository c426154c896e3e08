"""Routes of the loop that runs itself: a model's retraining policy and its runs, its alert thresholds,
its alerts, and acknowledging one. Bodies are partial: the fields given change, the others stay."""
from __future__ import annotations

import math
from typing import Annotated, Literal

import pandas as pd
from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from .. import alerts, policy
from ..store import Store
from .access import Caller, allowed, current_user, get_store
from .schemas import Body, ModelName, error_responses

router = APIRouter()

AlertId = Annotated[int, Path(ge=1, le=2**53 - 1, description="An alert's id.")]


class PolicyBody(Body):
    """A model's retraining policy; in a PUT, only the fields given change."""
    enabled: bool | None = Field(None, description="Retrain by itself (off by default).")
    new_labels: int | None = Field(None, ge=1, le=policy.MAX_NEW_LABELS,
                                   description="Retrain once this many new labels arrived since the newest version "
                                               "(null: this trigger off).")
    on_drift: bool | None = Field(None, description="Retrain when drift is flagged on a line (with new labels).")
    every_hours: float | None = Field(None, ge=policy.MIN_EVERY_HOURS, le=policy.MAX_HOURS,
                                      description="Retrain every this many hours when there is anything new (null: off).")
    mode: Literal["full", "incremental"] | None = Field(None, description="Full retrain or incremental update.")
    shadow_hours: float | None = Field(None, ge=policy.MIN_EVERY_HOURS, le=policy.MAX_HOURS,
                                       description="Shadow the new version this long before the guard judges it "
                                                   "(null: no shadow time).")
    shadow_predictions: int | None = Field(None, ge=1, le=policy.MAX_NEW_LABELS,
                                           description="... or until it scored this many live predictions, whichever "
                                                       "first (null: no volume).")
    period: Literal["day", "week", "month"] | None = Field(None, description="The line x period drift is read per.")


class PolicyAnswer(BaseModel):
    model: str
    enabled: bool
    new_labels: int | None
    on_drift: bool
    every_hours: float | None
    mode: str
    shadow_hours: float | None
    shadow_predictions: int | None
    period: str
    policy: str = Field(description="The policy in one sentence.")


class PolicyRun(BaseModel):
    run_id: int
    trigger: str = Field(description="labels | drift | schedule")
    why: str
    mode: str
    state: str = Field(description="training | shadow | judging (open); activated | refused | failed")
    version: int | None = Field(description="The version the run trained.")
    guard: str = Field(description="passed | refused | '' (not judged yet)")
    result: str
    started_at: str
    finished_at: str | None
    seconds: float | None
    run_by: str


class CheckAnswer(BaseModel):
    model: str
    said: str = Field(description="What the due check did, in a sentence.")


class AlertSettingsBody(Body):
    """A model's alert thresholds and webhook; in a PUT, only the fields given change (null turns a threshold off)."""
    drift: bool | None = None
    estimated_below: float | None = Field(None, gt=0, le=1, description="A share (0.85 for 85 %).")
    audited_upper_below: float | None = Field(None, gt=0, le=1, description="A share: the audited interval's upper bound.")
    volume_drop_percent: float | None = Field(None, gt=0, le=100, description="A percentage against the period before.")
    policy_refused: bool | None = None
    webhook: str | None = Field(None, max_length=2000, description="An http(s) URL each alert is POSTed to as JSON ('' for none).")
    period: Literal["day", "week", "month"] | None = None


class AlertSettingsAnswer(BaseModel):
    model: str
    drift: bool
    estimated_below: float | None
    audited_upper_below: float | None
    volume_drop_percent: float | None
    policy_refused: bool
    webhook: str
    period: str


class Alert(BaseModel):
    alert_id: int
    model: str
    kind: str
    subject: str
    message: str
    raised_at: str
    state: str = Field(description="open | acknowledged")
    acknowledged_by: str | None
    acknowledged_at: str | None
    delivery: str = Field(description="none (no webhook) | pending | sent | failed")
    attempts: int
    last_error: str


class Delivery(BaseModel):
    attempt: int
    at: str
    ok: bool
    status: int | None
    error: str
    seconds: float


def _policy(name: str, chosen: policy.Policy) -> PolicyAnswer:
    return PolicyAnswer(model=name, **chosen.to_dict(), policy=chosen.describe())


def _plain(value):
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


@router.get("/models/{name}/policy", response_model=PolicyAnswer, responses=error_responses(401, 403, 404, 429, 503))
def get_policy(name: ModelName, store: Store = Depends(get_store),
               caller: Caller = Depends(current_user)) -> PolicyAnswer:
    """The model's retraining policy (off until an owner sets one)."""
    return _policy(name, policy.get_policy(store, name))


@router.put("/models/{name}/policy", response_model=PolicyAnswer,
            responses=error_responses(400, 401, 403, 404, 422, 429, 503))
def set_policy(name: ModelName, body: PolicyBody, store: Store = Depends(get_store),
               caller: Caller = Depends(current_user)) -> PolicyAnswer:
    """Set the model's retraining policy (owners): the fields given change. An impossible number, a
    policy on without a trigger or an unknown field is 422 with a sentence, and nothing changes."""
    return _policy(name, policy.set_policy(store, name, caller.user, **body.model_dump(exclude_unset=True)))


@router.get("/models/{name}/policy/runs", response_model=list[PolicyRun],
            responses=error_responses(401, 403, 404, 429, 503))
def policy_runs(name: ModelName, limit: Annotated[int, Query(ge=1, le=10000)] = 100,
                store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> list[dict]:
    """The model's policy runs, newest first: trigger and why, mode, state, the version trained, the
    guard's answer and the result."""
    return _records(policy.runs_table(store, name, limit))


@router.post("/models/{name}/policy/check", response_model=CheckAnswer,
             responses=error_responses(401, 403, 404, 429, 503))
def policy_check(name: ModelName, store: Store = Depends(get_store),
                 caller: Caller = Depends(allowed("train"))) -> CheckAnswer:
    """Run one due check of the model's policy now (owners): carry its open run on, or start one if a
    trigger is met; the training runs in the server's background."""
    return CheckAnswer(model=name, said=policy.check_model(store, name, wait=False))


@router.get("/models/{name}/alert-settings", response_model=AlertSettingsAnswer,
            responses=error_responses(401, 403, 404, 429, 503))
def get_alert_settings(name: ModelName, store: Store = Depends(get_store),
                       caller: Caller = Depends(current_user)) -> AlertSettingsAnswer:
    """The model's alert thresholds and webhook."""
    return AlertSettingsAnswer(model=name, **alerts.get_settings(store, name).to_dict())


@router.put("/models/{name}/alert-settings", response_model=AlertSettingsAnswer,
            responses=error_responses(400, 401, 403, 404, 422, 429, 503))
def set_alert_settings(name: ModelName, body: AlertSettingsBody, store: Store = Depends(get_store),
                       caller: Caller = Depends(current_user)) -> AlertSettingsAnswer:
    """Set the model's alert thresholds and webhook (owners): the fields given change. A share outside
    0..1, a percentage outside 0..100 or a webhook URL that is not http(s) is 422, and nothing changes."""
    chosen = alerts.set_settings(store, name, caller.user, **body.model_dump(exclude_unset=True))
    return AlertSettingsAnswer(model=name, **chosen.to_dict())


@router.get("/models/{name}/alerts", response_model=list[Alert],
            responses=error_responses(401, 403, 404, 422, 429, 503))
def model_alerts(name: ModelName, state: Literal["open", "acknowledged"] | None = None,
                 limit: Annotated[int, Query(ge=1, le=10000)] = 100, store: Store = Depends(get_store),
                 caller: Caller = Depends(current_user)) -> list[dict]:
    """The model's alerts, newest first, with their delivery (none, pending, sent, failed)."""
    return _records(alerts.alerts_table(store, name, state, limit).drop(columns=["details", "url", "next_attempt_at"]))


@router.post("/alerts/{alert_id}/acknowledge", response_model=Alert,
             responses=error_responses(401, 403, 404, 422, 429, 503))
def acknowledge(alert_id: AlertId, store: Store = Depends(get_store),
                caller: Caller = Depends(current_user)) -> dict:
    """Acknowledge an open alert (owners and analysts); acknowledging it again is 422."""
    row = alerts.acknowledge(store, alert_id, caller.user)
    table = alerts.alerts_table(store, None, None, 100000)
    return _records(table[table["alert_id"] == row["alert_id"]].drop(columns=["details", "url", "next_attempt_at"]))[0]


@router.get("/alerts/{alert_id}/deliveries", response_model=list[Delivery],
            responses=error_responses(401, 403, 429, 503))
def deliveries(alert_id: AlertId, store: Store = Depends(get_store),
               caller: Caller = Depends(current_user)) -> list[dict]:
    """Every attempt to send an alert to its webhook: when, whether it arrived, the receiver's status or why not."""
    return _records(alerts.deliveries(store, alert_id).drop(columns=["url"]))
