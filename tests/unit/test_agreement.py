"""Team labelling: overlap for a blind second label, Cohen's kappa and raw agreement, the review
queue an owner decides, and that only decided labels reach training and the label statistics."""
import numpy as np
import pandas as pd
import pytest

from core import agreement, auth, feedback, predict, sampling, stats
from core import store as db
from core.errors import Conflict, InvalidInput, PermissionDenied
from conftest import make_model
from lakefixtures import new_lake, pg_cluster  # noqa: F401  (fixtures)

MODEL = "评论情感"
LINE = "团队线"  # a business line of our own, so the demo's labels stay out of these batches
TEXTS = ["质量很好，物流也快", "太差了，再也不买", "还行吧，一般般", "包装破损，客服不理人", "非常满意，推荐购买",
         "房间干净，早餐丰富", "书的印刷模糊", "宝宝很喜欢这个玩具", "价格偏贵但是好用", "完全不值这个价"]


# --- the arithmetic, against values computed by hand ------------------------------------------

def test_kappa_and_raw_agreement_match_hand_computed_values():
    # 10 items: a says P six times, b five times; they agree on 7 (raw 0.7). Chance agreement is
    # 0.6 * 0.5 + 0.4 * 0.5 = 0.5, so kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    a = list("PPPPPPNNNN")
    b = list("PPPPNNNNNP")
    kappa, raw, n = agreement.kappa_and_agreement(a, b)
    assert (round(kappa, 10), raw, n) == (0.4, 0.7, 10)
    # three labels: agree on 4 of 6; marginals a (x2 y2 z2), b (x3 y2 z1): pe = (6 + 4 + 2) / 36 = 1/3,
    # kappa = (2/3 - 1/3) / (2/3) = 0.5
    kappa, raw, n = agreement.kappa_and_agreement(list("xxyyzz"), list("xxyyxx"))
    assert round(kappa, 10) == 0.5 and round(raw, 10) == round(4 / 6, 10)


def test_kappa_is_undefined_when_both_used_one_label_and_empty_gives_no_items():
    kappa, raw, n = agreement.kappa_and_agreement(["P"] * 4, ["P"] * 4)
    assert np.isnan(kappa) and raw == 1.0 and n == 4
    kappa, raw, n = agreement.kappa_and_agreement([], [])
    assert np.isnan(kappa) and np.isnan(raw) and n == 0


def test_pairs_line_up_whoever_labelled_first_and_lines_are_separate():
    pairs = pd.DataFrame({
        "first_by": ["ann", "bob", "ann", "bob", "ann", "cid"],
        "first_label": ["P", "N", "P", "P", "N", "P"],
        "second_by": ["bob", "ann", "bob", "ann", "bob", "ann"],
        "second_label": ["P", "N", "N", "P", "N", "N"],
        "business_line": ["书", "书", "书", "酒店", "酒店", "酒店"]})
    by_pair = agreement.pair_agreement(pairs).set_index(["labeller_a", "labeller_b"])
    # ann vs bob, ann's labels first: P N P P N against P N N P N: 4 of 5 agree;
    # pe = (3/5)(2/5) + (2/5)(3/5) = 0.48, kappa = (0.8 - 0.48) / 0.52
    assert by_pair.loc[("ann", "bob"), "items"] == 5
    assert by_pair.loc[("ann", "bob"), "agreement"] == pytest.approx(0.8)
    assert by_pair.loc[("ann", "bob"), "kappa"] == pytest.approx(0.32 / 0.52)
    assert by_pair.loc[("ann", "cid"), "agreement"] == 0.0
    by_line = agreement.line_agreement(pairs).set_index("business_line")
    assert by_line.loc["书", "agreement"] == pytest.approx(2 / 3)
    assert by_line.loc["酒店", "items"] == 3 and by_line.loc["酒店", "agreement"] == pytest.approx(2 / 3)


def test_decisions_per_hour_count_active_time_only():
    start = pd.Timestamp("2026-11-30 09:00:00")
    seconds = [0, 10, 20, 30, 3630, 3650]  # three 10 s decisions, an hour's break, one of 20 s
    rate, hours = agreement.decisions_per_hour([start + pd.Timedelta(seconds=s) for s in seconds])
    assert rate == pytest.approx(4 / 50 * 3600)  # 288 an hour
    assert hours == pytest.approx(50 / 3600)
    rate, hours = agreement.decisions_per_hour([start])
    assert np.isnan(rate) and hours == 0


def test_audit_accuracy_counts_items_decided_by_someone_else_too():
    pairs = pd.DataFrame({
        "first_by": ["ann", "ann", "ann", "bob"], "first_label": ["P", "P", "N", "P"],
        "second_by": ["bob", "bob", "bob", "ann"], "second_label": ["P", "N", "P", "N"],
        "reviewed": [None, "N", None, None], "audit": [True, True, True, False],
        "business_line": ["x"] * 4})
    times = pd.DataFrame({"user": ["ann", "bob"], "created_at": pd.to_datetime(["2026-11-30", "2026-11-30"]),
                          "kind": ["labelled", "labelled"]})
    figures = agreement.labeller_figures(times, pairs).set_index("labeller")
    # audit items with a decided label: #1 (agreed P) and #2 (review said N); #3 is undecided
    assert figures.loc["ann", "audit_items"] == 2 and figures.loc["ann", "audit_accuracy"] == 0.5
    assert figures.loc["bob", "audit_items"] == 2 and figures.loc["bob", "audit_accuracy"] == 1.0
    assert figures.loc["ann", "double_labelled"] == 4 and figures.loc["ann", "agreement"] == 0.25
    pairs.loc[1, "reviewed"] = agreement.DISCARD  # left out of training: nobody was right or wrong on it
    figures = agreement.labeller_figures(times, pairs).set_index("labeller")
    assert figures.loc["ann", "audit_items"] == 1 and figures.loc["ann", "audit_accuracy"] == 1.0


def test_unclear_is_its_own_outcome_not_a_disagreement_and_not_in_kappa():
    pairs = pd.DataFrame({
        "first_by": ["ann"] * 5, "first_label": ["P", "P", "N", "N", "P"],
        "second_by": ["bob"] * 5, "second_label": ["P", "P", "N", "N", "unclear"],
        "reviewed": [None] * 5, "audit": [False] * 5, "business_line": ["x"] * 5})
    pair = agreement.pair_agreement(pairs).iloc[0]
    # four items with a label from both, all agreeing; bob's unclear is counted apart
    assert (pair["items"], pair["agreement"], pair["kappa"], pair["unclear"]) == (4, 1.0, 1.0, 1)
    assert agreement.line_agreement(pairs).iloc[0]["unclear"] == 1
    times = pd.DataFrame({"user": ["ann"] * 5 + ["bob"] * 5, "created_at": pd.Timestamp("2026-11-30"),
                          "kind": ["labelled"] * 9 + ["unclear"]})
    figures = agreement.labeller_figures(times, pairs).set_index("labeller")
    assert figures.loc["bob", ["labelled", "unclear", "double_labelled", "agreement"]].tolist() == [4, 1, 4, 1.0]


def test_kappa_matches_scikit_learns():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    for _ in range(20):
        a, b = rng.choice(list("ABC"), 40), rng.choice(list("ABCD"), 40)
        b[:20] = a[:20]
        kappa, raw, n = agreement.kappa_and_agreement(a, b)
        assert kappa == pytest.approx(sklearn_metrics.cohen_kappa_score(a, b)) and n == 40


def test_overlap_places_are_the_share_of_a_batch_rounded_up():
    assert [agreement.overlap_places(s, 20) for s in (0, 0.1, 0.25, 0.01, 1)] == [0, 2, 5, 1, 20]


# --- the flow on a store ------------------------------------------------------------------------

@pytest.fixture
def crew(team):
    """The team store with a second labeller (mia) and ten predictions on a line of our own."""
    auth.add_user(team, "mia", "labeller", "labeller-pass-2", by="olga")
    predict.predict_texts(team, MODEL, TEXTS, "olga", business_line=LINE)
    return team


def draw(store, user, k=5):
    return sampling.select_hard_examples(store, MODEL, k, user, business_lines=[LINE])


def label_all(store, user, found, labels):
    frame = pd.DataFrame({"prediction_id": found.examples["prediction_id"], "label": labels})
    return feedback.record_labels(store, MODEL, frame, user, found.batch_id)


def training_labels(store) -> dict[int, str]:
    with store.connect() as con:
        model_id = con.execute("SELECT model_id FROM models WHERE name = ?", [MODEL]).fetchone()[0]
        rows = db.examples_with_tokens(con, model_id, "train", "none")
        ids = con.execute("SELECT example_id, prediction_id FROM examples").df()
    rows = rows.merge(ids, on="example_id").dropna(subset=["prediction_id"])
    return dict(zip(rows["prediction_id"].astype(int), rows["label"]))


def test_second_labeller_gets_others_decided_items_blind_and_never_their_own(crew):
    agreement.set_overlap_share(crew, MODEL, 1.0, "olga")
    first = draw(crew, "lars", k=3)
    assert first.examples.shape[0] == 3  # nothing decided by anyone else yet: all new items
    label_all(crew, "lars", first, [{"正面": "负面"}.get(s, "正面") for s in first.examples["label"]])
    again = draw(crew, "lars")  # lars never gets his own items back
    assert not set(again.examples["prediction_id"]) & set(first.examples["prediction_id"])
    second = draw(crew, "mia")
    assert len(second.examples) == 5  # lars's three, then two new ones
    assert set(first.examples["prediction_id"]) < set(second.examples["prediction_id"])
    assert "first_label" not in second.examples and "first_by" not in second.examples
    # what lars said (always the opposite of the model) is nowhere in mia's batch: its label column
    # is the model's suggestion
    model_says = dict(zip(second.examples["prediction_id"], second.examples["label"]))
    assert all(model_says[p] == label for p, label in zip(first.examples["prediction_id"], first.examples["label"]))


def test_a_share_below_one_leaves_the_rest_of_a_batch_to_new_items(crew):
    agreement.set_overlap_share(crew, MODEL, 0.4, "olga")
    first = draw(crew, "lars", k=8)
    label_all(crew, "lars", first, ["正面"] * 8)
    second = draw(crew, "mia", k=5)
    overlap = set(second.examples["prediction_id"]) & set(first.examples["prediction_id"])
    assert len(overlap) <= 2  # 40 % of 5 places, from the items in the 40 % share
    assert len(second.examples) == min(5, 2 + len(overlap))  # the only two new items, plus the overlap
    assert len(second.examples) - len(overlap) == 2


def test_disagreements_wait_for_review_and_only_decided_labels_are_trained_on(crew):
    agreement.set_overlap_share(crew, MODEL, 1.0, "olga")
    first = draw(crew, "lars", k=4)
    label_all(crew, "lars", first, ["正面", "正面", "负面", "unclear"])
    ids = first.examples["prediction_id"].tolist()
    second = draw(crew, "mia", k=4)
    drawn = set(second.examples["prediction_id"])
    assert set(ids[:3]) <= drawn and ids[3] not in drawn  # the unclear one is the review's, not mia's
    mias = {ids[0]: "正面", ids[1]: "负面", ids[2]: "负面"}  # agrees, disagrees, agrees
    feedback.record_labels(crew, MODEL, pd.DataFrame({"prediction_id": list(mias), "label": list(mias.values())}),
                           "mia", second.batch_id)
    assert feedback.labelled_counts(crew, MODEL, user="mia") == {"正面": 1, "负面": 2}  # her second labels count
    queue = agreement.review_queue(crew, MODEL)
    assert dict(zip(queue["prediction_id"], queue["reason"])) == {ids[1]: "disagreement", ids[3]: "unclear"}
    row = queue.set_index("prediction_id").loc[ids[1]]
    assert (row["first_label"], row["first_by"], row["second_label"], row["second_by"]) == ("正面", "lars", "负面", "mia")
    trained = training_labels(crew)
    assert trained.get(ids[0]) == "正面" and trained.get(ids[2]) == "负面"
    assert ids[1] not in trained and ids[3] not in trained
    report = agreement.team_report(crew, MODEL)
    assert report.waiting == 2
    pair = report.pairs.set_index(["labeller_a", "labeller_b"]).loc[("lars", "mia")]
    assert pair["items"] == 3 and pair["agreement"] == pytest.approx(2 / 3)
    with pytest.raises(PermissionDenied):
        agreement.decide(crew, MODEL, ids[1], "负面", "lars")
    agreement.decide(crew, MODEL, ids[1], "负面", "olga")
    agreement.decide(crew, MODEL, ids[3], "正面", "olga")
    assert agreement.review_queue(crew, MODEL).empty
    trained = training_labels(crew)
    assert [trained.get(p) for p in ids] == ["正面", "负面", "负面", "正面"]
    with pytest.raises(InvalidInput, match="not waiting for review"):
        agreement.decide(crew, MODEL, ids[1], "正面", "olga")
    with pytest.raises(InvalidInput, match="no prediction 999999999 for model"):
        agreement.decide(crew, MODEL, 999999999, "正面", "olga")
    with pytest.raises(InvalidInput, match="label '中性' is not one of"):
        agreement.decide(crew, MODEL, ids[1], "中性", "olga")


def _labelled_twice_by(store) -> dict[tuple[str, str], int]:
    """Items labelled twice (second label not a skip), per pair of names, in name order."""
    with store.connect() as con:
        rows = con.execute("""SELECT f.created_by, s.created_by FROM feedback f JOIN second_labels s
                              USING (prediction_id) WHERE s.label <> 'skip'""").fetchall()
    out = {}
    for a, b in rows:
        key = tuple(sorted((a, b)))
        out[key] = out.get(key, 0) + 1
    return out


def _label_batches(store, user, batches, k=10):
    """Draw `batches` batches of k and label each item with the model's suggestion; returns the items."""
    drawn = []
    for _ in range(batches):
        found = draw_all(store, user, k)
        label_all(store, user, found, found.examples["label"].tolist())
        drawn.append(found.examples)
    return pd.concat(drawn, ignore_index=True)


def draw_all(store, user, k):
    return sampling.select_hard_examples(store, MODEL, k, user)


def test_overlap_pairs_people_never_the_demo_and_counts_skips_and_unclear_apart(team):
    """The repro: overlap 50 %; labeller A labels 40 items (and skips 3, finds 3 unclear), B 30.
    Before, A's and B's second labels went to the demo's sample labels (demo & A 23, demo & B 16,
    A & B 1), B's "unclear" was a disagreement against kappa, and A's "decisions" read 46."""
    auth.add_user(team, "mia", "labeller", "labeller-pass-2", by="olga")
    agreement.set_overlap_share(team, MODEL, 0.5, "olga")
    _label_batches(team, "lars", 4)                                   # A: 40 labels
    extra = draw_all(team, "lars", 6).examples["prediction_id"].tolist()
    for pid in extra[:3]:
        feedback.skip_prediction(team, MODEL, pid, "lars")            # A: 3 skips
    feedback.record_labels(team, MODEL, pd.DataFrame({"prediction_id": extra[3:], "label": ["unclear"] * 3}), "lars")
    first = draw_all(team, "mia", 10)                                 # B: 30 decisions, one of them unclear
    again = set(first.examples["prediction_id"]) & set(_lars_items(team))
    assert again, "B's batch has items A labelled, for a blind second label"
    unsure = next(iter(again))
    label_all(team, "mia", first, ["unclear" if p == unsure else s
                                   for p, s in zip(first.examples["prediction_id"], first.examples["label"])])
    _label_batches(team, "mia", 2)

    twice = _labelled_twice_by(team)
    assert not {pair: n for pair, n in twice.items() if "demo" in pair}  # the demo's labels are nobody's
    assert twice.get(("lars", "mia"), 0) >= 10                        # about half of B's 30 places
    report = agreement.team_report(team, MODEL)
    pair = report.pairs.set_index(["labeller_a", "labeller_b"]).loc[("lars", "mia")]
    assert pair["unclear"] == 1 and pair["items"] == twice[("lars", "mia")] - 1
    assert pair["agreement"] == 1.0  # both gave the model's suggestion: the unclear one is no disagreement
    assert report.overall[1:] == (1.0, twice[("lars", "mia")] - 1)
    queue = agreement.review_queue(team, MODEL).set_index("prediction_id")
    assert queue.loc[unsure, "reason"] == "unclear"
    team_table = report.labellers.set_index("labeller")
    assert "demo" not in team_table.index
    assert team_table.loc["lars", ["labelled", "skipped", "unclear"]].tolist() == [40, 3, 3]
    assert team_table.loc["mia", ["labelled", "skipped", "unclear"]].tolist() == [29, 0, 1]


def _lars_items(store) -> list[int]:
    with store.connect() as con:
        return [r[0] for r in con.execute("SELECT prediction_id FROM feedback WHERE created_by = 'lars'").fetchall()]


def test_two_owners_deciding_one_item_at_once_store_one_decision(crew):
    found = draw(crew, "lars", k=1)
    label_all(crew, "lars", found, ["unclear"])
    item = int(found.examples["prediction_id"].iloc[0])
    refused = []
    try:
        with crew.transaction() as con:  # the first owner's decision, not yet committed ...
            model_id = con.execute("SELECT model_id FROM models WHERE name = ?", [MODEL]).fetchone()[0]
            db.insert_review(con, model_id, item, "正面", "unclear", True, "olga")
            try:  # ... when a second owner decides the same item otherwise
                agreement.decide(crew, MODEL, item, "负面", "olga")
            except Conflict:
                refused.append("负面")
    except Conflict:
        refused.append("正面")
    assert len(refused) == 1  # whichever committed first stands, and the other is told
    assert training_labels(crew).get(item) == {"正面": "负面", "负面": "正面"}[refused[0]]
    with crew.connect() as con:
        assert con.execute("SELECT count(*) FROM reviews WHERE prediction_id = ?", [item]).fetchone()[0] == 1
    assert agreement.review_queue(crew, MODEL).empty


def test_label_statistics_count_decided_labels_only(crew):
    def labelled_on_line():
        table = stats.stats_by_line_and_period(crew, MODEL, by="month", business_lines=[LINE])
        return int(table["labelled"].sum()) if "labelled" in table else None

    agreement.set_overlap_share(crew, MODEL, 1.0, "olga")
    first = draw(crew, "lars", k=3)
    label_all(crew, "lars", first, ["正面", "正面", "负面"])
    before = labelled_on_line()
    assert before == 3
    ids = first.examples["prediction_id"].tolist()
    second = draw(crew, "mia", k=3)
    label_all(crew, "mia", second, [{ids[0]: "负面", ids[1]: "正面", ids[2]: "负面"}[p]
                                    for p in second.examples["prediction_id"]])
    assert labelled_on_line() == 2  # the disagreement is not counted until decided
    agreement.decide(crew, MODEL, ids[0], "负面", "olga")
    assert labelled_on_line() == 3


def test_undo_of_a_second_label_reopens_the_item_and_a_judged_first_label_stays(crew):
    agreement.set_overlap_share(crew, MODEL, 1.0, "olga")
    first = draw(crew, "lars", k=2)
    lars_ids = label_all(crew, "lars", first, ["正面", "负面"])
    second = draw(crew, "mia", k=2)
    mia_ids = label_all(crew, "mia", second, ["unclear", "unclear"])
    assert len(agreement.review_queue(crew, MODEL)) == 2
    with pytest.raises(InvalidInput, match="labelled again or reviewed"):
        feedback.undo_labels(crew, MODEL, lars_ids[:1], "lars")
    feedback.undo_labels(crew, MODEL, mia_ids, "mia")
    assert agreement.review_queue(crew, MODEL).empty
    assert set(draw(crew, "mia", k=2).examples["prediction_id"]) == set(first.examples["prediction_id"])


def test_overlap_share_needs_an_owner_and_a_share_between_0_and_1(crew):
    with pytest.raises(PermissionDenied):
        agreement.set_overlap_share(crew, MODEL, 0.2, "lars")
    with pytest.raises(InvalidInput):
        agreement.set_overlap_share(crew, MODEL, 1.5, "olga")
    agreement.set_overlap_share(crew, MODEL, 0.2, "olga")
    assert agreement.overlap_share(crew, MODEL) == 0.2
    with pytest.raises(InvalidInput):
        agreement.decide(crew, MODEL, 1, "maybe", "olga")


# --- the Review page (AppTest) -------------------------------------------------------------------

def test_review_page_decides_the_first_waiting_item_and_saves_the_share(app, seeded_store):
    predict.predict_texts(seeded_store, MODEL, TEXTS, "olga", business_line=LINE)
    agreement.set_overlap_share(seeded_store, MODEL, 1.0, "tester")
    first = draw(seeded_store, "lars", k=2)
    label_all(seeded_store, "lars", first, ["正面", "正面"])
    second = draw(seeded_store, "mia", k=2)
    label_all(seeded_store, "mia", second, ["负面", "负面"])
    at = app("pages/review.py")
    assert not at.exception and not at.error
    assert {m.label: m.value for m in at.metric}["Items waiting"] == "2"
    team = next(d.value for d in at.dataframe if "labeller" in d.value.columns and "per_hour" in d.value.columns)
    assert team.set_index("labeller").loc[["lars", "mia"], "double_labelled"].tolist() == [2, 2]
    assert team.set_index("labeller").loc["lars", "agreement"] == 0.0
    assert [b.label for b in at.button if b.key.startswith("review_as_")] == \
        ["Decide: 正面", "Decide: 负面", "Leave out of training"]
    shown = at.text[0].value
    assert [t.value for t in at.text[2:5]] == ["lars: 正面", "mia: 负面", at.text[4].value]
    assert at.text[4].value.startswith("the model: ")
    at.button(key="review_as_1").click().run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Items waiting"] == "1"
    decided = int(shown.split("prediction ")[1].split(" ")[0])
    assert training_labels(seeded_store)[decided] == "负面"
    at.number_input(key="review_share").set_value(20.0).run()
    at.button(key="review_share_save").click().run()
    assert agreement.overlap_share(seeded_store, MODEL) == 0.2


def test_review_page_is_for_owners(app):
    at = app("pages/review.py", role="labeller")
    assert not at.exception
    assert not [b for b in at.button if b.key and b.key.startswith("review_as_")]


# --- both backends -----------------------------------------------------------------------------

@pytest.fixture(params=["embedded", "ducklake"])
def any_store(request, tmp_path):
    if request.param == "embedded":
        return db.Store(tmp_path / "mms.duckdb")
    return new_lake(request.getfixturevalue("pg_cluster"), tmp_path)


def test_overlap_review_and_training_read_alike_on_both_backends(any_store, reviews):
    from core import train

    _, _, rest = make_model(any_store, reviews, n_train=200, n_test=60, name="m")
    train.train_version(any_store, "m", "owner", activate=True)
    logged = predict.predict_texts(any_store, "m", rest["text"].iloc[:4].tolist(), "ana", business_line="书")
    ids = logged["prediction_id"].tolist()
    agreement.set_overlap_share(any_store, "m", 1.0, "owner")
    feedback.record_labels(any_store, "m", pd.DataFrame({"prediction_id": ids[:2], "label": ["正面", "负面"]}), "ann")
    found = sampling.select_hard_examples(any_store, "m", 4, "bob")
    assert set(ids[:2]) <= set(found.examples["prediction_id"])
    feedback.record_labels(any_store, "m", pd.DataFrame({"prediction_id": ids[:2], "label": ["正面", "正面"]}), "bob")
    assert agreement.review_queue(any_store, "m")["prediction_id"].tolist() == [ids[1]]
    with any_store.connect() as con:
        summary = db.example_summary(con, 1)
    assert summary[summary["source"] == "feedback"]["rows"].sum() == 1  # the agreed one only
    agreement.decide(any_store, "m", ids[1], "正面", "owner")
    with any_store.connect() as con:
        summary = db.example_summary(con, 1)
    assert summary[summary["source"].isin(["feedback", "review"])]["rows"].sum() == 2
    report = agreement.team_report(any_store, "m")
    assert report.overall[1:] == (0.5, 2) and report.waiting == 0
