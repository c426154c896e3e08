"""Access (issue 12, items 11-14): who can reach the server, sign-in backoff, sessions that survive a
reload and follow the store, and CLI writes that need a credential once the store has users."""
import io
import json
import sys
import tomllib

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette

from conftest import ROOT, copy_store
from core import api, auth, cli, registry, sessions
from core.errors import SignInRefused
from servers import launch_chromium, start_server, stop_server, wait_idle, wait_ready

M = "评论情感"
PREDICT = f"/api/models/{M}/predict"
REMOTE, LOCAL = ("10.1.2.3", 5000), ("127.0.0.1", 5000)


def served(store) -> Starlette:
    """The API and the session routes, mounted the way app.py mounts them into st.App."""
    return Starlette(routes=[api.mount(store), *sessions.routes(store)])


def events(store, action: str) -> list[dict]:
    frame = registry.events_table(store, None, limit=1000)
    return frame[frame.action == action].to_dict("records")


def count_predictions(store) -> int:
    with store.connect() as con:
        return con.execute("SELECT count(*) FROM predictions").fetchone()[0]


def pass_time(store, minutes: int) -> None:
    """Let time pass for the sign-in backoff: the recorded attempts move into the past."""
    with store.connect() as con:
        con.execute(f"UPDATE sign_in_attempts SET \"at\" = \"at\" - INTERVAL {int(minutes)} MINUTE")


# --- 11: the server answers this machine, and an open store nobody else ---------------------

def test_the_server_listens_on_this_machine_only_unless_told_otherwise():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"


def test_an_open_store_refuses_api_calls_from_other_machines(seeded_store):
    before = count_predictions(seeded_store)
    remote = TestClient(served(seeded_store), client=REMOTE)
    for r in (remote.get("/api/health"), remote.get("/api/models"),
              remote.post(PREDICT, json={"texts": ["好"]})):
        assert r.status_code == 403
        assert "python -m core add-user NAME --role owner" in r.json()["error"]
    assert count_predictions(seeded_store) == before
    local = TestClient(served(seeded_store), client=LOCAL)
    assert local.post(PREDICT, json={"texts": ["好"]}).status_code == 200


def test_with_users_other_machines_are_served_with_a_token(team):
    token = auth.create_token(team, "anna", by="olga")
    remote = TestClient(served(team), client=REMOTE)
    assert remote.post(PREDICT, json={"texts": ["好"]}).status_code == 401
    assert remote.post(PREDICT, json={"texts": ["好"]}, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_health_shows_the_store_path_only_to_a_valid_token(team):
    client = TestClient(served(team), client=LOCAL)
    for headers in ({}, {"Authorization": "Bearer mms_forged"}):
        r = client.get("/api/health", headers=headers)
        assert r.status_code == 200 and str(team.path) not in r.text and r.json()["store"] is None
    token = auth.create_token(team, "anna", by="olga")
    assert client.get("/api/health", headers={"Authorization": f"Bearer {token}"}).json()["store"] == str(team.path)


# --- 12: sign-in backoff, audited ---------------------------------------------------------

def test_repeated_wrong_passwords_lock_the_name_even_for_the_right_password(team):
    for _ in range(5):
        with pytest.raises(SignInRefused, match="Unknown user or wrong password"):
            auth.sign_in(team, "anna", "guess", via="dashboard")
    with pytest.raises(SignInRefused, match="Too many failed sign-ins for 'anna'.*Try again") as first:
        auth.sign_in(team, "anna", "analyst-pass", via="dashboard")
    assert first.value.retry_after > 0
    assert auth.sign_in(team, "lars", "labeller-pass", via="dashboard").name == "lars"  # per name
    # the lockout passes; one more wrong password locks the name for longer than before
    pass_time(team, 2)
    with pytest.raises(SignInRefused, match="wrong password"):
        auth.sign_in(team, "anna", "guess-again", via="dashboard")
    with pytest.raises(SignInRefused, match="Too many") as second:
        auth.sign_in(team, "anna", "analyst-pass", via="dashboard")
    assert second.value.retry_after > first.value.retry_after
    pass_time(team, 5)
    assert auth.sign_in(team, "anna", "analyst-pass", via="dashboard").role == "analyst"


def test_every_failed_sign_in_is_audited_without_the_password(team):
    for password in ("guess-1", "guess-2", "guess-3", "guess-4", "guess-5", "analyst-pass"):
        with pytest.raises(SignInRefused):
            auth.sign_in(team, "anna", password, via="dashboard")
    with pytest.raises(SignInRefused):
        auth.sign_in(team, "nobody", "whatever", via="cli")
    failed = events(team, "sign_in_failed")
    assert len(failed) == 7
    assert {e["user"] for e in failed} == {"anna", "nobody"}
    reasons = [json.loads(e["details"])["reason"] for e in failed]
    assert reasons.count("wrong password") == 5 and "locked out" in reasons and "unknown user" in reasons
    everything = registry.events_table(team, None, limit=1000).to_string()
    assert not any(p in everything for p in ("guess-1", "guess-5", "analyst-pass", "whatever"))


def test_the_sign_in_form_uses_the_backoff(team, app):
    at = app()
    at.text_input(key="sign_in_user").input("anna")
    for _ in range(5):
        at.text_input(key="sign_in_password").input("guess")
        at.button[0].click().run()
    at.text_input(key="sign_in_password").input("analyst-pass")
    at.button[0].click().run()
    assert "Too many failed sign-ins" in at.error[0].value and at.title[0].value == "Sign in to MMS"
    assert len(events(team, "sign_in_failed")) == 6


def test_wrong_api_tokens_are_limited_per_address_and_audited(team):
    token = auth.create_token(team, "anna", by="olga")
    prober = TestClient(served(team), client=("10.9.9.9", 4000))
    for _ in range(5):
        assert prober.get("/api/models", headers={"Authorization": "Bearer mms_guess"}).status_code == 401
    r = prober.get("/api/models", headers={"Authorization": "Bearer mms_guess"})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0 and "too many unknown API tokens" in r.json()["error"]
    failed = events(team, "api_token_failed")
    assert [json.loads(e["details"])["address"] for e in failed] == ["10.9.9.9"] * 6  # every failure, then the lock
    other = TestClient(served(team), client=("10.9.9.10", 4000))
    assert other.get("/api/models", headers={"Authorization": f"Bearer {token}"}).status_code == 200


# --- 13: sessions that survive a reload and follow the store ------------------------------

def signed_in(app, name: str, password: str, page: str | None = None):
    """An AppTest session after signing in through the form (on `page` if given: a deep link)."""
    at = app()
    if page:
        at.switch_page(page).run()
    at.text_input(key="sign_in_user").input(name)
    at.text_input(key="sign_in_password").input(password)
    at.button[0].click().run()
    assert not at.exception
    return at


def titles(at) -> list[str]:
    return [t.value for t in at.title]


def test_a_removed_users_open_session_stops_at_once(team, app):
    at = signed_in(app, "anna", "analyst-pass")
    assert "Monitor" in titles(at)
    auth.remove_user(team, "anna", by="olga")
    at.run()
    assert titles(at) == ["Sign in to MMS"] and not at.sidebar.selectbox
    assert "session has ended" in at.info[0].value


def test_a_role_change_ends_the_users_sessions(team, app):
    at = signed_in(app, "anna", "analyst-pass")
    at.switch_page("pages/train.py").run()
    assert "Train" not in titles(at)
    auth.add_user(team, "anna", "owner", "analyst-pass", by="olga")
    at.run()
    assert titles(at) == ["Sign in to MMS"]  # signed out: the new role starts with a new sign-in
    at = signed_in(app, "anna", "analyst-pass", page="pages/train.py")
    assert "Train" in titles(at) and at.session_state["role"] == "owner"


def test_a_deep_link_survives_sign_in(team, app):
    at = signed_in(app, "olga", "owner-pass-1", page="pages/versions.py")
    assert "Versions" in titles(at)


def test_a_forbidden_page_says_which_role_it_needs(team, app):
    at = signed_in(app, "lars", "labeller-pass", page="pages/versions.py")
    assert "Versions" not in titles(at)
    assert "The Versions page needs the role owner" in at.error[0].value
    assert "lars" in at.error[0].value


def test_session_tokens_are_signed_expiring_and_end_with_sign_out(team, monkeypatch):
    token, _ = sessions.start(team, "anna")
    assert sessions.identity(team, token) == auth.Identity("anna", "analyst")
    session_id, expires, signature = token.split(".")
    for forged in (f"{session_id}.{int(expires) + 999}.{signature}", f"{session_id}.{expires}.{signature[:-2]}xx",
                   "", "a.b.c", token + "."):
        assert sessions.identity(team, forged) is None
    sessions.end(team, token)
    assert sessions.identity(team, token) is None
    monkeypatch.setenv("MMS_SESSION_HOURS", "-1")
    expired, _ = sessions.start(team, "anna")
    assert sessions.identity(team, expired) is None
    assert "analyst-pass" not in token


def test_the_cookie_route_sets_an_httponly_strict_cookie_once_for_the_dashboard_only(team):
    token, code = sessions.start(team, "anna")
    client = TestClient(served(team), client=LOCAL)
    same_site = {"Origin": "http://testserver"}
    assert client.post(sessions.START_PATH, json={"code": code}, headers={"Origin": "http://evil.example"}).status_code == 403
    r = client.post(sessions.START_PATH, json={"code": code}, headers=same_site)
    assert r.status_code == 204
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{sessions.cookie_name(team)}={token};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert client.post(sessions.START_PATH, json={"code": code}, headers=same_site).status_code == 403  # once
    r = client.post(sessions.END_PATH, headers=same_site)
    assert r.status_code == 204 and sessions.identity(team, token) is None


# --- 14: CLI writes need a credential once the store has users ----------------------------

def run_cli(store, *argv, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr, sys.stdin
    sys.stdout, sys.stderr, sys.stdin = out, err, io.StringIO(stdin)
    try:
        code = cli.main(["--store", str(store.path), *argv])
    finally:
        sys.stdout, sys.stderr, sys.stdin = old
    return code, out.getvalue(), err.getvalue()


def activations(store) -> list[str]:
    return [e["user"] for e in events(store, "activate")]


def test_a_forged_user_on_the_command_line_is_refused(team, monkeypatch):
    monkeypatch.delenv("MMS_TOKEN", raising=False)
    before = activations(team)
    code, _, err = run_cli(team, "--user", "olga", "activate", M, "1", "--reason", "forged")
    assert code == 2 and "MMS_TOKEN" in err and "password" in err
    assert activations(team) == before
    # with somebody else's token, --user cannot name another user either
    monkeypatch.setenv("MMS_TOKEN", auth.create_token(team, "lars", by="olga"))
    code, _, err = run_cli(team, "--user", "olga", "label", M, "/dev/null")
    assert code == 2 and "lars" in err and "olga" in err


def test_a_token_in_mms_token_acts_and_is_audited_as_its_user(team, monkeypatch):
    monkeypatch.setenv("MMS_TOKEN", auth.create_token(team, "olga", by="olga"))
    code, _, err = run_cli(team, "activate", M, "1", "--reason", "from a script")
    assert code == 0, err
    assert activations(team)[0] == "olga"
    monkeypatch.setenv("MMS_TOKEN", "mms_not-a-token")
    code, _, err = run_cli(team, "activate", M, "1", "--reason", "x")
    assert code == 2 and "MMS_TOKEN" in err


def test_reads_stay_open_to_whoever_can_read_the_file(team, monkeypatch):
    monkeypatch.delenv("MMS_TOKEN", raising=False)
    code, out, _ = run_cli(team, "--format", "json", "models")
    assert code == 0 and M in out


def test_a_password_prompt_works_in_a_terminal(team, monkeypatch):
    monkeypatch.delenv("MMS_TOKEN", raising=False)
    monkeypatch.setattr(cli.base, "_terminal", lambda: True)
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt: "owner-pass-1")
    code, _, err = run_cli(team, "--user", "olga", "activate", M, "1", "--reason", "typed")
    assert code == 0, err
    assert activations(team)[0] == "olga"
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt: "wrong")
    code, _, err = run_cli(team, "--user", "olga", "activate", M, "1", "--reason", "typed")
    assert code == 2 and "wrong password" in err


# --- 13 in a real browser: the cookie is what a reload keeps --------------------------------

@pytest.fixture
def served_dashboard(_seeded_template, tmp_path):
    """`streamlit run app.py` on a free loopback port, on a copy of the seeded store with users."""
    folder = tmp_path / "store"
    store = copy_store(_seeded_template, folder)
    auth.add_user(store, "olga", "owner", "owner-pass-1", by="setup")
    url, proc = start_server({"MMS_STORE": str(store.path)}, tmp_path / "streamlit.log")
    wait_ready(url, proc, tmp_path / "streamlit.log")
    yield url, store
    stop_server(proc)


@pytest.mark.browser
def test_a_browser_stays_signed_in_across_a_reload_on_the_page_it_asked_for(served_dashboard):
    from playwright.sync_api import sync_playwright

    url, store = served_dashboard
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            # the browser has opened the dashboard before (a first visit in a new browser profile falls
            # back to the main page even in open mode: a Streamlit quirk, reported separately)
            page.goto(url)
            page.get_by_role("heading", name="Sign in to MMS").wait_for()
            wait_idle(page)
            page.goto(url + "/versions")  # a deep link, before signing in
            page.get_by_role("heading", name="Sign in to MMS").wait_for()
            page.get_by_label("User", exact=True).fill("olga")
            page.get_by_label("Password", exact=True).fill("owner-pass-1")
            with page.expect_response(lambda r: r.url.endswith(sessions.START_PATH)) as started:
                page.get_by_role("button", name="Sign in").click()
            assert started.value.status == 204
            page.get_by_role("heading", name="Versions").first.wait_for()
            wait_idle(page)
            [cookie] = [c for c in page.context.cookies() if c["name"] == sessions.cookie_name(store)]
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            assert "owner-pass-1" not in cookie["value"]
            page.reload()
            page.get_by_role("heading", name="Versions").first.wait_for()
            wait_idle(page)
            assert page.url.endswith("/versions") and page.get_by_text("Sign in to MMS").count() == 0
            with page.expect_response(lambda r: r.url.endswith(sessions.END_PATH)):
                page.get_by_role("button", name="Sign out").click()
            page.get_by_role("heading", name="Sign in to MMS").wait_for()
            wait_idle(page)
            page.reload()
            page.get_by_role("heading", name="Sign in to MMS").wait_for()
            assert not [c for c in page.context.cookies() if c["name"] == sessions.cookie_name(store)]
        finally:
            browser.close()
