"""A store's health: every version's model file matches its hash, every model's active version
exists, and model files that nothing references (left by killed training runs) are removed; the
statistics rollups' per-batch rows are merged.

`check_store` is the whole check (`python -m core check`); `at_start` is the cheap part the server
runs when it starts: it reads no model file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import artifacts, registry, stats
from .errors import ArtifactError
from . import store as db
from .store import Store

# A training run writes its file and registers it seconds later; an unreferenced file this old is
# no run's in flight, so removing it robs nobody.
STRAY_SECONDS = 3600


@dataclass(frozen=True)
class CheckReport:
    """What a check found: problems that need the user, and notes on what it did or found sound."""
    problems: list[str]
    notes: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def sentences(self) -> list[str]:
        return self.problems + self.notes


def check_store(store: Store, stray_seconds: float = STRAY_SECONDS) -> CheckReport:
    """Verify every model file's sha256 and every active version, and remove old stray files."""
    problems, notes = active_version_problems(store), []
    checked = 0
    for model in registry.list_models(store):
        for version in registry.list_versions(store, model.name):
            checked += 1
            try:
                artifacts.verify(store, version)
            except ArtifactError as e:
                problems.append(f"model {model.name!r}: {e}")
    notes.append(f"{checked} model file(s) checked against their sha256")
    notes.extend(_strays(store, stray_seconds))
    problems.extend(_orphans(store, stray_seconds))
    merged = stats.compact_rollups(store)
    if merged:
        notes.append(f"merged {merged} statistics rollup row(s) that written batches had appended")
    return CheckReport(problems, notes)


def at_start(store: Store) -> list[str]:
    """The cheap part, for the server's start: remove old stray files, return active-version problems."""
    if not store.exists():
        return []
    artifacts.remove_strays(store, STRAY_SECONDS)
    return active_version_problems(store)


def active_version_problems(store: Store) -> list[str]:
    """Sentences for models whose active version does not exist, or that have versions but none active."""
    problems = []
    for model in registry.list_models(store):
        numbers = [v.version for v in registry.list_versions(store, model.name)]
        if model.active_version is not None and model.active_version not in numbers:
            problems.append(f"model {model.name!r}: its active version {model.active_version} does not exist; "
                            f"activate one of its versions ({_listed(numbers)})")
        elif model.active_version is None and numbers:
            problems.append(f"model {model.name!r} has versions ({_listed(numbers)}) but none is active; "
                            f"activate one")
    return problems


def _listed(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers)) if numbers else "it has none: train one"


def _strays(store: Store, stray_seconds: float) -> list[str]:
    removed = artifacts.remove_strays(store, stray_seconds)
    kept = artifacts.strays(store)
    notes = [f"removed {len(removed)} model file(s) no version references: {_names(removed)}"] if removed else []
    if kept:
        notes.append(f"kept {len(kept)} unreferenced model file(s) younger than {stray_seconds:.0f} s, which a "
                     f"training run may still register: {_names(kept)}")
    return notes


def _orphans(store: Store, older_than_seconds: float) -> list[str]:
    """A sentence for the DuckLake's Parquet files that no snapshot references (a killed writer's)."""
    if not store.is_lake:
        return []
    with store.connect() as con:
        found = db.orphan_files(con, older_than_seconds)
    if not found:
        return []
    size = sum(Path(p).stat().st_size for p in found if Path(p).exists())  # an S3 path has no local size
    weight = f", {size / 1e6:.1f} MB" if size else ""
    return [f"{len(found)} Parquet file(s){weight} under {store.data_path} are referenced by no snapshot (left by "
            f"a writer killed before its commit): `python -m core compact --orphans` removes them"]


def _names(paths: list[Path]) -> str:
    return ", ".join(f"{p.parent.name}/{p.name}" for p in paths)
