"""How commands print: a table (or JSON / CSV with --format, or a CSV file with --out), a record,
progress lines, and text cut to a terminal's columns (a Chinese character takes two)."""
from __future__ import annotations

import json
import unicodedata
from pathlib import Path

from ..errors import InvalidInput


def json_arg(text: str | None, what: str) -> dict | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidInput(f"{what} is not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object, like '{{\"estimator\": \"sgd\"}}'")
    return value


def emit(args, frame, out: str | None = None) -> None:
    """Write a table to --out (CSV) or print it in --format."""
    from .. import export

    if out:
        try:
            Path(out).write_bytes(export.to_csv_bytes(frame, bom=args.excel, guard=args.excel))
        except OSError as e:
            raise InvalidInput(f"--out {out} could not be written ({e.strerror})") from None
        print(f"wrote {len(frame)} rows to {out}", file=args.console.err)
        return
    if args.format == "json":
        print(frame.to_json(orient="records", force_ascii=False, date_format="iso"), file=args.console.out)
    elif args.format == "csv":  # plain, for scripts: the formula guard is --out's with --excel
        args.console.out.write(frame.to_csv(index=False))
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", 500, "display.max_columns", 50, "display.width", 200):
            print(gaps_as_dashes(frame).to_string(index=False) if len(frame) else "(no rows)",
                  file=args.console.out)


def gaps_as_dashes(frame):
    """A missing value drawn as a dash, not None, NaN or <NA> (a v1 has no parent: not an error)."""
    shown = frame.copy()
    for column in frame.columns[frame.isna().any()]:
        shown[column] = frame[column].astype(object).where(frame[column].notna(), "–")
    return shown


def emit_record(args, record: dict) -> None:
    if args.format == "json":
        print(json.dumps(record, ensure_ascii=False, default=str), file=args.console.out)
    else:
        for key, value in record.items():  # a missing value as a dash, as in tables (a v1 has no parent)
            print(f"{key}: {'–' if value is None else value}", file=args.console.out)


def progress(args):
    """A progress callback that writes to the command's stderr."""
    return lambda fraction, message: print(f"[{fraction:4.0%}] {message}", file=args.console.err)


def is_terminal(stream) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


def cut(text, width: int) -> str:
    """`text` in at most `width` terminal columns (a Chinese character takes two), with … if cut."""
    text = " ".join(str(text).split())
    if columns(text) <= width:
        return text
    out = ""
    for ch in text:
        if columns(out + ch) > width - 1:
            break
        out += ch
    return out + "…"


def columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def aligned(cells_by_column: dict, right: set[str]) -> list[str]:
    """Header and rows, each cell padded to its column's width in terminal columns; `right` on the right."""
    cells = {name: [name, *values] for name, values in cells_by_column.items()}
    widths = {name: max(columns(v) for v in values) for name, values in cells.items()}

    def pad(name, value):
        gap = " " * (widths[name] - columns(value))
        return gap + value if name in right else value + gap

    rows = len(next(iter(cells.values())))
    return ["  ".join(pad(name, cells[name][i]) for name in cells) for i in range(rows)]
