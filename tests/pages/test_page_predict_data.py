
import pandas as pd
import pytest

from core import imports, registry

import storeprobe as probe

M = "评论情感"


def _counts(store):
    with store.connect() as con:
        return probe.table_counts(con)


def test_predict_page_logs_typed_texts(app, seeded_store):
    before = _counts(seeded_store)["predictions"]
    at = app("pages/predict.py")
    assert not at.exception
    at.text_area(key="predict_texts").input("房间很干净，服务也很好\n质量很差，不推荐购买\n<script>alert(1)</script>")
    at.text_input(key="predict_line").input("酒店")
    at.button(key="predict_run").click().run()
    assert not at.exception
    assert _counts(seeded_store)["predictions"] == before + 3
    table = at.dataframe[-1].value
    assert table["label"].tolist()[:2] == ["正面", "负面"]
    assert set(table["business_line"]) == {"酒店"}
    assert table["text"].iloc[2] == "<script>alert(1)</script>"  # shown as data, never as HTML


def test_predict_page_turns_an_empty_request_into_a_sentence(app, seeded_store):
    at = app("pages/predict.py")
    at.button(key="predict_run").click().run()
    assert not at.exception
    assert "no texts to predict" in at.error[0].value


def test_data_page_validates_before_writing_and_then_imports(app, seeded_store):
    at = app("pages/data.py")
    assert not at.exception
    by_split = at.dataframe[0].value  # the Summary tab: rows by split, source and label
    assert by_split.loc[("train", "import")].sum() == 400 and by_split.loc[("test", "import")].sum() == 150
    before = _counts(seeded_store)["examples"]
    at.file_uploader(key="import_file").set_value(("bad.csv", "text,label\n好,正面\n差,差评\n".encode(), "text/csv"))
    at.run()
    assert not at.exception
    assert "bad.csv cannot be imported; nothing was written" in at.error[0].value
    assert any("label not in the model's labels" in t.value and "row 3" in t.value for t in at.text)
    assert _counts(seeded_store)["examples"] == before
    good = "text,label,business_line\n物流很快，包装完好,正面,数码\n屏幕有坏点，退货了,负面,数码\n".encode("gbk")
    at.file_uploader(key="import_file").set_value(("good.csv", good, "text/csv"))
    at.run()
    assert "good.csv: 2 rows pass every check." in at.success[0].value
    assert _counts(seeded_store)["examples"] == before  # a report first, nothing written yet
    at.button(key="import_write").click().run()
    assert not at.exception
    assert _counts(seeded_store)["examples"] == before + 2


def test_data_page_creates_a_model_from_an_upload(app, seeded_store):
    at = app("pages/data.py")
    rows = "text,label\n" + "".join(f"工单{i}：{'退款' if i % 2 else '咨询'}问题,{'退款' if i % 2 else '咨询'}\n" for i in range(20))
    at.file_uploader(key="create_file").set_value(("tickets.csv", rows.encode(), "text/csv"))
    at.run()
    assert at.text_input(key="create_labels").value in ("退款,咨询", "咨询,退款")
    at.text_input(key="create_name").input("工单分类")
    at.text_area(key="create_new_words").input("退款")
    at.button[0].click()  # the form's submit button
    at.run()
    assert not at.exception
    assert at.sidebar.selectbox(key="model").value == "工单分类"
    assert "Model 工单分类 created with 20 rows" in at.success[0].value
    model = registry.get_model(seeded_store, "工单分类")
    assert model.preprocess["new_words"] == ["退款"]
    assert imports.data_summary(seeded_store, "工单分类")["rows"].sum() == 20


def test_create_model_from_a_file_is_all_or_nothing(store):
    rows = pd.DataFrame({"text": [f"第{i}条评论{'很好' if i % 2 else '很差'}" for i in range(40)],
                         "label": ["正面" if i % 2 else "负面" for i in range(40)]})
    data = rows.to_csv(index=False).encode("gbk")
    assert imports.labels_in(data, "rows.csv") == ["负面", "正面"] or imports.labels_in(data, "rows.csv") == ["正面", "负面"]
    imports.create_model_from_file(store, "新模型", "正面,负面", data, "owner", "rows.csv", test_share=0.25)
    summary = imports.data_summary(store, "新模型")
    assert summary.groupby("split")["rows"].sum().to_dict() == {"test": 10, "train": 30}
    before = _counts(store)
    broken = rows.assign(label=["正面"] * 39 + ["差评"]).to_csv(index=False).encode()
    try:
        imports.create_model_from_file(store, "另一个", "正面,负面", broken, "owner", "broken.csv")
    except Exception as e:
        assert "row 41" in str(e)
    assert _counts(store) == before
    assert [m.name for m in registry.list_models(store)] == ["新模型"]


def _grades_file(grades):
    return ("text,label\n" + "".join(f"第{i}张工单，紧急程度{g},{g}\n" for i, g in enumerate(grades))).encode()


def test_numeric_grades_are_prefilled_lowest_first_and_the_order_is_shown_back(app, seeded_store):
    at = app("pages/data.py")
    at.radio(key="create_task").set_value(registry.ORDINAL).run()
    grades = ["4"] * 9 + ["5"] * 7 + ["3"] * 5 + ["1"] * 3 + ["2"] * 2  # most frequent first: 4,5,3,1,2
    at.file_uploader(key="create_file").set_value(("grades.csv", _grades_file(grades), "text/csv"))
    at.run()
    assert not at.exception
    assert at.text_input(key="create_labels").value == "1,2,3,4,5"
    assert any("1 < 2 < 3 < 4 < 5" in c.value for c in at.caption)


def test_grades_a_file_cannot_order_are_left_for_the_owner_to_type(app, seeded_store):
    at = app("pages/data.py")
    at.radio(key="create_task").set_value(registry.ORDINAL).run()
    at.file_uploader(key="create_file").set_value(("grades.csv", _grades_file(["中"] * 5 + ["高"] * 3 + ["低"] * 2),
                                                   "text/csv"))
    at.run()
    assert at.text_input(key="create_labels").value == ""
    assert "中, 高, 低" in at.warning[0].value and "lowest first" in at.warning[0].value
    at.text_input(key="create_labels").input("低,中,高").run()
    assert any("低 < 中 < 高" in c.value for c in at.caption)
    at.text_input(key="create_name").input("紧急度")
    at.button[0].click().run()  # the form's submit button
    assert not at.exception
    assert registry.get_model(seeded_store, "紧急度").labels == ["低", "中", "高"]


def _tables_with_text(at):
    return [d.value["text"].tolist() for d in at.dataframe if "text" in d.value.columns]


def test_a_gbk_file_shows_its_first_rows_decoded(app, seeded_store):
    good = "text,label,business_line\n物流很快，包装完好,正面,数码\n屏幕有坏点，退货了,负面,数码\n".encode("gbk")
    at = app("pages/data.py")
    at.file_uploader(key="import_file").set_value(("good.csv", good, "text/csv"))
    at.run()
    assert _tables_with_text(at) == [["物流很快，包装完好", "屏幕有坏点，退货了"]]  # beside the label counts
    at.file_uploader(key="create_file").set_value(("new.csv", good, "text/csv"))
    at.run()
    assert _tables_with_text(at) == [["物流很快，包装完好", "屏幕有坏点，退货了"]] * 2

@pytest.fixture
def downloads(monkeypatch):
    """Every file a download button offers in this test, as (file name, bytes), newest last."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    offered, add = [], MediaFileManager.add

    def record(self, path_or_data, mimetype, coordinates, file_name=None, is_for_static_download=False):
        offered.append((file_name, path_or_data))
        return add(self, path_or_data, mimetype, coordinates, file_name, is_for_static_download)

    monkeypatch.setattr(MediaFileManager, "add", record)
    return offered


def test_each_input_mode_keeps_its_own_results_and_downloads(app, seeded_store, downloads):
    """After typed texts were predicted, the Upload tab showed the typed results and their download,
    under the same file name the file's results got."""
    at = app("pages/predict.py")
    at.text_area(key="predict_texts").input("房间很干净，服务也很好\n质量很差")
    at.button(key="predict_run").click().run()
    typed, uploaded = at.tabs
    assert [len(d.value) for d in typed.dataframe] == [2]
    assert not uploaded.dataframe and not uploaded.get("download_button")  # nothing of the typed texts here
    rows = "text,business_line\n" + "".join(f"第{i}条：物流很快,数码\n" for i in range(7))
    at.file_uploader(key="predict_file").set_value(("orders.csv", rows.encode("gbk"), "text/csv")).run()
    typed, uploaded = at.tabs
    assert [len(d.value) for d in typed.dataframe] == [2]
    assert not uploaded.get("download_button")
    at.button(key="predict_file_run").click().run()
    assert not at.exception
    typed, uploaded = at.tabs
    assert [len(d.value) for d in typed.dataframe] == [2]
    file_results = [d.value for d in uploaded.dataframe if "label" in d.value.columns]
    assert [len(f) for f in file_results] == [7]
    assert len(at.get("download_button")) == 2
    names = {name: data.decode("utf-8-sig") for name, data in downloads[-2:]}  # the last run's two buttons
    typed_name = next(n for n, csv in names.items() if "质量很差" in csv)
    file_name = next(n for n, csv in names.items() if "物流很快" in csv)
    assert typed_name != file_name and "orders" in file_name and "typed" in typed_name, names


def test_an_uploaded_file_is_previewed_before_predicting(app, seeded_store):
    before = _counts(seeded_store)["predictions"]
    at = app("pages/predict.py")
    rows = "text,business_line\n" + "".join(f"第{i}条评论：还不错,图书\n" for i in range(12))
    at.file_uploader(key="predict_file").set_value(("books.csv", rows.encode("gbk"), "text/csv")).run()
    assert not at.exception
    uploaded = at.tabs[1]
    preview = uploaded.dataframe[0].value
    assert len(preview) == 5 and preview["text"].iloc[0] == "第0条评论：还不错"  # decoded from GBK
    assert any("books.csv: 12 rows" in c.value.replace("\\", "") for c in uploaded.caption)
    assert _counts(seeded_store)["predictions"] == before  # a preview predicts and logs nothing
    at.file_uploader(key="predict_file").set_value(("empty.csv", b"text\n", "text/csv")).run()
    assert any("empty.csv: the file has a header but no rows" in e.value for e in at.tabs[1].error)


def test_rows_without_business_lines_are_named_as_such_in_the_per_line_table(app, seeded_store):
    """The per-business-line table of a model imported without business lines showed a blank name."""
    registry.create_model(seeded_store, "无线", ["好", "坏"], "tester")
    imports.import_frame(seeded_store, "无线", pd.DataFrame({"text": ["很好用", "不好用"], "label": ["好", "坏"]}),
                         "train", "tester")
    at = app("pages/data.py")
    at.session_state["model"] = "无线"
    at.run()
    assert not at.exception
    by_line = next(d.value for d in at.dataframe if d.value.index.name == "business_line")
    assert list(by_line.index) == ["(no business line)"] and by_line["train"].tolist() == [2]
