"""Who may do what. Users and their roles live in the store (passwords bcrypt-hashed); every
write in core calls `require` inside its transaction, so hiding a button is never the only guard.

With no users configured the store is in open mode: everyone may do everything, and the
dashboard and the API say so on screen.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
import math
import random
import secrets
import threading
import time
from dataclasses import dataclass

import bcrypt

from . import settings
from . import store as db
from .errors import Conflict, InvalidInput, PermissionDenied, SignInRefused
from .store import Store

ANALYST, LABELLER, OWNER = "analyst", "labeller", "owner"
ROLES = (ANALYST, LABELLER, OWNER)
OPEN = "open"

# action -> roles allowed; the verb phrase is what the refusal says
PERMISSIONS = {
    "predict": ((ANALYST, LABELLER, OWNER), "make predictions"),
    "sample": ((LABELLER, OWNER), "draw hard examples to label"),
    "label": ((LABELLER, OWNER), "label predictions"),
    "import": ((OWNER,), "import data"),
    "train": ((OWNER,), "train a new version"),
    "activate": ((OWNER,), "activate a version"),
    "review": ((OWNER,), "decide labels under review or set how many items two labellers label"),
    "manage": ((OWNER,), "create or change models"),
    "admin": ((OWNER,), "manage users and tokens"),
    "acknowledge": ((ANALYST, OWNER), "acknowledge alerts"),
}


def may(role: str, action: str) -> bool:
    """Whether `role` may do `action` (a key of PERMISSIONS); the open role may do everything.

    What pages ask before drawing a button; core still calls `require` on every write."""
    allowed, _ = PERMISSIONS[action]
    return role == OPEN or role in allowed


@dataclass(frozen=True)
class Identity:
    name: str
    role: str  # a role, or "open" when no users are configured


def identify(con, user: str) -> Identity:
    if db.user_count(con) == 0:
        return Identity(user, OPEN)
    row = db.user_row(con, user)
    if row is None:
        raise PermissionDenied(f"{user!r} is not a known user of this store; ask an owner to add you")
    return Identity(row["name"], row["role"])


def require(con, user: str, action: str) -> Identity:
    """The user's identity if their role allows `action`; PermissionDenied otherwise."""
    who = identify(con, user)
    allowed, verb = PERMISSIONS[action]
    if not may(who.role, action):
        article = "an" if who.role[0] in "aeiou" else "a"
        raise PermissionDenied(f"{who.name} is {article} {who.role} and may not {verb}; that needs the role "
                               f"{' or '.join(allowed)}")
    return who


def check(store: Store, user: str, action: str) -> Identity:
    """`require` on its own connection: for refusing early, before expensive work."""
    with store.connect() as con:
        return require(con, user, action)


OPEN_SECONDS = 1.0  # longest the API reuses whether the store is open: what a user added by another process waits

_open_answers: dict[str, tuple[float, int, bool]] = {}  # store key -> (read at, users written then, open)
_users_written = 0  # user writes in this process: an answer read before one is never reused
_users_lock = threading.Lock()


def is_open(store: Store, max_age: float = 0.0) -> bool:
    """Whether the store has no users. With `max_age`, an answer this process read less than that
    many seconds ago is reused unless this process wrote a user since (`recent_is_open`): the API
    asks on every request, and a query each would be a large share of the server's CPU."""
    known = recent_is_open(store, max_age)
    if known is not None:
        return known
    began, written = time.monotonic(), _users_written
    with store.connect() as con:
        answer = db.user_count(con) == 0
    _open_answers[store.key] = (began, written, answer)
    return answer


def recent_is_open(store: Store, max_age: float) -> bool | None:
    """`is_open`'s answer if read in this process within `max_age` seconds and no user written here
    since; None when it has to be read. Reads nothing, so a coroutine may ask it on the event loop.
    Another process's user (DuckLake, or a restore) is seen within `max_age`; with a server
    running, the command line and the dashboard write users in the server's process."""
    hit = _open_answers.get(store.key)
    if hit is None or hit[1] != _users_written or time.monotonic() - hit[0] >= max_age:
        return None
    return hit[2]


def _wrote_users() -> None:
    """Called after a user write commits: answers read before it are stale."""
    global _users_written
    with _users_lock:
        _users_written += 1


OPEN_STORE_IS_LOCAL = ("This store has no users, so it answers only on this machine (127.0.0.1): anyone else "
                       "could train, activate and label. Add an owner with `python -m core add-user NAME --role "
                       "owner`, and everyone else signs in (the API then needs a token).")


def is_local(address: str | None) -> bool:
    """Whether a client address is this machine: a loopback IP, or none at all (a Unix socket)."""
    if not address:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 from a dual-stack socket
    return (mapped or ip).is_loopback




def add_user(store: Store, name: str, role: str, password: str, by: str) -> None:
    """Add or update a user. The first user must be an owner (someone has to be able to manage)."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("a user needs a name")
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if len(password or "") < 8:
        raise InvalidInput("a password needs at least 8 characters")
    hashed = bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt()).decode("ascii")
    with store.transaction() as con:
        if db.user_count(con) == 0:
            if role != OWNER:
                raise InvalidInput("the first user must be an owner")
        else:
            require(con, by, "admin")
        db.upsert_user(con, name, role, hashed, by)
        db.add_event(con, by, "add_user", None, {"name": name, "role": role})
    _wrote_users()


def remove_user(store: Store, name: str, by: str) -> None:
    with store.transaction() as con:
        require(con, by, "admin")
        if not db.delete_user(con, name):
            raise InvalidInput(f"no user named {name!r}")
        db.add_event(con, by, "remove_user", None, {"name": name})
    _wrote_users()


def users(store: Store):
    with store.connect() as con:
        return db.all_users(con)


WRONG_PASSWORD = "Unknown user or wrong password."
FAILURE_MEMORY = dt.timedelta(days=1)  # failures older than this no longer count towards a lockout


@functools.cache
def _decoy_hash() -> bytes:
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt())


def _password_matches(row: dict | None, password: str) -> bool:
    # an unknown name costs one bcrypt check too, so the time taken does not tell which names exist
    hashed = row["password_hash"].encode("ascii") if row else _decoy_hash()
    return bcrypt.checkpw((password or "").encode("utf-8"), hashed) and row is not None


def _wait(failures: list) -> int:
    """Seconds a subject with these failures (newest first) is still refused; 0 below the limit."""
    limit = int(settings.get("signin_max_failures"))
    if len(failures) < limit:
        return 0
    delay = min(int(settings.get("signin_lockout")) * 2 ** (len(failures) - limit),
                int(settings.get("signin_lockout_max")))
    left = (failures[0] + dt.timedelta(seconds=delay) - db.now()).total_seconds()
    return max(math.ceil(left), 0)


def _locked_sentence(name: str, wait: int) -> str:
    until = (dt.datetime.now() + dt.timedelta(seconds=wait)).strftime("%H:%M:%S")
    return (f"Too many failed sign-ins for {name!r}: signing in as {name!r} is refused until {until} "
            f"(in {wait} s), even with the right password. Try again then.")


def sign_in(store: Store, name: str, password: str, via: str) -> Identity:
    """The identity for the right password; SignInRefused for a wrong one, and for any password while
    the name is locked out after repeated failures (a delay that doubles with each further failure).

    Every attempt is first recorded as a failure and committed, and only then counted (`_reserve`):
    parallel attempts for one name, from any process sharing the store, each see the others, so no
    more than the limit ever reach bcrypt. Each failure is audited as `sign_in_failed` with `via`
    (dashboard, cli) and the reason, never the password."""
    name = (name or "").strip()[:200]
    failures, wait = _reserve(store, name)
    if wait:
        _write(store, lambda con: db.add_event(con, name, "sign_in_failed", None,
                                               {"via": via, "reason": "locked out", "failures": failures}))
        raise SignInRefused(_locked_sentence(name, wait), retry_after=wait)
    with store.connect() as con:
        row = db.user_row(con, name)
    ok = _password_matches(row, password)  # outside any transaction: bcrypt takes a while on purpose
    at = _attempt_time()  # later than the reserved failure: a success starts the count again

    def record(con) -> None:
        if ok:
            db.add_attempt(con, name, True, at)
            db.add_event(con, name, "sign_in", None, {"via": via})
        else:
            reason = "unknown user" if row is None else "wrong password"
            db.add_event(con, name, "sign_in_failed", None, {"via": via, "reason": reason, "failures": failures + 1})
    _write(store, record)
    _forget_old_attempts(store)
    if not ok:
        raise SignInRefused(WRONG_PASSWORD)
    return Identity(row["name"], row["role"])


_last_attempt = None
_attempt_clock = threading.Lock()


def _attempt_time():
    """Now, but later than any attempt this process recorded before: an attempt is known by its time."""
    global _last_attempt
    with _attempt_clock:
        at = db.now()
        if _last_attempt is not None and at <= _last_attempt:
            at = _last_attempt + dt.timedelta(microseconds=1)
        _last_attempt = at
        return at


def _reserve(store: Store, subject: str) -> tuple[int, int]:
    """Record an attempt for `subject` as a failure, commit it, then count: (failures before this one,
    seconds still refused). A refused attempt's record is taken back, so waiting out a lockout is
    enough; an allowed one stays a failure unless its caller records a success after it.

    Counting after the commit is what serialises: of two attempts, the one committed second sees
    the first, so at most `signin_max_failures` attempts are ever allowed between lockouts."""
    with store.connect() as con:  # already locked: refused without a write (a flood costs reads only)
        failures = db.failures_since_success(con, subject, db.now() - FAILURE_MEMORY)
    if _wait(failures):
        return len(failures), _wait(failures)
    at = _attempt_time()
    _write(store, lambda con: db.add_attempt(con, subject, False, at))
    with store.connect() as con:
        failures = db.failures_since_success(con, subject, db.now() - FAILURE_MEMORY)
    others = [f for f in failures if f != at]
    wait = _wait(others)
    if wait:
        _write(store, lambda con: db.delete_attempt(con, subject, at))
    return len(others), wait


def _write(store: Store, change) -> None:
    """`change(con)` in a transaction, retried while it conflicts: on DuckLake an insert into a table
    conflicts with another process's delete from it (parallel attempts for one name do both)."""
    for attempt in range(30):
        try:
            with store.transaction() as con:
                change(con)
            return
        except Conflict:
            if attempt == 29:
                raise
            time.sleep(random.uniform(0.005, 0.03) * min(attempt + 1, 10))


def _forget_old_attempts(store: Store) -> None:
    before = db.now() - FAILURE_MEMORY
    with store.connect() as con:
        if not db.has_attempts_before(con, before):
            return  # no delete, so no conflict with other processes' attempts
    try:
        with store.transaction() as con:
            db.forget_attempts(con, before)
    except Conflict:
        pass  # another process is forgetting them right now


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(store: Store, name: str, by: str, label: str = "") -> str:
    """A new API bearer token acting as user `name`; shown once, stored only as its sha256."""
    token = "mms_" + secrets.token_urlsafe(32)
    with store.transaction() as con:
        require(con, by, "admin")
        if db.user_row(con, name) is None:
            raise InvalidInput(f"no user named {name!r}; add the user first")
        db.insert_token(con, _token_hash(token), name, label, by)
        db.add_event(con, by, "create_token", None, {"name": name, "label": label})
    return token


def token_identity(store: Store, token: str) -> Identity | None:
    with store.connect() as con:
        row = db.token_user(con, _token_hash(token))
    return Identity(row["name"], row["role"]) if row else None


_refusals_audited: dict[str, float] = {}  # subject -> when this process last audited a refusal of it
REFUSAL_AUDIT_SECONDS = 60.0


def token_caller(store: Store, token: str, address: str) -> Identity | None:
    """The identity a bearer token acts for, or None for an unknown one.

    A valid token is never refused: others' failures from the same address (a proxy, a NAT) do not
    lock it out, and looking it up costs one query. Unknown tokens are what is limited, per client
    `address` like failed sign-ins: past signin_max_failures the address's unknown tokens are refused
    (SignInRefused, with retry_after) for a growing delay. Every unknown token checked is audited as
    `api_token_failed`; refusals during a lockout are not checked, and audited once a minute per
    address by each process (`refused` counts them), so a flood can neither bury the log nor go unnoticed."""
    who = token_identity(store, token)
    if who is not None:
        return who
    subject = f"token@{address}"[:200]
    failures, wait = _reserve(store, subject)
    if wait:
        _audit_refusal(store, subject, address, failures)
        raise SignInRefused(f"too many unknown API tokens from {address}: unknown tokens from there are refused "
                            f"for {wait} s more (valid tokens still work); check the token (`python -m core "
                            f"create-token` makes a new one)", retry_after=wait)
    _write(store, lambda con: db.add_event(con, subject, "api_token_failed", None,
                                           {"address": address, "failures": failures + 1}))
    return None


_refusal_counts: dict[str, int] = {}
_refusal_lock = threading.Lock()


def _audit_refusal(store: Store, subject: str, address: str, failures: int) -> None:
    with _refusal_lock:
        _refusal_counts[subject] = _refusal_counts.get(subject, 0) + 1
        last = _refusals_audited.get(subject)
        if last is not None and time.monotonic() - last < REFUSAL_AUDIT_SECONDS:
            return
        _refusals_audited[subject] = time.monotonic()
        refused = _refusal_counts.pop(subject)
    _write(store, lambda con: db.add_event(con, subject, "api_token_failed", None, {
        "address": address, "failures": failures, "reason": "locked out", "refused": refused}))
