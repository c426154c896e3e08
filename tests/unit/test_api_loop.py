"""The labelling loop through the HTTP API alone (issue 15): create an ordinal model, import graded
rows, train, predict, draw hard examples, label them, retrain, activate and roll back; and the
refusals of these data-changing routes: roles, open mode from another machine, bad input."""
import numpy as np
import pytest
from fastapi.testclient import TestClient

from core import auth, compare, imports
from core.store import Store

from test_api import bearer, role_tokens, served
from test_ordinal import GRADES, LINES, URGENCY, graded_rows

MODELS = "/api/models"
M = f"/api/models/{URGENCY}"


@pytest.fixture
def empty_store(tmp_path) -> Store:
    """A store with no model, as the server holds it open: it exists, so the API answers."""
    store = Store(tmp_path / "mms.duckdb")
    with store.connect():
        pass
    return store


@pytest.fixture
def client(empty_store):
    with TestClient(served(empty_store), client=("127.0.0.1", 50000)) as c:
        yield c


def rows(frame, split: str) -> list[dict]:
    """Graded rows as the examples route takes them: the ordinal model's labels are label_2."""
    return [{"text": r.text, "label": r.label_2, "business_line": r.business_line, "split": split}
            for r in frame.itertuples()]


def created(client, **fields) -> dict:
    body = {"name": URGENCY, "description": "tickets by urgency", "task": "ordinal", "labels": GRADES, **fields}
    r = client.post(MODELS, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def imported(client) -> dict:
    r = client.post(f"{M}/examples", json={"rows": rows(graded_rows(240, 1), "train") + rows(graded_rows(120, 2), "test")})
    assert r.status_code == 201, r.text
    return r.json()


def trained(client, **fields) -> dict:
    r = client.post(f"{M}/train", json=fields)
    assert r.status_code == 201, r.text
    return r.json()


def example_rows(store) -> int:
    return int(imports.data_summary(store, URGENCY)["rows"].sum())


def test_the_ordinal_loop_end_to_end_through_the_api_only(client):
    model = created(client)
    assert model["task"] == "ordinal" and model["labels"] == GRADES and model["active_version"] is None
    assert imported(client) == {"model": URGENCY, "imported": 360, "by_split": {"train": 240, "test": 120},
                                "notes": ["rows: imported 240 rows into train", "rows: imported 120 rows into test"]}

    first = trained(client, config={"estimator": "sgd"})
    assert first["version"] == 1 and first["status"] == "active"  # a model's first version answers at once
    assert {"mae", "qwk", "spearman", "exact", "within_one"} <= set(first["ordinal"])

    texts = graded_rows(40, 6)["text"].tolist()
    truth = dict(zip(texts, graded_rows(40, 6)["label_2"]))
    answer = client.post(f"{M}/predict", json={"texts": texts, "business_line": LINES[0]})
    assert answer.status_code == 200, answer.text
    assert all("expected_grade" in p for p in answer.json()["predictions"])

    r = client.post(f"{M}/hard-examples", params={"k": 10, "strategy": "spread"})
    assert r.status_code == 201, r.text
    batch = r.json()
    assert batch["strategy"] == "spread" and batch["version"] == 1 and len(batch["items"]) == 10
    for item in batch["items"]:
        assert list(item["probabilities"]) == GRADES
        p = np.array(list(item["probabilities"].values()))
        assert item["label"] == GRADES[p.argmax()] and item["top_prob"] == pytest.approx(p.max())
        assert item["expected_grade"] == pytest.approx(p @ [1, 2, 3])
        sent = client.post(f"{M}/feedback", json={"prediction_id": item["prediction_id"], "label": truth[item["text"]]})
        assert sent.status_code == 201, sent.text
    labelled = {item["prediction_id"] for item in batch["items"]}
    again = client.post(f"{M}/hard-examples", params={"k": 10}).json()
    assert again["batch_id"] != batch["batch_id"] and not labelled & {i["prediction_id"] for i in again["items"]}

    second = trained(client, mode="incremental")
    assert second["version"] == 2 and second["mode"] == "incremental" and second["status"] != "active"
    activated = client.post(f"{M}/versions/2/activate", json={"force": True, "reason": "new labels"})
    assert activated.status_code == 200 and activated.json()["status"] == "active"
    back = client.post(f"{M}/versions/1/activate", json={"force": True, "reason": "roll back"})
    assert back.status_code == 200, back.text
    after = client.post(f"{M}/predict", json={"texts": texts[:2]}).json()["predictions"]
    assert {p["version"] for p in after} == {1}
    detail = client.get(M).json()
    assert detail["active_version"] == 1 and [v["version"] for v in detail["version_list"]] == [1, 2]


def test_a_refused_activation_after_training_is_409_with_what_fell_and_the_version_kept(client, monkeypatch):
    created(client)
    imported(client)
    trained(client, config={"estimator": "sgd"})
    fell = compare.Regression("qwk", 0.9, 0.6, 0.3, 0.02)
    monkeypatch.setattr(compare, "regressions", lambda *args, **kwargs: [fell])
    r = client.post(f"{M}/train", json={"activate": True})
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["version"] == 2 and "kept" in body["error"] and body["regressions"][0]["what"] == "qwk"
    detail = client.get(M).json()
    assert detail["active_version"] == 1 and [v["version"] for v in detail["version_list"]] == [1, 2]


def test_bad_rows_import_nothing_and_are_named_by_position_and_field(client, empty_store):
    created(client)
    good = rows(graded_rows(20, 1), "train")
    wrong_label = good[:3] + [{**good[3], "label": "特急"}] + good[4:]
    r = client.post(f"{M}/examples", json={"rows": wrong_label})
    assert r.status_code == 422
    assert "row 3" in r.json()["error"] and "label" in r.json()["error"] and "特急" in r.json()["error"]
    wrong_split = good[:1] + [{**good[1], "split": "dev"}] + good[2:]
    r = client.post(f"{M}/examples", json={"rows": wrong_split})
    assert r.status_code == 422 and [p["field"] for p in r.json()["problems"]] == ["rows.1.split"]
    blank = good[:5] + [{**good[5], "text": "  "}]
    r = client.post(f"{M}/examples", json={"rows": blank})
    assert r.status_code == 422 and "empty text in row 5" in r.json()["error"]
    assert example_rows(empty_store) == 0


@pytest.mark.parametrize("body, status, says", [
    ({"name": "二级", "task": "ordinal", "labels": ["低", "高"]}, 422, "at least 3 grades"),
    ({"name": "x", "task": "ranking", "labels": GRADES}, 422, "task"),
    ({"name": "a/b", "labels": ["好", "坏"]}, 422, "/"),
    ({"name": URGENCY, "task": "ordinal", "labels": GRADES}, 409, "already exists"),
])
def test_a_bad_model_is_refused_with_a_sentence(client, body, status, says):
    created(client)
    r = client.post(MODELS, json=body)
    assert r.status_code == status and says in r.json()["error"], r.text
    assert [m["name"] for m in client.get(MODELS).json()] == [URGENCY]


def test_hard_examples_of_an_empty_pool_and_an_unknown_strategy_are_refused(client):
    created(client)
    imported(client)
    trained(client, config={"estimator": "sgd"})
    r = client.get(f"{M}/hard-examples")
    assert r.status_code == 404 and "no unlabelled predictions" in r.json()["error"]
    r = client.get(f"{M}/hard-examples", params={"strategy": "loudest"})
    assert r.status_code == 422 and "least_confidence" in r.json()["error"]


def test_training_without_examples_is_refused_and_registers_nothing(client):
    created(client)
    r = client.post(f"{M}/train", json={})
    assert r.status_code == 422, r.text
    assert client.get(M).json()["versions"] == 0


# --- who may change data ---------------------------------------------------------------------------

@pytest.fixture
def tokens(empty_store) -> dict[str, str]:
    return role_tokens(empty_store)


def test_creating_importing_and_training_need_an_owner_and_hard_examples_a_labeller(client, empty_store, tokens):
    body = {"name": URGENCY, "task": "ordinal", "labels": GRADES}
    assert client.post(MODELS, json=body).status_code == 401  # no token once the store has users
    for who in ("lab", "ana"):
        r = client.post(MODELS, json=body, headers=bearer(tokens[who]))
        assert r.status_code == 403 and "owner" in r.json()["error"]
    assert client.post(MODELS, json=body, headers=bearer(tokens["boss"])).status_code == 201
    train_rows = {"rows": rows(graded_rows(240, 1), "train") + rows(graded_rows(120, 2), "test")}
    assert client.post(f"{M}/examples", json=train_rows, headers=bearer(tokens["lab"])).status_code == 403
    assert example_rows(empty_store) == 0
    assert client.post(f"{M}/examples", json=train_rows, headers=bearer(tokens["boss"])).status_code == 201
    assert client.post(f"{M}/train", json={}, headers=bearer(tokens["lab"])).status_code == 403
    assert client.get(M, headers=bearer(tokens["ana"])).json()["versions"] == 0
    done = client.post(f"{M}/train", json={"config": {"estimator": "sgd"}}, headers=bearer(tokens["boss"]))
    assert done.status_code == 201 and done.json()["created_by"] == "boss"
    texts = graded_rows(20, 6)["text"].tolist()
    assert client.post(f"{M}/predict", json={"texts": texts}, headers=bearer(tokens["ana"])).status_code == 200
    r = client.get(f"{M}/hard-examples", params={"k": 5}, headers=bearer(tokens["ana"]))
    assert r.status_code == 403 and "labeller" in r.json()["error"]
    r = client.get(f"{M}/hard-examples", params={"k": 5}, headers=bearer(tokens["lab"]))
    assert r.status_code == 200 and len(r.json()["items"]) == 5


def test_an_open_store_refuses_changes_from_another_machine(empty_store):
    remote = TestClient(served(empty_store), client=("203.0.113.9", 50000))
    r = remote.post(MODELS, json={"name": URGENCY, "task": "ordinal", "labels": GRADES})
    assert r.status_code == 403 and r.json()["error"] == auth.OPEN_STORE_IS_LOCAL
    assert remote.get(f"{M}/hard-examples").status_code == 403
    local = TestClient(served(empty_store), client=("127.0.0.1", 50000))
    assert local.get(MODELS).json() == []


def test_a_first_version_the_guard_keeps_inactive_is_201_when_activation_was_not_asked(client):
    """The README's six-row ordinal model: a train without `activate` answered 409 because the first
    version, tried for activation by itself, could not show it beats the median grade."""
    created(client)
    tiny = [{"text": t, "label": g, "split": s} for t, g, s in [
        ("系统完全用不了了", "高", "train"), ("付款一直失败，很着急", "高", "train"), ("发票什么时候能开", "中", "train"),
        ("想了解一下规则", "低", "train"), ("页面打不开，订单卡住了", "高", "test"), ("随便问问", "低", "test")]]
    assert client.post(f"{M}/examples", json={"rows": tiny}).status_code == 201
    first = trained(client, config={"estimator": "sgd"})
    assert first["version"] == 1 and first["status"] != "active"
    assert "no better than always answering" in first["guard"]
    r = client.post(f"{M}/train", json={"config": {"estimator": "sgd"}, "activate": True})
    assert r.status_code == 409 and r.json()["version"] == 2  # asked to activate: refused, and said so
    r = client.post(f"{M}/versions/1/activate", json={"reason": "a first try on six rows", "force": True})
    assert r.status_code == 200, r.text
