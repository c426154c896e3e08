"""Routes for labelling: hard examples drawn and previewed, the review queue and an owner's decisions, the
overlap share, the labelling guidelines and the team's agreement."""
from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from .. import agreement, feedback, sampling
from ..estimators import PROB_PREFIX
from ..store import Store
from .access import Caller, current_user, get_store
from .schemas import (Decision, DecideRequest, Guidelines, GuidelinesRequest, HardExample, HardExamples, HardK,
                      HardStrategy, ModelName, Overlap, OverlapRequest, PredictionPath, ReviewQueue, Team,
                      error_responses)

router = APIRouter()


@router.post("/models/{name}/hard-examples", response_model=HardExamples, response_model_exclude_unset=True,
             status_code=201, responses=error_responses(400, 401, 403, 404, 409, 422, 429, 503))
def draw_hard_examples(name: ModelName, k: HardK = 20, strategy: HardStrategy = "uncertain_spread",
                       business_line: Annotated[list[str] | None, Query()] = None,
                       store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> HardExamples:
    """Draw the k unlabelled predictions most worth a label, recorded as one batch; labellers and owners.
    Label them through feedback. None left to draw is 404 with a sentence."""
    found = sampling.select_hard_examples(store, name, k, caller.user, strategy, business_lines=business_line)
    return _hard_examples(name, found)


@router.get("/models/{name}/hard-examples", response_model=HardExamples, response_model_exclude_unset=True,
            responses=error_responses(401, 403, 404, 422, 429, 503))
def hard_examples(name: ModelName, k: HardK = 20, strategy: HardStrategy = "uncertain_spread",
                  business_line: Annotated[list[str] | None, Query()] = None,
                  store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> HardExamples:
    """A preview of what a draw (POST) would give now; nothing is recorded and `batch_id` is null."""
    found = sampling.select_hard_examples(store, name, k, caller.user, strategy, business_lines=business_line,
                                          record=False)
    return _hard_examples(name, found)


@router.get("/models/{name}/review", response_model=ReviewQueue,
            responses=error_responses(401, 403, 404, 422, 429, 503))
def review_queue(name: ModelName, limit: Annotated[int, Query(ge=1, le=10000)] = 100,
                 store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> ReviewQueue:
    """Items waiting for an owner: disagreements between two labellers and items marked unclear, oldest
    first, with both labels and who gave them. Until decided they are not trained on."""
    queue = agreement.review_queue(store, name)
    items = json.loads(queue.head(limit).to_json(orient="records", force_ascii=False, date_format="iso"))
    return ReviewQueue(model=name, waiting=len(queue), items=items)


@router.post("/models/{name}/review/{prediction_id}", response_model=Decision, status_code=201,
             responses=error_responses(400, 401, 403, 404, 409, 422, 429, 503))
def decide(name: ModelName, prediction_id: PredictionPath, body: DecideRequest,
           store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> Decision:
    """An owner decides a waiting item's label; it replaces the item's training example (skip: none).
    An item not waiting (unknown, agreed, or decided already) or a label outside the model's is 422."""
    label = body.label.strip()
    agreement.decide(store, name, prediction_id, label, caller.user)
    return Decision(prediction_id=prediction_id, label=label, trained=label != agreement.DISCARD,
                    waiting=len(agreement.review_queue(store, name)))


@router.get("/models/{name}/overlap", response_model=Overlap, responses=error_responses(401, 403, 404, 429, 503))
def overlap(name: ModelName, store: Store = Depends(get_store),
            caller: Caller = Depends(current_user)) -> Overlap:
    """The share of labelled items a second labeller labels again, blind (0: off)."""
    return Overlap(model=name, share=agreement.overlap_share(store, name))


@router.put("/models/{name}/overlap", response_model=Overlap,
            responses=error_responses(400, 401, 403, 404, 409, 422, 429, 503))
def set_overlap(name: ModelName, body: OverlapRequest, store: Store = Depends(get_store),
                caller: Caller = Depends(current_user)) -> Overlap:
    """Set the overlap share for the model's next batches; owners only."""
    agreement.set_overlap_share(store, name, body.share, caller.user)
    return Overlap(model=name, share=agreement.overlap_share(store, name))


@router.get("/models/{name}/guidelines", response_model=Guidelines, responses=error_responses(401, 403, 404, 429, 503))
def guidelines(name: ModelName, store: Store = Depends(get_store),
               caller: Caller = Depends(current_user)) -> Guidelines:
    """The model's labelling guidelines (markdown), as labellers see them on the Label page."""
    return Guidelines(model=name, text=feedback.guidelines(store, name))


@router.put("/models/{name}/guidelines", response_model=Guidelines,
            responses=error_responses(400, 401, 403, 404, 409, 422, 429, 503))
def set_guidelines(name: ModelName, body: GuidelinesRequest, store: Store = Depends(get_store),
                   caller: Caller = Depends(current_user)) -> Guidelines:
    """Write the model's labelling guidelines; owners only. Earlier ones are kept in the store."""
    feedback.set_guidelines(store, name, body.text, caller.user)
    return Guidelines(model=name, text=feedback.guidelines(store, name))


@router.get("/models/{name}/team", response_model=Team, responses=error_responses(401, 403, 404, 429, 503))
def team(name: ModelName, store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> Team:
    """Agreement between labellers over items labelled twice (Cohen's kappa and raw agreement, overall, per
    pair and per business line) and each labeller's decisions per hour, agreement and audit accuracy."""
    return Team(model=name, **agreement.team_report(store, name).record())


def _hard_examples(name: str, found: sampling.HardExamples) -> HardExamples:
    """A drawn batch as the API answers it: each item's probabilities keyed by label."""
    table = found.examples
    labels = [c for c in table.columns if c.startswith(PROB_PREFIX)]
    items = [HardExample(prediction_id=int(row["prediction_id"]), text=row["text"],
                         business_line=row["business_line"] if isinstance(row["business_line"], str) else None,
                         label=row["label"], top_prob=float(row["top_prob"]),
                         probabilities={c[len(PROB_PREFIX):]: float(row[c]) for c in labels},
                         score=float(row["score"]), **_grade(row))
             for row in table.to_dict("records")]
    version = int(table["version"].iloc[0]) if len(table) else 0
    return HardExamples(model=name, batch_id=found.batch_id, strategy=found.strategy, version=version, items=items)


def _grade(row: dict) -> dict:
    return {"expected_grade": float(row["expected_grade"])} if "expected_grade" in row else {}
