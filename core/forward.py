"""The command line through a running server: the file that names the server, and the call.

A running server holds its store open for its whole life (one writer process, as DuckDB asks),
so the command line cannot open the file then. The server writes `<store>.server.json` (mode
0600: its pid, port and a random secret) when it starts and removes it when it stops; a command
that finds the file, with that pid alive, sends its arguments to the server over loopback with
the secret, and the server runs the same command against its open store. Reading the secret
needs the file permissions of the user who started the server, so the server acts on that
user's files only for that user. Stdlib only: the command line must stay quick to start.
"""
from __future__ import annotations

import json
import os
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROUTE = "/_mms/cli"
SECRET_HEADER = "X-MMS-Local-Secret"
HOST = "127.0.0.1"  # the route answers loopback clients only
CONNECT_SECONDS = 10.0  # a server that has just written its file may not listen yet


class PasswordNeeded(Exception):
    """Raised in the server when a forwarded command needs a password the client has not sent yet."""

    def __init__(self, prompt: str):
        super().__init__(prompt)
        self.prompt = prompt


@dataclass(frozen=True)
class Server:
    pid: int
    port: int
    secret: str
    store: str


def server_file(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".server.json")


def announce(store_path: Path, port: int) -> Server:
    """Write the file that names this process as the store's server; returns what it says."""
    me = Server(pid=os.getpid(), port=int(port), secret=secrets.token_urlsafe(32), store=str(store_path))
    path = server_file(store_path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(me.__dict__, f)
    tmp.replace(path)
    return me


def withdraw(store_path: Path) -> None:
    """Remove the server file if it names this process (a later server may have replaced it)."""
    path = server_file(store_path)
    found = _read(path)
    if found is not None and found.pid == os.getpid():
        path.unlink(missing_ok=True)


def find(store_path: Path) -> Server | None:
    """The server holding this store, if its file names a process that is alive."""
    found = _read(server_file(store_path))
    return found if found is not None and _alive(found.pid) else None


def _read(path: Path) -> Server | None:
    try:
        return Server(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed server nobody has reaped yet (a zombie) holds no lock
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def send(server: Server, request: dict, timeout: float | None = None) -> dict:
    """POST a command to the server; its answer (stdout, stderr, code, or a password prompt).

    Raises ConnectionError when the server does not answer within CONNECT_SECONDS."""
    data = json.dumps(request).encode()
    deadline = time.monotonic() + CONNECT_SECONDS
    while True:
        req = urllib.request.Request(f"http://{HOST}:{server.port}{ROUTE}", data=data, method="POST",
                                     headers={"Content-Type": "application/json", SECRET_HEADER: server.secret})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return json.loads(body)
            except ValueError:
                raise ConnectionError(f"the server (PID {server.pid}) answered {e.code}") from None
        except (urllib.error.URLError, ConnectionError) as e:
            if time.monotonic() >= deadline:
                raise ConnectionError(f"the server (PID {server.pid}) named in {server_file(Path(server.store))} "
                                      f"does not answer on port {server.port} ({getattr(e, 'reason', e)})") from None
            time.sleep(0.2)
