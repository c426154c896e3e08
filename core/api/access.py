"""Who is calling and on which store: the dependencies every route shares.

`get_store` is the store the app serves. `local_while_open` (on every route) refuses a remote caller
while the store has no users. `current_user` is the caller a bearer token acts for, or "api" while the
store is open; routes pass `caller.user` to core, whose writers check the role (`auth.require`).
`allowed(action)` refuses early, before a route does expensive work.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .. import auth, demo, settings
from ..store import Store

CALLER = "mms_caller"  # request.state's name for the caller refusals.BodyGuard found, before the body

async def get_store(request: Request) -> Store:
    """The store this app serves; a missing one is not created here (the server builds the demo at start).

    `async` like local_while_open: cheap checks run on the event loop, not as a hop through the
    threadpool each (a request's dependencies and endpoint used to take four)."""
    store = request.app.state.store or Store(settings.get("store"))
    if not store.exists():
        if demo.building():
            fraction, message = demo.build_status()
            raise HTTPException(503, f"the store is not ready yet: the server is building the demo store "
                                     f"({fraction:.0%}, {message}); try again in a few seconds")
        raise HTTPException(503, "there is no store yet: restart the server to build the demo store, or run "
                                 "`python -m core demo`")
    return store


@dataclass(frozen=True)
class Caller:
    user: str  # recorded as created_by on the predictions and labels this caller makes
    role: str


OPEN = Caller(user="api", role=auth.OPEN)
CHALLENGE = {"WWW-Authenticate": "Bearer"}
bearer = HTTPBearer(auto_error=False, description="A token from `python -m core create-token USER`; "
                                                  "not needed while the store has no users (open mode).")


def auth_mode(store: Store) -> str:
    """What /health says: "open" while the store has no users, else "bearer" (a token is needed)."""
    return auth.OPEN if auth.is_open(store) else "bearer"


UNTRUSTED_FORWARD = "an address behind a proxy not in MMS_TRUSTED_PROXIES"


def address(request: Request) -> str | None:
    """The client's address, from X-Forwarded-For only when the connection comes from a proxy listed
    in MMS_TRUSTED_PROXIES (default none): anyone else could rotate or forge it.

    uvicorn, under Streamlit, replaces a loopback peer by the header's address before this code
    sees the request; such a request (its "peer" is one of the header's addresses) is one client
    whose real address is unknown: all of them share one name, which is never this machine."""
    peer = request.client.host if request.client else None
    forwarded = _forwarded_hosts(request.headers.getlist("x-forwarded-for"))
    if not forwarded:
        return peer
    trusted = _trusted_proxies()
    if peer in forwarded and not _is_trusted(peer, trusted):
        return _client_behind(forwarded, trusted) if _is_trusted("127.0.0.1", trusted) else UNTRUSTED_FORWARD
    return _client_behind(forwarded, trusted) if _is_trusted(peer, trusted) else peer


def _forwarded_hosts(values: list[str]) -> list[str]:
    hosts = []
    for entry in ",".join(values).split(","):
        entry = entry.strip()
        if entry.startswith("["):  # [v6]:port
            entry = entry[1:].split("]", 1)[0]
        elif entry.count(":") == 1:  # v4:port
            entry = entry.split(":", 1)[0]
        if entry:
            hosts.append(entry)
    return hosts


def _trusted_proxies() -> list:
    nets = []
    for item in str(settings.get("trusted_proxies")).split(","):
        try:
            nets.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            pass  # blank, or not an address: trusts nothing
    return nets


def _is_trusted(host: str | None, trusted: list) -> bool:
    try:
        ip = ipaddress.ip_address((host or "").split("%", 1)[0])
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in trusted)


def _client_behind(forwarded: list[str], trusted: list) -> str:
    """The rightmost forwarded address that is not one of the trusted proxies: the one a proxy saw."""
    return next((h for h in reversed(forwarded) if not _is_trusted(h, trusted)), forwarded[0])


async def _is_open(store: Store) -> bool:
    """Whether the store has no users, as read within auth.OPEN_SECONDS: on the event loop when this
    process knows it, else one hop through the threadpool to read it."""
    known = auth.recent_is_open(store, auth.OPEN_SECONDS)
    return known if known is not None else await run_in_threadpool(auth.is_open, store, auth.OPEN_SECONDS)


async def local_while_open(request: Request, store: Store = Depends(get_store)) -> None:
    """An open store (no users) answers this machine only: from anywhere else, anyone could label
    and predict; every endpoint depends on this. Only a remote caller asks the store."""
    if not auth.is_local(address(request)) and await _is_open(store):
        raise HTTPException(403, auth.OPEN_STORE_IS_LOCAL)


async def current_user(request: Request, store: Store = Depends(get_store),
                       credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Caller:
    """The user a bearer token acts for; anyone, as "api", while the store is open. Core checks
    the role on every write: predict for any role, feedback for labeller and owner, so a user added
    by another process within auth.OPEN_SECONDS still cannot write as "api". `async`: without a
    token it costs no threadpool hop while the answer is known; a token is looked up in one."""
    known = getattr(request.state, CALLER, None)  # refusals.BodyGuard's, for a request with a body
    if known is not None:
        return known
    if credentials is not None:
        return await run_in_threadpool(token_caller, request, store, credentials)
    if await _is_open(store):
        return OPEN
    raise HTTPException(401, "this store has users, so the API needs a bearer token (Authorization: Bearer "
                             "...); an owner makes one with `python -m core create-token USER`",
                        headers=CHALLENGE)


def token_caller(request: Request, store: Store, credentials: HTTPAuthorizationCredentials) -> Caller:
    """The user a bearer token acts for (a wrong one is counted and audited per client address)."""
    who = auth.token_caller(store, credentials.credentials, address(request) or "local")
    if who is None:
        raise HTTPException(401, "unknown API token", headers=CHALLENGE)
    return Caller(who.name, who.role)


def allowed(action: str):
    """A dependency giving the caller once their role may do `action` (a key of auth.PERMISSIONS), else
    403 with core's sentence: for a route that should refuse before expensive work. Core's writers
    still check the role in their own transaction."""
    async def caller_who_may(store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> Caller:
        if caller.role != auth.OPEN:
            await run_in_threadpool(auth.check, store, caller.user, action)
        return caller
    return caller_who_may
