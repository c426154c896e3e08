"""Two things users of other labelling tools expect: search the labelling queue by text, and a
comment beside "unclear" and "skip" that the owner reads on the Review page."""
import pandas as pd
import pytest

from core import agreement, feedback, sampling
from core.errors import EmptyPool, InvalidInput
from core.registry import SKIP, UNCLEAR
from core.store import Store

M = "评论情感"
WORD = "酒店"


def test_the_queue_search_draws_and_counts_only_texts_that_contain_it(seeded_store):
    everything = sampling.queue_size(seeded_store, M)
    found = sampling.queue_size(seeded_store, M, text=f"  {WORD} ")
    assert 0 < found < everything
    batch = sampling.select_hard_examples(seeded_store, M, 10, "tester", text=WORD)
    assert len(batch.examples) and batch.examples["text"].str.contains(WORD).all()
    assert sampling.queue_size(seeded_store, M, text="") == everything  # a blank search is no filter


def test_the_search_ignores_the_case_of_latin_letters(seeded_store):
    assert sampling.queue_size(seeded_store, M, text="WIFI") == sampling.queue_size(seeded_store, M, text="wifi")


def test_a_search_that_matches_nothing_is_an_empty_pool(seeded_store):
    with pytest.raises(EmptyPool):
        sampling.select_hard_examples(seeded_store, M, 5, "tester", text="这句话不会出现在任何评论里")


def test_an_overlong_search_is_refused_with_a_sentence(seeded_store):
    with pytest.raises(InvalidInput, match="at most 200"):
        sampling.queue_size(seeded_store, M, text="好" * 201)


def first_ids(store: Store, n: int) -> list[int]:
    return sampling.select_hard_examples(store, M, n, "tester").examples["prediction_id"].astype(int).tolist()


def test_comments_on_unclear_and_skip_are_kept_and_shown_with_the_review_item(seeded_store):
    a, b = first_ids(seeded_store, 2)
    feedback.label_prediction(seeded_store, M, a, UNCLEAR, "lars", comment="  两种产品混在一条评论里 ")
    feedback.skip_prediction(seeded_store, M, b, "lars", comment="不是中文")
    said = feedback.comments(seeded_store, M, [a, b])
    assert said[["prediction_id", "decision", "comment", "created_by"]].values.tolist() == [
        [a, UNCLEAR, "两种产品混在一条评论里", "lars"], [b, SKIP, "不是中文", "lars"]]
    assert a in set(agreement.review_queue(seeded_store, M)["prediction_id"])


def test_an_undo_takes_the_comment_back_with_the_decision(seeded_store):
    a, b = first_ids(seeded_store, 2)
    fid = feedback.label_prediction(seeded_store, M, a, UNCLEAR, "lars", comment="看不懂")
    feedback.skip_prediction(seeded_store, M, b, "lars", comment="太长")
    feedback.undo_labels(seeded_store, M, [fid], "lars")
    feedback.undo_skip(seeded_store, M, b, "lars")
    assert feedback.comments(seeded_store, M, [a, b]).empty


def test_a_blank_comment_is_none_and_an_overlong_one_changes_nothing(seeded_store):
    a, b = first_ids(seeded_store, 2)
    feedback.skip_prediction(seeded_store, M, a, "lars", comment="   ")
    assert feedback.comments(seeded_store, M, [a]).empty
    with pytest.raises(InvalidInput, match="at most 500"):
        feedback.label_prediction(seeded_store, M, b, UNCLEAR, "lars", comment="长" * 501)
    assert not feedback.skipped(seeded_store, M, "lars", [b])
    assert b not in set(agreement.review_queue(seeded_store, M)["prediction_id"])


def test_a_labels_file_may_carry_a_comment_column(seeded_store):
    a, b = first_ids(seeded_store, 2)
    feedback.record_labels(seeded_store, M, pd.DataFrame({"prediction_id": [a, b], "label": [UNCLEAR, "正面"],
                                                          "comment": ["两可", None]}), "lars")
    assert feedback.comments(seeded_store, M, [a, b])["comment"].tolist() == ["两可"]
