"""Ordinal models (issue 15): ordered grades from creation to roll back, through the core, the CLI
and the API, with the ordinal metrics checked against values computed by hand.

The graded texts are written here: support tickets graded 低/中/高 by urgency, each carrying
a second label (售后/账务, by subject) the way the model record carries label_1 and label_2."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.base import BaseEstimator, ClassifierMixin
from starlette.applications import Starlette

from core import api, compare, imports, ordinal, predict, registry, sampling, train
from core.errors import InvalidInput, ModelExists, Regression, TrainingError
from test_cli import as_json, run  # the command line as a user runs it, through its entry in this process

ROOT = Path(__file__).resolve().parents[2]
GRADES = ["低", "中", "高"]
URGENCY = "紧急度"
SUBJECTS = {"售后": ["退货", "换货", "维修", "物流"], "账务": ["退款", "发票", "账单", "扣费"]}
CUES = {
    "低": ["有空的时候看一下就行", "不着急，随便问问", "顺便提个小建议", "想了解一下规则"],
    "中": ["希望这几天能处理", "已经等了两天了", "麻烦尽快回复一下", "有点影响使用"],
    "高": ["马上要出问题了请立刻处理", "非常紧急，客户在投诉", "今天必须解决否则损失很大", "系统完全用不了了"],
}
LINES = ["电商", "金融"]


def graded_rows(n: int, seed: int) -> pd.DataFrame:
    """n tickets: text, label_1 (售后/账务), label_2 (低/中/高), business_line; one in seven carries
    a neighbouring grade's wording, so the model is unsure of some."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        grade, topic = int(rng.integers(0, 3)), str(rng.choice(list(SUBJECTS)))
        worded = grade if rng.random() > 0.15 else int(np.clip(grade + rng.choice([-1, 1]), 0, 2))
        text = (f"{rng.choice(SUBJECTS[topic])}的问题{int(rng.integers(1, 9999))}号："
                f"{rng.choice(CUES[GRADES[worded]])}")
        rows.append({"text": text, "label_1": topic, "label_2": GRADES[grade], "business_line": LINES[i % 2]})
    return pd.DataFrame(rows)


def ordinal_store(store, config=None, n_train=240, n_test=120):
    """An ordinal model over GRADES with imported train and test rows (label_2), not trained yet."""
    registry.create_model(store, URGENCY, GRADES, "owner", task="ordinal", model_config=config)
    imports.import_frame(store, URGENCY, graded_rows(n_train, 1), "train", "owner", "train.csv")
    imports.import_frame(store, URGENCY, graded_rows(n_test, 2), "test", "owner", "test.csv")
    return store


# --- the maths, by hand ----------------------------------------------------------------------

# Six test rows, two business lines. Positions: true 1 1 2 2 3 3, predicted 1 2 2 3 3 1.
TRUE = ["低", "低", "中", "中", "高", "高"]
PRED = ["低", "中", "中", "高", "高", "低"]
# two-point distributions whose argmax is PRED and whose mean grades are 1.1 1.6 2.0 2.7 2.9 1.3
PROBA = np.array([[.9, .1, 0], [.4, .6, 0], [0, 1, 0], [0, .3, .7], [0, .1, .9], [.7, .3, 0]])
ROW_LINES = ["a", "a", "a", "b", "b", "b"]


def test_expected_grade_error_and_spread_by_hand():
    assert ordinal.expected_grade(PROBA) == pytest.approx([1.1, 1.6, 2.0, 2.7, 2.9, 1.3])
    # most likely grade 3 of [.2 .3 .5]: .2 x 2 grades off + .3 x 1 = .7; of [.4 .6 0]: .4 x 1
    assert ordinal.expected_absolute_error(np.array([[.2, .3, .5], [.4, .6, 0]])) == pytest.approx([0.7, 0.4])
    # half on 低, half on 高: mean 中, variance 1; all on 中: no spread
    assert ordinal.spread(np.array([[.5, 0, .5], [0, 1, 0]])) == pytest.approx([1.0, 0.0])


def test_ordinal_metrics_match_hand_computed_values():
    m = ordinal.ordinal_metrics(TRUE, PRED, PROBA, GRADES)
    # off by 0 1 0 1 0 2 grades
    assert m["n"] == 6
    assert m["mae"] == pytest.approx(4 / 6)
    assert m["exact"] == pytest.approx(3 / 6)
    assert m["within_one"] == pytest.approx(5 / 6)
    # confusion [[1,1,0],[0,1,1],[1,0,1]], every row and column sums to 2, so every expected cell is 2/3;
    # weights (i-j)^2/4: observed 1/4 + 1/4 + 4/4 = 1.5, expected 2/3 x (4 x 1 + 2 x 4)/4 = 2; kappa 1 - 1.5/2
    assert m["qwk"] == pytest.approx(0.25)
    # ranks of true grades 1.5 1.5 3.5 3.5 5.5 5.5, of expected grades 1 3 4 5 6 2: 8 / sqrt(16 x 17.5)
    assert m["spearman"] == pytest.approx(8 / np.sqrt(280))


def test_ordinal_metrics_per_line_by_hand():
    by_line = ordinal.metrics_by_line(TRUE, PRED, PROBA, GRADES, ROW_LINES)
    assert set(by_line) == {"a", "b"}
    a, b = by_line["a"], by_line["b"]  # a: off 0 1 0; b: off 1 0 2
    assert (a["n"], a["mae"], a["exact"], a["within_one"]) == (3, pytest.approx(1 / 3), pytest.approx(2 / 3), 1.0)
    assert (b["n"], b["mae"], b["exact"], b["within_one"]) == (3, pytest.approx(1.0), pytest.approx(1 / 3),
                                                               pytest.approx(2 / 3))


def test_a_measure_undefined_on_the_rows_is_none_not_nan():
    m = ordinal.ordinal_metrics(["中", "中"], ["中", "中"], None, GRADES)
    assert m["mae"] == 0 and m["exact"] == 1 and m["spearman"] is None


class _Fixed(ClassifierMixin, BaseEstimator):
    """A stand-in threshold classifier: P(above) = the share given for the threshold it was fitted on."""

    def __init__(self, shares=None):
        self.shares = shares

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        self.p_ = self.shares[int(np.sum(y == 0))]  # rows below the threshold tell which one this is
        return self

    def predict_proba(self, X):
        return np.tile([1 - self.p_, self.p_], (len(X), 1))


def test_frank_and_hall_combine_thresholds_into_a_distribution_by_hand():
    """Thresholds say P(>低) = .7 and P(>中) = .8 (inconsistent: more above 中 than above 低); the
    running minimum makes it .7 and .7, so 低 .3, 中 0, 高 .7."""
    X, y = np.zeros((3, 1)), np.array(["低", "中", "高"])
    model = ordinal.FrankHall(_Fixed({1: 0.7, 2: 0.8}), GRADES).fit(X, y)
    assert model.predict_proba(X[:1]) == pytest.approx(np.array([[0.3, 0.0, 0.7]]))
    model = ordinal.FrankHall(_Fixed({1: 0.9, 2: 0.25}), GRADES).fit(X, y)
    assert model.predict_proba(X[:1]) == pytest.approx(np.array([[0.1, 0.65, 0.25]]))
    assert list(model.predict(X[:1])) == ["中"] and list(model.classes_) == GRADES


def test_a_grade_missing_from_training_gets_no_probability():
    X, y = np.zeros((4, 1)), np.array(["低", "中", "低", "中"])
    model = ordinal.FrankHall(_Fixed({2: 0.4}), GRADES).fit(X, y)
    proba = model.predict_proba(X)
    assert proba[:, 2] == pytest.approx(0) and proba.sum(axis=1) == pytest.approx(1)


# --- core: create, train, metrics, predict ----------------------------------------------------

def test_an_ordinal_version_records_ordinal_metrics_and_its_confusion_in_grade_order(store):
    ordinal_store(store, {"estimator": "logreg"})
    v = train.train_version(store, URGENCY, "owner")
    m = v.metrics
    assert m["confusion"]["labels"] == GRADES
    assert set(m["ordinal"]) >= {"mae", "qwk", "spearman", "exact", "within_one"}
    assert set(m["ordinal_by_line"]) == set(LINES)
    assert m["ordinal"]["exact"] == pytest.approx(m["accuracy"])
    assert m["ordinal"]["qwk"] > 0.7 and m["ordinal"]["mae"] < 0.3  # the grade wording is learnable
    assert sum(line["n"] for line in m["ordinal_by_line"].values()) == 120
    assert m["ece"] < 0.1  # calibrated thresholds: probabilities mean what they say
    table = registry.versions_table(store, URGENCY)
    assert table.loc[0, "qwk"] == pytest.approx(m["ordinal"]["qwk"])


def test_predictions_carry_the_distribution_the_most_likely_grade_and_the_expected_grade(store):
    ordinal_store(store, {"estimator": "logreg"})
    train.train_version(store, URGENCY, "owner")
    texts = ["维修的问题1号：系统完全用不了了", "发票的问题2号：不着急，随便问问", "退货的问题3号：已经等了两天了"]
    out = predict.predict_texts(store, URGENCY, texts, "owner")
    proba = out[[f"p_{g}" for g in GRADES]].to_numpy()
    assert proba.sum(axis=1) == pytest.approx(1)
    assert out["label"].tolist() == [GRADES[i] for i in proba.argmax(axis=1)]
    assert out["expected_grade"].to_numpy() == pytest.approx(proba @ [1, 2, 3])
    assert out["label"].tolist() == ["高", "低", "中"]
    # sorting by the expected grade puts the urgent ticket first
    assert out.sort_values("expected_grade", ascending=False)["text"].iloc[0] == texts[0]


def test_model_selection_for_an_ordinal_model_is_judged_by_weighted_kappa(store, monkeypatch):
    monkeypatch.setenv("MMS_SELECTION_BUDGET", "8")
    ordinal_store(store)
    v = train.train_version(store, URGENCY, "owner")
    record = v.data["selection"]
    assert record["scoring"] == "qwk" and "quadratic weighted kappa" in record["reason"]
    assert all("cv_qwk" in t for t in record["tried"] if "skipped" not in t)
    assert "QWK" in registry.versions_table(store, URGENCY).loc[0, "selected"]
    assert "each grade threshold" in v.data["calibration"]


def test_incremental_training_continues_an_sgd_ordinal_model_and_refuses_others(store):
    ordinal_store(store, {"estimator": "sgd"})
    v1 = train.train_version(store, URGENCY, "owner")
    imports.import_frame(store, URGENCY, graded_rows(60, 3), "train", "owner", "more.csv")
    v2 = train.train_version(store, URGENCY, "owner", incremental=True)
    assert (v2.mode, v2.parent_version, v2.data["new_rows"]) == ("incremental", v1.version, 60)
    assert v2.metrics["ordinal"]["qwk"] > 0.6
    train.train_version(store, URGENCY, "owner", model_config={"estimator": "logreg"}, activate=True)
    imports.import_frame(store, URGENCY, graded_rows(30, 4), "train", "owner", "more2.csv")
    with pytest.raises(TrainingError, match="cannot learn incrementally"):
        train.train_version(store, URGENCY, "owner", incremental=True)


# --- bad input -----------------------------------------------------------------------------------

def test_fewer_than_three_grades_and_repeated_grades_are_refused(store):
    with pytest.raises(InvalidInput, match="at least 3 grades"):
        registry.create_model(store, URGENCY, ["低", "高"], "owner", task="ordinal")
    with pytest.raises(InvalidInput, match="distinct"):
        registry.create_model(store, URGENCY, ["低", "中", "低"], "owner", task="ordinal")
    with pytest.raises(InvalidInput, match="task must be one of classification, ordinal"):
        registry.create_model(store, URGENCY, GRADES, "owner", task="ranking")
    assert registry.list_models(store) == []


def test_the_grade_order_cannot_change_after_creation(store):
    ordinal_store(store)
    with pytest.raises(InvalidInput, match="grade order .* is fixed at creation .*低 < 中 < 高"):
        registry.update_model(store, URGENCY, "owner", labels=["高", "中", "低"])
    with pytest.raises(ModelExists):
        registry.create_model(store, URGENCY, ["高", "中", "低"], "owner", task="ordinal")
    registry.update_model(store, URGENCY, "owner", labels="低,中,高")  # the same order is no change
    assert registry.get_model(store, URGENCY).labels == GRADES


def test_a_label_outside_the_grades_is_refused_naming_the_file_and_row(store):
    ordinal_store(store)
    rows = graded_rows(5, 9)
    rows.loc[3, "label_2"] = "特急"
    with pytest.raises(InvalidInput, match=r"bad\.csv: label not in the model's labels \(低, 中, 高\) in row 5: 特急"):
        imports.import_frame(store, URGENCY, rows, "train", "owner", "bad.csv")
    with pytest.raises(InvalidInput, match="bad.csv: no column 'grade' to take the labels from"):
        imports.import_frame(store, URGENCY, rows, "train", "owner", "bad.csv", label_column="grade")


def test_which_column_an_import_takes_the_labels_from():
    both = graded_rows(4, 7)
    take = lambda frame, task, column=None: imports.with_label_column(frame, task, "f.csv", column)["label"].tolist()
    assert take(both, "ordinal") == both["label_2"].tolist()              # the record's grade column
    assert take(both, "classification") == both["label_1"].tolist()      # the record's class column
    assert take(both, "ordinal", "label_1") == both["label_1"].tolist()   # told otherwise
    named = both.assign(label=["低"] * 4)
    assert take(named, "ordinal") == ["低"] * 4                             # a label column wins by default
    assert take(named, "ordinal", "label_2") == both["label_2"].tolist()  # ... unless told


def test_a_model_made_from_one_file_keeps_its_grade_order_and_column(store, tmp_path):
    graded_rows(60, 8).to_csv(tmp_path / "tickets.csv", index=False)
    imports.create_model_from_file(store, URGENCY, "低,中,高", tmp_path / "tickets.csv", "owner", task="ordinal")
    model = registry.get_model(store, URGENCY)
    assert (model.task, model.labels) == ("ordinal", GRADES)
    summary = imports.data_summary(store, URGENCY)
    assert set(summary["label"]) == set(GRADES) and summary["rows"].sum() == 60
    with pytest.raises(InvalidInput, match="at least 3 grades"):
        imports.create_model_from_file(store, "二级", "低,高", tmp_path / "tickets.csv", "owner", task="ordinal")


def test_ordinal_strategies_are_refused_for_a_classification_model(seeded_store):
    with pytest.raises(InvalidInput, match="'expected_error' is for ordinal models"):
        sampling.select_hard_examples(seeded_store, "评论情感", 5, "owner", "expected_error")


def test_a_classification_model_shows_no_ordinal_figure(seeded_store):
    v = registry.get_version(seeded_store, "评论情感")
    assert "ordinal" not in v.metrics and "ordinal_by_line" not in v.metrics
    assert not set(registry.ORDINAL_COLUMNS) & set(registry.versions_table(seeded_store, "评论情感").columns)
    assert "expected_grade" not in predict.predict_texts(seeded_store, "评论情感", ["很好用"], "owner").columns
    assert compare.ordinal_deltas(v) == [] and "ordinal" not in compare.comparison(v, v)
    assert list(sampling.strategies_for(registry.get_model(seeded_store, "评论情感"))) == list(sampling.STRATEGIES)


# --- hard examples --------------------------------------------------------------------------------

@pytest.fixture
def ordinal_with_traffic(store):
    ordinal_store(store, {"estimator": "logreg"})
    train.train_version(store, URGENCY, "owner")
    traffic = graded_rows(150, 5)
    predict.predict_texts(store, URGENCY, traffic["text"].tolist(), "owner", business_line=traffic["business_line"])
    return store


@pytest.mark.parametrize("name", list(sampling.ORDINAL_STRATEGIES))
def test_an_ordinal_strategy_picks_k_unique_texts_best_by_its_own_score(ordinal_with_traffic, name):
    store = ordinal_with_traffic
    strategy = sampling.EVERY_STRATEGY[name]
    assert strategy.description and str(strategy) == name
    found = sampling.select_hard_examples(store, URGENCY, 20, "owner", name, near_duplicate=None,
                                          spread_lines=False).examples
    assert len(found) == 20 and found["prediction_id"].is_unique
    proba = found[[f"p_{g}" for g in GRADES]].to_numpy()
    assert found["score"].to_numpy() == pytest.approx(strategy.score(proba))
    assert found["expected_grade"].to_numpy() == pytest.approx(proba @ [1, 2, 3])
    everything = predict.predict_texts(store, URGENCY, graded_rows(150, 5)["text"].tolist(), "owner")
    scores = strategy.score(everything[[f"p_{g}" for g in GRADES]].to_numpy())
    assert found["score"].min() >= np.sort(scores)[-20] - 1e-9  # nothing passed over scores higher


def test_an_ordinal_model_offers_its_own_strategies_first(ordinal_with_traffic):
    offered = list(sampling.strategies_for(registry.get_model(ordinal_with_traffic, URGENCY)))
    assert offered[:2] == ["expected_error", "spread"] and "least_confidence" in offered


# --- the loop through the command line -----------------------------------------------------------



def test_the_ordinal_loop_through_the_cli(tmp_path):
    store = tmp_path / "cli.duckdb"
    both = tmp_path / "tickets.csv"  # one file, two label columns: label_1 classification, label_2 grade
    graded_rows(240, 1).to_csv(both, index=False)
    graded_rows(120, 2).to_csv(tmp_path / "tickets_test.csv", index=False)
    stream = graded_rows(150, 5)[["text", "business_line"]]
    stream.to_csv(tmp_path / "stream.csv", index=False)

    refused = run(store, "create-model", URGENCY, "--task", "ordinal", "--labels", "低,高", ok=False)
    assert refused.returncode != 0 and "at least 3 grades" in refused.stderr and "Traceback" not in refused.stderr
    run(store, "create-model", URGENCY, "--task", "ordinal", "--labels", "低,中,高", "--config", '{"estimator": "sgd"}')
    run(store, "create-model", "类别", "--labels", "售后,账务", "--config", '{"estimator": "logreg"}')
    run(store, "import", URGENCY, both, "--split", "train", "--label-column", "label_2")
    run(store, "import", URGENCY, tmp_path / "tickets_test.csv", "--split", "test")  # label_2 by default
    run(store, "import", "类别", both, "--split", "train")                          # label_1 by default
    run(store, "import", "类别", tmp_path / "tickets_test.csv", "--split", "test", "--label-column", "label_1")
    wrong = run(store, "import", URGENCY, both, "--split", "train", "--label-column", "label_1", ok=False)
    assert "label not in the model's labels (低, 中, 高) in rows 2" in wrong.stderr

    v1 = as_json(run(store, "--format", "json", "train", URGENCY))
    assert v1["version"] == 1 and v1["status"] == "active" and v1["qwk"] > 0.6 and 0 <= v1["mae"] < 0.5
    c1 = as_json(run(store, "--format", "json", "train", "类别"))
    assert "qwk" not in c1 and "mae" not in c1 and c1["accuracy"] > 0.8

    run(store, "predict", URGENCY, tmp_path / "stream.csv", "--out", tmp_path / "pred.csv")
    pred = pd.read_csv(tmp_path / "pred.csv", encoding="utf-8-sig")
    assert len(pred) == 150 and {"label", "expected_grade", "p_低", "p_中", "p_高"} <= set(pred.columns)
    assert pred["expected_grade"].to_numpy() == pytest.approx(pred[["p_低", "p_中", "p_高"]].to_numpy() @ [1, 2, 3])

    hard = as_json(run(store, "--format", "json", "hard-examples", URGENCY, "--k", "15", "--strategy", "expected_error",
                       "--no-line-spread"))
    assert len(hard) == 15 and len({h["prediction_id"] for h in hard}) == 15
    assert all("expected_grade" in h for h in hard)
    errors = ordinal.expected_absolute_error(pred.drop_duplicates("text")[["p_低", "p_中", "p_高"]].to_numpy())
    assert min(h["score"] for h in hard) >= np.sort(errors)[-15] - 1e-6

    truth = dict(zip(graded_rows(150, 5)["text"], graded_rows(150, 5)["label_2"]))
    pd.DataFrame({"prediction_id": [h["prediction_id"] for h in hard],
                  "label": [truth[h["text"]] for h in hard]}).to_csv(tmp_path / "labels.csv", index=False)
    assert as_json(run(store, "--format", "json", "label", URGENCY, tmp_path / "labels.csv"))["recorded"] == 15

    v2 = as_json(run(store, "--format", "json", "train", URGENCY, "--incremental"))
    assert (v2["version"], v2["mode"], v2["new_rows"]) == (2, "incremental", 15) and "qwk" in v2
    v3 = as_json(run(store, "--format", "json", "train", URGENCY))
    assert v3["version"] == 3 and v3["rows_seen"] == 255

    versions = as_json(run(store, "--format", "json", "versions", URGENCY))
    assert {"mae", "qwk", "spearman", "within_one"} <= set(versions[0])
    assert not {"mae", "qwk"} & set(as_json(run(store, "--format", "json", "versions", "类别"))[0])

    compared = run(store, "compare", URGENCY, "1", "3").stdout
    assert "version 3 beside version 1" in compared
    as_json(run(store, "--format", "json", "activate", URGENCY, "3", "--force", "--reason", "retrained with labels"))
    back = as_json(run(store, "--format", "json", "activate", URGENCY, "1", "--force", "--reason", "roll back"))
    assert back["version"] == 1 and back["status"] == "active"
    again = run(store, "--format", "json", "predict", URGENCY, tmp_path / "stream.csv")
    assert {row["version"] for row in as_json(again)} == {1}


# --- the loop through the API --------------------------------------------------------------------

@pytest.fixture
def client(store):
    with TestClient(Starlette(routes=[api.mount(store)]), client=("127.0.0.1", 50000)) as c:
        yield c


def test_the_ordinal_loop_through_the_api(store, client):
    ordinal_store(store, {"estimator": "sgd"})
    train.train_version(store, URGENCY, "owner")
    detail = client.get(f"/api/models/{URGENCY}").json()
    assert detail["task"] == "ordinal" and detail["labels"] == GRADES
    assert {"mae", "qwk", "spearman", "exact", "within_one"} <= set(detail["active_metrics"])
    assert "qwk" in detail["version_list"][0]["ordinal"]

    texts = graded_rows(40, 6)["text"].tolist()
    answer = client.post(f"/api/models/{URGENCY}/predict", json={"texts": texts, "business_line": "电商"})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    first = predictions[0]
    assert list(first["probabilities"]) == GRADES
    p = np.array(list(first["probabilities"].values()))
    assert first["label"] == GRADES[p.argmax()] and first["expected_grade"] == pytest.approx(p @ [1, 2, 3])

    hard = sampling.select_hard_examples(store, URGENCY, 10, "owner", "spread").examples
    truth = dict(zip(graded_rows(40, 6)["text"], graded_rows(40, 6)["label_2"]))
    for pid, text in zip(hard["prediction_id"], hard["text"]):
        sent = client.post(f"/api/models/{URGENCY}/feedback", json={"prediction_id": int(pid), "label": truth[text]})
        assert sent.status_code == 201, sent.text
    bad = client.post(f"/api/models/{URGENCY}/feedback", json={"prediction_id": int(hard["prediction_id"][0]),
                                                               "label": "特急"})
    assert bad.status_code == 422 and "特急" in bad.json()["error"]

    train.train_version(store, URGENCY, "owner", incremental=True)
    compared = client.get(f"/api/models/{URGENCY}/compare", params={"a": 1, "b": 2}).json()
    assert [d["measure"] for d in compared["ordinal"]] == ["mae", "qwk", "spearman", "within_one"]
    assert {row["business_line"] for row in compared["ordinal_by_line"]} == set(LINES)
    activated = client.post(f"/api/models/{URGENCY}/versions/2/activate",
                            json={"force": True, "reason": "new labels"})
    assert activated.status_code == 200, activated.text
    assert activated.json()["status"] == "active" and "mae" in activated.json()["ordinal"]
    back = client.post(f"/api/models/{URGENCY}/versions/1/activate", json={"force": True, "reason": "roll back"})
    assert back.status_code == 200 and back.json()["version"] == 1
    after = client.post(f"/api/models/{URGENCY}/predict", json={"texts": texts[:2]}).json()["predictions"]
    assert {a["version"] for a in after} == {1}


def test_a_classification_answer_from_the_api_has_no_grade(seeded_store):
    with TestClient(Starlette(routes=[api.mount(seeded_store)]), client=("127.0.0.1", 50000)) as c:
        answer = c.post("/api/models/评论情感/predict", json={"texts": ["很好用"]}).json()["predictions"][0]
        detail = c.get("/api/models/评论情感").json()
    assert "expected_grade" not in answer
    assert "qwk" not in detail["active_metrics"] and "ordinal" not in detail["version_list"][0]


# --- the activation guard -------------------------------------------------------------------------

def test_the_guard_refuses_an_ordinal_version_whose_error_rises_or_kappa_falls():
    rng = np.random.default_rng(9)
    true = rng.integers(0, 3, 200)
    near = np.where(rng.random(200) < 0.85, true, np.clip(true + rng.choice([-1, 1], 200), 0, 2))
    far = np.where(rng.random(200) < 0.6, true, 2 - true)  # often the opposite grade
    names = np.asarray(GRADES, dtype=object)

    def paired(base, candidate):
        return compare.Paired(names[true], names[base], names[candidate], np.array(["电商"] * 200, dtype=object),
                              tuple(GRADES), graded=True)

    found = {r.what: r for r in compare.regressions(paired(near, far))}
    assert {"mean absolute error (grades)", "mean absolute error (grades) on 电商", "quadratic weighted kappa"} <= set(found)
    rise = found["mean absolute error (grades)"]
    assert rise.lower_is_better and f"{rise.base:.3f} → {rise.candidate:.3f} (+{rise.drop:.3f}" in rise.sentence()
    assert compare.regressions(paired(far, near)) == [] and compare.regressions(paired(near, near)) == []


def test_activating_a_worse_ordinal_version_needs_force_and_a_reason(store):
    ordinal_store(store, {"estimator": "logreg"})
    train.train_version(store, URGENCY, "owner")
    weak = train.train_version(store, URGENCY, "owner", model_config={"estimator": "logreg", "max_features": 4})
    assert weak.metrics["ordinal"]["mae"] > registry.get_version(store, URGENCY, 1).metrics["ordinal"]["mae"] + 0.02
    with pytest.raises(Regression, match=r"mean absolute error \(grades\) 0\.\d+ → 0\.\d+ \(\+"):
        registry.activate_version(store, URGENCY, 2, "owner")
    with pytest.raises(InvalidInput, match="needs a reason"):
        registry.activate_version(store, URGENCY, 2, "owner", force=True)
    assert registry.activate_version(store, URGENCY, 2, "owner", "try it", force=True).status == "active"
    # rolling back: better on every ordinal figure, so none is among what the guard finds
    found = registry.guard_verdict(store, URGENCY, 1).regressions
    assert not [r for r in found if "error" in r.what or "kappa" in r.what]
    assert registry.activate_version(store, URGENCY, 1, "owner", "roll back", force=True).status == "active"
