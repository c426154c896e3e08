"""Team labelling from the command line and the HTTP API: the overlap share, two labellers' labels,
the review queue, an owner's decision (and only that reaching training), the guidelines and the
team report, under core's roles, with bad input refused and nothing changed."""
import json

import pytest
from fastapi.testclient import TestClient

from core import agreement, auth, feedback

import test_agreement
from test_access import run_cli
from test_agreement import LINE, MODEL, training_labels
from test_api import bearer, served

M = f"/api/models/{MODEL}"
crew = test_agreement.crew  # the fixture: the team store with a second labeller and predictions on LINE


@pytest.fixture
def tokens(crew):
    """API tokens of olga (owner) and the labellers lars and mia on the crew store."""
    return {name: auth.create_token(crew, name, by="olga") for name in ("olga", "lars", "mia")}


@pytest.fixture
def client(crew):
    with TestClient(served(crew), client=("127.0.0.1", 50000)) as c:
        yield c


def drawn_and_labelled(client, who: dict, k: int, labels: dict | list) -> list[int]:
    """A labeller draws k hard examples of the team's line through the API and labels them: `labels`
    in the batch's order, or by prediction id. Returns the batch's prediction ids."""
    r = client.get(f"{M}/hard-examples", params={"k": k, "business_line": LINE}, headers=who)
    assert r.status_code == 200, r.text
    ids = [item["prediction_id"] for item in r.json()["items"]]
    given = labels if isinstance(labels, dict) else dict(zip(ids, labels))
    for pid in ids:
        sent = client.post(f"{M}/feedback", json={"prediction_id": pid, "label": given[pid]}, headers=who)
        assert sent.status_code == 201, sent.text
    return ids


def waiting(client, who) -> dict[int, dict]:
    r = client.get(f"{M}/review", headers=who)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["waiting"] == len(body["items"])
    return {item["prediction_id"]: item for item in body["items"]}


def cli(crew, monkeypatch, token: str | None, *argv):
    """The command line in this process, acting through MMS_TOKEN (none: reads only)."""
    if token:
        monkeypatch.setenv("MMS_TOKEN", token)
    else:
        monkeypatch.delenv("MMS_TOKEN", raising=False)
    return run_cli(crew, *map(str, argv))


def test_two_labellers_disagree_and_an_owner_decides_through_api_and_cli(crew, client, tokens, monkeypatch):
    olga, lars, mia = (bearer(tokens[name]) for name in ("olga", "lars", "mia"))
    r = client.put(f"{M}/overlap", json={"share": 1.0}, headers=olga)
    assert r.status_code == 200 and r.json() == {"model": MODEL, "share": 1.0}

    first = drawn_and_labelled(client, lars, 4, ["正面", "正面", "负面", "unclear"])
    a, b, c, d = first
    second = drawn_and_labelled(client, mia, 3, {a: "正面", b: "负面", c: "负面"})  # agrees, disagrees, agrees
    assert set(second) == {a, b, c}  # the unclear one is the review's, not a second labeller's

    queue = waiting(client, lars)  # any role reads the queue, as core lets it
    assert {pid: item["reason"] for pid, item in queue.items()} == {b: "disagreement", d: "unclear"}
    item = queue[b]
    assert (item["first_by"], item["first_label"], item["second_by"], item["second_label"]) == \
        ("lars", "正面", "mia", "负面")
    assert b not in training_labels(crew) and d not in training_labels(crew)  # undecided: not trained on

    r = client.post(f"{M}/review/{b}", json={"label": "负面"}, headers=lars)
    assert r.status_code == 403 and "lars" in r.json()["error"] and "owner" in r.json()["error"]
    for pid, body, says in ((999_999_999, {"label": "负面"}, "no prediction 999999999 for model"),
                            (b, {"label": "也许"}, "也许"), (b, {"label": 1}, "label")):
        r = client.post(f"{M}/review/{pid}", json=body, headers=olga)
        assert r.status_code == 422 and says in r.json()["error"], r.text
    assert set(waiting(client, olga)) == {b, d} and b not in training_labels(crew)

    r = client.post(f"{M}/review/{b}", json={"label": "负面"}, headers=olga)
    assert r.status_code == 201, r.text
    assert r.json() == {"prediction_id": b, "label": "负面", "trained": True, "waiting": 1}
    again = client.post(f"{M}/review/{b}", json={"label": "正面"}, headers=olga)
    assert again.status_code == 422 and "not waiting for review" in again.json()["error"]

    # the unclear one from the command line: a labeller's token is refused, the owner's decides
    code, out, err = cli(crew, monkeypatch, None, "--format", "json", "review", MODEL)
    assert code == 0 and [i["prediction_id"] for i in json.loads(out)] == [d] and "1 waiting" in err
    code, _, err = cli(crew, monkeypatch, tokens["lars"], "decide", MODEL, d, "正面")
    assert code == 2 and err.startswith("error: lars is a labeller and may not decide")
    code, _, err = cli(crew, monkeypatch, tokens["olga"], "decide", MODEL, d, "中性")
    assert code == 2 and "label '中性' is not one of" in err and len(err.splitlines()) == 1
    code, out, _ = cli(crew, monkeypatch, tokens["olga"], "--format", "json",
                       "decide", MODEL, d, "正面")
    assert code == 0 and json.loads(out) == {"prediction_id": d, "label": "正面", "trained_on": True, "waiting": 0}

    assert waiting(client, olga) == {}
    # what training reads: agreed labels, and the decided ones in place of the disagreement and the unclear
    assert [training_labels(crew).get(pid) for pid in (a, b, c, d)] == ["正面", "负面", "负面", "正面"]


def test_the_overlap_share_is_set_by_owners_within_0_and_1_and_a_refusal_changes_nothing(
        crew, client, tokens, monkeypatch):
    olga = bearer(tokens["olga"])
    assert client.put(f"{M}/overlap", json={"share": 0.25}, headers=olga).status_code == 200
    for share in (1.5, -0.1):
        r = client.put(f"{M}/overlap", json={"share": share}, headers=olga)
        assert r.status_code == 422 and [p["field"] for p in r.json()["problems"]] == ["share"], r.text
    r = client.put(f"{M}/overlap", json={"share": 0.5}, headers=bearer(tokens["lars"]))
    assert r.status_code == 403
    assert client.get(f"{M}/overlap", headers=bearer(tokens["mia"])).json() == {"model": MODEL, "share": 0.25}

    token = tokens["olga"]
    for share, says in (("1.5", "overlap share must be from 0 to 1"), ("一半", "overlap share must be a number")):
        code, _, err = cli(crew, monkeypatch, token, "overlap", MODEL, share)
        assert code == 2 and says in err, err
    code, out, _ = cli(crew, monkeypatch, None, "overlap", MODEL)  # reading needs no credential
    assert code == 0 and out.splitlines() == [f"model: {MODEL}", "share: 0.25"]
    code, out, _ = cli(crew, monkeypatch, token, "--format", "json", "overlap", MODEL, "0.1")
    assert code == 0 and json.loads(out)["share"] == 0.1
    assert agreement.overlap_share(crew, MODEL) == 0.1
    code, _, err = cli(crew, monkeypatch, None, "overlap", MODEL, "0.3")  # a write, with no credential
    assert code == 2 and "MMS_TOKEN" in err and agreement.overlap_share(crew, MODEL) == 0.1


def test_guidelines_round_trip_through_api_and_cli(crew, client, tokens, monkeypatch, tmp_path):
    olga, lars, mia = (bearer(tokens[name]) for name in ("olga", "lars", "mia"))
    text = "# 情感\n\n- 物流慢但商品好：**正面**\n- 看不懂：unclear\n"
    r = client.put(f"{M}/guidelines", json={"text": text}, headers=olga)
    assert r.status_code == 200 and r.json() == {"model": MODEL, "text": text.strip()}
    assert client.get(f"{M}/guidelines", headers=lars).json()["text"] == text.strip()
    assert feedback.guidelines(crew, MODEL) == text.strip()  # what the Label page shows
    r = client.put(f"{M}/guidelines", json={"text": "labellers' own"}, headers=lars)
    assert r.status_code == 403 and feedback.guidelines(crew, MODEL) == text.strip()
    r = client.put(f"{M}/guidelines", json={"text": "x" * (feedback.GUIDELINES_MAX_CHARS + 1)}, headers=olga)
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "text"

    code, out, _ = cli(crew, monkeypatch, None, "guidelines", MODEL)
    assert code == 0 and out == text.strip() + "\n"
    newer = tmp_path / "guide.md"
    newer.write_text("\ufeff## 新规则\n中性的评论标 unclear\n", encoding="utf-8")
    token = tokens["olga"]
    code, out, _ = cli(crew, monkeypatch, token, "--format", "json", "guidelines", MODEL, "--file", newer)
    assert code == 0 and json.loads(out) == {"model": MODEL, "guidelines": "## 新规则\n中性的评论标 unclear"}
    assert client.get(f"{M}/guidelines", headers=mia).json()["text"] == "## 新规则\n中性的评论标 unclear"
    code, _, err = cli(crew, monkeypatch, token, "guidelines", MODEL, "--file", tmp_path / "none.md")
    assert code == 2 and "none.md: cannot be read" in err
    code, _, err = cli(crew, monkeypatch, token, "guidelines", MODEL, "--text", "")
    assert code == 0 and feedback.guidelines(crew, MODEL) == "" and "no labelling guidelines yet" in err


def test_the_team_report_matches_kappa_on_the_same_pairs(crew, client, tokens, monkeypatch):
    olga, lars, mia = (bearer(tokens[name]) for name in ("olga", "lars", "mia"))
    client.put(f"{M}/overlap", json={"share": 1.0}, headers=olga)
    lars_says = ["正面", "负面", "正面", "负面", "正面"]
    first = drawn_and_labelled(client, lars, 5, lars_says)
    mia_says = dict(zip(first, ["正面", "负面", "负面", "负面", "负面"]))  # agree on 3 of 5
    drawn_and_labelled(client, mia, 5, mia_says)
    kappa, raw, n = agreement.kappa_and_agreement(lars_says, [mia_says[p] for p in first])

    r = client.get(f"{M}/team", headers=lars)
    assert r.status_code == 200, r.text
    team = r.json()
    assert team["share"] == 1.0 and team["waiting"] == 2
    assert team["overall"] == {"items": n, "agreement": pytest.approx(raw), "kappa": pytest.approx(kappa)}
    [pair] = team["pairs"]
    assert (pair["labeller_a"], pair["labeller_b"], pair["items"]) == ("lars", "mia", 5)
    assert (pair["agreement"], pair["kappa"]) == (pytest.approx(0.6), pytest.approx(kappa))
    [line] = team["lines"]
    assert line["business_line"] == LINE and line["kappa"] == pytest.approx(kappa)
    figures = {row["labeller"]: row for row in team["labellers"]}
    assert figures["mia"]["double_labelled"] == 5 and figures["mia"]["kappa"] == pytest.approx(kappa)

    code, out, _ = cli(crew, monkeypatch, None, "--format", "json", "team", MODEL)
    assert code == 0 and json.loads(out) == team  # the same report from both faces
    code, out, _ = cli(crew, monkeypatch, None, "team", MODEL)
    assert code == 0 and f"5 items labelled twice, raw agreement 60.0%, Cohen's kappa {kappa:.2f}" in out
    assert "per labeller pair" in out and "active_minutes" in out
