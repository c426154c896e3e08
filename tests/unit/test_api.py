"""The HTTP API under /api, as the dashboard's process mounts it, on a temporary seeded store."""
import subprocess
import sys
import time

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from starlette.applications import Starlette

from core import api, auth, feedback, registry, train
from core import store as db
from core.store import Store

import storeprobe as probe

MODEL = "评论情感"
PREDICT = f"/api/models/{MODEL}/predict"
FEEDBACK = f"/api/models/{MODEL}/feedback"


def served(store) -> Starlette:
    """The API mounted the way app.py mounts it into st.App."""
    return Starlette(routes=[api.mount(store)])


@pytest.fixture
def client(seeded_store):
    # from this machine: an open store refuses every other address (tests/unit/test_access.py)
    with TestClient(served(seeded_store), client=("127.0.0.1", 50000)) as c:
        yield c


def role_tokens(store) -> dict[str, str]:
    """Users of every role on `store` (no longer open), and a bearer token for each."""
    auth.add_user(store, "boss", auth.OWNER, "owner-password", by="boss")
    auth.add_user(store, "lab", auth.LABELLER, "labeller-password", by="boss")
    auth.add_user(store, "ana", auth.ANALYST, "analyst-password", by="boss")
    return {name: auth.create_token(store, name, by="boss") for name in ("boss", "lab", "ana")}


@pytest.fixture
def tokens(seeded_store) -> dict[str, str]:
    return role_tokens(seeded_store)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def counts(store) -> dict[str, int]:
    with store.connect() as con:
        return probe.table_counts(con)


def predict(client, *texts, **fields):
    r = client.post(PREDICT, json={"texts": list(texts), **fields})
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def test_health_says_the_api_is_open(client, seeded_store):
    r = client.get("/api/health")
    assert r.status_code == 200
    assert r.json() == {"ok": True, "store": None, "models": 1, "auth": "open"}  # the path needs a token


def test_health_without_a_store_is_503_and_creates_none(tmp_path):
    missing = Store(tmp_path / "none" / "mms.duckdb")
    r = TestClient(served(missing)).get("/api/health")
    assert r.status_code == 503
    assert "python -m core demo" in r.json()["error"]
    assert not missing.exists()


def test_models_lists_each_model_with_active_version_and_metrics(client):
    [m] = client.get("/api/models").json()
    assert m["name"] == MODEL and m["labels"] == ["正面", "负面"]
    assert m["active_version"] == 1 and m["versions"] == 1
    assert 0.5 < m["macro_f1"] <= 1 and 0.5 < m["accuracy"] <= 1


def test_model_detail_has_labels_versions_and_headline_metrics(client):
    r = client.get(f"/api/models/{MODEL}")
    assert r.status_code == 200
    m = r.json()
    assert m["active_version"] == 1 and m["task"] == "classification"
    assert set(m["active_metrics"]) == {"accuracy", "macro_f1", "log_loss", "ece"}
    assert [(v["version"], v["status"]) for v in m["version_list"]] == [(1, "active")]


@pytest.mark.parametrize("method, path, body", [
    ("get", "/api/models/nope", None),
    ("post", "/api/models/nope/predict", {"texts": ["好"]}),
    ("post", "/api/models/nope/feedback", {"prediction_id": 1, "label": "正面"}),
])
def test_unknown_model_is_404_naming_the_known_ones(client, seeded_store, method, path, body):
    before = counts(seeded_store)
    r = client.request(method, path, json=body)
    assert r.status_code == 404
    assert r.json()["error"] == f"unknown model 'nope'; known models: {MODEL}"
    assert counts(seeded_store) == before


def test_predict_answers_each_text_and_logs_it_as_api(client, seeded_store):
    before = counts(seeded_store)
    texts = ["房间很干净，服务也周到", "质量太差，再也不买了", "一般般"]
    answers = predict(client, *texts, business_line="酒店")
    assert len(answers) == 3
    for a in answers:
        assert a["label"] in ("正面", "负面") and a["version"] == 1
        assert set(a["probabilities"]) == {"正面", "负面"}
        assert sum(a["probabilities"].values()) == pytest.approx(1)
        assert a["label"] == max(a["probabilities"], key=a["probabilities"].get)
    assert counts(seeded_store)["predictions"] == before["predictions"] + 3
    ids = [a["prediction_id"] for a in answers]
    with seeded_store.connect() as con:
        logged = con.execute("SELECT text, business_line, label, version, source, created_by FROM predictions "
                             "WHERE list_contains(?, prediction_id) ORDER BY prediction_id", [ids]).fetchall()
    assert logged == [(t, "酒店", a["label"], 1, "api", "api") for t, a in zip(texts, answers)]


def test_predict_without_business_line_logs_the_default_line(client, seeded_store):
    [a] = predict(client, "还不错")
    model_id = registry.get_model(seeded_store, MODEL).model_id
    with seeded_store.connect() as con:
        [row] = db.predictions_by_id(con, model_id, [a["prediction_id"]]).to_dict("records")
    assert row["business_line"] == "default"


def test_an_activation_changes_the_answering_version_on_the_next_call(client, seeded_store):
    train.train_version(seeded_store, MODEL, "tester")
    assert predict(client, "很好")[0]["version"] == 1
    registry.activate_version(seeded_store, MODEL, 2, "tester", "retrained with the labels", force=True)
    assert predict(client, "很好")[0]["version"] == 2
    assert client.get("/api/models").json()[0]["active_version"] == 2
    registry.activate_version(seeded_store, MODEL, 1, "tester", reason="roll back", force=True)
    assert predict(client, "很好")[0]["version"] == 1
    assert predict(client, "很好", version=2)[0]["version"] == 2


@pytest.mark.parametrize("body, status, says", [
    ({"texts": []}, 422, "texts: List should have at least 1 item"),
    ({"texts": ["好", "  "]}, 422, "text 2 is empty"),
    ({"texts": ["好", "长" * 11]}, 422, "text 2 has 11 characters, more than the limit of 10"),
    ({"texts": ["好"] * 4}, 422, "4 texts in one request, more than the limit of 3"),
    ({"texts": "好"}, 422, "texts: Input should be a valid list"),
    ({"texts": [1]}, 422, "texts.0: Input should be a valid string"),
    ({"texts": ["好"], "version": "1"}, 422, "version: Input should be a valid integer"),
    ({"texts": ["好"], "version": 0}, 422, "version: Input should be greater than or equal to 1"),
    ({"texts": ["好"], "version": 9}, 404, "model '评论情感' has no version 9"),
    ({"texts": ["好"], "business_line": 7}, 422, "business_line: Input should be a valid string"),
    ({"text": ["好"]}, 422, "text: Extra inputs are not permitted"),
    ({}, 422, "texts: Field required"),
    (["好"], 400, "the request body must be a JSON object"),
    (b'{"texts": ["', 400, "the request body is not valid JSON"),
    (None, 400, "the request needs a JSON body"),
])
def test_a_bad_predict_request_is_refused_with_a_sentence_and_logs_nothing(
        client, seeded_store, monkeypatch, body, status, says):
    monkeypatch.setenv("MMS_MAX_TEXT_CHARS", "10")
    monkeypatch.setenv("MMS_MAX_BATCH", "3")
    before = counts(seeded_store)
    if isinstance(body, bytes):
        r = client.post(PREDICT, content=body, headers={"content-type": "application/json"})
    else:
        r = client.post(PREDICT, json=body) if body is not None else client.post(PREDICT)
    assert r.status_code == status
    assert says in r.json()["error"]
    assert counts(seeded_store) == before


def test_feedback_enters_the_loop_like_a_label_from_the_label_page(client, seeded_store):
    [a] = predict(client, "物流很快，包装完好")
    before = counts(seeded_store)
    r = client.post(FEEDBACK, json={"prediction_id": a["prediction_id"], "label": "正面"})
    assert r.status_code == 201
    assert r.json()["prediction_id"] == a["prediction_id"] and r.json()["label"] == "正面"
    after = counts(seeded_store)
    assert after["feedback"] == before["feedback"] + 1
    assert after["examples"] == before["examples"] + 1  # a training example for the next retrain
    assert feedback.labelled_counts(seeded_store, MODEL, user="api") == {"正面": 1}


@pytest.mark.parametrize("body, says", [
    ({"prediction_id": 10**9, "label": "正面"}, "no prediction 1000000000"),
    ({"prediction_id": "first", "label": "正面"}, "prediction_id: Input should be a valid integer"),
    ({"label": "正面"}, "prediction_id: Field required"),
    ({"prediction_id": 1, "label": "中性"}, "label '中性'"),
    ({"prediction_id": 1, "label": ""}, "label: String should have at least 1 character"),
])
def test_a_bad_feedback_request_is_refused_and_records_nothing(client, seeded_store, body, says):
    before = counts(seeded_store)
    r = client.post(FEEDBACK, json=body)
    assert r.status_code == 422
    assert says in r.json()["error"]
    assert counts(seeded_store) == before


def test_a_prediction_is_labelled_once(client):
    [a] = predict(client, "还行吧")
    body = {"prediction_id": a["prediction_id"], "label": "skip"}
    assert client.post(FEEDBACK, json=body).status_code == 201
    r = client.post(FEEDBACK, json=body)
    assert r.status_code == 422 and "already labelled" in r.json()["error"]


def test_a_busy_store_is_503_with_retry_after(client, seeded_store, monkeypatch):
    monkeypatch.setenv("MMS_LOCK_TIMEOUT", "0.2")
    hold = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(30)"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(seeded_store.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = client.post(PREDICT, json={"texts": ["好"]})
    finally:
        holder.kill()
        holder.wait()
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert "store is busy" in r.json()["error"]


def test_an_activation_that_loses_a_race_is_409_changes_nothing_and_a_retry_succeeds(client, seeded_store):
    # another writer holds an uncommitted switch of the model's active version: this one conflicts with it
    before = registry.get_model(seeded_store, MODEL).active_version
    path = f"/api/models/{MODEL}/versions/1/activate"
    with seeded_store.connect() as other:
        other.begin()
        other.execute("UPDATE models SET active_version = NULL WHERE name = ?", [MODEL])
        r = client.post(path, json={"reason": "race", "force": True})
        other.rollback()
    assert r.status_code == 409
    assert "try again" in r.json()["error"] and r.json().get("regressions") is None
    assert registry.get_model(seeded_store, MODEL).active_version == before
    assert client.post(path, json={"reason": "race", "force": True}).status_code == 200


def test_an_altered_model_file_is_refused_with_its_sentence(client, seeded_store):
    version = registry.get_version(seeded_store, MODEL)
    with open(seeded_store.path.parent / version.artifact, "ab") as f:
        f.write(b"tampered")
    before = counts(seeded_store)
    r = client.post(PREDICT, json={"texts": ["好"]})
    assert r.status_code == 500
    assert "has been altered" in r.json()["error"]
    assert counts(seeded_store) == before


def test_openapi_description_and_docs_are_served_under_api(client):
    spec = client.get("/api/openapi.json").json()
    assert spec["servers"] == [{"url": "/api"}]
    assert set(spec["paths"]) == {"/health", "/models", "/models/{name}", "/models/{name}/predict",
                                  "/models/{name}/feedback", "/models/{name}/compare", "/models/{name}/stats",
                                  "/models/{name}/versions/{version}/activate", "/models/{name}/examples",
                                  "/models/{name}/train", "/models/{name}/hard-examples", "/models/{name}/review",
                                  "/models/{name}/review/{prediction_id}", "/models/{name}/overlap",
                                  "/models/{name}/guidelines", "/models/{name}/team", "/models/{name}/shadow",
                                  "/models/{name}/policy", "/models/{name}/policy/check", "/models/{name}/policy/runs",
                                  "/models/{name}/alert-settings", "/models/{name}/alerts",
                                  "/alerts/{alert_id}/acknowledge", "/alerts/{alert_id}/deliveries"}
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and "/api/openapi.json" in docs.text


def test_with_users_the_api_needs_a_token_and_health_says_so(client, seeded_store, tokens):
    assert client.get("/api/health").json()["auth"] == "bearer"
    before = counts(seeded_store)
    for headers in ({}, bearer("mms_not-a-token"), {"Authorization": "Basic Ym9zczpwdw=="}):
        r = client.post(PREDICT, json={"texts": ["好"]}, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "token" in r.json()["error"]
    assert client.get("/api/models").status_code == 401
    after = counts(seeded_store)
    assert after.pop("events") == before.pop("events") + 1  # the unknown token, audited
    assert after == before


def test_any_role_predicts_and_is_recorded_as_the_token_user(client, seeded_store, tokens):
    r = client.post(PREDICT, json={"texts": ["好"]}, headers=bearer(tokens["ana"]))
    assert r.status_code == 200
    with seeded_store.connect() as con:
        [(user,)] = con.execute("SELECT created_by FROM predictions WHERE prediction_id = ?",
                                [r.json()["predictions"][0]["prediction_id"]]).fetchall()
    assert user == "ana"
    assert client.get(f"/api/models/{MODEL}", headers=bearer(tokens["ana"])).status_code == 200


def test_feedback_needs_a_labeller_or_owner_token(client, seeded_store, tokens):
    r = client.post(PREDICT, json={"texts": ["好", "差"]}, headers=bearer(tokens["ana"]))
    [a, b] = [p["prediction_id"] for p in r.json()["predictions"]]
    before = counts(seeded_store)
    r = client.post(FEEDBACK, json={"prediction_id": a, "label": "正面"}, headers=bearer(tokens["ana"]))
    assert r.status_code == 403
    assert "ana" in r.json()["error"] and "may not label predictions" in r.json()["error"]
    assert counts(seeded_store) == before
    for user, prediction_id in (("lab", a), ("boss", b)):
        body = {"prediction_id": prediction_id, "label": "正面"}
        assert client.post(FEEDBACK, json=body, headers=bearer(tokens[user])).status_code == 201
    assert feedback.labelled_counts(seeded_store, MODEL, user="lab") == {"正面": 1}


# --- property-based: the API keeps the promises of its own OpenAPI description -----------------

@pytest.fixture
def api_schema(seeded_store, tokens, monkeypatch):
    """The API as deployed with users: an owner's token on every request, so that schemathesis
    also checks that a request without it, or with a wrong one, is refused (401: it sends one wrong
    token per route from one address, more than the lockout allows; test_access tests the 429)."""
    monkeypatch.setenv("MMS_SIGNIN_MAX_FAILURES", "1000")
    monkeypatch.setenv("MMS_SELECTION_BUDGET", "1")  # a generated train body may ask for "auto": one candidate
    config = schemathesis.Config.from_dict({"seed": 7, "generation": {"deterministic": True},
                                            "headers": bearer(tokens["boss"])})
    return schemathesis.openapi.from_asgi("/api/openapi.json", served(seeded_store), config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_keeps_its_openapi_promises(case):
    if case.meta is not None and case.meta.generation.mode.is_positive and "name" in (case.path_parameters or {}):
        case.path_parameters["name"] = MODEL  # mostly random names only ever meet the 404
    # A well-formed label or prediction id may still not exist for this model: core refuses it
    # with a 422, which the description cannot rule out (labels are per model, ids per log).
    # Likewise for the routes that change data: an example's label, a model's name ("/", only dots)
    # or grades (fewer than three), a training config or an ordinal-only strategy core refuses; and a
    # decision on a prediction that is not waiting for review; a policy on without a trigger, a webhook
    # that is not http(s), an alert acknowledged already.
    refused_by_core = ("/feedback", "/examples", "/train", "/hard-examples", "/review/{prediction_id}", "/policy",
                       "/alert-settings", "/acknowledge")
    excluded = ([positive_data_acceptance] if case.path.endswith(refused_by_core)
                or (case.path == "/models" and case.method == "POST") else [])
    case.call_and_validate(excluded_checks=excluded)


def test_open_mode_ends_with_the_first_user_and_returns_when_the_last_goes(client, seeded_store, monkeypatch):
    """The API keeps whether the store is open for auth.OPEN_SECONDS: a user written in this process
    (the dashboard, or the CLI through the server) counts from the next request, one written by
    another process once that time has passed."""
    predict(client, "房间很干净")  # open: anyone predicts, as "api"
    auth.add_user(seeded_store, "boss", auth.OWNER, "owner-password", by="boss")
    assert client.post(PREDICT, json={"texts": ["房间很干净"]}).status_code == 401
    auth.remove_user(seeded_store, "boss", by="boss")
    predict(client, "房间很干净")
    monkeypatch.setattr(auth, "OPEN_SECONDS", 0.05)
    with seeded_store.transaction() as con:  # another process's user: written past auth, in the store alone
        db.upsert_user(con, "elsewhere", auth.OWNER, "not-a-hash", "elsewhere")
    time.sleep(0.1)
    assert client.post(PREDICT, json={"texts": ["房间很干净"]}).status_code == 401
