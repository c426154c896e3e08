"""The server's background work: one step every few seconds on a thread of its own, until the
server stops (compaction, scoring a newly active version's hard-example pool)."""
from __future__ import annotations

import logging
import threading

log = logging.getLogger("mms.background")


class Every:
    """Runs `once()` every `seconds` (the first time after `first` seconds, default `seconds`) on a
    daemon thread named `name`, until `stop`; with `seconds` 0 or less it never starts. `once` logs
    what it can explain; anything else it raises is logged here and the next step still runs."""
    name = "mms-background"

    def __init__(self, seconds: float, first: float | None = None):
        self.seconds = float(seconds)
        self.first = self.seconds if first is None else float(first)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self):
        if self.seconds > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def stopping(self) -> bool:
        return self._stop.is_set()

    def once(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        wait = self.first
        while not self._stop.wait(wait):
            try:
                self.once()
            except Exception:
                log.exception("MMS: %s failed", self.name)
            wait = self.seconds
