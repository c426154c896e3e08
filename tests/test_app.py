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
