"""Versions as experiments, as MLflow's run view shows runs: one row per version with its note,
tags, settings and metrics, filtered by a short expression ("macro_f1 > 0.8 and estimator = sgd")
and sorted by any column. The Versions page and the `versions` command read the same table.
"""
from __future__ import annotations

import re

import pandas as pd

from . import compare
from .errors import InvalidInput

LEADING = ("version", "status", "tags", "note", "mode")
SETTINGS = ("config.", "preprocess.", "data.")  # what a version was trained with and on
HEADLINE = ("metrics.accuracy", "metrics.macro_f1", "metrics.log_loss", "metrics.ece")
# Facts that are not one comparable value: curves, matrices, hashes, sentences.
_LEFT_OUT = re.compile(r"(reliability|confusion|fingerprint|calibration|per_class\.[^.]+\.support)$|"
                       r"^metrics\.(confusion|reliability)\.")
_OPS = {"=": "eq", "==": "eq", "!=": "ne", ">": "gt", ">=": "ge", "<": "lt", "<=": "le", "contains": "contains"}
_CLAUSE = re.compile(r"^\s*([\w.-]+)\s*(>=|<=|!=|==|=|>|<|\bcontains\b)\s*(.+?)\s*$", re.I)
EXAMPLE = "macro_f1 > 0.8 and estimator = logreg and tags contains baseline"


def runs_table(versions, annotations: dict) -> pd.DataFrame:
    """One row per version (oldest first): version, status, tags, note, mode, then its settings
    (config.*, preprocess.*, data.*) and metrics (metrics.*) as single values; lists as text."""
    rows = []
    for v in versions:
        note = annotations.get(v.version)
        row = {"version": v.version, "status": v.status, "tags": list(note.tags) if note else [],
               "note": note.note if note else ""}
        for key, value in compare.version_facts(v).items():
            if key.startswith(("mode", *SETTINGS, "metrics.")) and not _LEFT_OUT.search(key):
                row[key] = compare.as_text(value) if isinstance(value, (list, tuple)) else value
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame if len(frame) else pd.DataFrame(columns=list(LEADING))


def varying(frame: pd.DataFrame, prefixes: tuple[str, ...]) -> list[str]:
    """The columns under `prefixes` whose value is not the same for every version."""
    return [c for c in frame.columns if c.startswith(prefixes)
            and frame[c].map(compare.as_text).nunique(dropna=False) > 1]


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Numeric metrics, the headline ones first."""
    numeric = [c for c in frame.columns if c.startswith("metrics.") and pd.api.types.is_numeric_dtype(frame[c])]
    return [c for c in HEADLINE if c in numeric] + [c for c in numeric if c not in HEADLINE]


def column(frame: pd.DataFrame, name: str) -> str:
    """A column named in full ("metrics.macro_f1") or by its last part ("macro_f1", "C"), if that is unique."""
    name = name.strip()
    if name in frame.columns:
        return name
    if name.lower() in ("tag", "tags"):
        return "tags"
    found = [c for c in frame.columns if c.rsplit(".", 1)[-1] == name] or \
            [c for c in frame.columns if c.lower().rsplit(".", 1)[-1] == name.lower()]
    if len(found) == 1:
        return found[0]
    if found:
        raise InvalidInput(f"{name!r} could be {', '.join(found)}: write the full name")
    raise InvalidInput(f"no setting or metric is called {name!r}; e.g. {', '.join(frame.columns[:12])}")


def filter_runs(frame: pd.DataFrame, expression: str) -> pd.DataFrame:
    """The rows that meet every clause of `expression` ("COLUMN OP VALUE and ..."; OP one of
    = != > >= < <= contains; for tags, = and contains mean "has the tag")."""
    expression = (expression or "").strip()
    if not expression:
        return frame
    if re.search(r"\s+or\s+", expression, re.I):
        raise InvalidInput("a filter joins clauses with `and` only; run two filters for `or`")
    keep = pd.Series(True, index=frame.index)
    for clause in re.split(r"\s+and\s+", expression, flags=re.I):
        match = _CLAUSE.match(clause)
        if not match:
            raise InvalidInput(f"{clause.strip()!r} is not a clause like `{EXAMPLE.split(' and ')[0]}`")
        name, op, value = column(frame, match[1]), _OPS[match[2].lower()], match[3].strip("'\"")
        keep &= _clause(frame[name], name, op, value)
    return frame[keep]


def _clause(values: pd.Series, name: str, op: str, value: str) -> pd.Series:
    if name == "tags":
        if op not in ("eq", "ne", "contains"):
            raise InvalidInput("tags take =, != or contains")
        has = values.map(lambda tags: value in tags)
        return ~has if op == "ne" else has
    if op == "contains":
        return values.map(lambda v: value.lower() in compare.as_text(v).lower())
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        try:
            number = float(value)
        except ValueError:
            raise InvalidInput(f"{name} is a number; compare it with a number, not {value!r}") from None
        return getattr(values.astype(float), op)(number).fillna(False)
    if op not in ("eq", "ne"):
        raise InvalidInput(f"{name} is text; compare it with = or != or contains")
    same = values.map(lambda v: compare.as_text(v).lower() == value.lower())
    return ~same if op == "ne" else same


def sort_runs(frame: pd.DataFrame, by: str, descending: bool = False) -> pd.DataFrame:
    """Sorted by one column (named as `column` takes it); versions without a value come last."""
    name = column(frame, by)
    key = None if name != "tags" else (lambda s: s.map(", ".join))
    return frame.sort_values(name, ascending=not descending, na_position="last", key=key, kind="stable")
