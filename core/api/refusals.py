"""How the API refuses: every refusal is a JSON body `{"error": sentence}` with its status.

A named error from core (`MMSError`) becomes the status in `STATUS` (400 when not listed) with the
sentence it carries; a malformed request is 400 or 422 naming each bad field; anything else is a 500
that logs its traceback. `BodyGuard` knows the caller and caps the body before a byte of it is read.
`install(app)` puts all of it on an app.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.routing import Match

from .. import settings
from ..errors import (ArtifactError, Conflict, DiskFull, EmptyPool, InvalidInput, MMSError, ModelExists,
                      ModelNotFound, PermissionDenied, Regression, SignInRefused, StoreBusy, StoreError,
                      StoreUnavailable, TrainingError, VersionNotFound)
from .access import CALLER, current_user, get_store, local_while_open, token_caller
from .schemas import Error, Problem

log = logging.getLogger("core.api")

# Conflict: a write that lost a race with another process's (DuckLake) changed nothing and may be retried.
# EmptyPool: no unlabelled prediction left to draw hard examples from, said as a 404 with the sentence.
STATUS = {Regression: 409, Conflict: 409, ModelExists: 409, ModelNotFound: 404, VersionNotFound: 404,
          EmptyPool: 404, InvalidInput: 422, TrainingError: 422, PermissionDenied: 403, StoreBusy: 503,
          ArtifactError: 500, SignInRefused: 429}
# The store's own trouble, never the client's: a full disk (507), an unreachable catalog or a database
# being reopened, and anything else the store refused (503); each with a Retry-After.
STATUS.update({DiskFull: 507, StoreUnavailable: 503, StoreError: 503})


def install(api: FastAPI) -> None:
    """Every refusal's handler, and the body guard, on `api`."""
    api.add_exception_handler(RequestValidationError, on_invalid_request)
    api.add_exception_handler(MMSError, on_mms_error)
    api.add_exception_handler(HTTPException, on_http_error)
    api.add_exception_handler(Exception, on_bug)
    api.add_middleware(BodyGuard)


def _problem(error: dict) -> Problem:
    where = [str(p) for p in error["loc"] if p != "body"]
    return Problem(field=".".join(where) or "body", message=error["msg"])


def error(status: int, sentence: str, problems: list[Problem] | None = None, headers=None,
           regressions: list[dict] | None = None, version: int | None = None) -> JSONResponse:
    body = Error(error=sentence, problems=problems, regressions=regressions,
                 version=version).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


def on_invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    bad_json = next((e for e in errors if e["type"] == "json_invalid"), None)
    if bad_json is not None:
        reason = bad_json.get("ctx", {}).get("error", "decode error")
        return error(400, f"the request body is not valid JSON: {reason} at character {bad_json['loc'][-1]}")
    whole = [e for e in errors if tuple(e["loc"]) == ("body",)]
    if whole:
        sentence = ("the request needs a JSON body" if whole[0]["type"] == "missing" else
                    "the request body must be a JSON object, sent with Content-Type: application/json")
        return error(400, sentence)
    problems = [_problem(e) for e in errors]
    summary = "; ".join(f"{p.field}: {p.message}" for p in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return error(422, f"invalid request: {summary}{more}", problems)


def on_mms_error(request: Request, exc: MMSError) -> JSONResponse:
    status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 400)
    headers = {"Retry-After": str(getattr(exc, "retry_after", 1))} if status in (503, 507) else None
    if isinstance(exc, SignInRefused):
        headers = {"Retry-After": str(exc.retry_after)}
    return error(status, str(exc), headers=headers, regressions=getattr(exc, "regressions", None),
                  version=getattr(exc, "version", None) if isinstance(exc, Regression) else None)


def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    headers = exc.headers
    if exc.status_code == 405:  # Starlette's Allow names the first route's methods; /models has two routes
        headers = {**(headers or {}), "Allow": ", ".join(_methods_on(request))}
    return error(exc.status_code, str(exc.detail), headers=headers)


def _methods_on(request: Request) -> list[str]:
    """Every method some route of this app answers on the request's path (a router included in the
    app answers `matches` for all of its routes, so each method is asked in turn)."""
    return [method for method in _METHODS
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in request.app.routes)]


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def on_bug(request: Request, exc: Exception) -> JSONResponse:
    log.exception("API request %s %s failed", request.method, request.url.path)
    return error(500, "internal error: the server could not answer; the server log has the details")


# --- the caller and the body's size, before the body is read -----------------------------------

class _TooLarge(Exception):
    pass


class BodyGuard:
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
    return error(413, f"the request body is larger than the limit of {limit / 1e6:g} MB (MMS_MAX_REQUEST_MB); "
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
            setattr(request.state, CALLER, await run_in_threadpool(token_caller, request, store, credentials))
        else:
            await current_user(request, store, None)
    except HTTPException as e:
        return on_http_error(request, e)
    except MMSError as e:
        return on_mms_error(request, e)
    return None
