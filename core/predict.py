"""Prediction with the active (or a named) version, every prediction logged before it is answered.

A loaded model is cached per file and hash (`artifacts.load`), and the active version
is looked up on every call, so an activation takes effect on the next call without a restart.
In the server, rows are logged by the group-commit writer (`logwriter`); elsewhere in one
transaction per call.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import artifacts, logwriter, registry, settings
from .errors import InvalidInput
from .estimators import predict_proba, prob_column
from .files import display_name, read_table
from .imports import check_text, validate_texts
from .preprocess import normalise
from .store import Store
from .workers import split_map

DEFAULT_LINE = "default"


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise InvalidInput("no texts to predict")
    limit = int(settings.get("max_text_chars"))
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise InvalidInput(f"text {i + 1} is empty")
        if len(t) > limit:
            raise InvalidInput(f"text {i + 1} has {len(t)} characters, more than the limit of {limit}")
        check_text(t, f"text {i + 1}")
    return texts


def predict_texts(store: Store, name: str, texts: Sequence[str], user: str, business_line=None,
                  created_at=None, version: int | None = None, source: str = "app",
                  workers: int | None = None) -> pd.DataFrame:
    """Predict and log. Returns one row per text: prediction_id, text, business_line, label,
    top_prob, version and one probability column per label (`p_<label>`).

    `business_line` and `created_at` are one value for all texts or one per text; created_at lets
    a user replay historical traffic (default: now). Large batches are tokenised on `workers`
    processes (default: one per core)."""
    texts = _check_texts(texts)
    with store.connect() as con:
        model = registry.find_model(con, name)
        model_version = registry.resolve_version(con, model, version)
    norm_texts, rows = zip(*split_map(_probabilities, texts, (store, model_version, model.labels), workers))
    proba = np.asarray(rows)
    lines = [DEFAULT_LINE if pd.isna(line) else str(line)
             for line in _per_text(business_line, len(texts), DEFAULT_LINE)]
    labels = np.asarray(model.labels)[proba.argmax(axis=1)]
    top = proba.max(axis=1)
    # built in one constructor each: per-column assignment costs more than the prediction of one text
    frame = pd.DataFrame({"text": texts, "norm_text": norm_texts, "business_line": lines, "label": labels,
                          "top_prob": top, "probs": list(proba),
                          "created_at": pd.to_datetime(_per_text(created_at, len(texts), None))})
    ids = logwriter.write(store, logwriter.Rows(model.model_id, model_version.version, frame, source, user))
    return pd.DataFrame({"prediction_id": ids, "text": texts, "business_line": lines, "label": labels,
                         "top_prob": top, "version": model_version.version,
                         **{prob_column(label): proba[:, j] for j, label in enumerate(model.labels)}})


def _probabilities(texts: list[str], store: Store, version: registry.Version, labels: list[str]) -> list:
    """(normalised text, probabilities) for one part of a batch, in this process or a worker
    (which loads and verifies the model file itself, once)."""
    artifact = artifacts.load(store, version)
    tokenizer = artifact["tokenizer"]
    norm = [normalise(t, tokenizer.config) for t in texts]
    proba = predict_proba(artifact["pipeline"], [tokenizer.cut_normalised(t) for t in norm], labels)
    return list(zip(norm, proba))


def _per_text(value, n: int, default):
    if value is None or isinstance(value, (str, pd.Timestamp)):
        return [default if value is None else value] * n
    values = list(value)
    if len(values) != n:
        raise InvalidInput(f"got {len(values)} values for {n} texts")
    return values


def predict_file(store: Store, name: str, source, user: str, filename: str | None = None,
                 business_line: str | None = None, version: int | None = None,
                 source_tag: str = "app") -> pd.DataFrame:
    """Predict every row of a CSV/Excel file with a `text` column (optional business_line, created_at)."""
    filename = display_name(source, filename)
    report = validate_texts(read_table(source, filename), filename)
    report.raise_if_invalid()
    rows = report.frame
    lines = rows["business_line"] if business_line is None else business_line
    created = rows["created_at"] if rows["created_at"].notna().any() else None
    return predict_texts(store, name, rows["text"].tolist(), user, business_line=lines, created_at=created,
                         version=version, source=source_tag)
