"""Every setting, declared once with its default and help; read from the environment.

A setting `name` is read from the environment variable `MMS_<NAME>` (upper case)."""
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    help: str

    @property
    def env(self) -> str:
        return "MMS_" + self.name.upper()


SETTINGS = {
    s.name: s
    for s in [
        Setting("store", "data/mms.duckdb", "Path of the DuckDB store file."),
        Setting("lock_timeout", 5.0, "Seconds to retry when another process holds the store's lock."),
        Setting("low_confidence", 0.6, "Top probability below which a prediction counts as low-confidence."),
        Setting("max_text_chars", 20000, "Longest text accepted for import or prediction, in characters."),
        Setting("max_batch", 10000, "Most texts in one API prediction request."),
        Setting("workers", 0, "Processes that tokenise a large prediction batch (0: one per core)."),
        Setting("user", "cli", "Name recorded on writes made from the command line."),
    ]
}


def get(name: str):
    """The value of setting `name`: the environment's if set, else the default, cast to its type."""
    s = SETTINGS[name]
    raw = os.environ.get(s.env)
    if raw is None or raw == "":
        return s.default
    return type(s.default)(raw)
