"""Model files: where a version's file goes, how it is written, checked and loaded, and strays.

Model files live under `artifacts/<model_id>/` in the store's folder: beside the embedded file, or
in a DuckLake's data path, a folder or `s3://bucket/prefix`, so every process of a deployment sees
every version. They are named by ids only and loaded only after their sha256 matches the registry's.
In a folder a file is written as `<name>.partial` and renamed when complete, so a killed writer
leaves a `.partial` that `strays` lists; on S3 an object appears whole or not at all.
Functions that take a `version` need only its `version`, `artifact` and `sha256` fields.
"""
from __future__ import annotations

import hashlib
import io
import threading
import time
import uuid
from pathlib import Path, PurePosixPath

import joblib

from . import objectstore
from . import store as db
from .errors import ArtifactError
from .store import Store

PARTIAL = ".partial"


def _bucket(store: Store) -> str | None:
    """The store's `s3://` data path when its model files live on object storage, else None."""
    return store.data_path if store.is_lake and objectstore.is_s3(store.data_path) else None


def new_path(store: Store, model_id: int) -> tuple[Path, str]:
    """A fresh file path for a model file (absolute, and relative to the store's folder)."""
    rel = f"artifacts/{int(model_id)}/{uuid.uuid4().hex}.joblib"
    return store.path.parent / rel, rel


def save(store: Store, model_id: int, obj) -> tuple[str, str]:
    """Write a model file; returns (relative path, sha256). Written fully before it is named."""
    path, rel = new_path(store, model_id)
    if _bucket(store):
        buffer = io.BytesIO()
        joblib.dump(obj, buffer)
        data = buffer.getvalue()
        objectstore.put(store.data_path, rel, data)
        return rel, hashlib.sha256(data).hexdigest()
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


def _file(store: Store, version) -> Path | PurePosixPath:
    """Where a version's model file is: a path in the store's folder, or a key relative to an s3:// data path."""
    return _where(store, version.artifact, f"version {version.version}'s model file")


def _where(store: Store, rel: str, what: str) -> Path | PurePosixPath:
    """A model file's place from its registered relative path, refused when the path leads out of
    the store's model files (a crafted registry row must not read or write elsewhere)."""
    key = PurePosixPath(rel)
    if _bucket(store):
        if key.is_absolute() or ".." in key.parts or key.parts[:1] != ("artifacts",):
            raise ArtifactError(f"{what} path points outside the store's data path")
        return key
    path = (store.path.parent / rel).resolve()
    if store.artifacts_dir.resolve() not in path.parents:
        raise ArtifactError(f"{what} path points outside the store's folder")
    return path


def verify(store: Store, version) -> Path | str:
    """The model file's path (its s3:// URL on object storage) once its sha256 matches the registry's;
    ArtifactError otherwise."""
    if _bucket(store):
        _verified_bytes(store, version)
        return f"{store.data_path.rstrip('/')}/{version.artifact}"
    path = _file(store, version)
    if not path.exists():
        raise _missing(version)
    if file_sha256(path) != version.sha256:
        raise _altered(version)
    return path


def verified_file(store: Store, version) -> bytes:
    """A version's model file, read once and offered (a download) only when its sha256 matches the
    registry's; ArtifactError naming the version otherwise."""
    if _bucket(store):
        return _verified_bytes(store, version)
    path = _file(store, version)
    if not path.is_file():
        raise _missing(version)
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != version.sha256:
        raise _altered(version)
    return data


def download_name(model_name: str, version) -> str:
    """The name a downloaded model file is saved under: model, version and the start of its sha256."""
    return f"{model_name}-v{version.version}-{version.sha256[:12]}.joblib"


def _verified_bytes(store: Store, version) -> bytes:
    """A model file's bytes from object storage, read once and checked against the registry's sha256."""
    data = objectstore.get(store.data_path, str(_file(store, version)))
    if data is None:
        raise _missing(version)
    if hashlib.sha256(data).hexdigest() != version.sha256:
        raise _altered(version)
    return data


def _missing(version) -> ArtifactError:
    return ArtifactError(f"version {version.version}'s model file is missing ({version.artifact})")


def _altered(version) -> ArtifactError:
    return ArtifactError(f"version {version.version}'s model file has been altered: its sha256 differs "
                         f"from the registry's, so it will not be loaded")


_loaded: dict[tuple[str, str], dict] = {}
_loaded_lock = threading.Lock()


def load(store: Store, version) -> dict:
    """The trained model of a version, cached per file and hash; verified before the first load."""
    key = (str(store.path.parent / version.artifact), version.sha256)
    with _loaded_lock:
        obj = _loaded.get(key)
    if obj is None:
        obj = _unpickled(version, io.BytesIO(_verified_bytes(store, version)) if _bucket(store) else verify(store, version))
        with _loaded_lock:
            _loaded[key] = obj
    return obj


def _unpickled(version, source) -> dict:
    """A verified model file's contents; a sentence for one that does not unpickle."""
    try:
        return joblib.load(source)
    except Exception as e:  # a file of the right hash that is not a model file: any unpickling error
        raise malformed(version, f"{type(e).__name__}: {e}") from None


def malformed(version, why: str) -> ArtifactError:
    return ArtifactError(f"version {version.version}'s model file cannot be used ({why}); activate another "
                         f"version, or retrain")


def first_bad_file(store: Store, files) -> str | None:
    """A sentence about the first of `files` ((model name, version, rel, sha256) tuples) that is missing
    from the store or differs from its sha256; None when all are sound."""
    return first_bad(files, lambda rel: _read(store, rel))


def first_bad(files, read) -> str | None:
    """The same check over any place model files are, `read(rel)` giving a file's bytes or None
    (a store on either backend, or a backup's folder)."""
    for name, version, rel, sha256 in files:
        data = read(rel)
        if data is None:
            return f"model {name!r} version {version}'s model file is missing ({rel})"
        if hashlib.sha256(data).hexdigest() != sha256:
            return (f"model {name!r} version {version}'s model file has been altered: its sha256 differs "
                    f"from the one recorded when it was trained ({rel})")
    return None


def copy_file(source: Store, target: Store, rel: str) -> bool:
    """Copy one model file between stores (a folder or S3 on either side) unless the target has it
    already; True when this call made it."""
    if _read(target, rel) is not None:
        return False
    data = _read(source, rel)
    if data is None:
        raise ArtifactError(f"the model file {rel} is missing from {source}")
    path = _where(target, rel, f"the model file {rel}")
    if _bucket(target):
        objectstore.put(target.data_path, str(path), data)
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(PARTIAL)
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


def _read(store: Store, rel: str) -> bytes | None:
    path = _where(store, rel, f"the model file {rel}")
    if _bucket(store):
        return objectstore.get(store.data_path, str(path))
    return path.read_bytes() if path.is_file() else None


def remove(store: Store, rel: str) -> None:
    """Delete a model file no version will reference (its registration failed)."""
    if _bucket(store):
        objectstore.delete(store.data_path, rel)
    else:
        (store.path.parent / rel).unlink(missing_ok=True)


def strays(store: Store) -> list[Path | PurePosixPath]:
    """Model files (and `.partial` files) that no version references: left by a killed or failed run.
    On object storage each is named by its path relative to the data path."""
    return [p for p, _ in _strays_with_times(store)]


def _strays_with_times(store: Store) -> list[tuple[Path | PurePosixPath, float]]:
    if _bucket(store):
        found = objectstore.listing(store.data_path, "artifacts")
        with store.connect() as con:
            known = set(db.artifact_paths(con))
        return sorted((PurePosixPath(rel), at) for rel, at in found if rel not in known)
    if not store.artifacts_dir.exists():
        return []
    with store.connect() as con:
        known = {str((store.path.parent / p).resolve()) for p in db.artifact_paths(con)}
    return sorted((p, p.stat().st_mtime) for p in store.artifacts_dir.glob("*/*")
                  if p.is_file() and str(p.resolve()) not in known)


def remove_strays(store: Store, older_than_seconds: float = 3600) -> list[Path | PurePosixPath]:
    """Delete model files no version references, once they are old enough that no training run
    in another process can still be about to register them. Returns what was removed."""
    cutoff = time.time() - older_than_seconds
    removed = [p for p, at in _strays_with_times(store) if at < cutoff]
    for p in removed:
        if isinstance(p, Path):
            p.unlink(missing_ok=True)
        else:
            objectstore.delete(store.data_path, str(p))
    return removed
