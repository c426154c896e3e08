"""Bad files get one sentence naming the file, row or field, and the store stays as it was."""
import io

import pandas as pd
import pytest

from core import imports, registry
from core.errors import InvalidInput

import storeprobe as probe

GOOD = "text,label,business_line\n房间很干净,正面,酒店\n太差了,负面,酒店\n"


@pytest.fixture
def model_store(store):
    registry.create_model(store, "m", ["正面", "负面"], "u")
    return store


def _xlsx(frame) -> bytes:
    buf = io.BytesIO()
    frame.to_excel(buf, index=False)
    return buf.getvalue()


BAD = [
    ("empty.csv", b"", "empty.csv: the file is empty"),
    ("header.csv", b"text,label\n", "header.csv: the file has a header but no rows"),
    ("notext.csv", "content,label\n好,正面\n".encode(), "notext.csv: no text column \\(columns found: content, label\\)"),
    ("garbage.csv", bytes(range(256)) * 20, "garbage.csv: this is not a text file"),
    ("nolabel.csv", "text,label\n好,正面\n差,\n".encode(), "nolabel.csv: empty label in row 3"),
    ("nan.csv", "text,label\n好,正面\n差,NaN\n".encode(), "nan.csv: empty label in row 3"),
    ("other.csv", "text,label\n好,正面\n差,差评\n".encode(), "label not in the model's labels \\(正面, 负面\\) in row 3: 差评"),
    ("ragged.csv", 'text,label\n"好,正面\n差,负面\n'.encode(), "ragged.csv: cannot be read as CSV"),
    ("one.csv", "text,label\n好,正面\n棒,正面\n".encode(), "a training set needs examples of at least two labels"),
    ("long.csv", ("text,label\n好,正面\n" + "长" * 5_000_000 + ",负面\n").encode(), "text longer than 20000 characters in row 3"),
]


@pytest.mark.parametrize("filename,data,message", BAD, ids=[b[0] for b in BAD])
def test_bad_file_is_refused_with_a_sentence_and_nothing_is_written(model_store, filename, data, message):
    with model_store.connect() as con:
        before = probe.table_counts(con)
    with pytest.raises(InvalidInput, match=message):
        imports.import_examples(model_store, "m", data, "train", "u", filename)
    with model_store.connect() as con:
        assert probe.table_counts(con) == before


@pytest.mark.parametrize("encoding", ["gbk", "gb18030", "utf-8-sig", "utf-8"])
def test_chinese_encodings_are_detected(model_store, encoding):
    text = "text,label,business_line\n" + "\n".join(
        f"这家酒店的房间非常干净，服务员态度很好，第{i}次入住,正面,酒店\n"
        f"书的印刷质量太差了，纸张很薄，错别字很多，第{i}本,负面,图书" for i in range(20)) + "\n"
    report = imports.import_examples(model_store, "m", text.encode(encoding), "train", "u", f"{encoding}.csv")
    assert report.rows == 40
    assert set(report.frame["label"]) == {"正面", "负面"}
    assert report.frame["text"].iloc[0].startswith("这家酒店")


def test_excel_workbook_imports(model_store):
    frame = pd.DataFrame({"text": ["很好", "很差"], "label": ["正面", "负面"]})
    report = imports.import_examples(model_store, "m", _xlsx(frame), "test", "u", "rows.xlsx")
    assert report.rows == 2
    with pytest.raises(InvalidInput, match="broken.xlsx: cannot be read as an Excel workbook"):
        imports.import_examples(model_store, "m", b"PK\x03\x04 not really", "test", "u", "broken.xlsx")


def test_validation_reports_before_writing(model_store):
    report = imports.validate_examples(model_store, "m", GOOD.encode(), "train", "good.csv")
    assert report.ok and report.rows == 2
    assert report.summary()["rows"].sum() == 2
    with model_store.connect() as con:
        assert probe.table_counts(con)["examples"] == 0
    imports.import_examples(model_store, "m", GOOD.encode(), "train", "u", "good.csv")
    with model_store.connect() as con:
        assert probe.table_counts(con)["examples"] == 2


def test_created_at_is_parsed_or_reported(model_store):
    ok = "text,label,created_at\n好,正面,2026-11-01 10:00\n差,负面,2026/11/02\n"
    report = imports.validate_examples(model_store, "m", ok.encode(), "train", "t.csv")
    assert report.ok and report.frame["created_at"].dt.day.tolist() == [1, 2]
    bad = "text,label,created_at\n好,正面,2026-11-01\n差,负面,last tuesday\n"
    with pytest.raises(InvalidInput, match="created_at is not a date or time in row 3"):
        imports.import_examples(model_store, "m", bad.encode(), "train", "u", "t.csv")


# --- a retried import is recognised; repeated rows and contradictory labels are reported (issue 27) ---

TWICE = "text,label,business_line\n房间很干净,正面,酒店\n太差了,负面,酒店\n房间很干净,正面,酒店\n一般般,正面,图书\n一般般,负面,图书\n"


def test_an_import_retried_after_its_commit_writes_nothing_twice_and_says_so(model_store):
    first = imports.import_examples(model_store, "m", GOOD.encode(), "train", "u", "good.csv")
    assert first.imported == 2 and first.repeated is None
    again = imports.import_examples(model_store, "m", GOOD.encode(), "train", "u", "good.csv")
    assert again.imported == 0 and again.repeated is not None
    assert "already imported into train" in again.outcome("train") and "nothing was imported again" in again.outcome("train")
    with model_store.connect() as con:
        assert probe.table_counts(con)["examples"] == 2
    into_test = imports.import_examples(model_store, "m", GOOD.encode(), "test", "u", "good.csv")
    assert into_test.imported == 2  # another split is another import


def test_repeated_rows_and_contradictory_labels_are_reported_in_the_summary(model_store):
    report = imports.validate_examples(model_store, "m", TWICE.encode(), "train", "twice.csv")
    assert report.ok
    assert any("1 row(s) repeat an earlier row of the file (row 4)" in n for n in report.notes), report.notes
    assert any("1 text(s) have contradictory labels (rows 5, 6)" in n for n in report.notes), report.notes
    done = imports.import_examples(model_store, "m", TWICE.encode(), "train", "u", "twice.csv")
    assert "contradictory labels" in done.outcome("train") and done.imported == 5


def test_the_command_line_and_the_api_say_a_retry_was_recognised(model_store, tmp_path):
    import json

    from fastapi.testclient import TestClient

    from core import cli
    from test_api import served

    path = tmp_path / "good.csv"
    path.write_text(GOOD, encoding="utf-8")
    for expected in (2, 0):
        out = tmp_path / f"out{expected}.txt"
        with open(out, "w") as f:
            console = cli.Console(out=f, err=f, stdin=None, user="u", token="", terminal=False, ask_password=None,
                                  store=model_store)
            assert cli.main(["--format", "json", "import", "m", str(path), "--split", "train"], console) == 0
        answer = json.loads(out.read_text())
        assert answer["imported"] == expected
    assert "already_imported" in answer
    rows = {"rows": [{"text": "好用", "label": "正面"}, {"text": "难用", "label": "负面"}]}
    with TestClient(served(model_store), client=("127.0.0.1", 50000)) as c:
        assert c.post("/api/models/m/examples", json=rows).json()["imported"] == 2
        again = c.post("/api/models/m/examples", json=rows).json()
    assert again["imported"] == 0 and "nothing was imported again" in again["notes"][0]
