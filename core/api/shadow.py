"""Shadow versions over HTTP: put a version in shadow, take it out, read its evidence beside the
version that answered (core.shadow)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from .. import shadow
from ..store import Store
from .access import Caller, current_user, get_store
from .schemas import Body, Id, ModelName, error_responses

router = APIRouter()


class ShadowRequest(Body):
    version: Id = Field(description="The version to put in shadow: it scores the live "
                                                         "predictions in the background and never answers.")


@router.put("/models/{name}/shadow", responses=error_responses(400, 401, 403, 404, 422, 429, 500, 503))
def put_in_shadow(name: ModelName, body: ShadowRequest, store: Store = Depends(get_store),
                  caller: Caller = Depends(current_user)) -> dict:
    """Put a version in shadow (one per model: it replaces the one there). Refused with a sentence for
    an unknown model or version (404) or the active version itself (422)."""
    now = shadow.start(store, name, body.version, caller.user)
    return {"model": now.model, "version": now.version, "since": now.since.isoformat(), "by": now.by}


@router.delete("/models/{name}/shadow", responses=error_responses(401, 403, 404, 429, 503))
def stop_shadow(name: ModelName, store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> dict:
    """Take the model's version out of shadow; `stopped` is that version, or null when none was."""
    return {"model": name, "stopped": shadow.stop(store, name, caller.user)}


@router.get("/models/{name}/shadow", responses=error_responses(401, 403, 404, 422, 429, 503))
def shadow_evidence(name: ModelName, by: Annotated[str, Query(pattern="^(day|week|month)$")] = "week",
                    store: Store = Depends(get_store), caller: Caller = Depends(current_user)) -> dict:
    """The version in shadow (or none) and its evidence beside the version that answered: the summary over
    the whole run and one row per business line x period (`about` says what each figure is)."""
    return shadow.report(store, name, by)
