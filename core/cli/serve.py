"""The serve command: `python -m core serve --processes N` answers predictions with N serving processes
(core/servepool.py) until stopped (Ctrl-C or SIGTERM).

Embedded store: beside the running server (`streamlit run app.py`), the store's one writer; each process
hands its rows to it. DuckLake: no server needed, each process writes to the lake itself. The command is
never sent to a server: it runs here, for as long as it serves.
"""
from __future__ import annotations

import signal
import threading

import click

from .base import WholeNumber, app
from .. import settings
from ..errors import InvalidInput


def serve(processes: int, port: int | None, address: str | None) -> int:
    from .. import servepool
    from ..store import Store
    from ..workers import _alive
    from .base import Call

    ctx = click.get_current_context()
    console = ctx.find_object(Call).console
    store = Store(ctx.parent.params.get("store") or settings.get("store"))
    port = port or int(settings.get("serving_port")) or 8502
    address = address or str(settings.get("serving_address")).strip() or "127.0.0.1"
    handover = None
    if store.is_lake:
        if not store.exists():
            raise InvalidInput(f"there is no store at {store}: create it with `python -m core migrate` or a server")
    else:
        handover = servepool.find(store.path)
        if handover is None:
            raise InvalidInput(f"no server holds {store.path}: serving processes hand their rows to it, the one "
                               f"writer of an embedded store. Start it with `streamlit run app.py` (with "
                               f"MMS_SERVING_PROCESSES={processes} it starts them itself), then run this beside it")
    pool = servepool.Pool(store, processes, address, port, handover).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    how = "each writes to the lake" if store.is_lake else f"rows logged by the server (PID {handover['pid']})"
    print(f"serving {store} with {processes} process(es) on http://{address}:{port}/api/models/NAME/predict "
          f"({how}); Ctrl-C stops", file=console.err, flush=True)
    try:
        while not stop.wait(0.5):
            if handover is not None and not _alive(int(handover["pid"])):
                print(f"the server (PID {handover['pid']}) has stopped, so nothing can be logged: serving stops",
                      file=console.err)
                return 1
    finally:
        pool.stop()
    return 0


app.add_command(click.Command(
    "serve", callback=serve, help="answer POST /api/models/NAME/predict with N serving processes on one port "
                                  "until stopped (embedded store: beside its running server; DuckLake: each "
                                  "process writes)",
    short_help="answer predictions with N serving processes",
    params=[click.Option(["--processes"], type=WholeNumber(1, 64), default=2, show_default=True,
                         help="serving processes"),
            click.Option(["--port"], type=WholeNumber(1, 65535), default=None,
                         help="port they share (default: $MMS_SERVING_PORT, else 8502)"),
            click.Option(["--address"], default=None,
                         help="address to listen on (default: $MMS_SERVING_ADDRESS, 127.0.0.1)")],
    context_settings={"help_option_names": ["-h", "--help"]}))
