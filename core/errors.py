"""Named errors. Each carries one sentence a user can act on; pages and the CLI show it as is."""


class MMSError(Exception):
    """A mistake the user can fix (bad input, unknown name, busy store). Never a bug."""


class StoreBusy(MMSError):
    """Another process holds the store's write lock for longer than we are willing to wait."""


class StoreError(MMSError):
    """The store refused a write for a reason that is not the caller's input (a full disk, a broken file)."""


class Conflict(MMSError):
    """Two writers changed the same rows at once; this one was rolled back and may be retried."""


class ModelNotFound(MMSError):
    pass


class ModelExists(MMSError):
    pass


class VersionNotFound(MMSError):
    pass


class InvalidInput(MMSError):
    """A file, row or field the user supplied is not usable; nothing was written."""


class TrainingError(MMSError):
    """Training cannot start or run with this data or config (one class, no new labels, ...)."""


class ArtifactError(MMSError):
    """A model file is missing or its sha256 differs from the registry's; it is never loaded."""


class PermissionDenied(MMSError):
    pass


class Regression(MMSError):
    """Activation refused: the version is no better than the trivial answer on its test split, or
    significantly worse than the active one (see registry.promotion_guard).

    `regressions` lists what fell (plain dicts: what, base, candidate, drop, tolerance, p_value, rows)."""

    def __init__(self, sentence: str, regressions: list[dict], version: int | None = None):
        super().__init__(sentence)
        self.regressions = regressions
        self.version = version  # the version refused


class EmptyPool(MMSError):
    """No unlabelled prediction matches the filters: the queue is exhausted."""


class SignInRefused(MMSError):
    """A sign-in was refused: wrong name or password, or too many failures (`retry_after` seconds)."""

    def __init__(self, sentence: str, retry_after: int = 0):
        super().__init__(sentence)
        self.retry_after = retry_after


class StoreUnavailable(StoreError):
    """The store cannot be used for the moment: its DuckLake catalog cannot be reached, or its database
    is being reopened after an internal error. Nothing was changed; the same request may be retried."""
    retry_after = 5  # seconds a client should wait (the API's Retry-After)


class DiskFull(StoreError):
    """The disk holding the store is full: the write was rolled back, and writes succeed again once
    space is freed."""
    retry_after = 60


class AlertNotFound(MMSError):
    """No alert has that id."""


class LeaseLost(MMSError):
    """A process's lease on work (a policy run, shadow scoring) was taken over by another after it lapsed."""
