"""The server's drift measuring: every model's line x periods (week, day and month) against its active
version's training data, measured in the background at start and again after new predictions or labels,
so that a Monitor render, a fresh one or a switch of period, reads cached cells instead of fitting a
classifier per cell. The classifier fits and tokens run in worker processes: the server's threads keep
the GIL for the pages they draw."""
from __future__ import annotations

import logging

from . import background, drift, registry, settings, stats
from .errors import MMSError
from .store import Store

log = logging.getLogger("mms.drift")
ORDER = ("week", "day", "month")  # the Monitor's default view first
FILL_SECONDS = 15.0  # how often the store's revision is looked at; a pass runs only after it changed
IDLE_SECONDS = 1.0  # how long no prediction came before the next step
STEP_SECONDS = 2.0  # cells measured between two looks at `stopping` (a server that stops waits no longer)


class DriftFiller(background.Every):
    """Each pass claims every (model, period) view it is about to measure (drift.claim), so that a
    render of a view still waiting spends no time of its own on it and says the server measures it."""
    name = "mms-drift"

    def __init__(self, store: Store, seconds: float = FILL_SECONDS, off_process: bool = True, serving=None):
        self.store, self.off_process, self.serving = store, off_process, serving
        self.seen: tuple | None = None
        self.passes = 0
        super().__init__(seconds, first=0)

    def once(self) -> None:
        try:
            revision = registry.store_revision(self.store)
            if revision == self.seen:
                return
            models = [m.name for m in registry.list_models(self.store) if m.active_version is not None]
        except MMSError as e:  # the store unusable for a moment: the next look tries again
            log.warning("MMS: drift not measured: %s", e)
            return
        self.seen = revision
        claimed = [(name, by) for name in models for by in ORDER if drift.claim(self.store, name, by)]
        try:
            while claimed and not self.stopping():
                name, by = claimed[0]
                try:
                    self.measure(name, by)
                except MMSError as e:  # the model went meanwhile, or the store is busy: the next pass
                    log.warning("MMS: drift of %s by %s not measured: %s", name, by, e)
                    self.seen = None
                drift.release(self.store, name, by)
                claimed.pop(0)
        finally:
            for name, by in claimed:
                drift.release(self.store, name, by)
        self.passes += 1

    def measure(self, name: str, by: str) -> None:
        by_line = stats.stats_by_line_and_period(self.store, name, by)
        keep = float(settings.get("drift_keep_seconds"))
        while not by_line.empty and not self.stopping():
            if self.serving is not None:  # predictions first: a step starts once they pause
                self.serving.wait_idle(IDLE_SECONDS)
            report = drift.drift_by_line_and_period(self.store, name, by, by_line, budget_seconds=STEP_SECONDS,
                                                    keep_seconds=keep, off_process=self.off_process)
            if not report.pending:
                if self.passes == 0:  # the first pass at start; later ones measure a few new cells
                    log.warning("MMS: drift of %s measured for %d line x %ss, %d flagged", name, len(report.cells),
                                by, len(report.flagged()))
                return
