"""Prediction with the active (or a named) version, every prediction logged before it is answered.

A loaded model is cached per file and hash (`artifacts.load`). The active version is looked up
on every call, so an activation takes effect on the next call without a restart. In a server the
store carries its serving (`store.serving`, core/serving.py): predictions there are batched with
concurrent ones, logged by the group-commit writer, and lookups are kept for a moment (an
activation in this process drops them at once; another process's within LOOKUP_SECONDS).
Elsewhere rows are logged in one transaction per call.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import artifacts, logwriter, ordinal, registry, settings
from .errors import InvalidInput
from .estimators import predict_proba, prob_column
from .files import display_name, read_table
from .imports import check_name, check_text, validate_texts
from .preprocess import normalise
from .store import Store
from .workers import serve_map, split_map

DEFAULT_LINE = "default"
LOOKUP_SECONDS = 1.0  # longest a server's model lookup is reused: what another writer's activation waits
SERVE_IN_WORKER = 32  # texts from which a server request is tokenised in a worker process, off the GIL


REQUEST_SOURCES = ("app", "api")  # people's requests to the server, capped at MMS_MAX_BATCH texts


def check_request_size(n: int) -> None:
    """Refuse a request of more texts than MMS_MAX_BATCH: one limit for the API and the Predict page.
    The command line's `predict FILE` and the demo's replay are batch jobs, not requests."""
    limit = int(settings.get("max_batch"))
    if n > limit:
        raise InvalidInput(f"{n} texts in one request, more than the limit of {limit} (MMS_MAX_BATCH); "
                           f"split them, or predict the file with `python -m core predict`")


def check_batch(texts: Sequence[str], business_line=None, source: str = "app") -> tuple[list[str], list[str]]:
    """A batch's texts and their business lines (one for all, or one per text), checked once for every
    face: a request's size (MMS_MAX_BATCH, for people's requests), then each text (not blank, at most
    MMS_MAX_TEXT_CHARS characters, no NUL) and each line (no control character). InvalidInput names
    the first problem."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if source in REQUEST_SOURCES:
        check_request_size(len(texts))
    if not texts:
        raise InvalidInput("no texts to predict")
    limit = int(settings.get("max_text_chars"))
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise InvalidInput(f"text {i + 1} is empty")
        if len(t) > limit:
            raise InvalidInput(f"text {i + 1} has {len(t)} characters, more than the limit of {limit}")
        check_text(t, f"text {i + 1}")
    lines = [DEFAULT_LINE if pd.isna(line) else str(line) for line in _per_text(business_line, len(texts), DEFAULT_LINE)]
    for line in set(lines):
        check_name(line, f"the business line {line!r}")
    return texts, lines


@dataclass(frozen=True)
class Predicted:
    """One call's logged predictions, as plain columns: the API answers from these without pandas."""
    prediction_ids: list[int]
    texts: list[str]
    business_lines: list[str]
    labels: list[str]        # predicted, one per text
    top_prob: list[float]
    version: int
    model_labels: list[str]  # the probability columns' order (an ordinal model's grades, lowest first)
    proba: np.ndarray        # texts x model_labels
    expected_grades: list[float] | None = None  # ordinal models: the distribution's mean grade (1..n), a sort key

    def frame(self) -> pd.DataFrame:
        graded = {} if self.expected_grades is None else {"expected_grade": self.expected_grades}
        return pd.DataFrame({"prediction_id": self.prediction_ids, "text": self.texts,
                             "business_line": self.business_lines, "label": self.labels,
                             "top_prob": self.top_prob, **graded, "version": self.version,
                             **{prob_column(label): self.proba[:, j] for j, label in enumerate(self.model_labels)}})


def predict_texts(store: Store, name: str, texts: Sequence[str], user: str, business_line=None,
                  created_at=None, version: int | None = None, source: str = "app",
                  workers: int | None = None) -> pd.DataFrame:
    """Predict and log. Returns one row per text: prediction_id, text, business_line, label,
    top_prob, version and one probability column per label (`p_<label>`); for an ordinal model
    `label` is the most likely grade and `expected_grade` (1 = lowest) follows top_prob.

    `business_line` and `created_at` are one value for all texts or one per text; created_at lets
    a user replay historical traffic (default: now). Large batches are tokenised on `workers`
    processes (default: one per core)."""
    return predict_batch(store, name, texts, user, business_line, created_at, version, source, workers).frame()


def predict_batch(store: Store, name: str, texts: Sequence[str], user: str, business_line=None,
                  created_at=None, version: int | None = None, source: str = "app",
                  workers: int | None = None) -> Predicted:
    """`predict_texts` without building a DataFrame: what a request of the API needs."""
    texts, lines = check_batch(texts, business_line, source)
    created = _per_text(created_at, len(texts), None)
    if any(c is not None for c in created):
        created = pd.to_datetime(created)  # strings and Timestamps, as pandas reads them; NaT for none
    serving = store.serving
    if serving is not None and workers is None and len(texts) < SERVE_IN_WORKER and created_at is None:
        return serving.predict(name, texts, lines, user, source, version).result()
    model, model_version = lookup(store, name, version)
    args = (store, model_version, model.labels)
    if serving is not None:
        results = serving.probabilities(texts, args, workers)
    else:
        results = split_map(probabilities, texts, args, workers)
    rows, answered = logged(model, model_version, texts, lines, created, results, source, user)
    return answered(logwriter.write(store, rows))


def logged(model: registry.Model, version: registry.Version, texts: list[str], lines: list[str], created,
           results: list, source: str, user: str):
    """The log's rows for predicted texts (`probabilities`' results), and what makes the call's answer
    from their ids once they are committed."""
    norm_texts = [norm for norm, _ in results]
    proba = np.asarray([row for _, row in results]).reshape(len(texts), len(model.labels))
    labels = np.asarray(model.labels)[proba.argmax(axis=1)].tolist()
    top = proba.max(axis=1).tolist()
    columns = {"text": texts, "norm_text": norm_texts, "business_line": lines, "label": labels, "top_prob": top,
               "probs": proba.tolist(), "created_at": created}
    rows = logwriter.Rows(model.model_id, version.version, columns, source, user)
    expected = ordinal.expected_grade(proba).tolist() if registry.is_ordinal(model) else None

    def answered(ids: list[int]) -> Predicted:
        return Predicted(ids, texts, lines, labels, top, version.version, list(model.labels), proba, expected)
    return rows, answered


def lookup(store: Store, name: str, version: int | None = None) -> tuple[registry.Model, registry.Version]:
    """The model and the version that answers (the active one when `version` is None): read now, or
    kept for a moment by the store's serving (`Serving.lookup`)."""
    serving = store.serving
    return read_lookup(store, name, version) if serving is None else serving.lookup(name, version)


def read_lookup(store: Store, name: str, version: int | None = None) -> tuple[registry.Model, registry.Version]:
    with store.connect() as con:
        model = registry.find_model(con, name)
        return model, registry.resolve_version(con, model, version)


def probabilities(texts: list[str], store: Store, version: registry.Version, labels: list[str]) -> list:
    """(normalised text, probabilities) for one part of a batch, in this process or a worker
    (which loads and verifies the model file itself, once)."""
    artifact = artifacts.load(store, version)
    # imported here, like estimators does: the model's load has loaded sklearn, and the server starts without it
    from sklearn import config_context

    try:
        tokenizer = artifact["tokenizer"]
        norm = [normalise(t, tokenizer.config) for t in texts]
        tokens = [tokenizer.cut_normalised(t) for t in norm]
        # sklearn's input checks were a quarter of predicting one text; the tokens are ours and finite
        with config_context(assume_finite=True, skip_parameter_validation=True):
            proba = predict_proba(artifact["pipeline"], tokens, labels)
    except (KeyError, AttributeError, TypeError, ValueError, IndexError) as e:  # a model file that loads, but no model
        raise artifacts.malformed(version, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    return list(zip(norm, proba))


def score_texts(store: Store, version: registry.Version, labels: list[str], texts: list[str],
                workers: int | None = None, off_this_process: bool = False) -> np.ndarray:
    """The version's probabilities for `texts` (rows x labels) by prediction's own steps, logging
    nothing: what re-scoring a pool of hard examples needs. `off_this_process`: every part on the
    worker processes (a server's background thread must not hold the GIL its requests need)."""
    args = (store, version, labels)
    if off_this_process:
        rows = serve_map(probabilities, texts, args)
    else:
        rows = split_map(probabilities, texts, args, workers)
    return np.asarray([p for _, p in rows], dtype=float).reshape(len(texts), len(labels))


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
    table = read_table(source, filename)
    if source_tag in REQUEST_SOURCES and len(table) > int(settings.get("max_batch")):
        raise InvalidInput(f"{filename}: {len(table)} rows, more than the {settings.get('max_batch')} texts one "
                           f"request may predict (MMS_MAX_BATCH); split the file, or predict it with "
                           f"`python -m core predict`")
    if business_line is not None:
        check_name(str(business_line), f"the business line {business_line!r}")
    report = validate_texts(table, filename)
    report.raise_if_invalid()
    rows = report.frame
    lines = rows["business_line"] if business_line is None else business_line
    created = rows["created_at"] if rows["created_at"].notna().any() else None
    return predict_texts(store, name, rows["text"].tolist(), user, business_line=lines, created_at=created,
                         version=version, source=source_tag)
