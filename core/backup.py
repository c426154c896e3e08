"""Backup and restore of a whole store: its tables as data and its model files, under a signed manifest.

A backup is a folder: `database/<table>.parquet` (one per table: data, never SQL), `artifacts/`
(the model files) and `manifest.json`, which lists every file with its sha256 and is signed
(HMAC-SHA256) with the backup key: MMS_BACKUP_KEY if set, else a key the store keeps (and never
puts in a backup). A restore checks the signature before it reads anything else, refuses links,
names outside the folder and files the manifest does not list, copies each file aside while
hashing it, and reads the tables' rows into a schema built by this code's own migrations. The new
store is built beside the old one and swapped in only when complete; the old store file, if there
was one, is kept as `<store>.before-restore-<time>`. Anything that goes wrong is a sentence, with
nothing left behind.

What this protects against: a backup changed by anyone without the key (an edited table, a model
file swapped for another pickle, SQL or links slipped in) is refused whole. What it does not: the
data is not encrypted (whoever reads the folder reads the texts and the password hashes), whoever
has the key can sign anything, and an older backup, genuinely signed, still restores.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import shutil
import stat
import time
from pathlib import Path, PurePosixPath

import duckdb

from . import artifacts, auth, settings
from . import store as db
from .errors import InvalidInput, MMSError
from .store import Store

MANIFEST = "manifest.json"
FORMAT = "mms-backup/1"
KEY_NAME = "backup_signing_key"
TOP_FOLDERS = ("database", "artifacts")
CHUNK = 1 << 20


def backup(store: Store, dest, user: str) -> Path:
    """Copy the store into a new folder, signed; refused, with nothing left behind, if a model file is
    missing or altered, or the folder is not a new or empty one outside the store's model files."""
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidInput(f"{dest} is not empty; choose a new or empty folder for the backup")
    if not store.exists():
        raise InvalidInput(f"there is no store at {store.path} to back up")
    if _inside(dest, store.artifacts_dir):
        raise InvalidInput(f"{dest} is inside the store's own model files ({store.artifacts_dir}): a backup there "
                           f"would copy itself; choose a folder outside it")
    created = not dest.exists()
    try:
        with store.connect() as con:
            auth.require(con, user, "admin")
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "database").mkdir()
        with store.transaction() as con:  # one snapshot: the tables agree with each other
            files = model_files(con)
            tables = db.export_tables(con, dest / "database")
            migrations = db.applied_migrations(con)
            counters = db.sequence_counters(con)
        key = _signing_key(store)
        _copy_model_files(store.artifacts_dir, dest / "artifacts")
        problem = artifacts.first_bad(files, lambda rel: _bytes_or_none(dest / rel))
        if problem:
            raise InvalidInput(f"nothing was backed up: {problem}")
        body = {"format": FORMAT, "made_at": dt.datetime.now().isoformat(timespec="seconds"),
                "store": str(store.path), "migrations": migrations, "counters": counters, "tables": tables,
                "files": _hashes(dest)}
        (dest / MANIFEST).write_text(json.dumps({"manifest": body, "hmac_sha256": _sign(key, body)}, indent=1))
    except BaseException as e:
        for made in [dest] if created else [dest / "database", dest / "artifacts", dest / MANIFEST]:
            shutil.rmtree(made, ignore_errors=True) if made.is_dir() else made.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise InvalidInput(f"nothing was backed up: {_os_sentence(e)}") from None
        raise
    with store.connect() as con:
        db.add_event(con, user, "backup", None, {"dest": str(dest), "model_files": len(files)})
    return dest


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def _copy_model_files(source: Path, target: Path) -> None:
    """Every plain file under the store's artifacts/ (not a half-written `.partial`); a link is refused."""
    if not source.exists():
        return
    for folder, dirs, names in os.walk(source):
        for name in dirs + names:
            if (Path(folder) / name).is_symlink():
                raise InvalidInput(f"nothing was backed up: {Path(folder) / name} is a link; a backup copies "
                                   f"only plain files")
        for name in names:
            path = Path(folder) / name
            if name.endswith(artifacts.PARTIAL) or not path.is_file():
                continue
            out = target / path.relative_to(source)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out)


def _bytes_or_none(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _hashes(folder: Path) -> dict[str, dict]:
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path != folder / MANIFEST:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
            found[path.relative_to(folder).as_posix()] = {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}
    return found


def model_files(con) -> list[tuple[str, int, str, str]]:
    """(model name, version, file path relative to the store's folder, sha256) of every version."""
    return [(m["name"], v["version"], v["artifact"], v["sha256"])
            for m in db.all_models(con) for v in db.version_rows(con, m["model_id"])]


# --- the key and the signature ------------------------------------------------------------------

def _signing_key(store: Store) -> str:
    """MMS_BACKUP_KEY, or the key this store keeps (made with its first backup)."""
    given = str(settings.get("backup_key"))
    if given:
        return given
    with store.transaction() as con:
        key = db.app_secret(con, KEY_NAME)
        if key is None:
            db.insert_app_secret(con, KEY_NAME, secrets.token_hex(32))
            key = db.app_secret(con, KEY_NAME)
    return key


def _sign(key: str, body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hmac.new(key.encode("utf-8"), canonical.encode("ascii"), hashlib.sha256).hexdigest()


def _restore_key(store: Store, key: str | None) -> tuple[str, bool]:
    """(the key to check a backup with, whether the restored store should keep it as its own)."""
    if key:
        return key, not settings.get("backup_key")
    if settings.get("backup_key"):
        return str(settings.get("backup_key")), False
    if store.exists():
        with store.connect() as con:
            kept = db.app_secret(con, KEY_NAME)
        if kept:
            return kept, True
    raise InvalidInput(f"there is no key to check the backup with: {store.path} keeps none (it made no backup); "
                       f"set MMS_BACKUP_KEY to the key the backup was made with, or pass it with --key")


# --- restore -------------------------------------------------------------------------------------

def restore(store: Store, src, user: str, key: str | None = None) -> Path | None:
    """Replace the store with a backup, once its signed manifest and every file check out; returns
    where the previous store file was kept, or None if there was none."""
    src = Path(src)
    if src.is_symlink() or not src.is_dir():
        raise InvalidInput(f"{src} is not an MMS backup (not a folder)")
    if not (src / MANIFEST).is_file() or (src / MANIFEST).is_symlink():
        if (src / "database" / "schema.sql").exists():
            raise InvalidInput(f"{src} was made by an older MMS, without a signed manifest; it is not restored, "
                               f"because a restore would have to run the SQL it carries")
        raise InvalidInput(f"{src} is not an MMS backup (no {MANIFEST})")
    if store.exists():
        with store.connect() as con:
            auth.require(con, user, "admin")
    secret, keep_key = _restore_key(store, key)
    body = _verified_manifest(src, secret)
    _make_folder(store.path.parent)
    tmp = store.path.with_name(store.path.name + ".restoring")
    staged = store.path.with_name(store.path.name + ".restoring.d")
    _clear(tmp, staged)
    try:
        _stage(src, body["files"], staged)
        _build(tmp, staged, body, secret if keep_key else None)
        _move_model_files(staged / "artifacts", store.artifacts_dir)
    except BaseException as e:
        _clear(tmp, staged)
        if isinstance(e, MMSError):
            raise
        if isinstance(e, OSError):
            raise InvalidInput(f"{src} could not be restored: {_os_sentence(e)}; the store was not changed") from None
        if isinstance(e, duckdb.Error):
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InvalidInput(f"{src} could not be restored: its data does not fit this version of MMS "
                               f"({first}); the store was not changed") from None
        raise
    shutil.rmtree(staged, ignore_errors=True)
    with store.closed():  # a server holding the store reopens it once the new file is in place
        kept = _keep_previous(store) if store.exists() else None
        tmp.replace(store.path)
        db._migrated.discard(str(store.path))  # an older backup may need newer migrations
    with store.transaction() as con:
        db.add_event(con, user, "restore", None, {"src": str(src), "previous": str(kept) if kept else None})
    return kept


def _verified_manifest(src: Path, key: str) -> dict:
    """The manifest's body, once its signature matches `key`; nothing else in the folder is read first."""
    try:
        outer = json.loads((src / MANIFEST).read_text(encoding="utf-8"))
        body, signature = outer["manifest"], outer["hmac_sha256"]
        if not isinstance(body, dict) or not isinstance(signature, str):
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidInput(f"{src / MANIFEST} cannot be read as an MMS backup's manifest") from None
    if not hmac.compare_digest(signature, _sign(key, body)):
        raise InvalidInput(f"{src} is not restored: its manifest's signature does not match the backup key, so "
                           f"the backup was changed after it was made, or made with another key (set "
                           f"MMS_BACKUP_KEY, or pass --key, to the key it was made with)")
    if body.get("format") != FORMAT or not isinstance(body.get("files"), dict):
        raise InvalidInput(f"{src} is a backup in a format this MMS does not know ({body.get('format')!r})")
    db.check_backup_migrations(body.get("migrations") or [])
    return body


def _safe_name(rel: str) -> PurePosixPath:
    """A manifest's file name as a path inside the backup, or a refusal."""
    path = PurePosixPath(rel)
    if (path.is_absolute() or not path.parts or path.parts[0] not in TOP_FOLDERS or ".." in path.parts
            or "\\" in rel or len(path.parts) < 2):
        raise InvalidInput(f"the backup's manifest names {rel!r}, which is not a file inside the backup's "
                           f"database/ or artifacts/ folder; it is not restored")
    return path


def _stage(src: Path, files: dict, staged: Path) -> None:
    """Copy every file the manifest lists into `staged`, hashing what is copied: the copies, not the
    backup's files, are what the restore reads, so nothing can change between the check and the use."""
    listed = {_safe_name(rel).as_posix(): meta for rel, meta in files.items()}
    for folder, dirs, names in os.walk(src):
        for name in dirs + names:
            path = Path(folder) / name
            rel = path.relative_to(src).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise InvalidInput(f"{src} is not restored: {rel} is a link, and a backup holds only plain files")
            if not stat.S_ISDIR(mode) and not stat.S_ISREG(mode):
                raise InvalidInput(f"{src} is not restored: {rel} is not a plain file")
            if stat.S_ISREG(mode) and rel != MANIFEST and rel not in listed:
                raise InvalidInput(f"{src} is not restored: {rel} is not in its signed manifest (added later?)")
    for rel, meta in listed.items():
        _copy_checked(src, rel, meta, staged / rel)


def _copy_checked(src: Path, rel: str, meta: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    try:
        fd = os.open(src / rel, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise InvalidInput(f"{src} is not restored: {rel}, listed in its manifest, is missing") from None
    with os.fdopen(fd, "rb") as f, open(out, "wb") as w:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise InvalidInput(f"{src} is not restored: {rel} is not a plain file")
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            w.write(chunk)
    if not isinstance(meta, dict) or digest.hexdigest() != meta.get("sha256"):
        raise InvalidInput(f"{src} is not restored: {rel} has been altered since the backup was made (its "
                           f"sha256 differs from the signed manifest's)")


def _build(tmp: Path, staged: Path, body: dict, keep_key: str | None) -> None:
    """The new store file: this code's migrations (as many as the backup had), then the tables' rows."""
    migrations = body.get("migrations") or []
    con = duckdb.connect(str(tmp))
    try:
        con.begin()
        tables = set(db.create_schema(con, lake=False, upto=len(migrations)))
        for table, rows in (body.get("tables") or {}).items():
            if table not in tables:
                raise InvalidInput(f"the backup has a table {table!r} that its migrations do not make; it is not "
                                   f"restored")
            path = staged / "database" / f"{table}.parquet"
            if not path.is_file():
                raise InvalidInput(f"the backup's table {table} has no file database/{table}.parquet")
            if db.load_table(con, table, path) != rows:
                raise InvalidInput(f"the backup's table {table} does not hold the {rows} rows its manifest says")
        db.set_counters(con, False, {k: int(v) for k, v in (body.get("counters") or {}).items()})
        if keep_key:
            db.insert_app_secret(con, KEY_NAME, keep_key)
        problem = artifacts.first_bad(model_files(con), lambda rel: _bytes_or_none(staged / rel))
        if problem:
            raise InvalidInput(f"the backup is not restored: {problem}")
        con.commit()
    finally:
        con.close()


def _move_model_files(staged: Path, target: Path) -> None:
    if not staged.exists():
        return
    for path in sorted(staged.rglob("*")):
        if path.is_file():
            out = target / path.relative_to(staged)
            out.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, out)


def _clear(tmp: Path, staged: Path) -> None:
    for path in (tmp, tmp.with_name(tmp.name + ".wal")):
        path.unlink(missing_ok=True)
    shutil.rmtree(staged, ignore_errors=True)


def _os_sentence(e: OSError) -> str:
    return f"{e.filename or 'a file'}: {e.strerror or e}"


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidInput(f"the store's folder {folder} cannot be created ({e.strerror})") from None


def _keep_previous(store: Store) -> Path:
    """Move the current store file (and its write-ahead log) aside, named by the time of the restore."""
    kept = store.path.with_name(f"{store.path.name}.before-restore-{time.strftime('%Y%m%d-%H%M%S')}")
    store.path.replace(kept)
    wal = store.path.with_name(store.path.name + ".wal")
    if wal.exists():
        wal.replace(kept.with_name(kept.name + ".wal"))
    return kept
