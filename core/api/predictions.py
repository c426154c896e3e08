"""Routes for the prediction log: predict (every answer logged), feedback on a logged prediction, and
statistics over the log per business line and period."""
from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from .. import feedback, predict, stats
from ..store import Store
from .access import Caller, current_user, get_store
from .schemas import (FeedbackRequest, FeedbackResponse, ModelName, PredictRequest, PredictResponse, QueryDate,
                      error_responses)

router = APIRouter()


@router.post("/models/{name}/predict", response_model=PredictResponse,
             responses=error_responses(400, 401, 403, 404, 422, 429, 500, 503))
async def predict_texts(name: ModelName, body: PredictRequest, store: Store = Depends(get_store),
                        caller: Caller = Depends(current_user)) -> JSONResponse:
    """Classify texts with the active version (or `version`) and log every prediction."""
    # `async` with the work in one threadpool hop: a plain def route with a plain def dependency
    # took two per request
    return await run_in_threadpool(_predicted, store, name, body, caller)


@router.post("/models/{name}/feedback", response_model=FeedbackResponse, status_code=201,
             responses=error_responses(400, 401, 403, 404, 409, 422, 429, 503))
def give_feedback(name: ModelName, body: FeedbackRequest, store: Store = Depends(get_store),
                  caller: Caller = Depends(current_user)) -> FeedbackResponse:
    """The true label of a logged prediction; it enters the loop like one given on the Label page."""
    label = body.label.strip()
    feedback_id = feedback.label_prediction(store, name, body.prediction_id, label, caller.user)
    return FeedbackResponse(feedback_id=feedback_id, prediction_id=body.prediction_id, label=label)


@router.get("/models/{name}/stats", responses=error_responses(401, 403, 404, 422, 429, 503))
def statistics(name: ModelName, by: Annotated[str, Query(pattern="^(day|week|month)$")] = "week",
               business_line: Annotated[list[str] | None, Query()] = None, since: QueryDate = None,
               until: QueryDate = None, reference_since: QueryDate = None,
               reference_until: QueryDate = None,
               drift: bool = True, store: Store = Depends(get_store),
               caller: Caller = Depends(current_user)) -> dict:
    """Statistics per business line and period: estimated, audited and hard-example accuracy kept apart
    (`accuracies` says which is which) and drift against the reference (rows with drift_flagged)."""
    window = None if reference_since is None else (reference_since, reference_until)
    table, about = stats.stats_with_drift(store, name, by, business_line, since, until, window=window,
                                          with_drift=drift)
    rows = json.loads(table.to_json(orient="records", force_ascii=False, date_format="iso"))  # NaN -> null
    return {"model": name, "by": by, **about, "rows": rows}


def _check_batch(texts: list[str]) -> None:
    predict.check_request_size(len(texts))


def _predicted(store: Store, name: str, body: PredictRequest, caller: Caller) -> JSONResponse:
    """The predict route's answer: every text predicted, logged (committed) and written out."""
    _check_batch(body.texts)
    done = predict.predict_batch(store, name, body.texts, caller.user, business_line=body.business_line,
                                 version=body.version, source="api")
    # PredictResponse's shape written directly: FastAPI would validate the answer through pydantic
    # again, per request, for data built right here
    answers = [{"prediction_id": pid, "label": label, "probabilities": dict(zip(done.model_labels, p)),
                "version": done.version}
               for pid, label, p in zip(done.prediction_ids, done.labels, done.proba.tolist())]
    if done.expected_grades is not None:  # an ordinal model's: a classification answer has no grade
        for answer, grade in zip(answers, done.expected_grades):
            answer["expected_grade"] = grade
    return JSONResponse({"model": name, "business_line": body.business_line, "predictions": answers})
