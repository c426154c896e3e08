"""Drift per business line and period against a reference: the active version's training data by
default, or the line's predictions in a chosen window. Measured on the input texts (a domain
classifier's ROC AUC on character n-grams, as Evidently does for text; the share of tokens the
training data never had; text length) and on the outputs (mean confidence, predicted class mix).
A line the model never saw in training is drift from its first period. Texts are sampled
(MMS_DRIFT_SAMPLE per cell) and a cell's measures are cached in the store with its volume, so a
finished period is measured once. No SQL here: the store's functions read and write."""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd

from . import artifacts, monitoring, registry, settings, workers
from . import store as db
from .errors import MMSError
from .estimators import predict_proba
from .slices import PERIOD_STEP, SHARE_PREFIX, check_period, parse_bound
from .store import Store

TRAINING = "training"
REMEASURE = 0.1  # a cached cell is measured again once its volume has changed by more than this share
TOKEN_SAMPLE = 100  # texts per cell cut into tokens for the unseen-token share
MEASURES = ["text_auc", "unseen_share", "mean_length"]  # cached per cell; confidence and mix come from the rollups
SUPPORT = ["unsupported_share", "support_gap", "support_se"]  # the held-out check (support_check), cached too
COLUMNS = ["business_line", "period", "volume", "flagged", "status", "moved", "text_auc", "unseen_share",
           "unseen_reference", "mean_length", "length_reference", "mean_top_prob", "confidence_reference",
           "class_mix_distance", *SUPPORT]
GRADE_COLUMNS = ["mean_grade", "grade_reference", "grade_shift"]  # an ordinal model's cells only


@dataclass
class Reference:
    """What a business line is compared with: texts for the input measures, and held-out outputs
    (top probability, predicted label) for confidence and class mix."""
    texts: list[str]
    top_prob: np.ndarray
    labels: np.ndarray
    unseen_share: float | None
    note: str = ""  # why the line is not judged (empty: it is)
    new_line: bool = False
    # the held-out texts behind top_prob, whether the version was right on each, and the held-out
    # accuracy at each one's confidence (what the estimate counts): support_check's side of the test
    # split. Empty for a window reference (its predictions have no labels).
    held_out: list[str] = field(default_factory=list)
    right: np.ndarray = field(default_factory=lambda: np.zeros(0))
    expected: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass
class DriftReport:
    """Per line x period measures and verdicts (`cells`, columns COLUMNS), and a sentence per line
    about its reference (`references`)."""
    reference: str
    version: int
    cells: pd.DataFrame
    references: dict[str, str] = field(default_factory=dict)
    pending: int = 0  # line x periods not measured yet (the time budget ran out); never flagged


    def flagged(self) -> pd.DataFrame:
        return self.cells[self.cells["flagged"]]


def thresholds() -> dict:
    """The drift thresholds, from settings."""
    return {name: float(settings.get(name)) for name in
            ("drift_text_auc", "drift_unseen_tokens", "drift_length", "drift_confidence", "drift_class_mix",
             "drift_grade_shift")}


def drift_by_line_and_period(store: Store, name: str, by: str, by_line: pd.DataFrame, window=None,
                             version: int | None = None, budget_seconds: float | None = None,
                             keep_seconds: float | None = None, off_process: bool = False) -> DriftReport:
    """Drift of every line x period of `by_line` (stats_by_line_and_period's table) against the
    reference: the training data of `version` (default: active) or, with `window` = (since, until),
    each line's predictions in that window.

    Cached cells cost nothing; a cell not cached yet takes a classifier fit (a fraction of a second).
    With `budget_seconds`, cells are measured newest period first until the budget is spent, and
    the rest are reported as pending (a page stays quick; the server fills the cache meanwhile).
    With `keep_seconds`, a cached cell measured less than that long ago is used even if its volume
    has grown by more than REMEASURE since: under live traffic the open period's cells grow with
    every render, and a page re-measures each at most that often instead of on every render.
    With `off_process` (a server's background measuring), each cell's classifier fits and tokens run
    in a worker process, so the server's threads keep the GIL for the pages they draw."""
    check_period(by)
    with store.connect() as con:
        model = registry.find_model(con, name)
        ref_version = registry.resolve_version(con, model, version)
    reference = TRAINING if window is None else _window_key(window)
    artifact = artifacts.load(store, ref_version)
    vocabulary = _vocabulary(store, model, ref_version, artifact)
    lines = sorted(by_line["business_line"].unique()) if not by_line.empty else []
    refs = {line: _cached_reference(store, model, ref_version, artifact, vocabulary, line, window) for line in lines}
    with store.connect() as con:
        cached = db.drift_cells(con, model.model_id, ref_version.version, reference, by)
    kept_since = None if keep_seconds is None else db.now() - pd.Timedelta(seconds=keep_seconds)
    cached = {(r.business_line, pd.Timestamp(r.period_start)):
              (int(r.n), json.loads(r.measures), kept_since is not None and pd.Timestamp(r.computed_at) > kept_since)
              for r in cached.itertuples()}
    rows, fresh, pending = {}, [], 0
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    cells, limit = by_line.to_dict("records"), thresholds()  # settings read once, not per cell
    measurer = partial(workers.in_worker if off_process else _call, _input_measures, ref_version, store)
    for i in sorted(range(len(cells)), key=lambda i: pd.Timestamp(cells[i]["period"]), reverse=True):
        cell = cells[i]
        key = (cell["business_line"], pd.Timestamp(cell["period"]))
        n, measures, recent = cached.get(key, (None, None, False))
        if n is None or (abs(n - cell["volume"]) > REMEASURE * cell["volume"] and not recent):
            measures = None  # a sample of a few hundred texts barely moves until the cell grows by a tenth
        if measures is None and deadline is not None and time.monotonic() >= deadline:  # a budget of 0 measures nothing
            pending += 1
            rows[i] = _pending(cell, refs[cell["business_line"]])
            continue
        new = measures is None
        if new:
            measures = _measure(store, model, measurer, vocabulary, refs[cell["business_line"]], cell, by)
            n = int(cell["volume"])
        rows[i] = _verdict(cell, measures, refs[cell["business_line"]], model.labels, limit, registry.is_ordinal(model))
        # the held-out check costs a second classifier and matters only where drift is flagged
        if rows[i]["flagged"] and SUPPORT[0] not in measures and (deadline is None or time.monotonic() < deadline):
            measures = {**measures, **_support(store, model, refs[cell["business_line"]], cell, by, off_process)}
            rows[i].update({k: measures[k] for k in SUPPORT})
            new = True
        if new:
            # n: the volume the text measures were taken at (adding the held-out check to a kept cell's
            # measures must not make them look fresh for its grown volume)
            fresh.append({"business_line": key[0], "period_start": key[1].to_pydatetime(), "n": int(n),
                          "measures": json.dumps(measures)})
    if fresh:
        with store.transaction() as con:
            db.insert_drift_cells(con, model.model_id, ref_version.version, reference, by, pd.DataFrame(fresh))
    table = pd.DataFrame([rows[i] for i in range(len(cells))],
                         columns=COLUMNS + (GRADE_COLUMNS if registry.is_ordinal(model) else []))
    notes = {line: ref.note or _reference_sentence(ref, reference) for line, ref in refs.items()}
    return DriftReport(reference, ref_version.version, table, notes, pending)


def _pending(cell, ref: Reference) -> dict:
    """The row of a cell whose input measures are not cached yet and did not fit the time budget:
    not flagged, unless its line is one the model never saw (known without measuring)."""
    row = dict.fromkeys(COLUMNS)
    row.update(business_line=cell["business_line"], period=pd.Timestamp(cell["period"]), volume=int(cell["volume"]),
               flagged=ref.new_line, status="new line" if ref.new_line else "not measured yet",
               moved="a business line the model never saw in training" if ref.new_line else "",
               mean_top_prob=float(cell["mean_top_prob"]))
    return row


def _window_key(window) -> str:
    since, until = (parse_bound(w, f) for w, f in zip(window, ("reference since", "reference until")))
    return f"{'' if since is None else since.date()}..{'' if until is None else until.date()}"


def _vocabulary(store: Store, model, version, artifact) -> set[str]:
    """The tokens of a version's training texts, read once per process (a DISTINCT over every
    training token cost more than a whole warm drift pass)."""
    key = (str(store.path), model.model_id, version.version, version.sha256)
    if key not in _vocabularies:
        with store.connect() as con:
            _vocabularies[key] = db.training_vocabulary(con, model.model_id, version.max_example_id,
                                                        artifact["tokenizer"].config.fingerprint())
    return _vocabularies[key]


def _tokens(artifact, texts: list[str]) -> list[list[str]]:
    return [artifact["tokenizer"](t) for t in texts]  # normalised and cut as the model's training did


def _unseen(tokens: list[list[str]], vocabulary: set[str]) -> float | None:
    """Share of tokens not in the training vocabulary (None without tokens or without a vocabulary)."""
    flat = [t for ts in tokens for t in ts]
    if not flat or not vocabulary:
        return None
    return float(np.mean([t not in vocabulary for t in flat]))


_references: dict[tuple, Reference] = {}  # a version's training data never changes: computed once per process
_vocabularies: dict[tuple, set[str]] = {}


def _cached_reference(store: Store, model, version, artifact, vocabulary, line: str, window) -> Reference:
    """_reference, remembered for a training reference and for a window that ended before today."""
    key = (str(store.path), model.model_id, version.version, version.sha256, line,
           None if window is None else _window_key(window))
    if key in _references:
        return _references[key]
    ref = _reference(store, model, version, artifact, vocabulary, line, window)
    until = None if window is None else parse_bound(window[1], "reference until")
    if window is None or (until is not None and until <= pd.Timestamp.now()):
        _references[key] = ref
    return ref


def _reference(store: Store, model, version, artifact, vocabulary, line: str, window) -> Reference:
    """The reference of one business line (see the module's docstring); its `note` says when it is too small."""
    k, least = int(settings.get("drift_sample")), int(settings.get("drift_min_reference"))
    if window is not None:
        since, until = (parse_bound(w, "reference window") for w in window)
        with store.connect() as con:
            got = db.prediction_sample(con, model.model_id, k, business_lines=[line], since=since, until=until)
        ref = Reference(got["text"].tolist(), got["top_prob"].to_numpy(), got["label"].to_numpy(),
                        _unseen(_tokens(artifact, got["text"].tolist()), vocabulary))
        if len(got) < least:
            ref.note = (f"the reference window has {len(got)} predictions of {line} (at least {least} needed): "
                        "its drift is not judged")
        return ref
    with store.connect() as con:
        counts = db.example_line_counts(con, model.model_id, version.max_example_id, "train")
        known = {c for c in counts if c is not None}
        of_line = line if line in known else None
        texts = db.example_sample(con, model.model_id, version.max_example_id, "train", k, of_line)["text"].tolist()
        held_out = db.example_sample(con, model.model_id, version.max_example_id, "test", k, of_line)
    tokens = _tokens(artifact, held_out["text"].tolist())
    proba = predict_proba(artifact["pipeline"], tokens, model.labels) if tokens else np.zeros((0, len(model.labels)))
    predicted = np.asarray(model.labels)[proba.argmax(axis=1)] if len(proba) else np.array([])
    top = proba.max(axis=1)
    accuracy = monitoring.bucket_accuracy(version.metrics or {}, of_line)[0][monitoring.buckets(top)]
    ref = Reference(texts, top, predicted, _unseen(tokens, vocabulary), new_line=bool(known) and line not in known,
                    held_out=held_out["text"].tolist(), right=(predicted == held_out["label"].to_numpy()).astype(float),
                    expected=np.where(np.isnan(accuracy), top, accuracy))
    if not ref.new_line and len(texts) < least:
        ref.note = (f"v{version.version} trained on {len(texts)} texts of {line} (at least {least} needed): "
                    "its drift is not judged")
    return ref


def _reference_sentence(ref: Reference, reference: str) -> str:
    if ref.new_line:
        return "never seen in training: drift from its first period (compared with all training texts)"
    where = "training texts" if reference == TRAINING else f"predictions in {reference}"
    return f"{len(ref.texts)} {where}, {len(ref.top_prob)} held-out outputs"


def _measure(store: Store, model, measurer, vocabulary, ref: Reference, cell, by: str) -> dict:
    """A cell's input measures: text AUC, unseen-token share, mean length (None when too few texts).
    `measurer(reference texts, texts)` runs _input_measures, here or in a worker process."""
    texts = _cell_texts(store, model, cell, by)
    auc, tokens = measurer(ref.texts, texts)
    return {"text_auc": auc, "unseen_share": _unseen(tokens, vocabulary),
            "mean_length": float(np.mean([len(t) for t in texts])) if texts else None,
            "length_reference": float(np.mean([len(t) for t in ref.texts])) if ref.texts else None}


def _support(store: Store, model, ref: Reference, cell, by: str, off_process: bool = False) -> dict:
    """A flagged cell's held-out check (support_check) on the same text sample as its measures."""
    run = workers.in_worker if off_process else _call
    return run(support_check, ref.held_out, ref.right, ref.expected, _cell_texts(store, model, cell, by))


def _cell_texts(store: Store, model, cell, by: str) -> list[str]:
    start = pd.Timestamp(cell["period"])
    with store.connect() as con:
        got = db.prediction_sample(con, model.model_id, int(settings.get("drift_sample")),
                                   business_lines=[cell["business_line"]], since=start.to_pydatetime(),
                                   until=(start + PERIOD_STEP[by]).to_pydatetime())
    return got["text"].tolist()


def _call(func, *args):
    return func(*args)


def _input_measures(version, store: Store, reference: list[str], texts: list[str]) -> tuple[float | None, list]:
    """A cell's text AUC and the tokens of its first TOKEN_SAMPLE texts: the CPU-heavy part of a cell,
    in this process or a worker (which loads the version's model file itself, once)."""
    # jieba is the slow part (ms per text): a third of the sample is plenty for a share of tokens
    return text_auc(reference, texts), _tokens(artifacts.load(store, version), texts[:TOKEN_SAMPLE])


def text_auc(reference: list[str], current: list[str], folds: int = 3) -> float | None:
    """ROC AUC of a classifier telling current from reference texts on character 1-2-grams,
    cross-validated: 0.5 when they are alike, near 1 when the texts come from elsewhere. None
    with fewer than 10 texts on either side."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    if min(len(reference), len(current)) < 10:
        return None
    x = HashingVectorizer(analyzer="char", ngram_range=(1, 2), n_features=2 ** 16, alternate_sign=False,
                          norm="l2").transform(list(reference) + list(current))
    y = np.r_[np.zeros(len(reference)), np.ones(len(current))]
    split = StratifiedKFold(folds, shuffle=True, random_state=0)
    # liblinear works on the sparse rows; lbfgs' dense steps over every hashed feature cost 100x more
    scores = cross_val_predict(LogisticRegression(C=1.0, solver="liblinear"), x, y, cv=split,
                               method="decision_function")
    return float(roc_auc_score(y, scores))


def support_check(held_out: list[str], right: np.ndarray, expected: np.ndarray, current: list[str],
                  folds: int = 3) -> dict:
    """How far the test split can vouch for the estimate on `current` texts: a classifier tells the
    held-out texts from the current ones (character 1-2-grams, cross-validated, as text_auc), and

    - unsupported_share: the share of current texts it finds more "current" than every held-out text
      (under no shift about 1 / (held-out + 1)): texts the test split has nothing like, on which the
      version's accuracy was never measured;
    - support_gap: on the rest, the estimate's error the test split shows when weighted like the
      current texts (importance weighting, w = p / (1 - p)): the weighted mean of right - expected,
      where expected is the held-out accuracy at each text's confidence (what the estimate counts;
      unweighted it is about 0 by construction);
    - support_se: that weighted mean's standard error (it grows as the weights pile on a few texts).

    All None with fewer than 10 texts on either side, or without labelled held-out texts."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    none = dict.fromkeys(SUPPORT)
    if min(len(held_out), len(current)) < 10 or len(right) != len(held_out):
        return none
    x = HashingVectorizer(analyzer="char", ngram_range=(1, 2), n_features=2 ** 16, alternate_sign=False,
                          norm="l2").transform(list(held_out) + list(current))
    y = np.r_[np.zeros(len(held_out)), np.ones(len(current))]
    split = StratifiedKFold(folds, shuffle=True, random_state=0)
    p = cross_val_predict(LogisticRegression(C=1.0, solver="liblinear"), x, y, cv=split, method="predict_proba")[:, 1]
    ours, theirs = p[:len(held_out)], p[len(held_out):]
    unsupported = float(np.mean(theirs > ours.max()))
    odds = np.clip(ours, 1e-6, 1 - 1e-6)
    w = odds / (1 - odds)
    w = w / w.sum()
    error = np.asarray(right, dtype=float) - np.asarray(expected, dtype=float)
    gap = float(w @ error)
    return {"unsupported_share": unsupported, "support_gap": gap,
            "support_se": float(np.sqrt(np.sum(w ** 2 * (error - gap) ** 2)))}


def _verdict(cell, measures: dict, ref: Reference, labels: list[str], limit: dict, graded: bool = False) -> dict:
    """A cell's row: its measures beside the reference's (for an ordinal model, `graded`, also its
    grades'), and in words what moved beyond the thresholds."""
    mix = np.array([cell.get(SHARE_PREFIX + label, np.nan) for label in labels], dtype=float)
    ref_mix = np.array([np.mean(ref.labels == label) for label in labels]) if len(ref.labels) else None
    distance = None if ref_mix is None else float(0.5 * np.abs(np.nan_to_num(mix) - ref_mix).sum())
    conf_ref = float(np.mean(ref.top_prob)) if len(ref.top_prob) else None
    row = {"business_line": cell["business_line"], "period": pd.Timestamp(cell["period"]), "volume": int(cell["volume"]),
           "text_auc": measures["text_auc"], "unseen_share": measures["unseen_share"],
           "unseen_reference": ref.unseen_share, "mean_length": measures["mean_length"],
           "length_reference": measures["length_reference"], "mean_top_prob": float(cell["mean_top_prob"]),
           "confidence_reference": conf_ref, "class_mix_distance": distance,
           **{k: measures.get(k) for k in SUPPORT}}
    if graded:
        row |= grade_shift(mix, ref_mix)
    moved = [] if not ref.new_line else ["a business line the model never saw in training"]
    enough = cell["volume"] >= int(settings.get("drift_min_predictions"))
    if ref.note or not enough:
        status = ref.note or f"{cell['volume']} predictions (at least {int(settings.get('drift_min_predictions'))} " \
                             "needed): not judged"
        return {**row, "flagged": bool(moved), "status": "new line" if moved else status, "moved": "; ".join(moved)}
    moved += _moved(row, limit, len(ref.top_prob) >= int(settings.get("drift_min_reference")))
    return {**row, "flagged": bool(moved), "status": ("new line" if ref.new_line else "drift") if moved else "ok",
            "moved": "; ".join(moved)}


def _moved(row: dict, limit: dict, outputs_judged: bool) -> list[str]:
    """Sentences for each measure beyond its threshold (outputs only against a large enough held-out reference)."""
    out = []
    if row["text_auc"] is not None and row["text_auc"] > limit["drift_text_auc"]:
        out.append(f"texts: a classifier tells them from the reference's (AUC {row['text_auc']:.2f})")
    if row["unseen_share"] is not None and row["unseen_reference"] is not None \
            and row["unseen_share"] - row["unseen_reference"] > limit["drift_unseen_tokens"]:
        out.append(f"unseen tokens {row['unseen_share']:.0%} vs {row['unseen_reference']:.0%}")
    if row["mean_length"] and row["length_reference"] \
            and abs(row["mean_length"] / row["length_reference"] - 1) > limit["drift_length"]:
        out.append(f"text length {row['mean_length']:.0f} vs {row['length_reference']:.0f} characters")
    if outputs_judged and row["confidence_reference"] is not None \
            and abs(row["mean_top_prob"] - row["confidence_reference"]) > limit["drift_confidence"]:
        out.append(f"mean confidence {row['mean_top_prob']:.3f} vs {row['confidence_reference']:.3f}")
    if outputs_judged and row["class_mix_distance"] is not None \
            and row["class_mix_distance"] > limit["drift_class_mix"]:
        out.append(f"predicted class mix (distance {row['class_mix_distance']:.2f})")
    if outputs_judged and row.get("grade_shift") is not None and row["grade_shift"] > limit["drift_grade_shift"]:
        way = "up" if row["mean_grade"] > row["grade_reference"] else "down"
        out.append(f"predicted grades moved {way}: mean grade {row['mean_grade']:.2f} vs {row['grade_reference']:.2f} "
                   f"({row['grade_shift']:.2f} grades moved)")
    return out


def grade_shift(mix: np.ndarray, ref_mix: np.ndarray | None) -> dict:
    """An ordinal cell's mean predicted grade (1 = lowest), the reference's, and grade_shift: the
    earth mover's distance between the two grade distributions, in grades (the area between their
    cumulative shares), which, unlike the class-mix distance, counts a move by two grades twice."""
    mix = np.nan_to_num(np.asarray(mix, dtype=float))
    grades = np.arange(1, len(mix) + 1)
    if ref_mix is None:
        return {"mean_grade": float(mix @ grades), "grade_reference": np.nan, "grade_shift": np.nan}
    shift = np.abs(np.cumsum(mix)[:-1] - np.cumsum(ref_mix)[:-1]).sum()
    return {"mean_grade": float(mix @ grades), "grade_reference": float(ref_mix @ grades), "grade_shift": float(shift)}


_measuring: set[tuple] = set()
_measuring_lock = threading.Lock()


def _measuring_key(store: Store, name: str, by: str, window, version) -> tuple:
    return str(store.path), name, by, None if window is None else _window_key(window), version


def measuring(store: Store, name: str, by: str, window=None, version: int | None = None) -> bool:
    """Whether a background thread is measuring this view's cells now (a render then spends no
    time of its own on them: two measurers would only slow each other)."""
    with _measuring_lock:
        return _measuring_key(store, name, by, window, version) in _measuring


def claim(store: Store, name: str, by: str, window=None, version: int | None = None) -> bool:
    """Mark a view as being measured in the background (`measuring` then says so); False when it
    already is. `release` ends the claim."""
    key = _measuring_key(store, name, by, window, version)
    with _measuring_lock:
        if key in _measuring:
            return False
        _measuring.add(key)
        return True


def release(store: Store, name: str, by: str, window=None, version: int | None = None) -> None:
    with _measuring_lock:
        _measuring.discard(_measuring_key(store, name, by, window, version))


def measure_in_background(store: Store, name: str, by: str, by_line: pd.DataFrame, window=None,
                          version: int | None = None) -> bool:
    """Measure the cells of `by_line` not cached yet on a thread of its own, one per model, period,
    reference and version at a time: a Monitor render that ran out of its budget stays quick, and
    a later render finds the rest cached; in a server, its heavy steps run in worker processes.
    Returns whether a thread started."""
    if not claim(store, name, by, window, version):
        return False
    off_process = store.serving is not None

    def measure() -> None:
        try:
            drift_by_line_and_period(store, name, by, by_line, window=window, version=version,
                                     off_process=off_process)
        except MMSError as e:  # the model or version went meanwhile: the page says so when it reads again
            logging.getLogger(__name__).warning("MMS: drift of %s not measured: %s", name, e)
        finally:
            release(store, name, by, window, version)

    threading.Thread(target=measure, name="mms-drift-pending", daemon=True).start()
    return True
