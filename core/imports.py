"""Checking users' rows before anything is written, and importing them: all checks before any write.

Files are read by `files`; every problem names the file and, where there is one, the row (the
header is row 1, the first data row is row 2).
"""
from __future__ import annotations

import re
import hashlib
import json
from dataclasses import dataclass, field

import pandas as pd

from . import auth, registry, settings
from . import store as db
from .errors import InvalidInput
from .files import display_name, read_table

MAX_PROBLEMS = 5
NUL = "\x00"


@dataclass
class Validation:
    """What an import would write, and every problem that stops it."""
    filename: str
    rows: int
    frame: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what is worth a look but imports: repeated rows, labels
    repeated: dict | None = None  # the earlier import of these very rows, when this one was a retry

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def imported(self) -> int:
        """Rows this import wrote: none when it repeated an earlier one."""
        return 0 if self.repeated else self.rows

    def outcome(self, split: str) -> str:
        """The import's result in one sentence, with its notes."""
        if self.repeated:
            r = self.repeated
            said = (f"{self.filename}: these {r['rows']} rows were already imported into {split} (import "
                    f"{r['import_id']}, by {r['created_by']} at {pd.Timestamp(r['created_at']):%Y-%m-%d %H:%M}); "
                    f"nothing was imported again")
        else:
            said = f"{self.filename}: imported {self.rows} rows into {split}"
        return "; ".join([said] + self.notes)

    def record(self, split: str) -> dict:
        """The import's result as plain data (the command line's JSON)."""
        return {"imported": self.imported, "split": split, "file": self.filename,
                **({"already_imported": self.repeated["import_id"]} if self.repeated else {}),
                **({"notes": self.notes} if self.notes else {})}

    def summary(self) -> pd.DataFrame:
        """Rows per label and business line, as the Data page shows before writing."""
        if self.frame.empty or "label" not in self.frame:
            return pd.DataFrame(columns=["label", "business_line", "rows"])
        return (self.frame.fillna({"business_line": ""}).groupby(["label", "business_line"]).size()
                .rename("rows").reset_index())

    def raise_if_invalid(self) -> None:
        if self.problems:
            more = len(self.problems) - 1
            extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
            raise InvalidInput(self.problems[0] + extra)


def check_text(text: str, where: str) -> str:
    """A text refused when it holds a NUL character, which tools reading the store take as its end.

    The one rule for texts from any face (API, CLI, page); files get it in validate_texts."""
    if NUL in text:
        raise InvalidInput(f"{where} contains a NUL character (\\0); remove it and try again")
    return text


# Characters that would act on a screen instead of showing: ESC starts a terminal's colour codes,
# the bidi controls reverse the text around them (U+202E turned the Monitor's drift banner around).
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f" + _BIDI + "]")


def check_name(value: str, where: str) -> str:
    """A name shown on screens and in terminals (a business line) refused when it holds a control
    character (NUL, ESC, new line…) or a bidi control; the model name's rule, with bidi added."""
    found = _UNSHOWABLE.search(value)
    if found:
        raise InvalidInput(f"{where} contains the control character U+{ord(found.group()):04X}; use letters, "
                           f"digits, spaces or other visible characters")
    return value


def _rows(mask: pd.Series) -> str:
    rows = (mask[mask].index + 2).tolist()
    shown = ", ".join(str(r) for r in rows[:MAX_PROBLEMS])
    return f"row {shown}" if len(rows) == 1 else f"rows {shown}" + (f" and {len(rows) - MAX_PROBLEMS} more" if len(rows) > MAX_PROBLEMS else "")


def validate_texts(frame: pd.DataFrame, filename: str, labels: list[str] | None = None) -> Validation:
    """Check a frame of texts (and labels, when `labels` is given); returns a cleaned frame and problems.

    Columns: text, [label], optional business_line and created_at."""
    problems = []
    required = ["text"] + (["label"] if labels is not None else [])
    missing = [c for c in required if c not in frame.columns]
    if missing:
        found = ", ".join(frame.columns[:10]) or "none"
        problems.append(f"{filename}: no {' or '.join(missing)} column (columns found: {found})")
        return Validation(filename, len(frame), frame.iloc[0:0], problems)
    out = pd.DataFrame(index=frame.index)
    out["text"] = frame["text"].astype(str).str.strip()
    empty = out["text"] == ""
    if empty.any():
        problems.append(f"{filename}: empty text in {_rows(empty)}")
    limit = int(settings.get("max_text_chars"))
    long = out["text"].str.len() > limit
    if long.any():
        problems.append(f"{filename}: text longer than {limit} characters in {_rows(long)} "
                        f"(the limit is the setting MMS_MAX_TEXT_CHARS)")
    stored = [c for c in ("text", "label", "business_line") if c in frame]
    nul = frame[stored].astype(str).apply(lambda column: column.str.contains(NUL, regex=False)).any(axis=1)
    if nul.any():
        problems.append(f"{filename}: a NUL character (\\0) in {_rows(nul)}; remove it and try again")
    if labels is not None:
        out["label"] = frame["label"].astype(str).str.strip()
        no_label = out["label"].isin(["", "nan", "NaN", "None"])
        if no_label.any():
            problems.append(f"{filename}: empty label in {_rows(no_label)}")
        unknown = ~out["label"].isin(labels) & ~no_label
        if unknown.any():
            values = ", ".join(sorted(set(out.loc[unknown, "label"]))[:5])
            problems.append(f"{filename}: label not in the model's labels ({', '.join(labels)}) in "
                            f"{_rows(unknown)}: {values}")
    line = frame["business_line"].astype(str).str.strip() if "business_line" in frame else None
    out["business_line"] = line.replace("", None) if line is not None else None
    if line is not None:
        unshowable = line.str.contains(_UNSHOWABLE) & ~nul
        if unshowable.any():
            problems.append(f"{filename}: a control character (ESC, new line, a bidi control…) in the "
                            f"business_line of {_rows(unshowable)}; use visible characters")
    if "created_at" in frame and (frame["created_at"].astype(str).str.strip() != "").any():
        raw = frame["created_at"].astype(str).str.strip()
        parsed = pd.to_datetime(raw.replace("", None), errors="coerce", format="mixed")
        bad = parsed.isna() & (raw != "")
        if bad.any():
            problems.append(f"{filename}: created_at is not a date or time in {_rows(bad)}")
        out["created_at"] = parsed.dt.tz_localize(None) if getattr(parsed.dt, "tz", None) else parsed
    else:
        out["created_at"] = pd.NaT
    notes = _repeats(out) if labels is not None and not problems else []
    return Validation(filename, len(frame), out.reset_index(drop=True), problems, notes)


def _repeats(out: pd.DataFrame) -> list[str]:
    """Sentences on rows that repeat an earlier row, and on texts given more than one label: both import
    (a person decides), but a user should know before training on them."""
    notes = []
    line = out["business_line"].fillna("") if "business_line" in out else ""
    same = out.assign(business_line=line).duplicated(["text", "label", "business_line"])
    if same.any():
        notes.append(f"{int(same.sum())} row(s) repeat an earlier row of the file ({_rows(same)})")
    labels = out.groupby("text")["label"].transform("nunique")
    torn = labels > 1
    if torn.any():
        texts = out.loc[torn, "text"].nunique()
        notes.append(f"{texts} text(s) have contradictory labels ({_rows(torn)})")
    return notes


def import_key(model_id: int, split: str, frame: pd.DataFrame) -> str:
    """The sha256 of the model, the split and the rows as they would be written: a retry's is the same."""
    digest = hashlib.sha256(f"{model_id}\x1f{split}".encode())
    columns = [c for c in ("text", "label", "business_line", "created_at") if c in frame]
    for row in frame[columns].itertuples(index=False):
        digest.update(json.dumps([None if pd.isna(v) else str(v) for v in row], ensure_ascii=False).encode())
    return digest.hexdigest()


SPLITS = ("train", "test")
# The model record's two label columns for one text: label_1 a classification (分类), label_2 a
# grade (排序). A file without a `label` column feeds each task its own, unless told otherwise.
RECORD_LABEL_COLUMNS = {registry.CLASSIFICATION: "label_1", registry.ORDINAL: "label_2"}


def with_label_column(frame: pd.DataFrame, task: str, filename: str, label_column: str | None = None) -> pd.DataFrame:
    """`frame` with the column that holds this model's labels named `label`: `label_column` when
    given, else `label`, else the record's column for the task (label_1 classification, label_2 ordinal)."""
    if label_column is None:
        fallback = RECORD_LABEL_COLUMNS.get(task)
        if "label" in frame.columns or fallback not in frame.columns:
            return frame
        label_column = fallback
    label_column = str(label_column).strip()
    if label_column not in frame.columns:
        found = ", ".join(map(str, frame.columns[:10])) or "none"
        raise InvalidInput(f"{filename}: no column {label_column!r} to take the labels from (columns found: {found})")
    if label_column == "label":
        return frame
    return frame.drop(columns=[c for c in ("label",) if c in frame.columns]).rename(columns={label_column: "label"})


def validate_examples(store, name: str, source, split: str, filename: str | None = None,
                      label_column: str | None = None) -> Validation:
    """Read and check a labelled file for model `name` without writing anything."""
    filename = display_name(source, filename)
    return validate_frame(store, name, read_table(source, filename), split, filename, label_column)


def validate_frame(store, name: str, frame: pd.DataFrame, split: str, filename: str = "rows",
                   label_column: str | None = None) -> Validation:
    """Check labelled rows (text, label, optional business_line, created_at) for model `name`;
    the labels come from `label_column` as `with_label_column` says."""
    if split not in SPLITS:
        raise InvalidInput(f"split must be train or test, not {split!r}")
    model = registry.get_model(store, name)
    frame = with_label_column(frame, model.task, filename, label_column)
    report = validate_texts(frame, filename, model.labels)
    if report.ok and split == "train":
        with store.connect() as con:
            summary = db.example_summary(con, model.model_id)
        have = set(summary.loc[summary["split"] == "train", "label"])
        classes = have | set(report.frame["label"])
        if len(classes) < 2:
            report.problems.append(f"{filename}: a training set needs examples of at least two labels; "
                                   f"this file only has {', '.join(sorted(classes))}")
    return report


def import_examples(store, name: str, source, split: str, user: str, filename: str | None = None,
                    label_column: str | None = None) -> Validation:
    """Validate a file, then write every row in one transaction (all or nothing)."""
    filename = display_name(source, filename)
    return import_frame(store, name, read_table(source, filename), split, user, filename, label_column)


def import_frame(store, name: str, frame: pd.DataFrame, split: str, user: str,
                 filename: str = "rows", label_column: str | None = None) -> Validation:
    """Validate labelled rows, then write them all in one transaction. Returns the validation."""
    return import_splits(store, name, {split: frame}, user, filename, label_column)[split]


def import_splits(store, name: str, frames: dict[str, pd.DataFrame], user: str, filename: str = "rows",
                  label_column: str | None = None) -> dict[str, Validation]:
    """Validate labelled rows for each split ({split: frame}), then write every split in one
    transaction: a problem in any row imports nothing. Returns the validation per split."""
    auth.check(store, user, "import")
    reports = {split: validate_frame(store, name, frame, split, filename, label_column)
               for split, frame in frames.items()}
    for report in reports.values():
        report.raise_if_invalid()
    with store.transaction() as con:
        auth.require(con, user, "import")
        model = registry.find_model(con, name)
        for split, report in reports.items():
            key = import_key(model.model_id, split, report.frame)
            report.repeated = db.import_by_key(con, key)
            if report.repeated:
                continue
            import_id = db.new_import_id(con)
            db.insert_examples(con, model.model_id, report.frame, split, "import", user, import_id)
            db.insert_import_key(con, key, model.model_id, import_id, split, report.rows, report.filename, user)
            db.add_event(con, user, "import", model.model_id,
                         {"import_id": import_id, "file": report.filename, "split": split, "rows": report.rows})
    return reports


def labels_in(source, filename: str | None = None, task: str = registry.CLASSIFICATION) -> list[str]:
    """The distinct labels of a file's label column for a model of `task` (with_label_column), most
    frequent first (to prefill a label set)."""
    filename = display_name(source, filename)
    frame = with_label_column(read_table(source, filename), task, filename)
    if "label" not in frame:
        raise InvalidInput(f"{filename}: no label column (columns found: {', '.join(frame.columns[:10])})")
    values = frame["label"].astype(str).str.strip()
    return values[values != ""].value_counts().index.tolist()


def grade_order(labels: list[str]) -> list[str]:
    """Grades in their order, lowest first, where the labels themselves say it (numbers: 1 < 2 < 10);
    [] where only the owner knows it (低, 中, 高): a frequency order would be kept for good."""
    try:
        return sorted(labels, key=float)
    except ValueError:
        return []


def first_rows(source, filename: str | None = None, task: str = registry.CLASSIFICATION, n: int = 5) -> pd.DataFrame:
    """A labelled file's first rows as they will be read (decoded, this task's label column), so an owner
    sees that the encoding was recognised before anything is written."""
    filename = display_name(source, filename)
    frame = with_label_column(read_table(source, filename), task, filename)
    return frame[[c for c in ("text", "label", "business_line", "created_at") if c in frame]].head(n)


def create_model_from_file(store, name: str, labels, source, user: str, filename: str | None = None,
                           description: str = "", preprocess: dict | None = None,
                           model_config: dict | None = None, test_share: float = 0.2,
                           seed: int = 42, task: str = registry.CLASSIFICATION,
                           label_column: str | None = None) -> "Validation":
    """Create a model and import a labelled file in one transaction, holding out `test_share` of
    the rows (stratified by label, seeded) as the model's fixed test split. For an ordinal model
    (`task`) `labels` are its grades, lowest first; `label_column` as `with_label_column` says."""
    auth.check(store, user, "manage")
    filename = display_name(source, filename)
    if task not in registry.TASKS:
        raise InvalidInput(f"task must be one of {', '.join(registry.TASKS)}, not {task!r}")
    labels = registry.validate_labels(labels, task)
    frame = with_label_column(read_table(source, filename), task, filename, label_column)
    report = validate_texts(frame, filename, labels)
    classes = set(report.frame["label"]) if report.ok else set()
    if report.ok and len(classes) < 2:
        report.problems.append(f"{filename}: a training set needs examples of at least two labels; "
                               f"this file only has {', '.join(sorted(classes))}")
    report.raise_if_invalid()
    if not 0 <= test_share < 1:
        raise InvalidInput("the test share must be between 0 and 1")
    frame = report.frame
    test = frame.groupby("label", group_keys=False).sample(frac=test_share, random_state=seed)
    examples = {"train": frame.drop(test.index)}
    if len(test):
        examples["test"] = test
    registry.create_model(store, name, labels, user, description, task=task, preprocess=preprocess,
                          model_config=model_config, examples=examples)
    return report


def data_summary(store, name: str) -> pd.DataFrame:
    """Rows by split, source, label and business line (the Data page's overview)."""
    with store.connect() as con:
        model = registry.find_model(con, name)
        return db.example_summary(con, model.model_id)
