"""Reading users' files (CSV, TSV, Excel) into frames of strings, refusing what would be misread.

Encodings are detected by charset-normalizer; a UTF-8 BOM is honoured. Every problem names
the file and, where there is one, the row (the header is row 1, the first data row is row 2,
blank lines are not counted).
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path

import pandas as pd
from charset_normalizer import from_bytes

from . import settings
from .errors import InvalidInput

EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls")
_EXPECTED_FIELDS = re.compile(r"Expected \d+ fields")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")

# csv refuses fields over 128 KiB; a long text must reach the length check, which names its row.
csv.field_size_limit(2 ** 31 - 1)


def display_name(source, filename: str | None = None) -> str:
    """The name a message uses for a file: the given name, the path's name, or "upload"."""
    if filename:
        return filename
    return Path(source).name if isinstance(source, (str, Path)) else "upload"


def _decode(data: bytes, filename: str) -> str:
    """The file's text; refused when it holds a NUL byte anywhere (binary data, or a text that a
    reader of the store would see cut short)."""
    wide = _utf16(data)
    if wide is not None:
        return wide
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise InvalidInput(f"{filename}: this is not a text file (it contains binary data: a NUL character "
                           f"on line {line})")
    try:
        return data[3:].decode("utf-8") if data.startswith(b"\xef\xbb\xbf") else data.decode("utf-8")
    except UnicodeDecodeError as e:
        if data.startswith(b"\xef\xbb\xbf"):
            raise InvalidInput(f"{filename}: the file is marked as UTF-8 but byte {e.start + 3} is not; "
                               f"save it as UTF-8") from None
    best = from_bytes(data).best()
    if best is None:
        raise InvalidInput(f"{filename}: the text encoding could not be recognised; save it as UTF-8")
    encoding = best.encoding
    if encoding.replace("-", "").replace("_", "").lower() in ("gbk", "gb2312", "cp936", "hz"):
        encoding = "gb18030"  # a superset: never fails where GBK would succeed
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        raise InvalidInput(f"{filename}: the text encoding could not be recognised; save it as UTF-8") from None


def _utf16(data: bytes) -> str | None:
    """The text of a UTF-16 file (Excel's "Unicode text"), with or without its byte-order mark; None for
    any other file. Without a mark, UTF-16 is told from binary data by its NUL bytes: the high bytes of
    ASCII characters, all on one side of each pair."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"  # the mark says which byte order, and is dropped
    elif len(data) % 2 == 0 and b"\x00" in data:
        odd, even = data[1::2].count(0), data[0::2].count(0)
        if odd and not even:
            encoding = "utf-16-le"
        elif even and not odd:
            encoding = "utf-16-be"
        else:
            return None
    else:
        return None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return None
    if encoding != "utf-16" and ("\n" not in text or _CONTROL.search(text)):
        return None  # bytes that only looked like it: a text file has lines and no control characters
    return None if "\x00" in text else text


def _refuse_long_row(text: str, sep: str, filename: str) -> None:
    """Name the first row with more fields than the header. pandas would otherwise take a long
    first row as "the first column is an index" and shift every column, or report a file line
    that is not the row a user counts."""
    records = (r for r in csv.reader(io.StringIO(text, newline=""), delimiter=sep) if r)
    header = next(records, [])
    for number, record in enumerate(records, start=2):
        if len(record) > len(header):
            raise InvalidInput(f"{filename}: row {number} has {len(record)} fields but the header has "
                               f"{len(header)}; put a text that contains {sep!r} in double quotes")
    raise InvalidInput(f"{filename}: a row has more fields than the header")  # pandas saw one; csv did not


def _read_csv(text: str, filename: str) -> pd.DataFrame:
    first = text.split("\n", 1)[0]
    sep = "\t" if filename.lower().endswith(".tsv") or ("\t" in first and "," not in first) else ","
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        raise InvalidInput(f"{filename}: the file is empty") from None
    except (pd.errors.ParserError, ValueError) as e:
        if _EXPECTED_FIELDS.search(str(e)):
            _refuse_long_row(text, sep, filename)
        raise InvalidInput(f"{filename}: cannot be read as CSV ({str(e).strip()})") from None
    if not isinstance(frame.index, pd.RangeIndex):  # the first data row was longer than the header
        _refuse_long_row(text, sep, filename)
    return frame


def _read_excel(data: bytes, filename: str) -> pd.DataFrame:
    _refuse_workbook_bomb(data, filename)
    rows = int(settings.get("max_workbook_rows"))
    try:
        frame = pd.read_excel(io.BytesIO(data), dtype=str, keep_default_na=False, nrows=rows + 1)
    except Exception as e:  # openpyxl raises many types for a broken workbook
        raise InvalidInput(f"{filename}: cannot be read as an Excel workbook ({e})") from None
    if len(frame) > rows:
        raise InvalidInput(f"{filename}: the sheet has more than {rows} rows (MMS_MAX_WORKBOOK_ROWS); split it, "
                           f"or save it as CSV")
    return frame


def _refuse_workbook_bomb(data: bytes, filename: str) -> None:
    """Refuse an .xlsx whose parts would expand past MMS_MAX_WORKBOOK_MB, before any is unpacked: a
    few MB of zip can hold gigabytes of XML. The sizes are the zip's own; Python's zip reader never
    unpacks a part beyond its stated size, so a lying size cannot get more through."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return  # an old .xls, or not a workbook at all: the reader says which
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as book:
            expanded = sum(part.file_size for part in book.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return
    limit = float(settings.get("max_workbook_mb"))
    if expanded > limit * 1e6:
        raise InvalidInput(f"{filename}: the workbook expands to {expanded / 1e6:,.0f} MB when read, more than the "
                           f"limit of {limit:g} MB (MMS_MAX_WORKBOOK_MB); save it as CSV, or split it")


def _refuse_unsaved_formulas(data: bytes, frame: pd.DataFrame, filename: str) -> None:
    """Name the first formula cell the workbook saved no value for (written by a program, never opened
    in Excel): read as empty, it would otherwise be reported as an empty text. Looked for only when a
    cell is empty."""
    empty = frame.eq("").to_numpy()
    if not empty.any() or not filename.lower().endswith((".xlsx", ".xlsm")):
        return
    from openpyxl import load_workbook

    try:
        sheet = load_workbook(io.BytesIO(data), read_only=True, data_only=False).worksheets[0]
    except Exception:  # read already once by pandas; a second reader's trouble is not the user's
        return
    for number, cells in enumerate(sheet.iter_rows(min_row=2), start=2):
        for column, cell in enumerate(cells):
            if (getattr(cell, "data_type", None) == "f" and number - 2 < len(frame) and column < empty.shape[1]
                    and empty[number - 2, column]):
                raise InvalidInput(f"{filename}: row {number}, column {frame.columns[column]}: a formula without "
                                   f"a saved value ({cell.value}); open the workbook in Excel and save it, or "
                                   f"paste the values instead of the formulas")


def _read_bytes(path: str | Path, filename: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise InvalidInput(f"{filename}: cannot be read ({e.strerror})") from None


def read_text(path: str | Path) -> str:
    """A user's text file (markdown guidelines, say) in whatever encoding it is saved, as read_table
    reads a CSV: a byte-order mark dropped, GBK recognised, binary data refused naming the file."""
    return _decode(_read_bytes(path, str(path)), str(path))


def read_table(source: bytes | str | Path, filename: str | None = None) -> pd.DataFrame:
    """A user's CSV, TSV or Excel file as a frame of strings with lower-case column names."""
    filename = display_name(source, filename)
    data = _read_bytes(source, filename) if isinstance(source, (str, Path)) else source
    if not data.strip():
        raise InvalidInput(f"{filename}: the file is empty")
    if filename.lower().endswith(EXCEL_SUFFIXES):
        frame = _read_excel(data, filename)
        _refuse_unsaved_formulas(data, frame, filename)
    else:
        frame = _read_csv(_decode(data, filename), filename)
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if frame.empty:
        raise InvalidInput(f"{filename}: the file has a header but no rows")
    return frame
