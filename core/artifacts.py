"""Model files: where a version's file goes, how it is written, checked and loaded, and strays.

Model files live under `<store folder>/artifacts/<model_id>/`, named by ids only, and are loaded
only after their sha256 matches the registry's. A file is written as `<name>.partial` beside its
final name and renamed when complete, so a killed writer leaves a `.partial` that `strays` lists.
Functions that take a `version` need only its `version`, `artifact` and `sha256` fields.
"""
from __future__ import annotations

import hashlib
import threading
import time
import uuid
from pathlib import Path

import joblib

from . import store as db
from .errors import ArtifactError
from .store import Store

PARTIAL = ".partial"


def new_path(store: Store, model_id: int) -> tuple[Path, str]:
    """A fresh file path for a model file (absolute, and relative to the store's folder)."""
    rel = f"artifacts/{int(model_id)}/{uuid.uuid4().hex}.joblib"
    return store.path.parent / rel, rel


def save(store: Store, model_id: int, obj) -> tuple[str, str]:
    """Write a model file; returns (relative path, sha256). Written fully before it is named."""
    path, rel = new_path(store, model_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(PARTIAL)
    try:
        joblib.dump(obj, tmp)
        digest = file_sha256(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rel, digest


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file(store: Store, version) -> Path:
    path = (store.path.parent / version.artifact).resolve()
    if store.artifacts_dir.resolve() not in path.parents:
        raise ArtifactError(f"version {version.version}'s model file path points outside the store's folder")
    return path


def verify(store: Store, version) -> Path:
    """The model file's path once its sha256 matches the registry's; ArtifactError otherwise."""
    path = _file(store, version)
    if not path.exists():
        raise ArtifactError(f"version {version.version}'s model file is missing ({version.artifact})")
    if file_sha256(path) != version.sha256:
        raise ArtifactError(f"version {version.version}'s model file has been altered: its sha256 differs "
                            f"from the registry's, so it will not be loaded")
    return path


_loaded: dict[tuple[str, str], dict] = {}
_loaded_lock = threading.Lock()


def load(store: Store, version) -> dict:
    """The trained model of a version, cached per file and hash; verified before the first load."""
    key = (str(store.path.parent / version.artifact), version.sha256)
    with _loaded_lock:
        obj = _loaded.get(key)
    if obj is None:
        path = verify(store, version)
        obj = joblib.load(path)
        with _loaded_lock:
            _loaded[key] = obj
    return obj


def remove(store: Store, rel: str) -> None:
    """Delete a model file no version will reference (its registration failed)."""
    (store.path.parent / rel).unlink(missing_ok=True)


def strays(store: Store) -> list[Path]:
    """Model files (and `.partial` files) that no version references: left by a killed or failed run."""
    if not store.artifacts_dir.exists():
        return []
    with store.connect() as con:
        known = {str((store.path.parent / p).resolve()) for p in db.artifact_paths(con)}
    return sorted(p for p in store.artifacts_dir.glob("*/*") if p.is_file() and str(p.resolve()) not in known)


def remove_strays(store: Store, older_than_seconds: float = 3600) -> list[Path]:
    """Delete model files no version references, once they are old enough that no training run
    in another process can still be about to register them. Returns what was removed."""
    cutoff = time.time() - older_than_seconds
    removed = [p for p in strays(store) if p.stat().st_mtime < cutoff]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed
