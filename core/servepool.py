"""Serving processes beside the server: predictions answered off the dashboard's GIL, on every core.

`streamlit run app.py` with MMS_SERVING_PROCESSES=N (or `python -m core serve --processes N`) starts N
processes (core/serveproc.py) that answer POST /api/models/{name}/predict on MMS_SERVING_PORT (all of
them on one port: the kernel spreads the connections), each predicting in its own interpreter.

- Embedded store: the server stays the one writer of the file. It listens on a Unix socket in a
  private folder (the `Handover`); its path and a random secret are in `<store>.serve.json` (mode
  0600). A serving process asks the server for a model's active version (and checks the model file's
  sha256 itself as any loading does), for a token's user and whether the store is open, and hands
  over its rows; it answers a request only once the server says they are committed by the
  group-commit writer, so answered = logged. Lookups are kept for predict.LOOKUP_SECONDS at most,
  the bound an activation in another process already has.
- DuckLake: each serving process opens the store and writes its own rows, as several servers on one
  lake do; nothing is handed over.

The pool restarts a serving process that ends, and each ends when the process that started it
ends. Requests are framed as a 4-byte length and a JSON object; the first must carry the secret.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

from . import auth, errors, logwriter, settings
from .forward import _alive
from .errors import InvalidInput, MMSError, StoreError
from .store import Store

log = logging.getLogger("mms.servepool")

HEADER = struct.Struct(">I")
LARGEST_MESSAGE = 256 * 1024 * 1024  # a request of MMS_MAX_BATCH long texts and its probabilities fits
RESTART_SECONDS = 1.0  # the pool's look for a serving process that ended, and its wait before a restart
STOP_SECONDS = 10.0  # how long a stopping serving process may finish its requests before it is killed


# --- the wire: one JSON object per frame -----------------------------------------------------------

def send_frame(sock: socket.socket, message: dict) -> None:
    data = json.dumps(message, ensure_ascii=False, default=str).encode()
    sock.sendall(HEADER.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    parts, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def recv_frame(sock: socket.socket) -> dict | None:
    head = _recv_exact(sock, HEADER.size)
    if head is None:
        return None
    (size,) = HEADER.unpack(head)
    if size > LARGEST_MESSAGE:
        raise ValueError(f"a message of {size} bytes")
    body = _recv_exact(sock, size)
    return None if body is None else json.loads(body)


def error_message(error: BaseException) -> dict:
    """An error as the other side raises it again: a named error keeps its kind and sentence."""
    if not isinstance(error, MMSError):
        log.error("a serving process's request failed", exc_info=error)
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        error = StoreError(f"the server could not answer the serving process ({first}); try again")
    return {"error": type(error).__name__, "sentence": str(error)}


def raised(message: dict) -> MMSError:
    kind = getattr(errors, message.get("error", ""), None)
    if not (isinstance(kind, type) and issubclass(kind, MMSError)):
        kind = StoreError
    sentence = message.get("sentence", "the server refused")
    try:
        return kind(sentence)
    except TypeError:  # a kind that carries more than its sentence (none of prediction's)
        return StoreError(sentence)


# --- where a server's handover is found ------------------------------------------------------------

def handover_file(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".serve.json")


def find(store_path: Path) -> dict | None:
    """The running server's handover for this embedded store ({pid, socket, secret}), if its process lives."""
    try:
        found = json.loads(handover_file(store_path).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and _alive(int(found.get("pid", 0))) else None


class Handover:
    """The server's side: serving processes hand their rows to this process's group-commit writer and
    ask it what only the store knows. One thread per serving process's connection."""

    def __init__(self, store: Store):
        self.store = store
        self.secret = secrets.token_urlsafe(32)
        self._folder = Path(tempfile.mkdtemp(prefix="mms-serve-"))  # mode 0700: this user's only
        self.path = self._folder / "writer.sock"
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._open = False

    def start(self) -> "Handover":
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self._listener.listen(64)
        self._open = True
        threading.Thread(target=self._accept, name="mms-handover", daemon=True).start()
        path = handover_file(self.store.path)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "socket": str(self.path), "secret": self.secret}, f)
        tmp.replace(path)
        return self

    @property
    def address(self) -> dict:
        return {"socket": str(self.path), "secret": self.secret}

    def stop(self) -> None:
        with self._lock:
            if not self._open:
                return
            self._open = False
            connections = list(self._connections)
        path = handover_file(self.store.path)
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink(missing_ok=True)
        except (OSError, ValueError):
            pass
        for sock in [self._listener, *connections]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def _accept(self) -> None:
        while self._open:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if not self._open:
                    sock.close()
                    return
                self._connections.add(sock)
            threading.Thread(target=self._serve, args=(sock,), name="mms-handover-conn", daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        sending = threading.Lock()

        def reply(message: dict) -> None:
            with sending:
                try:
                    send_frame(sock, message)
                except OSError:
                    pass  # the serving process is gone: its requests were not answered

        try:
            hello = recv_frame(sock)
            if not hello or not secrets.compare_digest(str(hello.get("secret", "")), self.secret):
                return
            reply({"id": hello.get("id"), "ok": {"pid": os.getpid(), "store": str(self.store.path)}})
            while (message := recv_frame(sock)) is not None:
                self._dispatch(message, reply)
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._connections.discard(sock)
            sock.close()

    def _dispatch(self, message: dict, reply) -> None:
        mid, op = message.get("id"), message.get("op")
        try:
            if op == "log":
                return self._log(mid, message["parts"], reply)
            serving = self.store.serving
            if serving is None:
                raise errors.StoreBusy("the server is shutting down and no longer logs predictions; try again "
                                       "when it is back")
            if op == "lookup":
                model, version = serving.lookup(message["name"], message.get("version"))
                result = {"model": asdict(model), "version": asdict(version)}
            elif op == "caller":
                who = auth.token_caller(self.store, message["token"], message.get("address") or "local")
                result = None if who is None else {"user": who.name, "role": who.role}
            elif op == "open":
                result = auth.is_open(self.store, auth.OPEN_SECONDS)
            else:
                raise InvalidInput(f"unknown request {op!r}")
            reply({"id": mid, "ok": result})
        except BaseException as e:  # noqa: BLE001 (every failure goes back as the request's answer)
            reply({"id": mid, **error_message(e)})

    def _log(self, mid, parts: list[dict], reply) -> None:
        """The parts' rows to the writer, those of one model, version and user as one handing-over;
        one answer, with each part's ids (or its error), once every part is committed or refused."""
        serving = self.store.serving
        answers: list = [None] * len(parts)
        groups: dict[tuple, list[int]] = {}
        for i, part in enumerate(parts):
            groups.setdefault((part["model_id"], part["version"], part["source"], part["user"]), []).append(i)
        left = [len(groups)]
        lock = threading.Lock()

        def done(members: list[int], given) -> None:
            for i, answer in zip(members, given):
                answers[i] = answer
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                reply({"id": mid, "ok": answers})

        for (model_id, version, source, user), members in groups.items():
            try:
                if serving is None:
                    raise errors.StoreBusy("the server is shutting down and no longer logs predictions; try "
                                           "again when it is back")
                sizes = [len(parts[i]["columns"]["text"]) for i in members]
                columns = {name: [v for i in members for v in parts[i]["columns"][name]]
                           for name in parts[members[0]]["columns"]}
                columns["created_at"] = [None] * sum(sizes)
                rows = logwriter.Rows(int(model_id), int(version), columns, source, user)
                serving.writer.submit(rows).add_done_callback(
                    lambda f, members=members, sizes=sizes: done(members, _split(f, sizes)))
            except BaseException as e:  # noqa: BLE001
                done(members, [error_message(e)] * len(members))


def _split(committed, sizes: list[int]) -> list[dict]:
    """A handing-over's ids back to its parts, or its error to each of them."""
    if committed.exception() is not None:
        return [error_message(committed.exception())] * len(sizes)
    ids, start, answers = committed.result(), 0, []
    for size in sizes:
        answers.append({"ids": ids[start:start + size]})
        start += size
    return answers


# --- the pool of serving processes ----------------------------------------------------------------

def configured(dashboard_port: int | None = None) -> tuple[int, str, int]:
    """(processes, address, port) from MMS_SERVING_PROCESSES, MMS_SERVING_ADDRESS and MMS_SERVING_PORT;
    a value that cannot be used is refused with a sentence naming the setting."""
    def number(name: str) -> int:
        raw = os.environ.get(settings.SETTINGS[name].env, "").strip()
        try:
            return int(raw) if raw else int(settings.SETTINGS[name].default)
        except ValueError:
            raise InvalidInput(f"{settings.SETTINGS[name].env}={raw!r} is not a whole number") from None

    processes, port = number("serving_processes"), number("serving_port")
    address = str(settings.get("serving_address")).strip() or "127.0.0.1"
    check(processes, port or _beside(dashboard_port), address)
    return processes, address, port or _beside(dashboard_port)


def _beside(dashboard_port: int | None) -> int:
    return int(dashboard_port) + 1 if dashboard_port else 8502


def check(processes: int, port: int, address: str) -> None:
    """Refuse a pool that cannot run, before any process starts: a sentence naming what is wrong."""
    if not 0 <= processes <= 64:
        raise InvalidInput(f"MMS_SERVING_PROCESSES (--processes) is {processes}: give 0 to 64 serving processes")
    if not 1 <= port <= 65535:
        raise InvalidInput(f"MMS_SERVING_PORT (--port) is {port}: give a port from 1 to 65535")
    if processes:
        try:
            probe = listening_socket(address, port)
        except OSError as e:
            raise InvalidInput(f"the serving processes cannot listen on {address} port {port} ({e.strerror or e}); "
                               f"set MMS_SERVING_PORT (--port) or MMS_SERVING_ADDRESS (--address)") from None
        probe.close()


def listening_socket(address: str, port: int) -> socket.socket:
    """A socket bound to (address, port) that every serving process binds too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    return sock


class Pool:
    """N serving processes on one port, restarted when one ends, stopped with the pool."""

    def __init__(self, store: Store, processes: int, address: str, port: int, handover: dict | None = None):
        if not store.is_lake and handover is None:
            raise InvalidInput(f"serving processes on the embedded store {store.path} need its server, the one "
                               f"writer: start it with `streamlit run app.py`")
        self.store, self.n, self.address, self.port, self.handover = store, processes, address, port, handover
        self.procs: list[subprocess.Popen | None] = [None] * processes
        self.restarts = 0
        self._stopping = threading.Event()
        self._watch: threading.Thread | None = None

    def start(self) -> "Pool":
        check(self.n, self.port, self.address)
        for i in range(self.n):
            self.procs[i] = self._spawn()
        self._watch = threading.Thread(target=self._keep, name="mms-serving-pool", daemon=True)
        self._watch.start()
        log.warning("MMS: %d serving process(es) answer POST /api/models/{name}/predict on http://%s:%d (%s)",
                    self.n, self.address, self.port, "each writes to the lake" if self.store.is_lake
                    else "rows handed to this server's writer")
        return self

    def _spawn(self) -> subprocess.Popen:
        env = {**os.environ, "MMS_STORE": self.store.url or str(self.store.path),
               "MMS_SERVE_ADDRESS": self.address, "MMS_SERVE_PORT": str(self.port),
               "MMS_SERVE_PARENT": str(os.getpid())}
        if self.store.is_lake:
            env["MMS_DATA_PATH"] = self.store.data_path
        else:
            env["MMS_SERVE_SOCKET"], env["MMS_SERVE_SECRET"] = self.handover["socket"], self.handover["secret"]
        root = str(Path(__file__).resolve().parent.parent)  # core importable; the cwd (relative settings) kept
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        return subprocess.Popen([sys.executable, "-m", "core.serveproc"], env=env)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None]

    def _keep(self) -> None:
        while not self._stopping.wait(RESTART_SECONDS):
            for i, proc in enumerate(self.procs):
                if proc is not None and proc.poll() is not None and not self._stopping.is_set():
                    log.warning("MMS: serving process %d ended (code %s); starting another", proc.pid,
                                proc.returncode)
                    self.restarts += 1
                    self.procs[i] = self._spawn()

    def stop(self) -> None:
        """Each serving process finishes its requests (at most STOP_SECONDS), then ends."""
        self._stopping.set()
        if self._watch is not None:
            self._watch.join()
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for proc in self.procs:
            if proc is None:
                continue
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- the server's hooks ---------------------------------------------------------------------------

class Beside:
    """What a server runs for serving processes: on an embedded store the handover (always, so that
    `python -m core serve` can start processes beside it), and the pool MMS_SERVING_PROCESSES asks for."""

    def __init__(self, store: Store, dashboard_port: int | None):
        self.handover = None if store.is_lake else Handover(store).start()
        self.pool = None
        try:
            processes, address, port = configured(dashboard_port)
            if processes:
                self.pool = Pool(store, processes, address, port,
                                 None if self.handover is None else self.handover.address).start()
        except MMSError as e:
            log.error("MMS: no serving processes: %s", e)

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.stop()
        if self.handover is not None:
            self.handover.stop()


def start_beside(store: Store, dashboard_port: int | None) -> Beside | None:
    try:
        return Beside(store, dashboard_port)
    except OSError as e:  # no Unix socket here: the server serves on its own as before
        log.error("MMS: serving processes cannot reach this server (%s)", e)
        return None
