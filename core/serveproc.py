"""One serving process (started by core/servepool.py's Pool): `python -m core.serveproc`, configured by
the pool through MMS_SERVE_* variables.

On an embedded store it answers POST /api/models/{name}/predict only, with the API's checks and
sentences: the body's size limit (MMS_MAX_REQUEST_MB) before a byte is read, the caller (from this
machine only while the store has no users, else a bearer token the server vouches for), the body
(PredictRequest, or the same 400/422 sentences), the request's size and texts (predict.check_batch).
It predicts here, in batches of what arrived together, and answers once the server, the store's
one writer, says the rows are committed. On DuckLake it serves the whole API on its own hold of the
store, writing its own rows, as one more server on the lake does.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from types import SimpleNamespace

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from . import api, auth, predict, servepool, settings
from .api import access, fast, predictions, refusals
from .api.schemas import PredictRequest
from .errors import MMSError, StoreBusy
from .serving import Serving
from .store import Store
from .workers import _alive

log = logging.getLogger("mms.serveproc")

PREFIX = "/api"
BATCH_TEXTS = 256  # texts predicted together at most
INLINE_TEXTS = predict.SERVE_IN_WORKER  # fewer texts are predicted on the event loop, more on a thread
ONLY_PREDICT = ("a serving process answers POST /api/models/{name}/predict only; the rest of the API is on the "
                "dashboard's port")
PROCESS_HEADER = "X-MMS-Serving-Process"  # each answer's serving process (its PID)
_PROCESS = (PROCESS_HEADER.lower().encode(), str(os.getpid()).encode())
LOST = ("this serving process lost the server that logs its predictions, so nothing of this request was "
        "answered; try again")


class Writer:
    """The serving process's connection to the server's Handover: requests go out as they come, each
    answered by id, so rows of concurrent requests reach the group-commit writer together."""

    def __init__(self, path: str, secret: str):
        self.path, self.secret = path, secret
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._stream: asyncio.StreamWriter | None = None
        self._connecting = asyncio.Lock()

    async def _connect(self) -> None:
        async with self._connecting:
            if self._stream is not None:
                return
            try:
                reader, stream = await asyncio.open_unix_connection(self.path, limit=servepool.LARGEST_MESSAGE)
            except OSError:
                raise StoreBusy(LOST) from None
            self._stream = stream
            asyncio.get_running_loop().create_task(self._answers(reader, stream))
            await self._send(stream, {"op": "hello", "secret": self.secret})

    async def call(self, op: str, **fields):
        if self._stream is None:
            await self._connect()
        return await self._send(self._stream, {"op": op, **fields})

    async def _send(self, stream: asyncio.StreamWriter, message: dict):
        mid = next(self._ids)
        answer = asyncio.get_running_loop().create_future()
        self._pending[mid] = answer
        data = json.dumps({"id": mid, **message}, ensure_ascii=False).encode()
        stream.write(servepool.HEADER.pack(len(data)) + data)
        got = await answer
        if "error" in got:
            raise servepool.raised(got)
        return got["ok"]

    async def _answers(self, reader: asyncio.StreamReader, stream: asyncio.StreamWriter) -> None:
        try:
            while True:
                (size,) = servepool.HEADER.unpack(await reader.readexactly(servepool.HEADER.size))
                message = json.loads(await reader.readexactly(size))
                answer = self._pending.pop(message.get("id"), None)
                if answer is not None and not answer.done():
                    answer.set_result(message)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:  # the server is gone (or stopping): every waiting request fails, none is answered
            if self._stream is stream:
                self._stream = None
            stream.close()
            pending, self._pending = self._pending, {}
            for answer in pending.values():
                if not answer.done():
                    answer.set_exception(StoreBusy(LOST))


class Predictor:
    """Batches concurrent requests into one predict_proba, looks models up through the server (kept for
    predict.LOOKUP_SECONDS, like a server's own lookups), and hands each batch's rows over at once."""

    def __init__(self, store: Store, writer: Writer):
        self.store, self.writer = store, writer
        self._asks: list = []
        self._wake = asyncio.Event()
        self._lookups: dict[tuple, tuple[float, SimpleNamespace, SimpleNamespace]] = {}
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="mms-serveproc")
        self._open: dict[str, tuple[float, object]] = {}
        self._handing: list[tuple[list, list, list]] = []  # batches predicted, waiting to be handed over
        self._in_flight = False

    def start(self) -> "Predictor":
        asyncio.get_running_loop().create_task(self._batches())
        return self

    async def lookup(self, name: str, version: int | None):
        key, began = (name, version), time.monotonic()
        hit = self._lookups.get(key)
        if hit is not None and began - hit[0] < predict.LOOKUP_SECONDS:
            return hit[1], hit[2]
        found = await self.writer.call("lookup", name=name, version=version)
        model, found_version = SimpleNamespace(**found["model"]), SimpleNamespace(**found["version"])
        if len(self._lookups) > 1000:
            self._lookups.clear()
        self._lookups[key] = (began, model, found_version)
        return model, found_version

    async def kept(self, what: str, seconds: float, op: str, **fields):
        """The server's answer to `op`, kept for `seconds` (whether the store is open; a token's user)."""
        hit = self._open.get(what)
        if hit is not None and time.monotonic() - hit[0] < seconds:
            return hit[1]
        began = time.monotonic()
        answer = await self.writer.call(op, **fields)
        if answer is not None:  # an unknown token is asked again every time: the server counts the failures
            if len(self._open) > 10000:
                self._open.clear()
            self._open[what] = (began, answer)
        return answer

    async def predict(self, name: str, texts: list[str], lines: list[str], user: str, version: int | None):
        answer = asyncio.get_running_loop().create_future()
        self._asks.append((name, version, texts, lines, user, answer))
        self._wake.set()
        return await answer

    async def _batches(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, size = [], 0
            while self._asks and size < BATCH_TEXTS:
                batch.append(self._asks.pop(0))
                size += len(batch[-1][2])
            if self._asks:
                self._wake.set()
            groups: dict[tuple, list] = {}
            for ask in batch:
                groups.setdefault((ask[0], ask[1]), []).append(ask)
            for (name, version), asks in groups.items():
                await self._answer(name, version, asks)

    async def _answer(self, name: str, version: int | None, asks: list) -> None:
        try:
            model, found = await self.lookup(name, version)
            texts = [t for ask in asks for t in ask[2]]
            if len(texts) < INLINE_TEXTS:
                results = predict.probabilities(texts, self.store, found, model.labels)
            else:
                results = await asyncio.get_running_loop().run_in_executor(
                    self._thread, predict.probabilities, texts, self.store, found, model.labels)
            parts, answers, start = [], [], 0
            for _, _, ask_texts, lines, user, _ in asks:
                part = results[start:start + len(ask_texts)]
                start += len(ask_texts)
                rows, answered = predict.logged(model, found, ask_texts, lines, [None] * len(ask_texts), part,
                                                "api", user)
                columns = {k: v for k, v in rows.frame.items() if k != "created_at"}
                parts.append({"model_id": rows.model_id, "version": rows.version, "columns": columns,
                              "source": rows.source, "user": rows.user})
                answers.append(answered)
        except BaseException as e:  # noqa: BLE001 (the error concerns every request of the group)
            for ask in asks:
                if not ask[5].done():
                    ask[5].set_exception(e)
            return
        self._handing.append((parts, answers, [ask[5] for ask in asks]))
        if not self._in_flight:
            self._in_flight = True
            asyncio.get_running_loop().create_task(self._hand_over_all())

    async def _hand_over_all(self) -> None:
        """One handing-over at a time: what was predicted while the last one was being committed goes
        to the server in one message (fewer, larger messages; the server commits them together)."""
        try:
            while self._handing:
                waiting, self._handing = self._handing, []
                await self._hand_over([p for w in waiting for p in w[0]], [a for w in waiting for a in w[1]],
                                      [f for w in waiting for f in w[2]])
        finally:
            self._in_flight = False

    async def _hand_over(self, parts: list[dict], answers: list, futures: list) -> None:
        """The rows to the server; each request is answered once its rows are committed."""
        try:
            committed = await self.writer.call("log", parts=parts)
        except BaseException as e:  # noqa: BLE001
            for future in futures:
                if not future.done():
                    future.set_exception(e)
            return
        for result, answered, future in zip(committed, answers, futures):
            if future.done():
                continue
            if "error" in result:
                future.set_exception(servepool.raised(result))
            else:
                future.set_result(answered(result["ids"]))


class EmbeddedApp:
    """The ASGI app of a serving process on an embedded store."""

    def __init__(self, store: Store, socket_path: str, secret: str):
        self.store, self.socket_path, self.secret = store, socket_path, secret
        self.predictor: Predictor | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self._respond(scope, request)
        except RequestValidationError as e:
            response = refusals.on_invalid_request(request, e)
        except MMSError as e:
            response = refusals.on_mms_error(request, e)
        except HTTPException as e:
            response = refusals.on_http_error(request, e)
        except Exception as e:  # noqa: BLE001 (the API's last resort: 500, the traceback logged)
            response = refusals.on_bug(request, e)
        await response(scope, receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.predictor = Predictor(self.store, Writer(self.socket_path, self.secret)).start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _respond(self, scope, request: Request):
        if scope["method"] == "GET" and scope["path"] == f"{PREFIX}/health":
            return JSONResponse({"status": "ok", "serving_process": os.getpid(), "store": str(self.store.path)})
        name = fast._model_name(scope, PREFIX) if scope["method"] == "POST" else None
        if name is None:
            raise HTTPException(404, ONLY_PREDICT)
        limit = int(float(settings.get("max_request_mb")) * 1_000_000)
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.strip().isdigit() or int(length) > limit):
            return refusals._too_large(limit)
        user = await self._caller(request)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return refusals._too_large(limit)
        kind = request.headers.get("content-type")
        fields = fast._plain(body) if (kind or "").split(";", 1)[0].strip().lower() == "application/json" else None
        if fields is None:
            fields = _validated(body, kind)
        texts, line, version = fields
        texts, lines = predict.check_batch(texts, line, "api")
        done = await self.predictor.predict(name, texts, lines, user, version)
        return JSONResponse(predictions.answer(name, line, done))

    async def _caller(self, request: Request) -> str:
        """The user the request acts for, with the API's refusals (access.local_while_open, current_user)."""
        where = access.address(request)
        is_open = lambda: self.predictor.kept("open", auth.OPEN_SECONDS, "open")  # noqa: E731
        if not auth.is_local(where) and await is_open():
            raise HTTPException(403, auth.OPEN_STORE_IS_LOCAL)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            who = await self.predictor.kept(f"token {token.strip()}", auth.OPEN_SECONDS, "caller",
                                            token=token.strip(), address=where or "local")
            if who is None:
                raise HTTPException(401, "unknown API token", headers=access.CHALLENGE)
            return who["user"]
        if await is_open():
            return access.OPEN.user
        raise HTTPException(401, "this store has users, so the API needs a bearer token (Authorization: Bearer "
                                 "...); an owner makes one with `python -m core create-token USER`",
                            headers=access.CHALLENGE)


def _validated(body: bytes, kind: str | None) -> tuple[list[str], str, int | None]:
    """A body the lean check did not accept, judged as FastAPI judges it for the route: read as JSON
    when its Content-Type (`kind`) is JSON or missing, then by the route's model; its fields, or the
    route's 400/422 refusal."""
    if not body:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    maintype, _, subtype = (kind or "application/json").split(";", 1)[0].strip().lower().partition("/")
    if not (maintype == "application" and (subtype == "json" or subtype.endswith("+json"))):
        raise RequestValidationError([{"type": "model_attributes_type", "loc": ("body",), "input": None,
                                       "msg": "Input should be a valid dictionary or object to extract fields from"}])
    try:
        data = json.loads(body)
    except ValueError as e:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", getattr(e, "pos", 0)),
                                       "msg": "JSON decode error", "input": {},
                                       "ctx": {"error": getattr(e, "msg", str(e))}}]) from None
    try:
        checked = PredictRequest.model_validate(data)
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from None
    return checked.texts, checked.business_line, checked.version


def lake_app(store: Store):
    """A serving process on DuckLake: the API's predict route (and /api/health) on its own hold of the
    store, with its own writer; every other path is refused as on an embedded store's serving process."""
    @asynccontextmanager
    async def lifespan(app):
        await asyncio.get_running_loop().run_in_executor(None, store.hold)
        serving = Serving(store).start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, serving.stop)
            store.unhold()
    return Starlette(routes=[api.mount(store)], lifespan=lifespan,
                     middleware=[Middleware(Named), Middleware(PredictOnly)])


class PredictOnly:
    """Lets through the paths a serving process answers; anything else is the embedded one's 404."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not (
                scope["method"] == "GET" and scope["path"] == f"{PREFIX}/health"
                or scope["method"] == "POST" and fast._model_name(scope, PREFIX) is not None):
            return await refusals.error(404, ONLY_PREDICT)(scope, receive, send)
        await self.app(scope, receive, send)


class Named:
    """Every answer names the serving process that gave it (PROCESS_HEADER): which one answered."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def named(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), _PROCESS]}
            await send(message)
        await self.app(scope, receive, named)


def _watch_parent(parent: int) -> None:
    while _alive(parent):
        time.sleep(0.5)
    os._exit(1)  # the server (or the serve command) is gone: nothing here can log a prediction any more


def main() -> None:
    import uvicorn

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s serving process %(process)d: %(message)s")
    env = os.environ
    threading.Thread(target=_watch_parent, args=(int(env["MMS_SERVE_PARENT"]),), daemon=True).start()
    store = Store()
    app = lake_app(store) if store.is_lake else Named(EmbeddedApp(store, env["MMS_SERVE_SOCKET"], env["MMS_SERVE_SECRET"]))
    sock = servepool.listening_socket(env["MMS_SERVE_ADDRESS"], int(env["MMS_SERVE_PORT"]))
    sock.listen(1024)
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False, timeout_graceful_shutdown=8)
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    main()
