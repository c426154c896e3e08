"""The API's request and answer bodies, and the parameter types its routes share.

Requests are strict (`Body`): "2" is not a version and a misspelt field is an error. Answers are plain
pydantic models; FastAPI writes their JSON Schema into /api/openapi.json.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from fastapi import Path, Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .. import demo, feedback, imports, predict, registry, sampling

# The pattern is for the description only: core refuses a blank text with a sentence naming it.
NonBlank = Annotated[str, Field(min_length=1, json_schema_extra={"pattern": r"\S"})]


def _whole_number(value):
    # JSON Schema's integer includes 5.0; strict mode still refuses "5", true and 5.5
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _calendar_date(value):
    # pydantic takes a bare number as seconds since 1970 ("until=0" was 1970-01-01); a date is YYYY-MM-DD
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        raise ValueError("a date is written YYYY-MM-DD")
    return value


QueryDate = Annotated[dt.date | None, BeforeValidator(_calendar_date)]
# Control characters and bidi controls: core refuses them in a business line (imports.check_name); the
# pattern says so in the description, where pydantic's own check stays "not blank"
_SHOWABLE = r"[^\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
LINE_PATTERN = {"pattern": f"^{_SHOWABLE}*$"}
Id = Annotated[int, Field(ge=1, le=2**53 - 1), BeforeValidator(_whole_number)]  # JSON's safe integers
ModelName = Annotated[str, Path(description="The model's name.", examples=[demo.MODEL])]
VersionQuery = Annotated[int, Query(ge=1, le=2**53 - 1, description="A version number of the model.")]
VersionPath = Annotated[int, Path(ge=1, le=2**53 - 1, description="A version number of the model.")]
PredictionPath = Annotated[int, Path(ge=1, le=2**53 - 1, description="A prediction id from the review queue.")]


class Body(BaseModel):
    # strict: "2" is not a version and 1 is not a text; forbid: a misspelt field is an error
    model_config = ConfigDict(strict=True, extra="forbid")


# A text holding NUL is refused by core (imports.check_text); the pattern says so in the description
PredictText = Annotated[str, Field(min_length=1, json_schema_extra={"pattern": r"^[^\x00]*[^\s\x00][^\x00]*$"})]


class PredictRequest(Body):
    texts: list[PredictText] = Field(
        min_length=1, description="Texts to classify: at most MMS_MAX_BATCH (default 10000) per request, "
                                  "each at most MMS_MAX_TEXT_CHARS (default 20000) characters.")
    business_line: str = Field(predict.DEFAULT_LINE, min_length=1, max_length=200, pattern=r"\S",
                               json_schema_extra={"pattern": rf"^{_SHOWABLE}*{_SHOWABLE[:2]}\s{_SHOWABLE[2:]}{_SHOWABLE}*$"},
                               description="Business line the texts come from; the Monitor page groups by it. "
                                           "No control characters (ESC, new line…) or bidi controls.")
    version: Id | None = Field(None, description="A version to answer with; default: the active one.")


class Prediction(BaseModel):
    prediction_id: int = Field(description="Id in the prediction log; send it back with feedback.")
    label: str
    probabilities: dict[str, float] = Field(description="Probability per label of the model (an ordinal model: "
                                                        "per grade, lowest first); `label` is the most likely.")
    version: int = Field(description="The version that answered.")
    expected_grade: float | None = Field(None, description="Ordinal models only: the distribution's mean grade, "
                                                           "1 = lowest, a finer key to sort items by than `label`.")


class PredictResponse(BaseModel):
    model: str
    business_line: str
    predictions: list[Prediction] = Field(description="One per text, in the request's order.")


class FeedbackRequest(Body):
    prediction_id: Id
    label: NonBlank = Field(description="One of the model's labels, or skip or unclear.")


class FeedbackResponse(BaseModel):
    feedback_id: int
    prediction_id: int
    label: str


class VersionSummary(BaseModel):
    version: int
    status: str
    mode: str
    created_at: str
    created_by: str
    accuracy: float | None
    macro_f1: float | None
    ordinal: dict[str, float | None] | None = Field(
        None, description="Ordinal models only: mae (grades), qwk, spearman, exact, within_one on the test set.")
    guard: str | None = Field(None, description="Why a first version trained without `activate` was kept but "
                                                "not activated (the promotion guard's sentence).")


class ModelSummary(BaseModel):
    name: str
    description: str
    labels: list[str]
    versions: int
    active_version: int | None
    accuracy: float | None = Field(description="The active version's accuracy on the model's test set.")
    macro_f1: float | None = Field(description="The active version's macro-F1 on the model's test set.")


class ModelDetail(ModelSummary):
    task: str
    active_metrics: dict[str, float | None] = Field(
        description="The active version's accuracy, macro_f1, log_loss and ece (an ordinal model's also mae, "
                    "qwk, spearman, exact and within_one); empty without one.")
    version_list: list[VersionSummary]


class Health(BaseModel):
    ok: bool
    store: str | None = Field(None, description="The store's path: only for a caller with a valid token.")
    models: int
    auth: str = Field(description='"open" while the store has no users (no token needed), else "bearer".')


class Problem(BaseModel):
    field: str
    message: str


class Fall(BaseModel):
    what: str = Field(description='"accuracy", "macro_f1", "recall of LABEL" or "accuracy on LINE".')
    base: float = Field(description="The figure of the version compared against (the active one).")
    candidate: float
    drop: float
    tolerance: float = Field(description="The smallest drop the guard counts, when significant (MMS_GUARD_* settings).")
    lower_is_better: bool = Field(False, description="True for a figure that rose (an ordinal model's mean absolute "
                                                     "error); `drop` is then the rise.")
    p_value: float | None = Field(None, description="One-sided paired test on the test rows both versions answer "
                                                    "(below MMS_GUARD_LEVEL after Holm's correction).")
    rows: int | None = Field(None, description="Test rows the test ran on.")
    baseline: str | None = Field(None, description="For a version no better than always giving one answer: that "
                                                   "answer (`base` is then its figure).")


class Error(BaseModel):
    error: str = Field(description="What is wrong, in one sentence.")
    problems: list[Problem] | None = Field(None, description="Each invalid field, for a malformed request.")
    regressions: list[Fall] | None = Field(None, description="For a refused activation (409): what fell.")
    version: int | None = Field(None, description="For a refused activation (409): the version refused; after "
                                                  "training, it is kept and can be activated with force.")


class ActivateRequest(Body):
    reason: str = Field("", max_length=500, description="Why, for the activation history; needed with force.")
    force: bool = Field(False, description="Activate even if the version is worse than the active one beyond "
                                          "the guard's tolerances; recorded as forced.")


class Delta(BaseModel):
    measure: str
    base: float | None
    candidate: float | None
    delta: float | None = Field(description="candidate - base")
    lower_is_better: bool


class Comparison(BaseModel):
    base: int = Field(description="Version a.")
    candidate: int = Field(description="Version b; every delta is b - a.")
    comparable: bool = Field(description="Whether both were measured on the same test set.")
    note: str | None = Field(description="Why the figures are not comparable, if they are not.")
    overall: list[Delta]
    per_class: list[dict] = Field(description="class, measure (precision, recall, f1), base, candidate, delta, "
                                              "support.")
    by_line: list[dict] = Field(description="business_line, test_rows, base, candidate, delta of accuracy.")
    regressions: list[Fall] = Field(description="What b would regress on if it replaced a (the activation guard).")
    guard_notes: list[str] = Field([], description="What the guard did not judge (business lines with too few "
                                                   "test rows).")
    ordinal: list[Delta] | None = Field(None, description="Ordinal models only: mae, qwk, spearman, within_one.")
    ordinal_by_line: list[dict] | None = Field(None, description="Ordinal models only: business_line, test_rows, "
                                                                 "base, candidate, delta of the mean absolute error.")


class CreateModelRequest(Body):
    name: NonBlank = Field(max_length=100, description="The model's name, part of its URLs (no / or \\).")
    description: str = Field("", max_length=2000)
    task: Literal[registry.TASKS] = Field(registry.CLASSIFICATION, description="classification, or ordinal for "
                                                                               "graded labels (排序).")
    labels: list[NonBlank] = Field(min_length=2, json_schema_extra={"uniqueItems": True},
                                   description="The label set, fixed at creation, each label once; an ordinal "
                                               "model's grades lowest first (at least three).")


class Example(Body):
    text: NonBlank
    label: NonBlank = Field(description="One of the model's labels.")
    business_line: str | None = Field(None, max_length=200, json_schema_extra=LINE_PATTERN)
    split: Literal[imports.SPLITS] = Field("train", description="train, or test: the fixed set versions are "
                                                                "judged on.")


class ImportRequest(Body):
    rows: list[Example] = Field(min_length=1, description="Labelled rows, imported all together or not at all; "
                                                          "a refusal names each bad row by its position from 0.")


class ImportResponse(BaseModel):
    model: str
    imported: int
    by_split: dict[str, int] = Field(description="Rows imported per split.")
    notes: list[str] = Field([], description="Per split, what was done, and rows that repeat an earlier row or texts "
                                             "with contradictory labels; a retry of rows already imported says so "
                                             "and imports nothing again.")


class TrainRequest(Body):
    mode: Literal["full", "incremental"] = Field("full", description="full: every training row; incremental: "
                                                                     "the active version updated on new labels.")
    config: dict | None = Field(None, description="Model settings for a full retrain (as `train --config`); "
                                                  "default: the model's.")
    activate: bool = Field(False, description="Activate the new version (the promotion guard applies; a refusal "
                                              "is 409 and the version is kept). A model's first version is activated "
                                              "when it beats the trivial answer (the guard's baseline).")


class HardExample(BaseModel):
    prediction_id: int = Field(description="Send it back with feedback to label it.")
    text: str
    business_line: str | None
    label: str = Field(description="The scoring version's suggestion: its most likely label.")
    top_prob: float
    probabilities: dict[str, float]
    expected_grade: float | None = Field(None, description="Ordinal models only: the distribution's mean grade.")
    score: float = Field(description="How hard the strategy judged it (higher first).")


HardK = Annotated[int, Query(ge=1, le=1000)]
HardStrategy = Annotated[Literal[tuple(sampling.EVERY_STRATEGY)], Query(
    description="How to rank the pool; expected_error and spread are for ordinal models only.")]


class HardExamples(BaseModel):
    model: str
    batch_id: int | None = Field(description="The batch recorded for these items (POST); null for a GET, a "
                                             "preview that records nothing.")
    strategy: str
    version: int = Field(description="The version that scored the pool.")
    items: list[HardExample]


class ReviewItem(BaseModel):
    prediction_id: int = Field(description="Decide it with POST /models/{name}/review/{prediction_id}.")
    reason: Literal["disagreement", "unclear"] = Field(description="Two labellers disagree, or one marked it "
                                                                   "unclear.")
    business_line: str | None
    text: str
    predicted: str = Field(description="The label the model predicted when it was logged.")
    top_prob: float
    first_label: str
    first_by: str
    second_label: str | None = Field(description="The second labeller's label; none for an unclear item.")
    second_by: str | None
    waiting_since: str


class ReviewQueue(BaseModel):
    model: str
    waiting: int = Field(description="Items waiting in all; `items` holds the first `limit`, oldest first.")
    items: list[ReviewItem]


class DecideRequest(Body):
    label: NonBlank = Field(description="One of the model's labels (trained on), or skip to leave the item out "
                                        "of training.")


class Decision(BaseModel):
    prediction_id: int
    label: str
    trained: bool = Field(description="Whether the decided label becomes a training example (not for skip).")
    waiting: int = Field(description="Items still waiting for review.")


class OverlapRequest(Body):
    share: float = Field(ge=0, le=1, description="The share of labelled items a second labeller labels again, "
                                                 "blind: 0 (off) to 1.")


class Overlap(BaseModel):
    model: str
    share: float


class GuidelinesRequest(Body):
    text: str = Field(max_length=feedback.GUIDELINES_MAX_CHARS,
                      description="Labelling guidelines in markdown, shown beside each example on the Label page; "
                                  "the newest wins (\"\" clears them, earlier ones are kept).")


class Guidelines(BaseModel):
    model: str
    text: str = Field(description='The newest guidelines (markdown); "" when none were written.')


class Agreement(BaseModel):
    items: int = Field(description="Items two persons labelled, both with a model label.")
    agreement: float | None = Field(description="Share of them where both labels agree.")
    kappa: float | None = Field(description="Cohen's kappa; none when both labellers used one label only.")


UNCLEAR_ITEMS = "Items one of the two found unclear: their own outcome, in neither agreement nor kappa."


class PairAgreement(Agreement):
    labeller_a: str
    labeller_b: str
    unclear: int = Field(0, description=UNCLEAR_ITEMS)


class LineAgreement(Agreement):
    business_line: str | None
    unclear: int = Field(0, description=UNCLEAR_ITEMS)


class LabellerFigures(BaseModel):
    labeller: str
    labelled: int = Field(description="Items labelled with one of the model's labels.")
    per_hour: float | None = Field(description="Decisions (labels, skips, unclear) per hour of active time (a "
                                               "pause over 5 minutes is a break).")
    active_hours: float
    skipped: int = Field(description="Items skipped or passed over.")
    unclear: int = Field(description="Items marked unclear.")
    double_labelled: int = Field(description="Items this labeller and another person both labelled with a "
                                             "model label.")
    agreement: float | None
    kappa: float | None
    audit_items: int = Field(description="Audit items this labeller labelled whose label someone else decided too.")
    audit_accuracy: float | None


class Team(BaseModel):
    model: str
    share: float = Field(description="The overlap share set for the model.")
    waiting: int = Field(description="Items waiting for review.")
    overall: Agreement
    pairs: list[PairAgreement]
    lines: list[LineAgreement]
    labellers: list[LabellerFigures]


def error_responses(*codes: int) -> dict:
    """A route's `responses=`: each refusal status answers an `Error` body."""
    return {code: {"model": Error} for code in codes}
