"""Who may do what. Users and their roles live in the store (passwords bcrypt-hashed); every
write in core calls `require` inside its transaction, so hiding a button is never the only guard.

With no users configured the store is in open mode: everyone may do everything, and the
dashboard and the API say so on screen.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import bcrypt

from . import store as db
from .errors import InvalidInput, PermissionDenied
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
    "manage": ((OWNER,), "create or change models"),
    "admin": ((OWNER,), "manage users and tokens"),
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


def is_open(store: Store) -> bool:
    with store.connect() as con:
        return db.user_count(con) == 0




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


def remove_user(store: Store, name: str, by: str) -> None:
    with store.transaction() as con:
        require(con, by, "admin")
        if not db.delete_user(con, name):
            raise InvalidInput(f"no user named {name!r}")
        db.add_event(con, by, "remove_user", None, {"name": name})


def users(store: Store):
    with store.connect() as con:
        return db.all_users(con)


def verify_password(store: Store, name: str, password: str) -> Identity | None:
    """The identity if the password is right; None otherwise (no hint which part was wrong)."""
    with store.connect() as con:
        row = db.user_row(con, name)
    if row is None or not bcrypt.checkpw((password or "").encode("utf-8"), row["password_hash"].encode("ascii")):
        return None
    return Identity(row["name"], row["role"])


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
