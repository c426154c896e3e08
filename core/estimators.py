"""What a model is: its config, the feature pipeline a config builds, and its probabilities.

No store and no registry here: training, prediction, metrics and the pages all describe models
with these names, so none of them needs another's module to do it. The pipeline's input is a
list of tokens per text (from `preprocess.Tokenizer`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .calibration import CalibratedScores
from .errors import InvalidInput
from .ordinal import FrankHall

PROB_PREFIX = "p_"  # a label's probability column in every table a face shows: p_<label>

ESTIMATORS = {
    "auto": "model selection: the estimators and feature sets below, chosen by cross-validation",
    "logreg": "TF-IDF + logistic regression",
    "complement_nb": "TF-IDF + complement naive Bayes",
    "linear_svc": "TF-IDF + linear SVM, calibrated",
    "sgd": "hashing + SGD (log loss); can learn incrementally",
}
INCREMENTAL_ESTIMATORS = ("sgd",)
AUTO = "auto"
CALIBRATION_FOLDS = 3


@dataclass(frozen=True)
class ModelConfig:
    """Estimator, hyperparameters, features and seed: everything that decides the fitted model.

    estimator "auto" (the default for new models) means: pick by cross-validation when training;
    any other estimator pins the config."""
    estimator: str = AUTO
    C: float = 4.0                    # logreg, linear_svc: inverse regularisation
    alpha: float = 1e-5               # complement_nb: smoothing; sgd: regularisation
    max_iter: int = 1000
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] | None = None   # e.g. (1, 3): character n-grams as well
    min_df: int = 1
    max_features: int | None = 200000
    n_features: int = 2 ** 20         # sgd: hashing space
    epochs: int = 5                   # sgd: passes over new labels in an incremental update
    seed: int = 42

    @classmethod
    def from_dict(cls, d: dict | None) -> "ModelConfig":
        """A config from JSON-like data; every value is checked here, so a bad one is a sentence, not a crash."""
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidInput(f"unknown model setting(s): {', '.join(sorted(unknown))}")
        estimator = d.get("estimator", AUTO)
        if not isinstance(estimator, str) or estimator not in ESTIMATORS:
            raise InvalidInput(f"estimator must be one of {', '.join(ESTIMATORS)}, not {estimator!r}")
        for key, value in list(d.items()):
            if value is None and key in _MAY_BE_NONE:
                continue
            if key in ("word_ngrams", "char_ngrams"):
                d[key] = _ngram_range(key, value)
            elif key in ("C", "alpha"):
                d[key] = _positive_number(key, value)
            elif key in _INT_LIMITS:
                d[key] = _whole_number(key, value, *_INT_LIMITS[key])
        return cls(**d)

    def to_dict(self) -> dict:
        """As stored (JSON): n-gram ranges as lists, so a stored config compares equal."""
        d = asdict(self)
        for key in ("word_ngrams", "char_ngrams"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    @property
    def incremental(self) -> bool:
        return self.estimator in INCREMENTAL_ESTIMATORS

    @property
    def pinned(self) -> bool:
        """True when the config names its estimator; "auto" leaves the choice to model selection."""
        return self.estimator != AUTO

    def describe(self) -> str:
        """One line a person reads: estimator, its main knob and the features."""
        knob = f"alpha={self.alpha:g}" if self.estimator in ("complement_nb", "sgd") else f"C={self.C:g}"
        chars = f" + char {self.char_ngrams[0]}-{self.char_ngrams[1]}" if self.char_ngrams else ""
        return f"{self.estimator} ({knob}), word {self.word_ngrams[0]}-{self.word_ngrams[1]}{chars}"


_MAY_BE_NONE = ("char_ngrams", "max_features")  # no character n-grams; no vocabulary limit
# whole-number settings and their accepted range; beyond these a fit fails or exhausts memory
_INT_LIMITS = {"max_iter": (1, 100_000), "min_df": (1, 1_000_000), "max_features": (1, 10_000_000),
               "n_features": (2 ** 4, 2 ** 24), "epochs": (1, 100), "seed": (0, 2 ** 32 - 1)}


def _whole_number(key: str, value, lo: int, hi: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidInput(f"{key} must be a whole number from {lo} to {hi}, not {value!r}")
    return value


def _positive_number(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise InvalidInput(f"{key} must be a positive number, not {value!r}")
    return float(value)


def _ngram_range(key: str, value) -> tuple[int, int]:
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(x, int) and not isinstance(x, bool) for x in value)
    if not ok or not 1 <= value[0] <= value[1] <= 6:
        raise InvalidInput(f"{key} must be a range like [1, 2] with 1 <= low <= high <= 6, not {value!r}")
    return (value[0], value[1])


class TokenNgrams:
    """Analyzer over a token list: word n-grams, plus character n-grams of the joined tokens."""

    def __init__(self, word_ngrams=(1, 2), char_ngrams=None):
        self.word_ngrams = tuple(word_ngrams)
        self.char_ngrams = tuple(char_ngrams) if char_ngrams else None

    def __call__(self, tokens) -> list[str]:
        lo, hi = self.word_ngrams
        out = list(tokens) if lo == 1 else []
        for n in range(max(lo, 2), hi + 1):
            out.extend(map(" ".join, zip(*(tokens[i:] for i in range(n)))))
        if self.char_ngrams:
            chars = "".join(tokens)
            lo, hi = self.char_ngrams
            for n in range(lo, hi + 1):
                out.extend("\x01" + chars[i:i + n] for i in range(len(chars) - n + 1))
        return out


def classifier(config: ModelConfig):
    """The bare (uncalibrated) classifier a pinned config names."""
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.naive_bayes import ComplementNB
    from sklearn.svm import LinearSVC

    if config.estimator == "sgd":
        return SGDClassifier(loss="log_loss", alpha=config.alpha, max_iter=config.max_iter, tol=1e-4,
                             random_state=config.seed)
    if config.estimator == "logreg":
        # saga: 3-4x faster than lbfgs on sparse TF-IDF of this size, same or better macro-F1
        return LogisticRegression(C=config.C, solver="saga", tol=1e-3, max_iter=config.max_iter,
                                  random_state=config.seed)
    if config.estimator == "complement_nb":
        return ComplementNB(alpha=max(config.alpha, 1e-3))
    if config.estimator == "linear_svc":
        return LinearSVC(C=config.C, random_state=config.seed)
    raise InvalidInput(f"estimator {config.estimator!r} must be resolved to one of "
                       f"{', '.join(k for k in ESTIMATORS if k != AUTO)} before a pipeline is built")


def features(config: ModelConfig):
    """The feature step a config describes: TF-IDF of word (and character) n-grams, hashing for sgd."""
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer

    analyzer = TokenNgrams(config.word_ngrams, config.char_ngrams)
    if config.estimator == "sgd":
        return HashingVectorizer(analyzer=analyzer, n_features=config.n_features, alternate_sign=False, norm="l2")
    return TfidfVectorizer(analyzer=analyzer, min_df=config.min_df, max_features=config.max_features,
                           sublinear_tf=True)


def calibrated(config: ModelConfig, folds: int = CALIBRATION_FOLDS, methods=None):
    """The config's classifier with its probabilities calibrated by `folds`-fold cross-validation
    inside whatever rows it is fitted on (so the test split never shapes them): one map from the
    out-of-fold decision scores to probabilities, the map that generalises best chosen there by
    cross-validation (calibration.CalibratedScores; `methods` limits the maps tried).

    The folds' models are kept and averaged (demo reviews, 4,000 rows, mean of 3 draws: ECE 0.020,
    against 0.036 for one model refitted on all rows). An incremental (sgd) model stays one model,
    refitted on all rows, so that partial_fit can continue it."""
    return CalibratedScores(classifier(config), folds, methods, config.seed, ensemble=not config.incremental)


def graded(clf, grades: list[str] | None):
    """`clf` as an ordinal model over `grades` (lowest first): one copy per grade threshold,
    combined into a distribution (ordinal.FrankHall); `clf` itself when `grades` is None."""
    return clf if grades is None else FrankHall(clf, list(grades))


def calibration_folds(labels) -> int:
    """How many calibration folds rows with these labels allow: CALIBRATION_FOLDS, fewer when the
    rarest label has fewer rows (below 2: no calibration)."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return int(min(CALIBRATION_FOLDS, counts.min()))


def model_step(config: ModelConfig, folds: int = CALIBRATION_FOLDS, grades: list[str] | None = None):
    """The model a pinned config trains, after its features: the classifier calibrated with
    `folds` folds (fewer than 2: uncalibrated), with `grades` an ordinal model whose every grade
    threshold's classifier is calibrated so. Model selection cross-validates exactly this and
    training fits exactly this: what is scored is what is trained."""
    return graded(calibrated(config, folds) if folds >= 2 else classifier(config), grades)


def build_pipeline(config: ModelConfig, calibration_folds: int = CALIBRATION_FOLDS,
                   grades: list[str] | None = None):
    """The scikit-learn Pipeline a pinned config describes: its features, then `model_step`.
    scikit-learn is imported here, not at start-up: the dashboard's first page and the API's
    health answer do not need it."""
    from sklearn.pipeline import Pipeline

    return Pipeline([("features", features(config)), ("clf", model_step(config, calibration_folds, grades))])


def calibration_note(clf) -> str:
    """How a fitted model step's probabilities are calibrated, in a sentence for the version's record."""
    if isinstance(clf, FrankHall):
        parts = [f"threshold {k}: {_map_of(t)}" for k, t in enumerate(clf.thresholds_, start=1)]
        return "each grade threshold's classifier on its own: " + "; ".join(parts)
    return _map_of(clf)


def _map_of(clf) -> str:
    if isinstance(clf, float):
        return "constant (every training row on one side)"
    if hasattr(clf, "method_"):
        return clf.describe()
    return "uncalibrated"


def incremental_core(pipeline):
    """The model inside a pipeline that partial_fit updates: the SGD itself, or the one a
    calibration wrapper refitted on all rows (its calibration maps are kept); an ordinal model
    itself, whose partial_fit continues each threshold's."""
    clf = pipeline.named_steps["clf"]
    if hasattr(clf, "calibrated_classifiers_"):  # files written before calibration.CalibratedScores
        return clf.calibrated_classifiers_[0].estimator
    if hasattr(clf, "models_"):
        return clf.models_[0]
    return clf


def predict_proba(pipeline, tokens: list[list[str]], labels: list[str]) -> np.ndarray:
    """Probabilities in the model's label order (0 for a label the version never saw). Also of a
    fitted model step (`model_step`) over feature rows in place of tokens."""
    raw = pipeline.predict_proba(tokens)
    out = np.zeros((raw.shape[0], len(labels)))
    classes = list(pipeline.classes_)
    for j, label in enumerate(labels):
        if label in classes:
            out[:, j] = raw[:, classes.index(label)]
    return out


def prob_column(label: str) -> str:
    """The name of `label`'s probability column."""
    return f"{PROB_PREFIX}{label}"


def proba_frame(proba, labels: list[str]) -> pd.DataFrame:
    """Probabilities (rows x labels, in `labels`' order) as p_<label> columns."""
    return pd.DataFrame(np.asarray(proba, dtype=float).reshape(-1, len(labels)),
                        columns=[prob_column(label) for label in labels])
