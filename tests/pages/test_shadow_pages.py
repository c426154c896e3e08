"""The shadow section of the Versions page (control and evidence) and of the Train page (evidence
before an activation), driven through Streamlit's AppTest."""
import pytest

from core import demo, predict, shadow

M = demo.MODEL


def _markdown(at) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def test_an_owner_puts_a_version_in_shadow_and_reads_its_evidence(app, worse_v2, reviews, monkeypatch):
    monkeypatch.setenv("MMS_ESTIMATE_MAX_ECE", "0.5")
    at = app("pages/versions.py")
    assert not at.exception
    assert at.selectbox(key="versions_shadow_pick").value == 2
    at.button(key="versions_shadow_start").click().run()
    assert not at.exception and shadow.current(worse_v2, M) == 2
    assert "v2 is in shadow" in _markdown(at)

    predict.predict_texts(worse_v2, M, reviews["text"].iloc[-40:].tolist(), "tester", business_line="书籍")
    shadow.catch_up(worse_v2, M)  # what the server's background does
    at.run()
    assert not at.exception
    assert "Evidence of v2" in _markdown(at)
    assert [m.label for m in at.metric][:4] == ["Predictions scored", "Agreement", "Estimated accuracy, v1",
                                                "Estimated accuracy, v2"]
    assert at.metric[0].value == "40"
    table = next(t.value for t in at.dataframe if "agreement" in t.value.columns)
    assert table["line"].tolist() == ["书籍"] and table["scored"].tolist() == [40]
    assert table["right where they differ"].tolist() == ["–"]  # no label has come back yet

    at.button(key="versions_shadow_stop").click().run()
    assert not at.exception and shadow.current(worse_v2, M) is None
    assert "out of shadow" in _markdown(at)  # its evidence stays


def test_the_train_page_shows_a_versions_shadow_evidence_before_it_is_activated(app, worse_v2, reviews):
    at = app("pages/train.py")
    assert not at.exception
    assert "Put it in shadow on the Versions page" in _markdown(at)
    shadow.start(worse_v2, M, 2, "tester")
    predict.predict_texts(worse_v2, M, reviews["text"].iloc[-30:].tolist(), "tester", business_line="酒店")
    shadow.catch_up(worse_v2, M)
    at.run()
    assert not at.exception
    assert "v2 on the live predictions" in _markdown(at) and "Evidence of v2" in _markdown(at)
    assert at.button(key="train_activate")  # the activation still below the evidence


def test_an_analyst_sees_the_evidence_but_cannot_shadow(app, worse_v2):
    at = app("pages/versions.py", role="analyst")
    assert not at.exception
    assert at.button(key="versions_shadow_start").disabled
