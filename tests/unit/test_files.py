"""Users' files are read as the user wrote them or refused with a sentence: a row with more fields
than the header never shifts columns, and a NUL character never gets in (issue 12, items 3 and 6)."""
import pandas as pd
import pytest

from core import files, imports, predict, registry
from core.errors import InvalidInput

import storeprobe as probe

M = "评论情感"


def _counts(store):
    with store.connect() as con:
        return probe.table_counts(con)


@pytest.fixture
def model_store(store):
    registry.create_model(store, "m", ["正面", "负面"], "u")
    return store


def test_a_first_row_longer_than_the_header_is_refused_not_shifted(model_store):
    data = "text,label\n质量不错,物流快,正面\n服务很差,态度不好,负面".encode()
    before = _counts(model_store)
    with pytest.raises(InvalidInput, match="reviews.csv: row 2 has 3 fields but the header has 2"):
        imports.import_examples(model_store, "m", data, "train", "u", "reviews.csv")
    assert _counts(model_store) == before


def test_a_later_long_row_is_named_by_the_row_a_user_counts():
    data = 'text,label\n好,正面\n\n"两行\n的文本",负面\n质量不错,物流快,正面\n'.encode()  # a blank line, a quoted newline
    with pytest.raises(InvalidInput, match="rows.csv: row 4 has 3 fields but the header has 2; put a text "
                                           "that contains ',' in double quotes"):
        files.read_table(data, "rows.csv")
    tsv = "text\tlabel\n好\t正面\n差\t负面\t多余\n".encode()
    with pytest.raises(InvalidInput, match="rows.tsv: row 3 has 3 fields but the header has 2"):
        files.read_table(tsv, "rows.tsv")


def test_a_short_row_is_read_with_its_missing_fields_empty():
    frame = files.read_table("text,label,business_line\n好,正面\n差,负面,酒店\n".encode(), "rows.csv")
    assert frame.to_dict("records") == [{"text": "好", "label": "正面", "business_line": ""},
                                        {"text": "差", "label": "负面", "business_line": "酒店"}]
    quoted = files.read_table('text,label\n"质量不错,物流快",正面\n'.encode(), "rows.csv")
    assert quoted["text"].tolist() == ["质量不错,物流快"]


def test_predicting_a_file_with_a_long_first_row_logs_nothing(seeded_store):
    data = "text,business_line\n质量不错,物流快,酒店\n服务很差,酒店".encode()
    before = _counts(seeded_store)
    with pytest.raises(InvalidInput, match="traffic.csv: row 2 has 3 fields but the header has 2"):
        predict.predict_file(seeded_store, M, data, "u", filename="traffic.csv")
    assert _counts(seeded_store) == before


def test_a_nul_anywhere_in_a_file_is_refused(model_store, seeded_store):
    late = ("text,label\n" + "好评,正面\n" * 10_000 + "差\x00评,负面\n").encode()  # past the first 64 KiB
    assert len(late) > 65536
    before = _counts(model_store)
    with pytest.raises(InvalidInput, match="late.csv: this is not a text file .*NUL character on line 10002"):
        imports.import_examples(model_store, "m", late, "train", "u", "late.csv")
    assert _counts(model_store) == before
    with_bom = "\ufefftext,label\n好\x00,正面\n".encode()
    with pytest.raises(InvalidInput, match="bom.csv: this is not a text file"):
        files.read_table(with_bom, "bom.csv")
    before = _counts(seeded_store)
    with pytest.raises(InvalidInput, match="late.csv: this is not a text file"):
        predict.predict_file(seeded_store, M, late, "u", filename="late.csv")
    assert _counts(seeded_store) == before


def test_a_nul_in_any_text_is_refused(model_store, seeded_store):
    rows = pd.DataFrame({"text": ["好", "差"], "label": ["正面", "负面"], "business_line": ["酒\x00店", ""]})
    before = _counts(model_store)
    with pytest.raises(InvalidInput, match=r"rows: a NUL character \(\\0\) in row 2"):
        imports.import_frame(model_store, "m", rows, "train", "u")
    assert _counts(model_store) == before
    before = _counts(seeded_store)
    with pytest.raises(InvalidInput, match=r"text 2 contains a NUL character \(\\0\)"):
        predict.predict_texts(seeded_store, M, ["好", "\x00"], "u")
    assert _counts(seeded_store) == before
    with pytest.raises(InvalidInput, match="comment contains a NUL character"):
        imports.check_text("a\x00b", "comment")
    assert imports.check_text("好", "comment") == "好"


def test_a_file_marked_as_utf8_that_is_not_gets_a_sentence_not_a_traceback():
    data = b"\xef\xbb\xbftext,label\n" + "好,正面\n".encode("gb18030")
    with pytest.raises(InvalidInput, match="gbk.csv: the file is marked as UTF-8 but byte 14 is not; save it as UTF-8"):
        files.read_table(data, "gbk.csv")


# --- UTF-16 (Excel's "Unicode text") and formulas without a saved value (issue 27, item 12) ---------

UNICODE_TEXT = "text\tlabel\tbusiness_line\r\n房间很干净, 服务好\t正面\t酒店\r\n太差了\t负面\t酒店\r\n"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_file_with_or_without_a_byte_order_mark_is_read(model_store, encoding):
    """Excel saves "Unicode text" as UTF-16 (little-endian, with a mark), tab-separated."""
    report = imports.import_examples(model_store, "m", UNICODE_TEXT.encode(encoding), "train", "u", "unicode.txt")
    assert report.rows == 2
    assert report.frame["text"].tolist() == ["房间很干净, 服务好", "太差了"]
    assert report.frame["business_line"].tolist() == ["酒店", "酒店"]


def test_binary_data_is_still_refused_beside_utf16(model_store):
    with pytest.raises(InvalidInput, match="this is not a text file"):
        files.read_table(b"text,label\n\x00\x00\x01\x00ab\x00\x00", "odd.csv")


def test_a_formula_without_a_saved_value_is_named_not_called_empty_text(model_store):
    """A workbook written by a program keeps formulas without their values; Excel computes them on opening."""
    import io

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["text", "label"])
    sheet.append(["房间很干净", "正面"])
    sheet.append(['=CONCATENATE("太","差")', "负面"])
    buf = io.BytesIO()
    book.save(buf)
    before = _counts(model_store)
    with pytest.raises(InvalidInput, match=r"formulas.xlsx: row 3, column text: a formula without a saved value") as e:
        imports.import_examples(model_store, "m", buf.getvalue(), "train", "u", "formulas.xlsx")
    assert "empty text" not in str(e.value)
    assert _counts(model_store) == before
