"""The HTTP API: predictions, feedback and model facts as JSON, served beside the dashboard.

`mount()` gives a FastAPI application under /api for `st.App(..., routes=[...])`, so the
dashboard's process stays the store's single writer. Endpoints are plain `def`: core blocks on
DuckDB and sklearn, and FastAPI runs such endpoints in its threadpool. Every refusal is a JSON
body `{"error": sentence}` with a 4xx (5xx when the server is at fault), and nothing is logged
for it. The active version is looked up on every call, so an activation answers the next one.
While the store has no users the API is open, to this machine only (any other client address is
refused with 403); once it has users, every call but /health needs a bearer token (`python -m core
create-token USER`) and acts as that user, with that user's role.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import math
import re
from dataclasses import dataclass
from typing import Annotated, Literal

import pandas as pd
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.routing import Match, Mount

from . import agreement, auth, demo, feedback, imports, predict, registry, sampling, settings, stats, train
from . import shadow
from .errors import (ArtifactError, Conflict, EmptyPool, InvalidInput, MMSError, ModelExists, ModelNotFound,
                     PermissionDenied, SignInRefused, StoreBusy, TrainingError, VersionNotFound)
from .errors import Regression
from .errors import DiskFull, StoreError, StoreUnavailable
from .estimators import PROB_PREFIX
from .store import Store

PREFIX = "/api"

log = logging.getLogger(__name__)

# Conflict: a write that lost a race with another process's (DuckLake) changed nothing and may be retried.
# EmptyPool: no unlabelled prediction left to draw hard examples from, said as a 404 with the sentence.
STATUS = {Regression: 409, Conflict: 409, ModelExists: 409, ModelNotFound: 404, VersionNotFound: 404,
          EmptyPool: 404, InvalidInput: 422, TrainingError: 422, PermissionDenied: 403, StoreBusy: 503,
          ArtifactError: 500, SignInRefused: 429}
# The store's own trouble, never the client's: a full disk (507), an unreachable catalog or a database
# being reopened, and anything else the store refused (503); each with a Retry-After.
STATUS.update({DiskFull: 507, StoreUnavailable: 503, StoreError: 503})


# --- request and answer bodies ------------------------------------------------------------

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


class ShadowRequest(Body):
    version: int = Field(ge=1, le=2**53 - 1, description="The version to put in shadow: it scores the live "
                                                         "predictions in the background and never answers.")


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


def _errors(*codes: int) -> dict:
    return {code: {"model": Error} for code in codes}


# --- the store and who is calling ---------------------------------------------------------

async def get_store(request: Request) -> Store:
    """The store this app serves; a missing one is not created here (the server builds the demo at start).

    `async` like local_while_open: cheap checks run on the event loop, not as a hop through the
    threadpool each (a request's dependencies and endpoint used to take four)."""
    store = request.app.state.store or Store(settings.get("store"))
    if not store.exists():
        if demo.building():
            fraction, message = demo.build_status()
            raise HTTPException(503, f"the store is not ready yet: the server is building the demo store "
                                     f"({fraction:.0%}, {message}); try again in a few seconds")
        raise HTTPException(503, "there is no store yet: restart the server to build the demo store, or run "
                                 "`python -m core demo`")
    return store


@dataclass(frozen=True)
class Caller:
    user: str  # recorded as created_by on the predictions and labels this caller makes
    role: str


OPEN = Caller(user="api", role=auth.OPEN)
CHALLENGE = {"WWW-Authenticate": "Bearer"}
bearer = HTTPBearer(auto_error=False, description="A token from `python -m core create-token USER`; "
                                                  "not needed while the store has no users (open mode).")


def auth_mode(store: Store) -> str:
    """What /health says: "open" while the store has no users, else "bearer" (a token is needed)."""
    return auth.OPEN if auth.is_open(store) else "bearer"


UNTRUSTED_FORWARD = "an address behind a proxy not in MMS_TRUSTED_PROXIES"


def _address(request: Request) -> str | None:
    """The client's address, from X-Forwarded-For only when the connection comes from a proxy listed
    in MMS_TRUSTED_PROXIES (default none): anyone else could rotate or forge it.

    uvicorn, under Streamlit, replaces a loopback peer by the header's address before this code
    sees the request; such a request (its "peer" is one of the header's addresses) is one client
    whose real address is unknown: all of them share one name, which is never this machine."""
    peer = request.client.host if request.client else None
    forwarded = _forwarded_hosts(request.headers.getlist("x-forwarded-for"))
    if not forwarded:
        return peer
    trusted = _trusted_proxies()
    if peer in forwarded and not _is_trusted(peer, trusted):
        return _client_behind(forwarded, trusted) if _is_trusted("127.0.0.1", trusted) else UNTRUSTED_FORWARD
    return _client_behind(forwarded, trusted) if _is_trusted(peer, trusted) else peer


def _forwarded_hosts(values: list[str]) -> list[str]:
    hosts = []
    for entry in ",".join(values).split(","):
        entry = entry.strip()
        if entry.startswith("["):  # [v6]:port
            entry = entry[1:].split("]", 1)[0]
        elif entry.count(":") == 1:  # v4:port
            entry = entry.split(":", 1)[0]
        if entry:
            hosts.append(entry)
    return hosts


def _trusted_proxies() -> list:
    nets = []
    for item in str(settings.get("trusted_proxies")).split(","):
        try:
            nets.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            pass  # blank, or not an address: trusts nothing
    return nets


def _is_trusted(host: str | None, trusted: list) -> bool:
    try:
        ip = ipaddress.ip_address((host or "").split("%", 1)[0])
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in trusted)


def _client_behind(forwarded: list[str], trusted: list) -> str:
    """The rightmost forwarded address that is not one of the trusted proxies: the one a proxy saw."""
    return next((h for h in reversed(forwarded) if not _is_trusted(h, trusted)), forwarded[0])


async def _is_open(store: Store) -> bool:
    """Whether the store has no users, as read within auth.OPEN_SECONDS: on the event loop when this
    process knows it, else one hop through the threadpool to read it."""
    known = auth.recent_is_open(store, auth.OPEN_SECONDS)
    return known if known is not None else await run_in_threadpool(auth.is_open, store, auth.OPEN_SECONDS)


async def local_while_open(request: Request, store: Store = Depends(get_store)) -> None:
    """An open store (no users) answers this machine only: from anywhere else, anyone could label
    and predict; every endpoint depends on this. Only a remote caller asks the store."""
    if not auth.is_local(_address(request)) and await _is_open(store):
        raise HTTPException(403, auth.OPEN_STORE_IS_LOCAL)


async def current_user(request: Request, store: Store = Depends(get_store),
                       credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Caller:
    """The user a bearer token acts for; anyone, as "api", while the store is open. Core checks
    the role on every write: predict for any role, feedback for labeller and owner, so a user added
    by another process within auth.OPEN_SECONDS still cannot write as "api". `async`: without a
    token it costs no threadpool hop while the answer is known; a token is looked up in one."""
    known = getattr(request.state, CALLER, None)  # _BodyGuard's, for a request with a body
    if known is not None:
        return known
    if credentials is not None:
        return await run_in_threadpool(_token_caller, request, store, credentials)
    if await _is_open(store):
        return OPEN
    raise HTTPException(401, "this store has users, so the API needs a bearer token (Authorization: Bearer "
                             "...); an owner makes one with `python -m core create-token USER`",
                        headers=CHALLENGE)


def _token_caller(request: Request, store: Store, credentials: HTTPAuthorizationCredentials) -> Caller:
    """The user a bearer token acts for (a wrong one is counted and audited per client address)."""
    who = auth.token_caller(store, credentials.credentials, _address(request) or "local")
    if who is None:
        raise HTTPException(401, "unknown API token", headers=CHALLENGE)
    return Caller(who.name, who.role)


# --- plumbing -------------------------------------------------------------------------------

def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _check_batch(texts: list[str]) -> None:
    predict.check_request_size(len(texts))


def _problem(error: dict) -> Problem:
    where = [str(p) for p in error["loc"] if p != "body"]
    return Problem(field=".".join(where) or "body", message=error["msg"])


def _error(status: int, sentence: str, problems: list[Problem] | None = None, headers=None,
           regressions: list[dict] | None = None, version: int | None = None) -> JSONResponse:
    body = Error(error=sentence, problems=problems, regressions=regressions,
                 version=version).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


def _on_invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    bad_json = next((e for e in errors if e["type"] == "json_invalid"), None)
    if bad_json is not None:
        reason = bad_json.get("ctx", {}).get("error", "decode error")
        return _error(400, f"the request body is not valid JSON: {reason} at character {bad_json['loc'][-1]}")
    whole = [e for e in errors if tuple(e["loc"]) == ("body",)]
    if whole:
        sentence = ("the request needs a JSON body" if whole[0]["type"] == "missing" else
                    "the request body must be a JSON object, sent with Content-Type: application/json")
        return _error(400, sentence)
    problems = [_problem(e) for e in errors]
    summary = "; ".join(f"{p.field}: {p.message}" for p in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return _error(422, f"invalid request: {summary}{more}", problems)


def _on_mms_error(request: Request, exc: MMSError) -> JSONResponse:
    status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 400)
    headers = {"Retry-After": str(getattr(exc, "retry_after", 1))} if status in (503, 507) else None
    if isinstance(exc, SignInRefused):
        headers = {"Retry-After": str(exc.retry_after)}
    return _error(status, str(exc), headers=headers, regressions=getattr(exc, "regressions", None),
                  version=getattr(exc, "version", None) if isinstance(exc, Regression) else None)


def _on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    headers = exc.headers
    if exc.status_code == 405:  # Starlette's Allow names the first route's methods; /models has two routes
        headers = {**(headers or {}), "Allow": ", ".join(_methods_on(request))}
    return _error(exc.status_code, str(exc.detail), headers=headers)


def _methods_on(request: Request) -> list[str]:
    """Every method some route of this app answers on the request's path."""
    methods = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def _on_bug(request: Request, exc: Exception) -> JSONResponse:
    log.exception("API request %s %s failed", request.method, request.url.path)
    return _error(500, "internal error: the server could not answer; the server log has the details")


# --- the application ------------------------------------------------------------------------

def create_app(store: Store | None = None) -> FastAPI:
    """The API on `store` (default: MMS_STORE, read on every request); routes are relative to
    where it is mounted (/api in the dashboard)."""
    api = FastAPI(title="MMS API", version="1", dependencies=[Depends(local_while_open)],
                  description="Predict with the active version of a model, send labels back, read the "
                              "registry. Every prediction is logged like the dashboard's.",
                  docs_url="/docs", redoc_url=None, openapi_url="/openapi.json")
    api.state.store = store
    api.add_exception_handler(RequestValidationError, _on_invalid_request)
    api.add_exception_handler(MMSError, _on_mms_error)
    api.add_exception_handler(HTTPException, _on_http_error)
    api.add_exception_handler(Exception, _on_bug)
    api.add_middleware(_BodyGuard)

    @api.get("/health", response_model=Health, responses=_errors(403, 429, 503))
    def health(request: Request, store: Store = Depends(get_store)) -> Health:
        """Whether the API can read its store, and whether it asks for tokens; the store's path
        only for a valid token (it names folders and users of the server's machine)."""
        # read by hand, not through `bearer`: the token is optional here, and a declared security
        # scheme would tell clients (and the OpenAPI checks) that health needs one
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            caller = (scheme.lower() == "bearer" and token.strip()
                      and auth.token_caller(store, token.strip(), _address(request) or "local"))
        except SignInRefused:  # unknown tokens are refused here, and health answers without one
            caller = None
        return Health(ok=True, store=str(store.path) if caller else None, models=len(registry.list_models(store)),
                      auth=auth_mode(store))

    @api.get("/models", response_model=list[ModelSummary], responses=_errors(401, 403, 429, 503))
    def models(store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> list[ModelSummary]:
        """Every model with its active version and that version's headline metrics."""
        overview = registry.models_overview(store)
        models = {m.name: m for m in registry.list_models(store)}  # read second: models are never deleted
        return [_summary(models[row["model"]], row) for row in overview.to_dict("records")]

    @api.get("/models/{name}", response_model=ModelDetail, response_model_exclude_unset=True,
             responses=_errors(401, 403, 404, 429, 503))
    def model(name: ModelName, store: Store = Depends(get_store),
              caller: Caller = Depends(current_user)) -> ModelDetail:
        """One model: labels, active version, its metrics, and every version."""
        return _detail(store, name)

    @api.post("/models/{name}/predict", response_model=PredictResponse,
              responses=_errors(400, 401, 403, 404, 422, 429, 500, 503))
    async def predict_texts(name: ModelName, body: PredictRequest, store: Store = Depends(get_store),
                            caller: Caller = Depends(current_user)) -> JSONResponse:
        """Classify texts with the active version (or `version`) and log every prediction."""
        # `async` with the work in one threadpool hop: a plain def route with a plain def dependency
        # took two per request
        return await run_in_threadpool(_predicted, store, name, body, caller)

    @api.post("/models/{name}/feedback", response_model=FeedbackResponse, status_code=201,
              responses=_errors(400, 401, 403, 404, 409, 422, 429, 503))
    def give_feedback(name: ModelName, body: FeedbackRequest, store: Store = Depends(get_store),
                      caller: Caller = Depends(current_user)) -> FeedbackResponse:
        """The true label of a logged prediction; it enters the loop like one given on the Label page."""
        label = body.label.strip()
        feedback_id = feedback.label_prediction(store, name, body.prediction_id, label, caller.user)
        return FeedbackResponse(feedback_id=feedback_id, prediction_id=body.prediction_id, label=label)

    @api.get("/models/{name}/compare", response_model=Comparison, response_model_exclude_unset=True,
             responses=_errors(401, 403, 404, 422, 429, 503))
    def compare_versions(name: ModelName, a: VersionQuery, b: VersionQuery, store: Store = Depends(get_store),
                         caller: Caller = Depends(current_user)) -> dict:
        """Version b beside version a on the model's test set: overall, per-class and per-line deltas (b - a),
        and what b would regress on if it replaced a."""
        return registry.comparison(store, name, a, b)

    @api.get("/models/{name}/stats", responses=_errors(401, 403, 404, 422, 429, 503))
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

    @api.post("/models/{name}/versions/{version}/activate", response_model=VersionSummary,
              response_model_exclude_unset=True,
              responses=_errors(400, 401, 403, 404, 409, 422, 429, 500, 503))
    def activate(name: ModelName, version: VersionPath, body: ActivateRequest | None = None,
                 store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> VersionSummary:
        """Make a version (any earlier one too) the one that answers predictions. A version worse than the
        active one is refused with 409 and what regressed, unless `force` is true with a `reason`; an
        activation that lost a race with another process's write is 409 without `regressions`: try again."""
        body = body or ActivateRequest()
        return _version_summary(registry.activate_version(store, name, version, caller.user, body.reason,
                                                          force=body.force))

    @api.put("/models/{name}/shadow", responses=_errors(401, 403, 404, 422, 429, 500, 503))
    def put_in_shadow(name: ModelName, body: ShadowRequest, store: Store = Depends(get_store),
                      caller: Caller = Depends(current_user)) -> dict:
        """Put a version in shadow (one per model: it replaces the one there). Refused with a sentence for
        an unknown model or version (404) or the active version itself (422)."""
        now = shadow.start(store, name, body.version, caller.user)
        return {"model": now.model, "version": now.version, "since": now.since.isoformat(), "by": now.by}

    @api.delete("/models/{name}/shadow", responses=_errors(401, 403, 404, 429, 503))
    def stop_shadow(name: ModelName, store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> dict:
        """Take the model's version out of shadow; `stopped` is that version, or null when none was."""
        return {"model": name, "stopped": shadow.stop(store, name, caller.user)}

    @api.get("/models/{name}/shadow", responses=_errors(401, 403, 404, 422, 429, 503))
    def shadow_evidence(name: ModelName, by: Annotated[str, Query(pattern="^(day|week|month)$")] = "week",
                        store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> dict:
        """The version in shadow (or none) and its evidence beside the version that answered: the summary over
        the whole run and one row per business line x period (`about` says what each figure is)."""
        return shadow.report(store, name, by)

    @api.post("/models", response_model=ModelDetail, response_model_exclude_unset=True, status_code=201,
              responses=_errors(400, 401, 403, 409, 422, 429, 503))
    def create_model(body: CreateModelRequest, store: Store = Depends(get_store),
                     caller: Caller = Depends(current_user)) -> ModelDetail:
        """A new model with its label set (an ordinal model's grades lowest first); owners only. It answers
        predictions once it has examples and a trained version."""
        model = registry.create_model(store, body.name, body.labels, caller.user, body.description, task=body.task)
        return _detail(store, model.name)

    @api.post("/models/{name}/examples", response_model=ImportResponse, status_code=201,
              responses=_errors(400, 401, 403, 404, 409, 422, 429, 503))
    def import_examples(name: ModelName, body: ImportRequest, store: Store = Depends(get_store),
                        caller: Caller = Depends(current_user)) -> ImportResponse:
        """Labelled rows for training or testing, all or none; owners only. A bad row is refused with 422
        naming its position (from 0) and what is wrong, and nothing is imported."""
        reports = imports.import_splits(store, name, _example_frames(body.rows), caller.user, filename="rows")
        by_split = {split: report.imported for split, report in reports.items()}
        notes = [report.outcome(split) for split, report in reports.items()]
        return ImportResponse(model=name, imported=sum(by_split.values()), by_split=by_split, notes=notes)

    @api.post("/models/{name}/train", response_model=VersionSummary, response_model_exclude_unset=True,
              status_code=201, responses=_errors(400, 401, 403, 404, 409, 422, 429, 500, 503))
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

    @api.post("/models/{name}/hard-examples", response_model=HardExamples, response_model_exclude_unset=True,
              status_code=201, responses=_errors(400, 401, 403, 404, 409, 422, 429, 503))
    def draw_hard_examples(name: ModelName, k: HardK = 20, strategy: HardStrategy = "uncertain_spread",
                           business_line: Annotated[list[str] | None, Query()] = None,
                           store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> HardExamples:
        """Draw the k unlabelled predictions most worth a label, recorded as one batch; labellers and owners.
        Label them through feedback. None left to draw is 404 with a sentence."""
        found = sampling.select_hard_examples(store, name, k, caller.user, strategy, business_lines=business_line)
        return _hard_examples(name, found)

    @api.get("/models/{name}/hard-examples", response_model=HardExamples, response_model_exclude_unset=True,
             responses=_errors(401, 403, 404, 422, 429, 503))
    def hard_examples(name: ModelName, k: HardK = 20, strategy: HardStrategy = "uncertain_spread",
                      business_line: Annotated[list[str] | None, Query()] = None,
                      store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> HardExamples:
        """A preview of what a draw (POST) would give now; nothing is recorded and `batch_id` is null."""
        found = sampling.select_hard_examples(store, name, k, caller.user, strategy, business_lines=business_line,
                                              record=False)
        return _hard_examples(name, found)

    @api.get("/models/{name}/review", response_model=ReviewQueue, responses=_errors(401, 403, 404, 422, 429, 503))
    def review_queue(name: ModelName, limit: Annotated[int, Query(ge=1, le=10000)] = 100,
                     store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> ReviewQueue:
        """Items waiting for an owner: disagreements between two labellers and items marked unclear, oldest
        first, with both labels and who gave them. Until decided they are not trained on."""
        queue = agreement.review_queue(store, name)
        items = json.loads(queue.head(limit).to_json(orient="records", force_ascii=False, date_format="iso"))
        return ReviewQueue(model=name, waiting=len(queue), items=items)

    @api.post("/models/{name}/review/{prediction_id}", response_model=Decision, status_code=201,
              responses=_errors(400, 401, 403, 404, 409, 422, 429, 503))
    def decide(name: ModelName, prediction_id: PredictionPath, body: DecideRequest,
               store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> Decision:
        """An owner decides a waiting item's label; it replaces the item's training example (skip: none).
        An item not waiting (unknown, agreed, or decided already) or a label outside the model's is 422."""
        label = body.label.strip()
        agreement.decide(store, name, prediction_id, label, caller.user)
        return Decision(prediction_id=prediction_id, label=label, trained=label != agreement.DISCARD,
                        waiting=len(agreement.review_queue(store, name)))

    @api.get("/models/{name}/overlap", response_model=Overlap, responses=_errors(401, 403, 404, 429, 503))
    def overlap(name: ModelName, store: Store = Depends(get_store),
                caller: Caller = Depends(current_user)) -> Overlap:
        """The share of labelled items a second labeller labels again, blind (0: off)."""
        return Overlap(model=name, share=agreement.overlap_share(store, name))

    @api.put("/models/{name}/overlap", response_model=Overlap,
             responses=_errors(400, 401, 403, 404, 409, 422, 429, 503))
    def set_overlap(name: ModelName, body: OverlapRequest, store: Store = Depends(get_store),
                    caller: Caller = Depends(current_user)) -> Overlap:
        """Set the overlap share for the model's next batches; owners only."""
        agreement.set_overlap_share(store, name, body.share, caller.user)
        return Overlap(model=name, share=agreement.overlap_share(store, name))

    @api.get("/models/{name}/guidelines", response_model=Guidelines, responses=_errors(401, 403, 404, 429, 503))
    def guidelines(name: ModelName, store: Store = Depends(get_store),
                   caller: Caller = Depends(current_user)) -> Guidelines:
        """The model's labelling guidelines (markdown), as labellers see them on the Label page."""
        return Guidelines(model=name, text=feedback.guidelines(store, name))

    @api.put("/models/{name}/guidelines", response_model=Guidelines,
             responses=_errors(400, 401, 403, 404, 409, 422, 429, 503))
    def set_guidelines(name: ModelName, body: GuidelinesRequest, store: Store = Depends(get_store),
                       caller: Caller = Depends(current_user)) -> Guidelines:
        """Write the model's labelling guidelines; owners only. Earlier ones are kept in the store."""
        feedback.set_guidelines(store, name, body.text, caller.user)
        return Guidelines(model=name, text=feedback.guidelines(store, name))

    @api.get("/models/{name}/team", response_model=Team, responses=_errors(401, 403, 404, 429, 503))
    def team(name: ModelName, store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> Team:
        """Agreement between labellers over items labelled twice (Cohen's kappa and raw agreement, overall, per
        pair and per business line) and each labeller's decisions per hour, agreement and audit accuracy."""
        return Team(model=name, **agreement.team_report(store, name).record())

    return api


def _example_frames(rows: list[Example]) -> dict[str, pd.DataFrame]:
    """The rows as one frame per split, indexed so that core's sentences ("in row N", counted like a file's
    lines after its header) name a row by its position in the request, from 0."""
    frame = pd.DataFrame([{"text": r.text, "label": r.label, "business_line": r.business_line or "",
                           "split": r.split} for r in rows], index=range(-2, len(rows) - 2))
    return {split: part.drop(columns="split") for split, part in frame.groupby("split", sort=False)}


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


# --- the caller and the body's size, before the body is read -----------------------------------

CALLER = "mms_caller"  # request.state's name for the caller _BodyGuard found


class _TooLarge(Exception):
    pass


class _BodyGuard:
    """Knows the caller and caps the body before a byte of it is read: FastAPI reads a body before
    a route's dependencies run, so without this anyone could make the server hold any body in memory
    just to be told 401. A Content-Length over MMS_MAX_REQUEST_MB is 413 at once; a chunked body is
    counted as it arrives and cut off at the limit. The caller found here is the route's
    (`current_user`), so a token is still looked up once per request."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is None and "chunked" not in headers.get("transfer-encoding", "").lower():
            return await self.app(scope, receive, send)
        limit = int(float(settings.get("max_request_mb")) * 1_000_000)
        if length is not None and (not length.strip().isdigit() or int(length) > limit):
            return await _too_large(limit)(scope, receive, send)
        if length is None or int(length) > 0:
            refusal = await _refusal_before_body(Request(scope))
            if refusal is not None:
                return await refusal(scope, receive, send)
        await self._limited(scope, receive, send, limit)

    async def _limited(self, scope, receive, send, limit: int) -> None:
        received, cut, started = 0, False, False

        async def counted():
            nonlocal received, cut
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                cut = True
                raise _TooLarge()
            return message

        async def answer(message):
            nonlocal started
            if cut:
                return  # what the app makes of a body cut off is replaced by the 413 below
            started = True
            await send(message)

        try:
            await self.app(scope, counted, answer)
        except _TooLarge:
            pass
        if cut and not started:
            await _too_large(limit)(scope, receive, send)


def _too_large(limit: int) -> JSONResponse:
    return _error(413, f"the request body is larger than the limit of {limit / 1e6:g} MB (MMS_MAX_REQUEST_MB); "
                       f"send fewer texts per request")


async def _refusal_before_body(request: Request) -> JSONResponse | None:
    """The answer for a caller who may not send a body here (None: go on, the caller kept in
    request.state); the same checks and sentences as the routes' dependencies."""
    try:
        store = await get_store(request)
    except HTTPException:
        return None  # no store yet: the route says so
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    try:
        await local_while_open(request, store)
        if scheme.lower() == "bearer" and token.strip():
            credentials = HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip())
            setattr(request.state, CALLER, await run_in_threadpool(_token_caller, request, store, credentials))
        else:
            await current_user(request, store, None)
    except HTTPException as e:
        return _on_http_error(request, e)
    except MMSError as e:
        return _on_mms_error(request, e)
    return None


def mount(store: Store | None = None) -> Mount:
    """The API as one route for `st.App(..., routes=[...])`: everything under /api."""
    return Mount(PREFIX, app=create_app(store))
