"""Dashboard sessions that survive a browser reload: a signed, expiring token in an HttpOnly cookie.

Streamlit reads cookies (st.context.cookies) but cannot set them from a script, so the cookie is
set by a small Starlette route mounted beside the dashboard: after the sign-in form succeeds, the
page posts a one-time code to `POST /session/start`, which answers with the cookie. The token is
`<session id>.<expiry>.<HMAC-SHA256>` under a key kept in the store; the store keeps the session
(as a hash of its id), so signing out or removing the user ends it at once, and every check reads
the user's current role. No password ever goes into a token or a cookie.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time

from starlette.requests import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import settings
from . import store as db
from .auth import Identity
from .store import Store

START_PATH, END_PATH = "/session/start", "/session/end"
HANDOFF_SECONDS = 60  # a one-time code is posted by the page right after sign-in
_KEY = "session_signing_key"


def cookie_name(store: Store) -> str:
    """Per store, so two MMS servers on one host (cookies ignore the port) keep apart."""
    return "mms_session_" + hashlib.sha256(str(store.path).encode("utf-8")).hexdigest()[:10]


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _key(con) -> bytes:
    """The store's signing key, made once with the first session."""
    key = db.app_secret(con, _KEY)
    if key is None:
        db.insert_app_secret(con, _KEY, secrets.token_hex(32))
        key = db.app_secret(con, _KEY)
    return bytes.fromhex(key)


def _signature(key: bytes, payload: str) -> str:
    digest = hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _token(con, session_id: str, expires: int) -> str:
    payload = f"{session_id}.{expires}"
    return f"{payload}.{_signature(_key(con), payload)}"


def lifetime() -> int:
    """Seconds a session lasts (MMS_SESSION_HOURS)."""
    return int(float(settings.get("session_hours")) * 3600)


def start(store: Store, name: str) -> tuple[str, str]:
    """A new session for a user who has just signed in: (token, one-time code for the cookie route)."""
    session_id, code = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires = int(time.time()) + lifetime()
    with store.transaction() as con:
        token = _token(con, session_id, expires)
        db.insert_session(con, _hash(session_id), name, dt.datetime.fromtimestamp(expires))
        db.insert_handoff(con, _hash(code), token, dt.datetime.now() + dt.timedelta(seconds=HANDOFF_SECONDS))
    return token, code


def _session_id(con, token: str) -> str | None:
    """The session id of a well-signed, unexpired token; None for anything else."""
    parts = (token or "").split(".")
    if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) <= time.time():
        return None
    key = db.app_secret(con, _KEY)
    if key is None or not hmac.compare_digest(parts[2], _signature(bytes.fromhex(key), f"{parts[0]}.{parts[1]}")):
        return None
    return parts[0]


def identity(store: Store, token: str) -> Identity | None:
    """Who a token signs in, with the role the store gives them now; None if the token is forged or
    expired, the session ended, or the user was removed."""
    with store.connect() as con:
        session_id = _session_id(con, token)
        row = db.session_user(con, _hash(session_id)) if session_id else None
    return Identity(row["name"], row["role"]) if row else None


def end(store: Store, token: str) -> None:
    """Sign out: the session stops working everywhere, whether or not the browser drops its cookie."""
    with store.transaction() as con:
        session_id = _session_id(con, token)
        if session_id:
            db.delete_session(con, _hash(session_id))


def redeem(store: Store, code: str) -> tuple[str, int] | None:
    """The (token, seconds it has left) a one-time code stands for, if its session is still live;
    a code works once, for a minute."""
    with store.transaction() as con:
        token = db.take_handoff(con, _hash(code or ""))
    if token is None or identity(store, token) is None:
        return None
    return token, int(token.split(".")[1]) - int(time.time())


def _same_origin(request: Request) -> bool:
    """Only the dashboard's own page may set or clear the cookie: no sign-in forced from another site."""
    origin = request.headers.get("origin", "")
    return origin.split("://", 1)[-1] == request.headers.get("host")


MAX_BODY = 4096  # a one-time code and its JSON: anything larger is not the dashboard's


async def _small_body(request: Request) -> bytes | None:
    """The body, or None when it is larger than MAX_BODY: read no further than that, whoever sent it."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return body


def routes(store: Store | None = None) -> list[Route]:
    """`POST /session/start` (body {"code": ...}) sets the session cookie; `POST /session/end` ends
    the session and clears it. For `st.App(..., routes=[...])`; `store` defaults to MMS_STORE."""

    def the_store() -> Store:
        return store or Store(settings.get("store"))

    async def start_session(request: Request) -> Response:
        raw = await _small_body(request)
        if raw is None:
            return JSONResponse({"error": "a sign-in code is a few bytes; this body is too large"}, status_code=413)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        code = body.get("code") if isinstance(body, dict) else None
        here = the_store()
        if not _same_origin(request) or not isinstance(code, str) or not here.exists():
            return JSONResponse({"error": "only the dashboard's sign-in may start a session"}, status_code=403)
        found = await run_in_threadpool(redeem, here, code)
        if found is None:
            return JSONResponse({"error": "this sign-in code is used or expired; sign in again"}, status_code=403)
        token, seconds = found
        response = Response(status_code=204)
        response.set_cookie(cookie_name(here), token, max_age=seconds, path="/", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    async def end_session(request: Request) -> Response:
        here = the_store()
        if not _same_origin(request):
            return JSONResponse({"error": "only the dashboard may end a session"}, status_code=403)
        token = request.cookies.get(cookie_name(here))
        if token and here.exists():
            await run_in_threadpool(end, here, token)
        response = Response(status_code=204)
        response.delete_cookie(cookie_name(here), path="/", httponly=True, samesite="strict")
        return response

    return [Route(START_PATH, start_session, methods=["POST"]), Route(END_PATH, end_session, methods=["POST"])]
