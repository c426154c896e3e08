"""The HTTP API: predictions, feedback and model facts as JSON, served beside the dashboard.

`mount()` gives a FastAPI application under /api for `st.App(..., routes=[...])`, so the
dashboard's process stays the store's single writer. Endpoints are plain `def`: core blocks on
DuckDB and sklearn, and FastAPI runs such endpoints in its threadpool. Every refusal is a JSON
body `{"error": sentence}` with a 4xx (5xx when the server is at fault), and nothing is logged
for it. The active version is looked up on every call, so an activation answers the next one.
While the store has no users the API is open, to this machine only (any other client address is
refused with 403); once it has users, every call but /health needs a bearer token (`python -m core
create-token USER`) and acts as that user, with that user's role.

The package: `app` builds the application from one router per topic (`models`, `predictions`,
`labelling`); `schemas` holds the request and answer bodies; `access` the store and caller
dependencies; `refusals` how an error becomes a JSON answer.
"""
from .app import PREFIX, create_app, mount

__all__ = ["PREFIX", "create_app", "mount"]
