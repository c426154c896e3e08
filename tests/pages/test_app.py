from core import registry


def test_app_starts_on_the_seeded_store_with_the_model_selected(app):
    at = app()
    assert not at.exception
    assert at.sidebar.selectbox(key="model").value == "评论情感"
    assert any("simulated" in i.value for i in at.sidebar.info)


def test_first_start_builds_the_demo_store(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest
    from conftest import ROOT
    from core import demo
    from core.store import Store

    full = demo.build_store
    small = lambda store, user, progress: full(store, user, n_train=200, n_test=80, n_traffic=100, weeks=1,
                                               progress=progress)
    monkeypatch.setattr(demo, "build_store", small)
    monkeypatch.setenv("MMS_STORE", str(tmp_path / "new.duckdb"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert [m.name for m in registry.list_models(Store(tmp_path / "new.duckdb"))] == ["评论情感"]


def test_open_mode_is_obvious_on_screen(app):
    at = app()
    assert any("Open mode" in w.value for w in at.sidebar.warning)


def test_sign_in_is_required_once_users_exist_and_roles_limit_pages(app, seeded_store):
    from core import auth

    auth.add_user(seeded_store, "olga", "owner", "owner-pass-1", by="setup")
    auth.add_user(seeded_store, "anna", "analyst", "analyst-pass", by="olga")
    at = app()
    assert at.title[0].value == "Sign in to MMS" and not at.sidebar.selectbox
    at.text_input(key="sign_in_user").input("anna")
    at.text_input(key="sign_in_password").input("wrong-password")
    at.button[0].click().run()
    assert "Unknown user or wrong password." in at.error[0].value
    at.text_input(key="sign_in_password").input("analyst-pass")
    at.button[0].click().run()
    assert not at.exception
    assert at.session_state["user"] == "anna" and at.session_state["role"] == "analyst"
    assert not any("Open mode" in w.value for w in at.sidebar.warning)
    # an analyst who opens Train (a link, a bookmark) is told why not, and core refuses her a retrain anyway
    import pytest
    from core import train
    from core.errors import PermissionDenied

    at.switch_page("pages/train.py").run()
    assert "needs the role owner" in at.error[0].value and "Train" not in [t.value for t in at.title]
    with pytest.raises(PermissionDenied):
        train.train_version(seeded_store, "评论情感", "anna")
