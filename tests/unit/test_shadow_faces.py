"""Shadow versions through the command line (in-process) and the HTTP API (TestClient): start, read the
evidence, stop, and bad input as one sentence that changes nothing."""
import json

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette

from core import api, cli, demo, predict, registry, shadow

M = demo.MODEL


def run(store, capsys, *argv) -> tuple[int, str, str]:
    try:
        code = cli.main(["--store", str(store.path), *argv])
    except SystemExit as e:  # argparse's refusal, as the process would exit with it
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _traffic(store, reviews, n=30):
    predict.predict_texts(store, M, reviews["text"].iloc[-n:].tolist(), "tester", business_line="书籍")


def test_the_command_line_puts_a_version_in_shadow_shows_its_evidence_and_stops_it(worse_v2, reviews, capsys):
    code, _, err = run(worse_v2, capsys, "shadow", M, "2")
    assert code == 0 and f"{M} v2 is in shadow since" in err and shadow.current(worse_v2, M) == 2
    _traffic(worse_v2, reviews)
    code, _, err = run(worse_v2, capsys, "shadow", M, "--catch-up")
    assert code == 0 and "scored 30 predictions in shadow" in err
    code, out, _ = run(worse_v2, capsys, "--format", "json", "shadow", M, "--by", "day")
    found = json.loads(out)
    assert code == 0 and found["in_shadow"] == 2 and found["summary"]["n"] == 30
    assert [(r["business_line"], r["n"]) for r in found["evidence"]] == [("书籍", 30)]
    assert set(shadow.EVIDENCE_COLUMNS) <= set(found["evidence"][0])
    code, out, _ = run(worse_v2, capsys, "shadow", M)
    assert code == 0 and out.startswith("v2 in shadow: 30 predictions scored, 0 not yet; agreement ")
    assert "书籍" in out  # the table per line x period
    code, _, err = run(worse_v2, capsys, "shadow", M, "--stop")
    assert code == 0 and f"{M} v2 is out of shadow" in err and shadow.current(worse_v2, M) is None
    code, _, err = run(worse_v2, capsys, "shadow", M, "--stop")
    assert code == 0 and "had no version in shadow; nothing changed" in err


@pytest.mark.parametrize("argv, sentence", [
    ([M, "9"], f"error: model '{M}' has no version 9"),
    ([M, "1"], f"error: version 1 is the active version of '{M}': it answers already; put another version in shadow"),
    (["nope", "2"], "error: unknown model 'nope'"),
    ([M, "2", "--stop"], "error: give a version to put in shadow, or --stop, not both"),
    ([M, "two"], "error: argument version: must be a whole number"),
])
def test_the_command_line_refuses_bad_input_with_one_sentence(worse_v2, capsys, argv, sentence):
    events = len(registry.events_table(worse_v2, M))
    code, out, err = run(worse_v2, capsys, "shadow", *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(sentence) and "Traceback" not in err
    assert shadow.current(worse_v2, M) is None and len(registry.events_table(worse_v2, M)) == events


@pytest.fixture
def client(worse_v2):
    with TestClient(Starlette(routes=[api.mount(worse_v2)]), client=("127.0.0.1", 50000)) as c:
        yield c


def test_the_api_puts_a_version_in_shadow_reads_its_evidence_and_stops_it(client, worse_v2, reviews):
    url = f"/api/models/{M}/shadow"
    r = client.put(url, json={"version": 2})
    assert r.status_code == 200 and r.json()["version"] == 2 and shadow.current(worse_v2, M) == 2
    _traffic(worse_v2, reviews, 20)
    shadow.catch_up(worse_v2, M)
    r = client.get(url, params={"by": "week"})
    assert r.status_code == 200
    body = r.json()
    assert body["in_shadow"] == 2 and body["summary"]["n"] == 20 and body["evidence"][0]["n"] == 20
    assert body["summary"]["agreement"] is not None and "agreement" in body["about"]
    r = client.delete(url)
    assert r.status_code == 200 and r.json() == {"model": M, "stopped": 2}
    assert client.delete(url).json() == {"model": M, "stopped": None}
    assert client.get(url).json()["summary"]["in_shadow"] is False  # the evidence stays


@pytest.mark.parametrize("path, version, status, sentence", [
    (M, 9, 404, f"model '{M}' has no version 9"),
    (M, 1, 422, f"version 1 is the active version of '{M}': it answers already; put another version in shadow"),
    ("nope", 2, 404, "unknown model 'nope'"),
])
def test_the_api_refuses_bad_input_with_a_sentence_and_changes_nothing(client, worse_v2, path, version, status,
                                                                        sentence):
    r = client.put(f"/api/models/{path}/shadow", json={"version": version})
    assert r.status_code == status and r.json()["error"].startswith(sentence)
    assert shadow.current(worse_v2, M) is None
    assert client.put(f"/api/models/{M}/shadow", json={"version": "two"}).status_code == 422
