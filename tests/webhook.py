"""A webhook receiver on loopback for the alert tests: what a team's chat or pager endpoint would be."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from servers import free_port


class Receiver:
    """A webhook receiver on loopback: keeps every JSON body; answers `status` (a list is used up
    one answer per request, its last one kept); `hold` makes it wait before answering. `arrived`:
    each kept body's arrival (time.perf_counter)."""

    def __init__(self, port: int | None = None, status=200):
        self.port = port or free_port()
        self.bodies, self.arrived, self.status, self.hold = [], [], status, None
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if received.hold is not None:
                    received.hold.wait(30)
                code = received.status.pop(0) if isinstance(received.status, list) and len(received.status) > 1 \
                    else received.status[0] if isinstance(received.status, list) else received.status
                if code == 200:
                    received.bodies.append(body)
                    received.arrived.append(time.perf_counter())
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?token=secret"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
