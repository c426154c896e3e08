"""An item's full label history (issue 22, "also expected"): who predicted it, who gave which label
and when, skips, undone labels and the review, from core, the command line and the Predict page."""
import json

import pytest

from core import agreement, auth, cli, feedback, predict
from core.errors import InvalidInput

M = "评论情感"


@pytest.fixture
def item(seeded_store):
    """A fresh prediction labelled 正面 by lars, undone, skipped and labelled again, labelled 负面 by
    lena (overlap 100 %), and decided 负面 by olga: every step a history shows."""
    store = seeded_store
    auth.add_user(store, "olga", "owner", "owner-pass-1", by="setup")
    auth.add_user(store, "lars", "labeller", "labeller-pass", by="olga")
    auth.add_user(store, "lena", "labeller", "labeller-pass", by="olga")
    pid = int(predict.predict_texts(store, M, ["房间还行，就是隔音差"], "olga", business_line="酒店")
              ["prediction_id"].iloc[0])
    first = feedback.label_prediction(store, M, pid, "正面", "lars")
    feedback.undo_labels(store, M, [first], "lars")
    feedback.skip_prediction(store, M, pid, "lars")
    feedback.label_prediction(store, M, pid, "正面", "lars")
    agreement.set_overlap_share(store, M, 1.0, "olga")
    feedback.label_prediction(store, M, pid, "负面", "lena")
    agreement.decide(store, M, pid, "负面", "olga")
    return store, pid


def test_the_history_lists_every_step_in_order(item):
    store, pid = item
    text, history = feedback.label_history(store, M, pid)
    assert text == "房间还行，就是隔音差"
    steps = list(zip(history["step"], history["user"], history["label"].fillna("")))
    assert steps == [("predicted", "olga", steps[0][2]), ("label undone", "lars", ""), ("skipped", "lars", ""),
                     ("label", "lars", "正面"), ("second label", "lena", "负面"), ("review", "olga", "负面")]
    assert "version 1" in history["detail"].iloc[0] and "酒店" in history["detail"].iloc[0]
    assert history["detail"].iloc[-1] == "disagreement"
    assert history["at"].is_monotonic_increasing


def test_an_unknown_prediction_is_a_sentence(seeded_store):
    with pytest.raises(InvalidInput, match="no prediction 999999999 for model '评论情感'"):
        feedback.label_history(seeded_store, M, 999999999)


def test_the_history_command_prints_it_without_a_credential(item, capsys):
    store, pid = item  # the store has users: a read needs no token
    code = cli.main(["--store", str(store.path), "--format", "json", "history", M, str(pid)])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = json.loads(out)
    assert [r["step"] for r in rows][-2:] == ["second label", "review"]
    assert f"prediction {pid}: 房间还行" in err


def test_the_predict_page_shows_an_items_history(app, item):
    store, pid = item
    at = app()  # the store has users: sign in as olga, then open Predict
    at.text_input(key="sign_in_user").input("olga")
    at.text_input(key="sign_in_password").input("owner-pass-1")
    at.button[0].click().run()
    at.switch_page("pages/predict.py").run()
    at.number_input(key="predict_history_id").set_value(pid).run()
    assert not at.exception
    shown = next(d.value for d in at.dataframe if "step" in d.value.columns)
    assert list(shown["step"])[-1] == "review" and list(shown["user"])[-1] == "olga"
    assert any("房间还行，就是隔音差" in t.value for t in at.markdown)
    at.number_input(key="predict_history_id").set_value(999999999).run()
    assert any("no prediction 999999999" in e.value for e in at.error)
