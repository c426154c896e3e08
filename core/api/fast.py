"""The predict route's lean path: a plainly valid POST .../models/{name}/predict answered by one ASGI
middleware, without the layers in front of the route (in the server, Streamlit's session, path-security
and gzip middlewares and FastAPI's routing, dependencies and pydantic model).

It does what those layers do for such a request and nothing else: the body's size limit, the caller
(`refusals.refusal_before_body`: open mode from this machine only, or a bearer token), then the body
read as JSON. A body that is plainly what `schemas.PredictRequest` accepts (an object with a non-empty
list of non-empty `texts`, a `business_line` of 1-200 characters starting with a visible one, a whole
`version` in range) is predicted by the route's own `predictions.predicted`; anything else, and every
other request, goes on to the full stack, the body handed over unread, so every refusal keeps its
status and sentence.
"""
from __future__ import annotations

import json
import re

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from .. import predict, settings
from ..errors import MMSError
from . import predictions, refusals
from .access import CALLER, OPEN

_PREDICT = re.compile(r"/models/([^/]+)/predict")
_FIELDS = frozenset(("texts", "business_line", "version"))
_LARGEST_ID = 2**53 - 1


class FastPredict:
    """ASGI middleware answering plainly valid predict requests under `prefix` (the API's mount point
    when it runs in front of the whole server; "" inside the API's own app)."""

    def __init__(self, app, prefix: str = ""):
        self.app, self.prefix = app, prefix

    async def __call__(self, scope, receive, send):
        name = _model_name(scope, self.prefix) if scope["type"] == "http" and scope["method"] == "POST" else None
        if name is None:
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        length = headers.get("content-length", "")
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if (not length.isdigit() or "transfer-encoding" in headers or media != "application/json"
                or int(length) > float(settings.get("max_request_mb")) * 1_000_000):
            return await self.app(scope, receive, send)
        request = Request(scope, receive)
        refusal = await refusals.refusal_before_body(request)
        if refusal is not None:
            return await refusal(scope, receive, send)
        store = getattr(request.state, refusals.STORE, None)
        if store is None:  # no store yet: the route says why
            return await self.app(scope, receive, send)
        body = await request.body()
        fields = _plain(body)
        if fields is None:
            return await self.app(scope, _replay(body, receive), send)
        texts, line, version = fields
        caller = getattr(request.state, CALLER, None) or OPEN
        try:
            response = JSONResponse(await predictions.predicted(store, name, texts, line, version, caller.user))
        except MMSError as e:
            response = refusals.on_mms_error(request, e)
        except HTTPException as e:
            response = refusals.on_http_error(request, e)
        except Exception as e:  # noqa: BLE001 (the route's own last resort: 500 with the traceback logged)
            response = refusals.on_bug(request, e)
        await response(scope, receive, send)


def _model_name(scope, prefix: str) -> str | None:
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    if not path.startswith(prefix):
        return None
    found = _PREDICT.fullmatch(path[len(prefix):])
    return found.group(1) if found else None


def _plain(body: bytes) -> tuple[list[str], str, int | None] | None:
    """(texts, business line, version) when the body is plainly a valid PredictRequest, else None."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if type(data) is not dict or not data.keys() <= _FIELDS:
        return None
    texts = data.get("texts")
    if type(texts) is not list or not texts or not all(type(t) is str and t for t in texts):
        return None
    line = data.get("business_line", predict.DEFAULT_LINE)
    if type(line) is not str or not 1 <= len(line) <= 200 or line[0].isspace():
        return None
    version = data.get("version")
    if version is not None and (type(version) is not int or not 1 <= version <= _LARGEST_ID):
        return None
    return texts, line, version


def _replay(body: bytes, receive):
    """A receive that gives the body already read, then whatever the connection says next."""
    sent = False

    async def again():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}
    return again
