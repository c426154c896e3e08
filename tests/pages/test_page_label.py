"""Label page: one hard example at a time with a button per label, undo, bulk mode, and the
batch kept across reruns."""
import json

import pandas as pd
import pytest

from core import agreement, feedback, sampling
from core.errors import InvalidInput, PermissionDenied, StoreBusy
from core.store import Store
from lakefixtures import pg_cluster  # noqa: F401  (a fixture)

MODEL = "评论情感"


def mine(store) -> dict:
    return feedback.labelled_counts(store, MODEL, user="tester")


def shown_text(at) -> str:
    return at.text[1].value  # the first text is the example's business line, time and version


def shown_prediction(at) -> int:
    """The prediction id the example's first line shows ("酒店 · 2026-11-01 10:00 · version 1 · prediction 42")."""
    return int(at.text[0].value.rsplit("prediction ", 1)[1])


def batch_named(at) -> str:
    """What the "This batch" counter says on hover: "Batch 3, chosen by least confidence"."""
    return next(m for m in at.metric if m.label == "This batch").proto.help


def batch(at):
    return at.session_state["label_queue"].batch


def test_label_page_shows_one_example_with_a_button_per_decision(app):
    at = app("pages/label.py")
    assert not at.exception
    assert not at.error
    assert at.selectbox(key="label_strategy").value == "uncertain_spread"
    assert at.multiselect(key="label_lines").value == []
    assert [b.key for b in at.button if b.key.startswith("label_as_")] == \
        ["label_as_0", "label_as_1", "label_as_skip", "label_as_unclear"]
    assert [b.label for b in at.button if b.key.startswith("label_as_")] == ["正面", "负面", "skip", "unclear"]
    assert {m.label: m.value for m in at.metric}["This batch"] == "0 / 20"
    assert shown_text(at)
    assert list(at.dataframe[0].value["label"]) == ["正面", "负面"]


def test_clicking_a_label_records_it_and_shows_the_next_example(app, seeded_store):
    at = app("pages/label.py")
    before_text = shown_text(at)
    assert mine(seeded_store) == {}
    at.button(key="label_as_1").click().run()
    assert not at.exception
    assert mine(seeded_store) == {"负面": 1}
    assert shown_text(at) != before_text
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["This batch"] == "1 / 20" and metrics["You labelled today"] == "1"


def test_undo_takes_the_last_decision_back(app, seeded_store):
    at = app("pages/label.py")
    first = shown_text(at)
    at.button(key="label_as_skip").click().run()
    assert mine(seeded_store) == {"skip": 1}
    at.button(key="label_undo_button").click().run()
    assert not at.exception
    assert mine(seeded_store) == {}
    assert shown_text(at) == first
    assert at.button(key="label_undo_button").disabled


def test_the_batch_is_kept_across_reruns_and_replaced_when_the_strategy_changes(app):
    """What a labeller sees: the same example and batch after a rerun or a trip to bulk mode and back,
    and a new batch, chosen by the new strategy, once the strategy changes."""
    at = app("pages/label.py")
    named, example = batch_named(at), shown_text(at)
    assert named.endswith("chosen by " + sampling.DEFAULT_STRATEGY.replace("_", " "))  # the default strategy
    at.run()
    at.toggle(key="label_bulk").set_value(True).run()
    assert len(at.data_editor[0].value) == 20
    at.toggle(key="label_bulk").set_value(False).run()
    assert (batch_named(at), shown_text(at)) == (named, example)
    at.selectbox(key="label_strategy").set_value("margin").run()
    assert not at.exception
    assert batch_named(at) != named and batch_named(at).endswith("chosen by margin")
    assert {m.label: m.value for m in at.metric}["This batch"] == "0 / 20"


def test_the_strategy_select_shows_the_name_and_its_description_below(app):
    """The name and description together in the select were cut even at 1400 px."""
    at = app("pages/label.py")
    strategy = at.selectbox(key="label_strategy")
    assert strategy.options[:2] == ["least confidence", "margin"] and "audit sample" in strategy.options
    assert any(c.value.startswith("The most uncertain texts, each next one also as unlike") for c in at.caption)
    strategy.set_value("margin").run()
    assert "Smallest gap between the two most likely labels first." in [c.value for c in at.caption]


def test_bulk_mode_submits_the_chosen_labels(app, seeded_store):
    at = app("pages/label.py")
    at.toggle(key="label_bulk").set_value(True).run()
    editor = at.data_editor[0]
    assert len(editor.value) == 20
    at.session_state[editor.key] = {"edited_rows": {0: {"label": "正面"}, 2: {"label": "unclear"}},
                                    "added_rows": [], "deleted_rows": []}
    at.button(key="label_bulk_submit").click().run()
    assert not at.exception
    assert mine(seeded_store) == {"正面": 1, "unclear": 1}
    assert any("Recorded 2 labels" in s.value for s in at.success)
    assert len(at.data_editor[0].value) == 18
    at.button(key="label_undo_button").click().run()
    assert mine(seeded_store) == {}


def test_an_exhausted_queue_is_good_news_not_an_error(app, seeded_store):
    rest = sampling.select_hard_examples(seeded_store, MODEL, 10_000, "someone else").examples
    feedback.record_labels(seeded_store, MODEL, pd.DataFrame({"prediction_id": rest["prediction_id"],
                                                              "label": "skip"}), "someone else")
    at = app("pages/label.py")
    assert not at.exception
    assert not at.error
    assert any("Nothing left to label" in s.value for s in at.success)
    assert {m.label: m.value for m in at.metric}["Left in this queue"] == "0"


def test_an_analyst_reads_but_does_not_label(app):
    at = app("pages/label.py", role="analyst")
    assert not at.exception
    assert any("Analyst" in i.value for i in at.info)
    assert not [b for b in at.button if b.key and b.key.startswith("label_as_")]


def test_accept_takes_the_model_suggestion_and_shows_it_on_the_button(app, seeded_store):
    at = app("pages/label.py")
    probabilities = at.dataframe[0].value
    suggested = probabilities.loc[probabilities["model says"] == "◀", "label"].item()
    accept = at.button(key="label_accept")
    assert suggested in accept.label and accept.proto.shortcut.lower() == "a"  # the button shows its key
    accept.click().run()
    assert not at.exception
    assert mine(seeded_store) == {suggested: 1}


def test_probabilities_tell_a_near_tie_from_a_tie(app):
    at = app("pages/label.py")
    examples = batch(at).examples
    first = examples.index[0]
    for p_pos, top in ((0.496, "50.4%"), (0.5, "50.0%"), (0.4996, "50.04%")):  # "10.5%" as on the Monitor
        examples.loc[first, ["p_正面", "p_负面", "label", "top_prob"]] = [p_pos, 1 - p_pos, "负面", 1 - p_pos]
        at.run()
        assert f"({top})" in at.button(key="label_accept").label
        shown = json.loads(at.dataframe[0].proto.columns)["probability"]["type_config"]["format"]
        assert shown == f"%.{len(top.split('.')[1]) - 1}f%%"  # the bars' text without a space too
        assert sorted(at.dataframe[0].value["probability"].round(2)) == sorted([round(100 * p_pos, 2),
                                                                                round(100 * (1 - p_pos), 2)])


def test_skip_is_no_label_and_the_example_comes_back_at_the_end(app, seeded_store):
    at = app("pages/label.py")
    left = sampling.queue_size(seeded_store, MODEL)
    skipped = shown_prediction(at)
    first = shown_text(at)
    at.button(key="label_as_skip").click().run()
    assert not at.exception
    assert shown_text(at) != first
    assert batch(at).queue[-1] == skipped
    assert feedback.skipped(seeded_store, MODEL, "tester", [skipped]) == {skipped}
    assert sampling.queue_size(seeded_store, MODEL) == left  # still waiting for a label
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Skipped today"], metrics["You labelled today"], metrics["This batch"]) == ("1", "0", "0 / 20")
    named = batch_named(at)
    for _ in range(19):  # decide every other example: only the skipped one is left, so a new batch comes,
        at.button(key="label_as_0").click().run()  # of examples not skipped: the skipped one waits behind them all
    assert not at.exception
    assert batch_named(at) != named
    assert skipped not in batch(at).queue
    assert f"prediction {skipped}" not in at.text[0].value


def test_unclear_goes_to_the_review_queue_and_is_counted_apart(app, seeded_store):
    at = app("pages/label.py")
    pid = shown_prediction(at)
    at.button(key="label_as_unclear").click().run()
    assert not at.exception
    queue = agreement.review_queue(seeded_store, MODEL)
    assert queue.loc[queue["prediction_id"] == pid, "reason"].tolist() == ["unclear"]
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Unclear today"], metrics["You labelled today"], metrics["Skipped today"]) == ("1", "0", "0")


def test_an_owner_writes_guidelines_that_labellers_see_as_text(app, seeded_store):
    at = app("pages/label.py")
    assert any("No guidelines" in c.value for c in at.caption)
    written = "## 正面\n* praise, even mild\n<script>alert(1)</script><img src=x onerror=alert(2)>"
    at.text_area(key="label_guidelines_text").input(written)
    at.button(key="label_guidelines_save").click().run()
    assert not at.exception
    assert feedback.guidelines(seeded_store, MODEL) == written
    labeller = app("pages/label.py", role="labeller")
    shown = [m.value for m in labeller.markdown if "praise" in m.value]
    assert len(shown) == 1 and "<script>" not in shown[0] and "&lt;script&gt;" in shown[0]
    assert "<img" not in shown[0] and "&lt;img src=x onerror=alert(2)&gt;" in shown[0]
    assert not [t for t in labeller.text_area if t.key == "label_guidelines_text"]  # owners only


def test_a_labeller_may_not_write_guidelines(seeded_store, team):
    with pytest.raises(PermissionDenied):
        feedback.set_guidelines(seeded_store, MODEL, "anything", "lars")


@pytest.fixture(params=["embedded", "ducklake"])
def logged(request, tmp_path, reviews):
    """A model with version 1 and 20 logged predictions, on either backend."""
    from conftest import make_model
    from core import predict, train
    from lakefixtures import new_lake

    store = Store(tmp_path / "mms.duckdb") if request.param == "embedded" else \
        new_lake(request.getfixturevalue("pg_cluster"), tmp_path)
    _, _, rest = make_model(store, reviews, n_train=200, n_test=60, name="m")
    train.train_version(store, "m", "owner", activate=True)
    out = predict.predict_texts(store, "m", rest["text"].iloc[:20].tolist(), "ana", business_line="酒店")
    return store, out["prediction_id"].astype(int).tolist()


def test_skips_and_guidelines_on_both_backends(logged):
    store, ids = logged
    before = sampling.queue_size(store, "m")
    feedback.skip_prediction(store, "m", ids[0], "lab")
    feedback.skip_prediction(store, "m", ids[1], "lab")
    assert feedback.skipped(store, "m", "lab", ids) == {ids[0], ids[1]}
    assert feedback.skipped(store, "m", "someone else", ids) == set()
    assert sampling.queue_size(store, "m") == before  # a skip is no label
    assert feedback.labelled_counts(store, "m", user="lab") == {"skip": 2}
    feedback.undo_skip(store, "m", ids[1], "lab")
    assert feedback.skipped(store, "m", "lab", ids) == {ids[0]}
    with pytest.raises(InvalidInput):
        feedback.undo_skip(store, "m", ids[1], "lab")
    with pytest.raises(InvalidInput):
        feedback.skip_prediction(store, "m", max(ids) + 1000, "lab")
    assert feedback.guidelines(store, "m") == ""
    feedback.set_guidelines(store, "m", "first", "owner")
    feedback.set_guidelines(store, "m", "  **second**  ", "owner")
    assert feedback.guidelines(store, "m") == "**second**"


def test_a_decision_the_store_refuses_shows_its_example_again_and_is_not_counted(app, seeded_store, monkeypatch):
    at = app("pages/label.py")
    first = shown_text(at)
    real = feedback.record_labels

    def busy(*args, **kwargs):
        raise StoreBusy("store is busy: try again in a moment")

    monkeypatch.setattr(feedback, "record_labels", busy)
    at.button(key="label_as_0").click().run()
    assert not at.exception
    assert any("store is busy" in e.value and "shown again" in e.value for e in at.error)
    assert shown_text(at) == first
    assert {m.label: m.value for m in at.metric}["You labelled today"] == "0"
    monkeypatch.setattr(feedback, "record_labels", real)
    at.button(key="label_as_0").click().run()
    assert mine(seeded_store) == {"正面": 1}
    assert shown_text(at) != first


def test_search_the_queue_by_text(app):
    """Other labelling tools search the queue by text; the draw and the count left both honour it."""
    at = app("pages/label.py")
    left = {m.label: m.value for m in at.metric}["Left in this queue"]
    at.text_input(key="label_search").input("酒店").run()
    assert not at.exception
    examples = batch(at).examples
    assert examples["text"].str.contains("酒店").all()
    assert {m.label: m.value for m in at.metric}["Left in this queue"] != left
    at.selectbox(key="label_strategy").set_value("audit").run()  # a searched random sample is no longer random
    assert at.text_input(key="label_search").disabled


def test_a_comment_goes_with_unclear_and_shows_on_the_review_page(app, seeded_store):
    from core import feedback

    at = app("pages/label.py")
    pid = shown_prediction(at)
    at.text_input(key="label_comment").input("两种产品混在一起").run()
    at.button(key="label_as_unclear").click().run()
    assert not at.exception
    assert at.text_input(key="label_comment").value == ""  # the next example starts without it
    said = feedback.comments(seeded_store, MODEL, [pid])
    assert said["comment"].tolist() == ["两种产品混在一起"] and said["decision"].tolist() == ["unclear"]
    at.switch_page("pages/review.py").run()
    assert any("(unclear): 两种产品混在一起" in t.value for t in at.text)


def test_numeric_grades_read_once_on_the_label_page(app, seeded_store):
    """An ordinal model with grades 1, 2, 3 read "1 1 · 2 2" in the keys line and "1 1" on the buttons."""
    from widefixtures import WIDE, build_wide

    build_wide(seeded_store)
    at = app("pages/label.py")
    at.session_state["select_model"] = WIDE
    at.run()
    assert not at.exception
    keys = next(c.value for c in at.caption if "Keys:" in c.value)
    assert "1 · 2 · 3" in keys and "1 1" not in keys
    assert "1 < 2 < 3" in next(c.value for c in at.caption if "Grades, lowest first" in c.value)
    assert [b.label for b in at.button if b.key.startswith("label_as_")][:3] == ["grade 1", "grade 2", "grade 3"]
