"""Issue 27, items 1-6 and 11: lockouts that hold under parallel attempts and lock the right thing,
sessions that end with a password or role change, backups that are checked before they are read,
limits on bodies, workbooks and prediction requests, and business lines that cannot carry control
characters."""
import asyncio
import io
import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote

import duckdb
import pandas as pd
import pytest
import uvicorn
from fastapi.testclient import TestClient

from conftest import ROOT, copy_store
from core import api, auth, backup, files, predict, registry, sessions
from core.errors import InvalidInput, SignInRefused
from lakefixtures import lake_store, pg_cluster  # noqa: F401  (fixtures)
from test_access import LOCAL, M, PREDICT, count_predictions, events, run_cli, served

# --- 1: parallel sign-in attempts -------------------------------------------------------------


def parallel_sign_ins(store, name: str, passwords: list[str]) -> list[str]:
    """Every password tried at once, each on its own thread; the outcome of each."""
    start = threading.Barrier(len(passwords))
    outcomes = [None] * len(passwords)

    def attempt(i: int, password: str) -> None:
        start.wait()
        try:
            auth.sign_in(store, name, password, via="dashboard")
            outcomes[i] = "signed in"
        except SignInRefused as e:
            outcomes[i] = "locked" if "Too many" in str(e) else "wrong"

    threads = [threading.Thread(target=attempt, args=(i, p)) for i, p in enumerate(passwords)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_thirty_parallel_sign_ins_check_no_more_passwords_than_the_limit(team):
    outcomes = parallel_sign_ins(team, "anna", [f"guess-{i}" for i in range(29)] + ["analyst-pass"])
    checked = outcomes.count("wrong") + outcomes.count("signed in")
    assert checked <= 5 and outcomes.count("locked") >= 25
    reasons = [json.loads(e["details"])["reason"] for e in events(team, "sign_in_failed")]
    assert reasons.count("wrong password") + len(events(team, "sign_in")) <= 5
    if outcomes.count("wrong") == 5:  # five wrong ones checked: the right password waits too
        with pytest.raises(SignInRefused, match="Too many"):
            auth.sign_in(team, "anna", "analyst-pass", via="dashboard")


LAKE_ATTEMPTS = """
import sys, threading
sys.path.insert(0, {root!r})
from core import auth
from core.errors import SignInRefused
from core.store import Store
store = Store({url!r}, {data!r})
barrier = threading.Barrier(5)
def go(i):
    barrier.wait()
    try:
        auth.sign_in(store, "anna", "guess-%d" % i, via="cli")
        print("signed in")
    except SignInRefused as e:
        print("locked" if "Too many" in str(e) else "wrong", flush=True)
threads = [threading.Thread(target=go, args=(i,)) for i in range(5)]
[t.start() for t in threads]
[t.join() for t in threads]
"""


def test_parallel_sign_ins_from_several_processes_on_a_ducklake_respect_the_limit(lake_store):
    auth.add_user(lake_store, "olga", "owner", "owner-pass-1", by="setup")
    auth.add_user(lake_store, "anna", "analyst", "analyst-pass", by="olga")
    script = LAKE_ATTEMPTS.format(root=str(ROOT), url=lake_store.url, data=lake_store.data_path)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outcomes = [line for p in procs for line in p.communicate(timeout=300)[0].split()]
    assert len(outcomes) == 15 and outcomes.count("wrong") <= 5, outcomes


# --- 2: unknown API tokens are limited per address, valid tokens never ------------------------

def test_unknown_tokens_from_an_address_do_not_lock_out_its_valid_tokens_or_health(team):
    owner, analyst = auth.create_token(team, "olga", by="olga"), auth.create_token(team, "anna", by="olga")
    client = TestClient(served(team), client=LOCAL)
    for _ in range(6):
        client.get("/api/models", headers={"Authorization": "Bearer mms_typo"})
    assert client.get("/api/models", headers={"Authorization": "Bearer mms_typo"}).status_code == 429
    for token in (owner, analyst):
        assert client.get("/api/models", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.post(PREDICT, json={"texts": ["好"]}, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/api/health").status_code == 200
    assert client.get("/api/health", headers={"Authorization": "Bearer mms_typo"}).status_code == 200
    assert client.get("/api/health", headers={"Authorization": f"Bearer {owner}"}).json()["store"] == str(team.path)


def behind_uvicorn(store, client: tuple[str, int]) -> TestClient:
    """The app as uvicorn serves it under Streamlit: with its proxy-headers middleware, which by
    default takes X-Forwarded-For from a loopback peer as the client's address."""
    config = uvicorn.Config(served(store), lifespan="off")
    config.load()
    return TestClient(config.loaded_app, client=client)


def test_forwarded_addresses_are_ignored_unless_from_a_configured_proxy(team, monkeypatch):
    monkeypatch.delenv("MMS_TRUSTED_PROXIES", raising=False)
    local = behind_uvicorn(team, LOCAL)
    statuses = [local.get("/api/models", headers={"Authorization": "Bearer mms_guess",
                                                  "X-Forwarded-For": f"10.0.0.{i}"}).status_code for i in range(7)]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]  # rotating the header gains nothing
    # failures forged as another address do not lock that address out
    for _ in range(6):
        local.get("/api/models", headers={"Authorization": "Bearer mms_guess", "X-Forwarded-For": "10.9.9.10"})
    victim = behind_uvicorn(team, ("10.9.9.10", 4000))
    assert victim.get("/api/models", headers={"Authorization": "Bearer mms_guess"}).status_code == 401
    # a forwarded request is never "this machine": an open store would refuse it
    # with the proxy configured, each forwarded client is counted on its own
    monkeypatch.setenv("MMS_TRUSTED_PROXIES", "127.0.0.1, ::1")
    for _ in range(5):
        local.get("/api/models", headers={"Authorization": "Bearer mms_guess", "X-Forwarded-For": "10.7.7.1"})
    assert local.get("/api/models", headers={"Authorization": "Bearer mms_guess",
                                             "X-Forwarded-For": "10.7.7.1"}).status_code == 429
    assert local.get("/api/models", headers={"Authorization": "Bearer mms_guess",
                                             "X-Forwarded-For": "10.7.7.2"}).status_code == 401
    assert {json.loads(e["details"])["address"] for e in events(team, "api_token_failed")} >= {"10.7.7.1", "10.7.7.2"}


def test_an_open_store_does_not_take_a_forwarded_request_for_this_machine(seeded_store, monkeypatch):
    monkeypatch.delenv("MMS_TRUSTED_PROXIES", raising=False)
    local = behind_uvicorn(seeded_store, LOCAL)
    assert local.get("/api/models").status_code == 200
    assert local.get("/api/models", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 403


# --- 3: a password or role change ends the user's sessions ------------------------------------

def test_a_password_change_from_the_command_line_ends_the_users_sessions(team, monkeypatch):
    token, _ = sessions.start(team, "anna")
    other, _ = sessions.start(team, "lars")
    monkeypatch.setenv("MMS_TOKEN", auth.create_token(team, "olga", by="olga"))
    code, _, err = run_cli(team, "add-user", "anna", "--role", "analyst", "--password-stdin", stdin="a-new-password\n")
    assert code == 0, err
    assert sessions.identity(team, token) is None
    assert sessions.identity(team, other) == auth.Identity("lars", "labeller")  # nobody else's
    assert auth.sign_in(team, "anna", "a-new-password", via="cli").name == "anna"


# --- 4 and 11: a backup is checked before anything in it is read ------------------------------

def test_sql_in_an_old_style_backup_never_runs(seeded_store, tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    with seeded_store.connect() as con:
        con.execute(f"EXPORT DATABASE '{folder / 'database'}' (FORMAT parquet)")
    marker = tmp_path / "written-by-the-backup.csv"
    with open(folder / "database" / "schema.sql", "a") as f:
        f.write(f"\nCOPY (SELECT 42 AS answer) TO '{marker}';\n")
    with pytest.raises(InvalidInput, match="older MMS, without a signed manifest"):
        backup.restore(seeded_store, folder, "ops")
    assert not marker.exists()


def test_sql_added_to_a_backup_is_refused(seeded_store, tmp_path):
    made = backup.backup(seeded_store, tmp_path / "bk", "ops")
    marker = tmp_path / "written-by-the-backup.csv"
    (made / "database" / "schema.sql").write_text(f"COPY (SELECT 42) TO '{marker}';\n")
    with pytest.raises(InvalidInput, match="database/schema.sql is not in its signed manifest"):
        backup.restore(seeded_store, made, "ops")
    assert not marker.exists()


class Payload:
    """What an attacker's model file runs when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "payload ran"))


def test_a_model_file_swapped_with_its_hash_rewritten_in_the_backup_is_refused(seeded_store, tmp_path):
    made = backup.backup(seeded_store, tmp_path / "bk", "ops")
    rel = registry.get_version(seeded_store, M, 1).artifact
    marker = tmp_path / "payload-ran"
    evil = pickle.dumps(Payload(marker))
    (made / rel).write_bytes(evil)
    import hashlib
    versions = made / "database" / "versions.parquet"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT * REPLACE ('{hashlib.sha256(evil).hexdigest()}' AS sha256) FROM "
                f"read_parquet('{versions}')) TO '{tmp_path / 'v.parquet'}' (FORMAT parquet)")
    con.close()
    os.replace(tmp_path / "v.parquet", versions)
    with pytest.raises(InvalidInput, match="has been altered since the backup was made"):
        backup.restore(seeded_store, made, "ops")
    assert predict.predict_texts(seeded_store, M, ["很好"], "ops")["version"].iloc[0] == 1
    assert not marker.exists()


def test_a_link_in_a_backup_is_one_sentence_and_leaves_nothing_behind(seeded_store, tmp_path):
    made = backup.backup(seeded_store, tmp_path / "bk", "ops")
    secrets = tmp_path / "system"
    secrets.mkdir()
    (secrets / "passwd").write_text("root:x:0:0")
    os.symlink(secrets, made / "artifacts" / "evil")
    before = sorted(p.name for p in seeded_store.path.parent.rglob("*"))
    code, _, err = run_cli(seeded_store, "restore", str(made))
    assert code == 2 and "artifacts/evil is a link" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in seeded_store.path.parent.rglob("*")) == before  # no .restoring, no copies


def test_a_backup_is_checked_with_the_key_it_was_made_with(seeded_store, tmp_path, monkeypatch):
    monkeypatch.setenv("MMS_BACKUP_KEY", "the owner's backup key")
    made = backup.backup(seeded_store, tmp_path / "bk", "ops")
    monkeypatch.delenv("MMS_BACKUP_KEY")
    fresh = type(seeded_store)(tmp_path / "elsewhere" / "mms.duckdb")
    with pytest.raises(InvalidInput, match="no key to check the backup with"):
        backup.restore(fresh, made, "ops")
    with pytest.raises(InvalidInput, match="signature does not match"):
        backup.restore(fresh, made, "ops", key="a guess")
    assert not fresh.path.exists() and not list((tmp_path / "elsewhere").glob("*restoring*"))
    backup.restore(fresh, made, "ops", key="the owner's backup key")
    assert registry.get_model(fresh, M).active_version == 1
    with fresh.connect() as con:  # nobody is signed in after a restore, and no secret came with the backup
        assert con.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0


def test_a_backup_inside_the_stores_own_model_files_is_one_sentence(seeded_store, tmp_path):
    inside = seeded_store.artifacts_dir / "backups" / "today"
    code, _, err = run_cli(seeded_store, "backup", str(inside))
    assert code == 2 and "inside the store's own model files" in err and len(err.strip().splitlines()) == 1
    assert not inside.exists()


# --- 5: resource limits -------------------------------------------------------------------------

def asgi_post(app, path: str, headers: dict, chunks: list[bytes]) -> tuple[int, dict, int]:
    """POST to an ASGI app, the body arriving chunk by chunk; (status, answer, chunks the app read)."""
    read = 0
    sent = []

    async def receive():
        nonlocal read
        if read < len(chunks):
            read += 1
            return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": quote(path).encode(), "root_path": "", "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": LOCAL, "server": ("testserver", 80)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body or b"{}"), read


MB = b"x" * 1_000_000


def test_a_body_is_not_read_before_its_caller_is_known_or_past_the_limit(team, monkeypatch):
    app = served(team)
    path = f"/api/models/{M}/predict"
    status, answer, read = asgi_post(app, path, {"content-length": str(300 * 10**6)}, [MB] * 300)
    assert status == 413 and "MMS_MAX_REQUEST_MB" in answer["error"] and read == 0
    status, answer, read = asgi_post(app, path, {"content-length": str(10 * 10**6)}, [MB] * 10)
    assert status == 401 and read == 0
    status, _, read = asgi_post(app, path, {"transfer-encoding": "chunked", "authorization": "Bearer mms_guess"},
                                [MB] * 10)
    assert status == 401 and read == 0
    monkeypatch.setenv("MMS_MAX_REQUEST_MB", "2")
    token = auth.create_token(team, "anna", by="olga")
    status, answer, read = asgi_post(app, path, {"transfer-encoding": "chunked", "authorization": f"Bearer {token}"},
                                     [MB] * 10)
    assert status == 413 and read <= 3
    body = json.dumps({"texts": ["很好"]}).encode()
    status, answer, _ = asgi_post(app, path, {"content-length": str(len(body)), "content-type": "application/json",
                                              "authorization": f"Bearer {token}"}, [body])
    assert status == 200 and answer["predictions"][0]["version"] == 1


def workbook(rows: int) -> bytes:
    out = io.BytesIO()
    pd.DataFrame({"text": [f"第{i}条评论，写得比较长一些，重复很多次" * 5 for i in range(rows)]}).to_excel(out, index=False)
    return out.getvalue()


def test_a_workbook_that_expands_too_far_or_holds_too_many_rows_is_refused(monkeypatch):
    data = workbook(3000)
    assert len(files.read_table(data, "reviews.xlsx")) == 3000
    monkeypatch.setenv("MMS_MAX_WORKBOOK_MB", "0.5")
    with pytest.raises(InvalidInput, match=r"reviews.xlsx: the workbook expands to .* MB when read, more than the "
                                           r"limit of 0.5 MB \(MMS_MAX_WORKBOOK_MB\)"):
        files.read_table(data, "reviews.xlsx")
    monkeypatch.setenv("MMS_MAX_WORKBOOK_MB", "100")
    monkeypatch.setenv("MMS_MAX_WORKBOOK_ROWS", "1000")
    with pytest.raises(InvalidInput, match=r"reviews.xlsx: the sheet has more than 1000 rows"):
        files.read_table(data, "reviews.xlsx")


def test_the_predict_page_is_held_to_the_apis_request_limit(team, monkeypatch):
    monkeypatch.setenv("MMS_MAX_BATCH", "40")
    before = count_predictions(team)
    upload = pd.DataFrame({"text": [f"评论{i}" for i in range(41)]}).to_csv(index=False).encode()
    with pytest.raises(InvalidInput, match="41 rows, more than the 40 texts one request may predict"):
        predict.predict_file(team, M, upload, "anna", filename="big.csv", source_tag="app")
    with pytest.raises(InvalidInput, match="41 texts in one request, more than the limit of 40"):
        predict.predict_texts(team, M, [f"评论{i}" for i in range(41)], "anna", source="app")
    assert count_predictions(team) == before
    client = TestClient(served(team), client=LOCAL)
    token = auth.create_token(team, "anna", by="olga")
    r = client.post(PREDICT, json={"texts": ["好"] * 41}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 422 and "more than the limit of 40" in r.json()["error"]
    assert len(predict.predict_file(team, M, upload, "olga", filename="big.csv", source_tag="cli")) == 41


# --- 6: business lines ----------------------------------------------------------------------------

@pytest.mark.parametrize("line", ["好\u001b[31m评", "a\u202eb", "nul\u0000", "two\nlines"])
def test_a_business_line_with_control_characters_is_refused_everywhere(team, line, tmp_path, monkeypatch):
    before = count_predictions(team)
    token = auth.create_token(team, "olga", by="olga")
    client = TestClient(served(team), client=LOCAL)
    bearer = {"Authorization": f"Bearer {token}"}
    r = client.post(PREDICT, json={"texts": ["好"], "business_line": line}, headers=bearer)
    assert r.status_code == 422 and "control character" in r.json()["error"]
    r = client.post(f"/api/models/{M}/examples", headers=bearer,
                    json={"rows": [{"text": "好", "label": "正面", "business_line": line}]})
    assert r.status_code == 422 and ("control character" in r.json()["error"] or "NUL" in r.json()["error"])
    with pytest.raises(InvalidInput, match="control character|NUL"):
        predict.predict_texts(team, M, ["好"], "anna", business_line=line)
    upload = pd.DataFrame({"text": ["好", "差"], "business_line": ["ok", line]}).to_csv(index=False).encode()
    with pytest.raises(InvalidInput, match=r"lines.csv: .*(control character|NUL).* (row|line) 3"):
        predict.predict_file(team, M, upload, "anna", filename="lines.csv")
    monkeypatch.setenv("MMS_TOKEN", token)
    path = tmp_path / "texts.csv"
    path.write_text("text\n好\n")
    if "\u0000" not in line:  # an argument cannot hold a NUL
        code, _, err = run_cli(team, "predict", M, str(path), "--business-line", line)
        assert code == 2 and "control character" in err and "\u001b" not in err
    assert count_predictions(team) == before


# --- 1 and 3 in a real browser --------------------------------------------------------------------

@pytest.fixture
def served_team(_seeded_template, tmp_path):
    """`streamlit run app.py` on a copy of the seeded store with an owner and an analyst; the owner's
    API token, for the command line."""
    from servers import start_server, wait_ready

    folder = tmp_path / "store"
    store = copy_store(_seeded_template, folder)
    auth.add_user(store, "olga", "owner", "owner-pass-1", by="setup")
    auth.add_user(store, "anna", "analyst", "analyst-pass", by="olga")
    token = auth.create_token(store, "olga", by="olga")
    url, proc = start_server({"MMS_STORE": str(store.path)}, tmp_path / "streamlit.log")
    wait_ready(url, proc, tmp_path / "streamlit.log")
    yield url, store, token
    from servers import stop_server
    stop_server(proc)


@pytest.mark.browser
def test_twelve_browsers_signing_in_together_get_no_more_passwords_checked_than_the_limit(served_team):
    from playwright.sync_api import sync_playwright

    from servers import launch_chromium, wait_idle

    url, store, _ = served_team
    passwords = [f"guess-{i}" for i in range(11)] + ["analyst-pass"]
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            pages = []
            for password in passwords:
                page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
                page.set_default_timeout(120_000)
                page.goto(url)
                page.get_by_role("heading", name="Sign in to MMS").wait_for()
                wait_idle(page)
                page.get_by_label("User", exact=True).fill("anna")
                page.get_by_label("Password", exact=True).fill(password)
                pages.append(page)
            buttons = [page.get_by_role("button", name="Sign in") for page in pages]
            for button in buttons:  # as together as one driver can: each click only sends the form
                button.click(no_wait_after=True)
            outcomes = []
            for page in pages:
                answer = page.get_by_text("wrong password").or_(page.get_by_text("Too many failed sign-ins")).or_(
                    page.get_by_text("Signed in as anna"))
                answer.first.wait_for()
                text = answer.first.inner_text()
                outcomes.append("wrong" if "wrong password" in text else "locked" if "Too many" in text else "in")
        finally:
            browser.close()
    assert outcomes.count("wrong") + outcomes.count("in") <= 5, outcomes
    assert outcomes.count("locked") >= 7


@pytest.mark.browser
def test_an_old_cookie_is_refused_after_the_password_changes(served_team):
    from playwright.sync_api import sync_playwright

    from servers import launch_chromium, sign_in, wait_idle

    url, store, owner_token = served_team
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = sign_in(browser.new_page(viewport={"width": 1200, "height": 900}), url, "anna", "analyst-pass")
            [cookie] = [c for c in page.context.cookies() if c["name"] == sessions.cookie_name(store)]
            done = subprocess.run([sys.executable, "-m", "core", "--store", str(store.path), "add-user", "anna",
                                   "--role", "analyst", "--password-stdin"], input="a-new-password\n", cwd=ROOT,
                                  capture_output=True, text=True, timeout=120,
                                  env={**os.environ, "MMS_TOKEN": owner_token})
            assert done.returncode == 0, done.stderr
            replay = browser.new_context(viewport={"width": 1200, "height": 900})
            replay.add_cookies([cookie])
            page = replay.new_page()
            page.set_default_timeout(120_000)
            page.goto(url)
            page.get_by_role("heading", name="Sign in to MMS").wait_for()
            wait_idle(page)
            assert page.get_by_text("Signed in as anna").count() == 0
        finally:
            browser.close()


def test_the_cookie_route_reads_no_more_than_a_sign_in_code(team):
    status, answer, read = asgi_post(served(team), sessions.START_PATH,
                                     {"content-length": str(100 * 10**6), "origin": "http://testserver",
                                      "host": "testserver"}, [MB] * 100)
    assert status == 413 and read == 0
    status, answer, read = asgi_post(served(team), sessions.START_PATH,
                                     {"transfer-encoding": "chunked", "origin": "http://testserver",
                                      "host": "testserver"}, [MB] * 100)
    assert status == 413 and read == 1
