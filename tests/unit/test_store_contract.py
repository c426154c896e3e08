"""One contract for both backends: every core operation behaves the same on the embedded DuckDB
file and on DuckLake (PostgreSQL catalog, Parquet in a folder)."""
import threading

import pandas as pd
import pytest

from core import backup, feedback, imports, predict, registry, sampling, stats, store as db, train
from core.errors import Conflict, InvalidInput, ModelExists
from lakefixtures import lake_store, new_lake, pg_cluster  # noqa: F401  (fixtures)
from conftest import make_model
from core.store import Store

M = "m"


@pytest.fixture(params=["embedded", "ducklake"])
def any_store(request, tmp_path):
    if request.param == "embedded":
        return db.Store(tmp_path / "mms.duckdb")
    return new_lake(request.getfixturevalue("pg_cluster"), tmp_path)


@pytest.fixture
def trained(any_store, reviews):
    """A model with train and test rows and version 1, plus some logged predictions."""
    _, _, rest = make_model(any_store, reviews, n_train=200, n_test=60, name=M)
    train.train_version(any_store, M, "owner", activate=True)
    traffic = rest.iloc[:80]
    out = predict.predict_texts(any_store, M, traffic["text"].tolist(), "ana",
                                business_line=["酒店", "书籍"] * 40, created_at="2026-10-05 12:00")
    return any_store, out, traffic


def test_a_model_name_is_taken_once(any_store):
    registry.create_model(any_store, M, ["a", "b"], "owner")
    with pytest.raises(ModelExists):
        registry.create_model(any_store, M, ["a", "b"], "owner")
    assert [m.name for m in registry.list_models(any_store)] == [M]


def test_an_import_lands_whole_and_a_bad_one_not_at_all(any_store, reviews):
    registry.create_model(any_store, M, ["正面", "负面"], "owner")
    imports.import_frame(any_store, M, reviews.iloc[:50], "train", "owner")
    bad = reviews.iloc[50:60].copy()
    bad.loc[bad.index[-1], "label"] = "中性"
    with pytest.raises(InvalidInput):
        imports.import_frame(any_store, M, bad, "train", "owner")
    with any_store.connect() as con:
        assert db.example_summary(con, 1)["rows"].sum() == 50


def test_predict_label_hard_examples_and_stats(trained):
    store, out, traffic = trained
    assert out["prediction_id"].is_unique and len(out) == 80
    assert set(out["version"]) == {1}
    picked = sampling.select_hard_examples(store, M, 10, "lab").examples
    assert len(picked) == 10 and picked["prediction_id"].isin(out["prediction_id"]).all()
    ids = picked["prediction_id"].tolist()[:4]
    feedback.record_labels(store, M, pd.DataFrame({"prediction_id": ids, "label": ["正面", "负面", "skip", "正面"]}),
                           "lab")
    with pytest.raises(InvalidInput, match="already labelled"):
        feedback.record_labels(store, M, pd.DataFrame({"prediction_id": ids[:1], "label": ["负面"]}), "lab")
    again = sampling.select_hard_examples(store, M, 70, "lab").examples
    assert not again["prediction_id"].isin(ids).any()
    table = stats.stats_by_line_and_period(store, M, "day")
    assert table["volume"].sum() == 80 and set(table["business_line"]) == {"酒店", "书籍"}
    assert table["labelled"].sum() == 3  # skip is not a judgement
    stats.compact_rollups(store)
    pd.testing.assert_frame_equal(table, stats.stats_by_line_and_period(store, M, "day"))


def test_activate_roll_back_and_audit(trained):
    store, _, _ = trained
    v2 = train.train_version(store, M, "owner", model_config={"estimator": "complement_nb"})
    registry.activate_version(store, M, v2.version, "owner", "try nb", force=True)
    assert predict.predict_texts(store, M, ["不错"], "u")["version"].iloc[0] == 2
    registry.activate_version(store, M, 1, "owner", "roll back", force=True)
    assert predict.predict_texts(store, M, ["不错"], "u")["version"].iloc[0] == 1
    history = registry.activation_history(store, M)
    assert len(history) >= 3  # train --activate, forced v2, roll back


def test_incremental_training_sees_labels_given_after_its_parent(any_store, reviews):
    _, _, rest = make_model(any_store, reviews, n_train=200, n_test=60, name=M, config={"estimator": "sgd"})
    train.train_version(any_store, M, "owner", activate=True)
    out = predict.predict_texts(any_store, M, rest["text"].iloc[:30].tolist(), "ana")
    feedback.record_labels(any_store, M, pd.DataFrame({"prediction_id": out["prediction_id"],
                                                       "label": rest["label"].iloc[:30].tolist()}), "lab")
    v2 = train.train_version(any_store, M, "owner", incremental=True)
    assert v2.mode == "incremental" and v2.parent_version == 1


def test_backup_copies_the_embedded_store_and_explains_itself_on_ducklake(trained, tmp_path):
    store, _, _ = trained
    if store.is_lake:
        with pytest.raises(InvalidInput, match="pg_dump"):
            backup.backup(store, tmp_path / "copy", "owner")
    else:
        backup.backup(store, tmp_path / "copy", "owner")
        assert (tmp_path / "copy" / "manifest.json").exists() and (tmp_path / "copy" / "database" / "models.parquet").exists()


def test_two_writers_labelling_one_prediction_store_one_label(lake_store, reviews):
    """DuckLake has no unique index: the label counter taken in both transactions makes one conflict."""
    _, _, rest = make_model(lake_store, reviews, n_train=150, n_test=50, name=M)
    train.train_version(lake_store, M, "owner", activate=True)
    pid = int(predict.predict_texts(lake_store, M, ["还可以吧"], "ana")["prediction_id"].iloc[0])
    barrier, outcomes = threading.Barrier(4), []

    def label(value):
        barrier.wait()
        try:
            feedback.label_prediction(lake_store, M, pid, value, "lab")
            outcomes.append("stored")
        except (Conflict, InvalidInput) as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=label, args=(v,)) for v in ["正面", "负面", "正面", "负面"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with lake_store.connect() as con:
        stored = con.execute("SELECT count(*) FROM feedback WHERE prediction_id = ?", [pid]).fetchone()[0]
    assert stored == 1 and outcomes.count("stored") == 1


def test_an_unreachable_catalog_is_one_sentence_and_changes_nothing(tmp_path):
    store = db.Store("ducklake:postgres:dbname=nowhere host=127.0.0.1 port=1 user=postgres", str(tmp_path / "d"))
    with pytest.raises(db.StoreError, match=r"^the DuckLake catalog .*port=1.* cannot be reached") as e:
        registry.create_model(store, M, ["a", "b"], "owner")
    assert "\n" not in str(e.value)


def test_a_lake_store_is_named_by_its_catalog_and_data_path_never_its_password(tmp_path):
    lake = Store("ducklake:postgres:dbname=mms host=db port=5432 user=mms password=s3cret", str(tmp_path) + "/")
    assert "s3cret" not in str(lake) and "dbname=mms host=db" in str(lake) and str(tmp_path) in str(lake)
    assert str(Store(tmp_path / "mms.duckdb")) == str(tmp_path / "mms.duckdb")
