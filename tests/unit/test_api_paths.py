"""Paths the API must answer in JSON however odd the model name in them."""
from fastapi.testclient import TestClient
from starlette.applications import Starlette

from core import api


def test_a_model_name_with_a_newline_gets_a_json_answer_under_api(store):
    # schemathesis sent /api/models/%C2%80%0A.../examples: the /api mount's pattern stopped at the
    # newline and the outer server answered a plain-text "Not Found"
    client = TestClient(Starlette(routes=[api.mount(store)]), client=("127.0.0.1", 50000))
    answer = client.post("/api/models/a%0Ab/examples", json=[])
    assert answer.headers["content-type"] == "application/json"
    assert "error" in answer.json()
