"""The API application: its routers, its refusals and the store it serves, mounted under /api."""
from __future__ import annotations

import re

from fastapi import Depends, FastAPI
from starlette.middleware import Middleware
from starlette.routing import Mount

from ..store import Store
from . import labelling, models, policy_alerts, predictions, refusals, shadow
from .fast import FastPredict
from .access import local_while_open

PREFIX = "/api"


def create_app(store: Store | None = None) -> FastAPI:
    """The API on `store` (default: MMS_STORE, read on every request); routes are relative to
    where it is mounted (/api in the dashboard)."""
    api = FastAPI(title="MMS API", version="1", dependencies=[Depends(local_while_open)],
                  description="Predict with the active version of a model, send labels back, read the "
                              "registry. Every prediction is logged like the dashboard's.",
                  docs_url="/docs", redoc_url=None, openapi_url="/openapi.json")
    api.state.store = store
    refusals.install(api)
    api.add_middleware(FastPredict)  # outside the body guard: a plainly valid prediction skips the stack
    api.include_router(models.router)
    api.include_router(predictions.router)
    api.include_router(labelling.router)
    api.include_router(policy_alerts.router)
    api.include_router(shadow.router)
    return api


def mount(store: Store | None = None) -> Mount:
    """The API as one route for `st.App(..., routes=[...])`: everything under /api."""
    mounted = Mount(PREFIX, app=create_app(store))
    # Starlette's pattern is `^/api/(?P<path>.*)$`, whose `.` stops at a newline: a model name with
    # %0A in it would miss the API and get the outer server's plain-text 404 instead of a JSON one
    mounted.path_regex = re.compile(mounted.path_regex.pattern, re.DOTALL)
    return mounted


def front() -> Middleware:
    """For `st.App(..., middleware=[...])`: plainly valid predictions under /api answered in front of the
    server's own layers (Streamlit's middlewares, the mount, FastAPI's routing), on MMS_STORE."""
    return Middleware(FastPredict, prefix=PREFIX)
