"""Tables out of the store as files: CSV that a spreadsheet cannot mistake for formulas."""
from __future__ import annotations

import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value):
    """A text cell that a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(neutralise)
    return out


def to_csv_bytes(frame: pd.DataFrame, bom: bool = True, guard: bool = True) -> bytes:
    """UTF-8 CSV for a spreadsheet by default (dashboard downloads): a BOM so Excel reads Chinese
    correctly, and formula cells neutralised. The CLI's plain form for scripts (bom and guard off)
    keeps every cell as stored: a text starting with @ or = is data there, not a formula."""
    return (safe_frame(frame) if guard else frame).to_csv(index=False).encode("utf-8-sig" if bom else "utf-8")
