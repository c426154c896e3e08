"""Routes for models and their versions: the registry read and written, data imported, versions trained
and activated, and /health."""
from __future__ import annotations

import math

import pandas as pd
from fastapi import APIRouter, Depends, Request

from .. import auth, imports, registry, train
from ..errors import Regression, SignInRefused
from ..store import Store
from .access import Caller, address, auth_mode, current_user, get_store
from .schemas import (ActivateRequest, Comparison, CreateModelRequest, Example, Health, ImportRequest, ImportResponse,
                      ModelDetail, ModelName, ModelSummary, TrainRequest, VersionPath, VersionQuery, VersionSummary,
                      error_responses)

router = APIRouter()


@router.get("/health", response_model=Health, responses=error_responses(403, 429, 503))
def health(request: Request, store: Store = Depends(get_store)) -> Health:
    """Whether the API can read its store, and whether it asks for tokens; the store's path
    only for a valid token (it names folders and users of the server's machine)."""
    # read by hand, not through `bearer`: the token is optional here, and a declared security
    # scheme would tell clients (and the OpenAPI checks) that health needs one
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    try:
        caller = (scheme.lower() == "bearer" and token.strip()
                  and auth.token_caller(store, token.strip(), address(request) or "local"))
    except SignInRefused:  # unknown tokens are refused here, and health answers without one
        caller = None
    return Health(ok=True, store=str(store.path) if caller else None, models=len(registry.list_models(store)),
                  auth=auth_mode(store))


@router.get("/models", response_model=list[ModelSummary], responses=error_responses(401, 403, 429, 503))
def models(store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> list[ModelSummary]:
    """Every model with its active version and that version's headline metrics."""
    overview = registry.models_overview(store)
    models = {m.name: m for m in registry.list_models(store)}  # read second: models are never deleted
    return [_summary(models[row["model"]], row) for row in overview.to_dict("records")]


@router.get("/models/{name}", response_model=ModelDetail, response_model_exclude_unset=True,
            responses=error_responses(401, 403, 404, 429, 503))
def model(name: ModelName, store: Store = Depends(get_store),
          caller: Caller = Depends(current_user)) -> ModelDetail:
    """One model: labels, active version, its metrics, and every version."""
    return _detail(store, name)


@router.post("/models", response_model=ModelDetail, response_model_exclude_unset=True, status_code=201,
             responses=error_responses(400, 401, 403, 409, 422, 429, 503))
def create_model(body: CreateModelRequest, store: Store = Depends(get_store),
                 caller: Caller = Depends(current_user)) -> ModelDetail:
    """A new model with its label set (an ordinal model's grades lowest first); owners only. It answers
    predictions once it has examples and a trained version."""
    model = registry.create_model(store, body.name, body.labels, caller.user, body.description, task=body.task)
    return _detail(store, model.name)


@router.get("/models/{name}/compare", response_model=Comparison, response_model_exclude_unset=True,
            responses=error_responses(401, 403, 404, 422, 429, 503))
def compare_versions(name: ModelName, a: VersionQuery, b: VersionQuery, store: Store = Depends(get_store),
                     caller: Caller = Depends(current_user)) -> dict:
    """Version b beside version a on the model's test set: overall, per-class and per-line deltas (b - a),
    and what b would regress on if it replaced a."""
    return registry.comparison(store, name, a, b)


@router.post("/models/{name}/versions/{version}/activate", response_model=VersionSummary,
             response_model_exclude_unset=True,
             responses=error_responses(400, 401, 403, 404, 409, 422, 429, 500, 503))
def activate(name: ModelName, version: VersionPath, body: ActivateRequest | None = None,
             store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> VersionSummary:
    """Make a version (any earlier one too) the one that answers predictions. A version worse than the
    active one is refused with 409 and what regressed, unless `force` is true with a `reason`; an
    activation that lost a race with another process's write is 409 without `regressions`: try again."""
    body = body or ActivateRequest()
    return _version_summary(registry.activate_version(store, name, version, caller.user, body.reason,
                                                      force=body.force))


@router.post("/models/{name}/examples", response_model=ImportResponse, status_code=201,
             responses=error_responses(400, 401, 403, 404, 409, 422, 429, 503))
def import_examples(name: ModelName, body: ImportRequest, store: Store = Depends(get_store),
                    caller: Caller = Depends(current_user)) -> ImportResponse:
    """Labelled rows for training or testing, all or none; owners only. A bad row is refused with 422
    naming its position (from 0) and what is wrong, and nothing is imported."""
    reports = imports.import_splits(store, name, _example_frames(body.rows), caller.user, filename="rows")
    by_split = {split: report.imported for split, report in reports.items()}
    notes = [report.outcome(split) for split, report in reports.items()]
    return ImportResponse(model=name, imported=sum(by_split.values()), by_split=by_split, notes=notes)


@router.post("/models/{name}/train", response_model=VersionSummary, response_model_exclude_unset=True,
             status_code=201, responses=error_responses(400, 401, 403, 404, 409, 422, 429, 500, 503))
def train_model(name: ModelName, body: TrainRequest | None = None, store: Store = Depends(get_store),
                caller: Caller = Depends(current_user)) -> VersionSummary:
    """Train and register a new version, answering when it is done (this blocks for the training time);
    owners only. An activation the promotion guard refuses is 409 with what fell and the version kept."""
    body = body or TrainRequest()
    try:
        return _version_summary(train.train_version(store, name, caller.user, model_config=body.config,
                                                    incremental=body.mode == "incremental", activate=body.activate))
    except Regression as refused:
        if body.activate or refused.version is None:
            raise
        # not asked to activate: a first version the guard keeps from going active by itself is still
        # what was asked for, trained and kept; the answer says why it is not active
        summary = _version_summary(registry.get_version(store, name, refused.version))
        summary.guard = str(refused)
        return summary


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _example_frames(rows: list[Example]) -> dict[str, pd.DataFrame]:
    """The rows as one frame per split, indexed so that core's sentences ("in row N", counted like a file's
    lines after its header) name a row by its position in the request, from 0."""
    frame = pd.DataFrame([{"text": r.text, "label": r.label, "business_line": r.business_line or "",
                           "split": r.split} for r in rows], index=range(-2, len(rows) - 2))
    return {split: part.drop(columns="split") for split, part in frame.groupby("split", sort=False)}


def _detail(store: Store, name: str) -> ModelDetail:
    """A model's labels, active version, that version's metrics and every version."""
    m = registry.get_model(store, name)
    versions = registry.list_versions(store, name)
    active = next((v for v in versions if v.version == m.active_version), None)
    keys = ("accuracy", "macro_f1", "log_loss", "ece")
    metrics = {k: _number(active.metrics.get(k)) for k in keys} if active else {}
    metrics.update({k: _number(v) for k, v in (active.metrics.get("ordinal", {}) if active else {}).items()})
    return ModelDetail(name=m.name, description=m.description, labels=m.labels, versions=len(versions),
                       active_version=m.active_version, accuracy=metrics.get("accuracy"),
                       macro_f1=metrics.get("macro_f1"), task=m.task, active_metrics=metrics,
                       version_list=[_version_summary(v) for v in versions])


def _summary(m: registry.Model, row) -> ModelSummary:
    active = None if m.active_version is None else int(m.active_version)
    return ModelSummary(name=m.name, description=m.description, labels=m.labels, versions=int(row["versions"]),
                        active_version=active, accuracy=_number(row["accuracy"]), macro_f1=_number(row["macro_f1"]))


def _version_summary(v: registry.Version) -> VersionSummary:
    """A version's row; `ordinal` is set only for an ordinal version (routes leave unset fields out)."""
    graded = {"ordinal": {k: _number(x) for k, x in v.metrics["ordinal"].items()}} if "ordinal" in v.metrics else {}
    return VersionSummary(version=v.version, status=v.status, mode=v.mode, created_at=v.created_at.isoformat(),
                          created_by=v.created_by, accuracy=_number(v.metrics.get("accuracy")),
                          macro_f1=_number(v.metrics.get("macro_f1")), **graded)
