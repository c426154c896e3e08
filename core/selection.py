"""Model selection: which estimator and feature set a new version gets, by cross-validation.

Only the training split is used: each feature set's TF-IDF is fitted on the training rows once
(no labels involved), then every candidate is scored by stratified k-fold cross-validation on
those rows exactly as training will build it (`estimators.model_step`: calibration, and for an
ordinal model its grade thresholds, included), with the task's own measure. Candidates are tried
strongest-first within a time budget that grows with the data; what was tried, each score and
time, and why the winner won are returned as plain data for the version's record.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from . import settings
from .estimators import ModelConfig, calibration_folds, features, model_step, predict_proba
from .metrics import expected_calibration_error, sorted_log_loss

FOLDS = 3
MIN_ROWS = 30  # below this, or fewer than FOLDS rows of some label, cross-validation says little

# Tried in this order (the strongest on Chinese reviews and news titles first), so a budget cut
# short still has the likeliest winners. Word + character n-grams together catch both the
# words jieba cuts and the ones it cuts wrongly; the plain word logreg is the notebook baseline.
CANDIDATES = (
    {"estimator": "linear_svc", "C": 0.5, "word_ngrams": [1, 2], "char_ngrams": [1, 3]},
    {"estimator": "logreg", "C": 16.0, "word_ngrams": [1, 2], "char_ngrams": [1, 3]},
    {"estimator": "complement_nb", "alpha": 0.3, "word_ngrams": [1, 2], "char_ngrams": [1, 3]},
    {"estimator": "linear_svc", "C": 0.5, "word_ngrams": [1, 2]},
    {"estimator": "logreg", "C": 4.0, "word_ngrams": [1, 2]},
    {"estimator": "linear_svc", "C": 0.15, "word_ngrams": [1, 2], "char_ngrams": [1, 3]},
    {"estimator": "linear_svc", "C": 1.5, "word_ngrams": [1, 2], "char_ngrams": [1, 3]},
    {"estimator": "complement_nb", "alpha": 0.1, "word_ngrams": [1, 2]},
)
FALLBACK = CANDIDATES[0]


@dataclass
class Selection:
    """The chosen config and the record of how: stored as the version's data["selection"]."""
    config: ModelConfig
    record: dict = field(default_factory=dict)


def budget_seconds(n_rows: int) -> float:
    """Seconds selection may spend: MMS_SELECTION_BUDGET if set, else 20 s plus 15 s per 1,000
    rows, at most 180 s (10k rows: 170 s, leaving the final calibrated fit well inside 5 minutes
    on 2 cores)."""
    fixed = float(settings.get("selection_budget"))
    return fixed if fixed > 0 else min(180.0, 20.0 + 0.015 * n_rows)


def too_small(labels: list[str]) -> str | None:
    """Why a training split is too small for cross-validation, or None."""
    counts = {label: labels.count(label) for label in set(labels)}
    fewest = min(counts.values())
    if len(labels) < MIN_ROWS or fewest < FOLDS:
        return (f"the training split has {len(labels)} rows (fewest of one label: {fewest}), too few for "
                f"{FOLDS}-fold cross-validation (needs {MIN_ROWS} rows and {FOLDS} of every label)")
    return None


def select(tokens: list[list[str]], labels: list[str], base: ModelConfig, budget: float | None = None,
           progress=lambda fraction, message: None, incumbent: ModelConfig | None = None,
           grades: list[str] | None = None) -> Selection:
    """The best candidate by mean cross-validated macro-F1 of its calibrated model (accuracy, log
    loss and ECE reported too); ties keep the earlier candidate. `base` supplies the seed and
    settings the candidates do not set. With `grades` (an ordinal model) each candidate is the
    ordinal model over them, judged by quadratic weighted kappa instead, which counts a prediction
    two grades off worse than one off.

    `incumbent` (the active version's config) is tried first and kept unless the best beats it by
    more than the best's standard error over the folds: on small data the winner changes with
    noise, and a retrain should not swap models (and regress) on noise."""
    budget = budget_seconds(len(labels)) if budget is None else float(budget)
    small = too_small(labels)
    if small:
        chosen = _config(base, FALLBACK)
        return Selection(chosen, {"fallback": f"{small}; trained the fixed config {chosen.describe()} instead",
                                  "chosen": chosen.to_dict()})
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(labels)
    folds = list(StratifiedKFold(FOLDS, shuffle=True, random_state=base.seed).split(np.zeros(len(y)), y))
    started, tried, matrices = time.monotonic(), [], {}
    configs = candidate_configs(base)
    if incumbent is not None and incumbent.pinned:
        incumbent = replace(incumbent, seed=base.seed)
        configs = [incumbent] + [c for c in configs if c != incumbent]
    for i, config in enumerate(configs):
        spent = time.monotonic() - started
        if tried and spent + _expected(tried, config) > budget:
            tried.append({"config": config.to_dict(), "describe": config.describe(), "skipped": "time budget"})
            continue
        progress(0.1 + 0.3 * i / len(configs), f"cross-validating {config.describe()}")
        tried.append(_cross_validate(config, tokens, y, folds, matrices, grades))
    keep = tried[0] if incumbent is not None and incumbent.pinned else None
    chosen, record = _choose(tried, budget, time.monotonic() - started, keep, "qwk" if grades else "macro_f1")
    return Selection(chosen, record)


def candidate_configs(base: ModelConfig | None = None) -> list[ModelConfig]:
    """The configs selection tries, in order; `base` supplies what the candidates do not set."""
    return [_config(base or ModelConfig(), c) for c in CANDIDATES]


def reused(version, why: str, asked: str) -> dict:
    """The selection record of a version that takes `version`'s choice without a search (an
    incremental update, or a full retrain the owner asked to refit): that version's record, its
    candidates and scores included, with which version's search made the choice, why it was reused
    and what was asked."""
    record = dict(version.data.get("selection") or {})
    made_in = record.get("reused", {}).get("selected_in", version.version)
    record["chosen"] = version.model_config
    record.setdefault("tried", [])
    record.setdefault("reason", f"version {version.version}'s config was given, not selected")
    record["reused"] = {"selected_in": made_in, "from_version": version.version, "why": why}
    record["asked"] = asked
    return record


def chosen_how(version) -> str:
    """How a version's config came to be, in a few words for a table cell (`versions`):
    selection's pick or the active config it kept, the fallback, the parent's, or pinned."""
    record = version.data.get("selection")
    if version.mode == "incremental":
        return "parent's (incremental)"
    if not record:
        return "pinned"
    if "reused" in record:
        return f"v{record['reused']['from_version']}'s choice, refit (no search)"
    if "fallback" in record:
        return "fixed: too few rows for CV"
    key = f"cv_{record.get('scoring', 'macro_f1')}"
    scored = [t for t in record["tried"] if key in t]
    mine = next((t[key] for t in scored if t["config"] == record["chosen"]), None)
    kept = record["reason"].startswith("kept")
    return f"{'kept active' if kept else 'CV best'} of {len(scored)} ({_SCORE_NAMES[key]} {mine:.3f})"


_SCORE_NAMES = {"cv_macro_f1": "F1", "cv_qwk": "QWK"}


def why_chosen(version) -> str:
    """The sentence behind `chosen_how`: selection's reason or fallback, or why nothing was selected."""
    record = version.data.get("selection")
    if version.mode == "incremental":
        return f"an incremental update keeps its parent's (v{version.parent_version}) config"
    if not record:
        return "the model's config names its estimator, so it was trained as given"
    if "reused" in record and version.mode != "incremental":
        made = record["reused"]["selected_in"]
        how = record.get("fallback") or record.get("reason") or "given, not selected"
        return f"{record['reused']['why']} (chosen in version {made}: {how})"
    return record.get("fallback") or record["reason"]


def summary(version) -> dict:
    """A version's config and how it was chosen, as plain data (`compare`): version, config
    (one line), selected (`chosen_how`), why (`why_chosen`), calibration."""
    return {"version": version.version, "config": ModelConfig.from_dict(version.model_config).describe(),
            "selected": chosen_how(version), "why": why_chosen(version),
            "calibration": version.data.get("calibration", "not recorded (an older version)")}


def _config(base: ModelConfig, candidate: dict) -> ModelConfig:
    fields = dict(candidate)
    fields["word_ngrams"] = tuple(fields["word_ngrams"])
    fields["char_ngrams"] = tuple(fields["char_ngrams"]) if fields.get("char_ngrams") else None
    return replace(base, **fields)


def _expected(tried: list[dict], config: ModelConfig) -> float:
    """A candidate's likely time: the slowest measured one with the same features, else the slowest yet."""
    same = [t["seconds"] for t in tried if "seconds" in t and
            (t["config"]["char_ngrams"] is None) == (config.char_ngrams is None)]
    measured = same or [t["seconds"] for t in tried if "seconds" in t]
    return max(measured, default=0.0)


def _feature_key(config: ModelConfig) -> tuple:
    return config.word_ngrams, config.char_ngrams, config.min_df, config.max_features


def _cross_validate(config: ModelConfig, tokens, y: np.ndarray, folds, matrices: dict,
                    grades: list[str] | None = None) -> dict:
    """One candidate's mean macro-F1, accuracy, log loss and ECE over the folds (with `grades`: as
    an ordinal model, and its quadratic weighted kappa too), and the seconds it took. Each fold
    fits `estimators.model_step`, calibration included, as training will."""
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

    began = time.monotonic()
    key = _feature_key(config)
    if key not in matrices:  # features are fitted once per feature set: TF-IDF sees no labels
        matrices[key] = features(config).fit_transform(tokens)
    X = matrices[key]
    classes = list(grades) if grades else sorted(set(y.tolist()))
    proba = np.zeros((len(y), len(classes)))
    f1s, accs, kappas = [], [], []
    for train_idx, held_idx in folds:
        model = model_step(config, calibration_folds(y[train_idx]), grades).fit(X[train_idx], y[train_idx])
        proba[held_idx] = predict_proba(model, X[held_idx], classes)
        predicted = np.asarray(classes, dtype=object)[proba[held_idx].argmax(axis=1)]
        f1s.append(f1_score(y[held_idx], predicted, average="macro"))
        accs.append(accuracy_score(y[held_idx], predicted))
        if grades:
            with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a fold predicting one grade only: kappa undefined, scored 0
                kappa = cohen_kappa_score(y[held_idx], predicted, labels=list(grades), weights="quadratic")
            kappas.append(float(np.nan_to_num(kappa)))
    scores = kappas or f1s  # the standard error is of the score that chooses
    clipped = np.clip(proba, 1e-15, 1)
    correct = np.asarray(classes, dtype=object)[proba.argmax(axis=1)] == y
    found = {"config": config.to_dict(), "describe": config.describe(), "cv_macro_f1": round(float(np.mean(f1s)), 4),
             "cv_accuracy": round(float(np.mean(accs)), 4),
             "cv_log_loss": round(sorted_log_loss(y, clipped / clipped.sum(axis=1, keepdims=True), classes), 4),
             "cv_ece": round(expected_calibration_error(proba.max(axis=1), correct), 4),
             "cv_std_error": round(float(np.std(scores) / np.sqrt(len(scores))), 4),
             "seconds": round(time.monotonic() - began, 2)}
    if grades:
        found["cv_qwk"] = round(float(np.mean(kappas)), 4)
    return found


def _choose(tried: list[dict], budget: float, spent: float, incumbent: dict | None,
            scoring: str = "macro_f1") -> tuple[ModelConfig, dict]:
    key, named = f"cv_{scoring}", {"macro_f1": "macro-F1", "qwk": "quadratic weighted kappa"}[scoring]
    scored = [t for t in tried if key in t]
    best = max(scored, key=lambda t: t[key])  # max keeps the first of equals: the earlier candidate
    runner_up = max((t for t in scored if t is not best), key=lambda t: t[key], default=None)
    reason = f"highest mean {FOLDS}-fold cross-validated {named} on the training split ({best[key]:.4f})"
    if runner_up:
        reason += f", ahead of {runner_up['describe']} ({runner_up[key]:.4f})"
    if incumbent is not None and incumbent is not best and \
            incumbent[key] >= best[key] - best["cv_std_error"]:
        reason = (f"kept the active version's {incumbent['describe']} ({incumbent[key]:.4f}): the best, "
                  f"{best['describe']} ({best[key]:.4f}), is within its standard error "
                  f"({best['cv_std_error']:.4f}) of it")
        best = incumbent
    skipped = sum("skipped" in t for t in tried)
    if skipped:
        reason += f"; {skipped} candidate(s) skipped to keep within the {budget:.0f} s budget"
    chosen = ModelConfig.from_dict({**best["config"], "estimator": best["config"]["estimator"]})
    return chosen, {"chosen": chosen.to_dict(), "reason": reason, "scoring": scoring, "folds": FOLDS,
                    "budget_seconds": round(budget, 1), "seconds": round(spent, 1), "tried": tried}
