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


def to_csv_bytes(frame: pd.DataFrame, bom: bool = True) -> bytes:
    """UTF-8 CSV, formula cells neutralised; with a BOM by default so Excel reads Chinese correctly
    (dashboard downloads), without one for scripts (the CLI's default)."""
    return safe_frame(frame).to_csv(index=False).encode("utf-8-sig" if bom else "utf-8")
