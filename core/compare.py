"""Two versions of a model side by side, as numbers: what changed, and what got worse.

Every face that compares versions (Train and Versions pages, `compare` command, API, the
activation guard) reads the same figures from here. A version is anything with `version`,
`metrics` and `data` (and, for the diff and the configs, `mode`, `model_config`, `preprocess`, `parent_version`,
`created_at`, `created_by`), so this module needs neither the store nor the registry.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from . import ordinal, selection, settings

# Differences below the last digit the faces show (0.1 pp, 0.001) count as unchanged.
UNCHANGED_BELOW = 0.0005


@dataclass(frozen=True)
class Measure:
    key: str
    label: str
    percent: bool          # shown as a percentage
    lower_is_better: bool


OVERALL = (
    Measure("accuracy", "Accuracy", True, False),
    Measure("macro_f1", "Macro-F1", False, False),
    Measure("log_loss", "Log loss", False, True),
    Measure("ece", "Calibration error (ECE)", False, True),
)
CLASS_MEASURES = ("precision", "recall", "f1")
# An ordinal version's figures (metrics["ordinal"]); a classification version has none and shows none.
ORDINAL = (
    Measure("mae", "Mean absolute error (grades)", False, True),
    Measure("qwk", "Quadratic weighted kappa", False, False),
    Measure("spearman", "Spearman correlation", False, False),
    Measure("within_one", "Within one grade", True, False),
)


@dataclass(frozen=True)
class Delta:
    """One overall figure of both versions; `delta` is candidate − base."""
    measure: Measure
    base: float | None
    candidate: float | None

    @property
    def delta(self) -> float | None:
        return None if self.base is None or self.candidate is None else self.candidate - self.base

    @property
    def unchanged(self) -> bool:
        return self.delta is not None and abs(self.delta) < UNCHANGED_BELOW

    @property
    def better(self) -> bool | None:
        """Whether the candidate is better on this figure; None when unchanged or unknown."""
        if self.delta is None or self.unchanged:
            return None
        return (self.delta < 0) == self.measure.lower_is_better

    def to_dict(self) -> dict:
        return {"measure": self.measure.key, "base": self.base, "candidate": self.candidate, "delta": self.delta,
                "lower_is_better": self.measure.lower_is_better}


@dataclass(frozen=True)
class Tolerances:
    """The smallest fall worth refusing, per figure (declared as settings): a fall counts only when
    it is larger than this AND significant at the guard's level (`guard_level`) on paired test rows."""
    overall: float = 0.005
    class_recall: float = 0.02
    line_accuracy: float = 0.03
    line_min_rows: int = 30
    ordinal_mae: float = 0.02        # grades: an ordinal version's mean absolute error may rise this much
    line_ordinal_mae: float = 0.05   # ... and a business line's

    @classmethod
    def from_settings(cls) -> "Tolerances":
        return cls(overall=float(settings.get("guard_overall")),
                   class_recall=float(settings.get("guard_class_recall")),
                   line_accuracy=float(settings.get("guard_line_accuracy")),
                   line_min_rows=int(settings.get("guard_line_min_rows")),
                   ordinal_mae=float(settings.get("guard_ordinal_mae")),
                   line_ordinal_mae=float(settings.get("guard_line_ordinal_mae")))


@dataclass(frozen=True)
class Regression:
    """A figure that got worse: fell, or rose where lower is better (an ordinal version's mean
    absolute error), by more than its tolerance and significantly (`p_value` below the guard's
    level, Holm-corrected over the figures tested) on `rows` paired test rows. `drop` is how much
    worse, always >= 0; for a version that does not beat the trivial baseline (`baseline` names
    its answer), `base` is the baseline's figure and `drop` may be negative (better, not significantly)."""
    what: str
    base: float
    candidate: float
    drop: float
    tolerance: float
    lower_is_better: bool = False
    p_value: float | None = None
    rows: int | None = None
    baseline: str | None = None

    def to_dict(self) -> dict:
        """As plain data; `lower_is_better` and `baseline` only where they say something."""
        d = asdict(self)
        for key in ("lower_is_better", "baseline"):
            if not d[key]:
                del d[key]
        return d

    def sentence(self) -> str:
        sign = "+" if self.lower_is_better else "−"
        tested = "" if self.p_value is None else f", {_p_text(self.p_value)} on {self.rows} paired test rows"
        return (f"{self.what} {self.base:.3f} → {self.candidate:.3f} ({sign}{self.drop:.3f}, "
                f"tolerance {self.tolerance:.3f}{tested})")


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


# --- figures --------------------------------------------------------------------------------

def _metric(version, key: str) -> float | None:
    value = version.metrics.get(key) if version is not None else None
    return None if value is None else float(value)


def overall_deltas(candidate, base=None) -> list[Delta]:
    """Accuracy, macro-F1, log loss and ECE of both versions (base None: candidate only)."""
    return [Delta(m, _metric(base, m.key), _metric(candidate, m.key)) for m in OVERALL]


def ordinal_deltas(candidate, base=None) -> list[Delta]:
    """An ordinal version's MAE, QWK, Spearman and within-one share beside the base's; empty for a
    classification version (its faces show no ordinal figure)."""
    if "ordinal" not in candidate.metrics:
        return []
    old = base.metrics.get("ordinal", {}) if base is not None else {}
    return [Delta(m, old.get(m.key), candidate.metrics["ordinal"].get(m.key)) for m in ORDINAL]


def ordinal_by_line_rows(candidate, base=None) -> list[dict]:
    """One record per business line of an ordinal version: business_line, test_rows, base, candidate,
    delta of the mean absolute error in grades (lower is better); empty for a classification version."""
    rows = []
    for line, m in candidate.metrics.get("ordinal_by_line", {}).items():
        old = base.metrics.get("ordinal_by_line", {}).get(line, {}) if base is not None else {}
        rows.append({"business_line": line, "test_rows": m["n"], "base": old.get("mae"), "candidate": m["mae"],
                     "delta": _minus(m["mae"], old.get("mae"))})
    return rows


def per_class_rows(candidate, base=None) -> list[dict]:
    """One record per class and measure: class, measure, base, candidate, delta (candidate − base), support."""
    rows = []
    for label, m in candidate.metrics.get("per_class", {}).items():
        old = base.metrics.get("per_class", {}).get(label, {}) if base is not None else {}
        for key in CLASS_MEASURES:
            rows.append({"class": label, "measure": key, "base": old.get(key), "candidate": m[key],
                         "delta": _minus(m[key], old.get(key)), "support": m["support"]})
    return rows


def by_line_rows(candidate, base=None) -> list[dict]:
    """One record per business line: business_line, test_rows, base, candidate, delta of accuracy."""
    rows = []
    for line, m in candidate.metrics.get("by_business_line", {}).items():
        old = base.metrics.get("by_business_line", {}).get(line, {}) if base is not None else {}
        rows.append({"business_line": line, "test_rows": m["n"], "base": old.get("accuracy"),
                     "candidate": m["accuracy"], "delta": _minus(m["accuracy"], old.get("accuracy"))})
    return rows


def per_class_table(candidate, base=None) -> pd.DataFrame:
    """Per-class rows as a page shows them: both versions side by side in columns named vN."""
    return _side_by_side(per_class_rows(candidate, base), candidate, base)


def by_line_table(candidate, base=None) -> pd.DataFrame:
    """Per-line rows as a page shows them: both versions side by side in columns named vN."""
    frame = _side_by_side(by_line_rows(candidate, base), candidate, base)
    return frame.rename(columns={"business_line": "business line", "test_rows": "test rows"})


def _minus(new, old) -> float | None:
    return None if new is None or old is None else new - old


def _side_by_side(rows: list[dict], candidate, base) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    if base is None or base.version == candidate.version:
        frame = frame.drop(columns=["base", "delta"])
        return frame.rename(columns={"candidate": f"v{candidate.version}"})
    return frame.rename(columns={"base": f"v{base.version}", "candidate": f"v{candidate.version}", "delta": "Δ"})


def comparison_base(candidate: int, active: int | None, replaced: int | None = None) -> int | None:
    """The version a candidate is judged against: the active one; when the candidate is itself
    active, the version it replaced."""
    return replaced if candidate == active else active


# --- same test set, and what got worse ------------------------------------------------------

def _test_set(version) -> tuple:
    m = version.metrics
    supports = tuple(sorted((label, c.get("support")) for label, c in m.get("per_class", {}).items()))
    return m.get("n_test"), version.data.get("test_rows", m.get("n_test")), supports


def not_comparable(candidate, base) -> str | None:
    """Why the two versions' figures cannot be compared (no metrics, another test set), or None."""
    for v in (base, candidate):
        if "accuracy" not in v.metrics:
            return f"version {v.version} has no metrics (the model had no test rows when it was trained)"
    if _test_set(candidate) != _test_set(base):
        return (f"versions {base.version} and {candidate.version} were measured on different test sets "
                f"({base.metrics.get('n_test')} and {candidate.metrics.get('n_test')} rows), so their "
                f"figures are not comparable")
    return None


# The guard's paired tests. Both versions answer the same test rows, so each test looks only at
# the rows where they differ: exact McNemar for right/wrong, a sign-flip randomisation test for
# absolute errors in grades, a paired bootstrap for quadratic weighted kappa. All one-sided (is
# the candidate worse?), seeded (the same rows give the same answer), and Holm-corrected over the
# figures of one comparison: with a dozen lines and classes, some fall by chance on any retrain.
SIGN_FLIPS = 10_000
BOOTSTRAPS = 2_000
SEED = 0


@dataclass(frozen=True)
class Paired:
    """Two versions' answers on the same test rows (row i is one text): what the guard tests."""
    truth: np.ndarray          # the test rows' labels
    base: np.ndarray           # the base version's answers (its most likely label)
    candidate: np.ndarray      # the candidate's
    lines: np.ndarray          # business line per row ("" for none)
    labels: tuple              # the model's labels (an ordinal model's grades, lowest first)
    graded: bool = False       # an ordinal model: grades have an order, errors a size

    @property
    def rows(self) -> int:
        return len(self.truth)


@dataclass(frozen=True)
class _Test:
    what: str
    base: float
    candidate: float
    worse: float               # how much worse the candidate is (negative: better)
    tolerance: float
    p_value: float             # one-sided: the candidate is worse
    rows: int
    lower_is_better: bool = False


def guard_level() -> float:
    """The guard's significance level (setting guard_level)."""
    return float(settings.get("guard_level"))


def binomial_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2): the one-sided exact McNemar p-value when k of the n rows
    where two answers differ go one way."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if n <= 1000:
        return sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n
    z = (k - 0.5 - n / 2) / math.sqrt(n / 4)  # normal approximation, continuity-corrected
    return 0.5 * math.erfc(z / math.sqrt(2))


def sign_flip_p(diff, draws: int = SIGN_FLIPS, seed: int = SEED) -> float:
    """One-sided p-value that the sum of paired differences is this large if each row's
    difference were as likely to have the other sign (a randomisation test; zero rows drop out)."""
    d = np.asarray(diff, dtype=float)
    d = d[d != 0]
    if not len(d):
        return 1.0
    observed = d.sum() - 1e-9
    rng = np.random.default_rng(seed)
    hits, done, chunk = 0, 0, max(1, 2_000_000 // len(d))
    while done < draws:
        m = min(chunk, draws - done)
        signs = rng.integers(0, 2, size=(m, len(d)), dtype=np.int8) * 2 - 1
        hits += int((signs @ d >= observed).sum())
        done += m
    return (hits + 1) / (draws + 1)


def qwk(true, pred) -> np.ndarray:
    """Quadratic weighted kappa of grade positions along the last axis (NaN where undefined):
    1 - mean squared error over the mean squared error expected if the two were independent."""
    true, pred = np.asarray(true, dtype=float), np.asarray(pred, dtype=float)
    expected = (true ** 2).mean(-1) + (pred ** 2).mean(-1) - 2 * true.mean(-1) * pred.mean(-1)
    observed = ((true - pred) ** 2).mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected > 0, 1 - observed / np.where(expected > 0, expected, 1), np.nan)


def _qwk_fall_p(true, base, candidate, draws: int = BOOTSTRAPS, seed: int = SEED) -> float:
    """Paired bootstrap: the share of resamples of the rows in which the candidate's kappa is not
    below the base's (one-sided p-value of a fall)."""
    n = len(true)
    rng = np.random.default_rng(seed)
    hits, done, chunk = 0, 0, max(1, 2_000_000 // max(n, 1))
    while done < draws:
        m = min(chunk, draws - done)
        idx = rng.integers(0, n, size=(m, n))
        gap = qwk(true[idx], candidate[idx]) - qwk(true[idx], base[idx])
        hits += int((~(gap < 0)).sum())  # undefined (NaN) counts as no fall
        done += m
    return (hits + 1) / (draws + 1)


def _right_wrong(what: str, base_right, cand_right, tolerance: float) -> _Test:
    """Accuracy (or a class's recall) of both on the same rows, exact McNemar on the rows where one is right."""
    worse = int((base_right & ~cand_right).sum())
    better = int((cand_right & ~base_right).sum())
    n = len(base_right)
    return _Test(what, float(base_right.mean()), float(cand_right.mean()), (worse - better) / n, tolerance,
                 binomial_tail(worse, worse + better), n)


def _errors(what: str, base_off, cand_off, tolerance: float) -> _Test:
    """Mean absolute error in grades of both on the same rows, sign-flip test on the paired differences."""
    return _Test(what, float(base_off.mean()), float(cand_off.mean()), float(cand_off.mean() - base_off.mean()),
                 tolerance, sign_flip_p(cand_off - base_off), len(base_off), lower_is_better=True)


def _tests(paired: Paired, t: Tolerances) -> list[_Test]:
    """Every figure the guard judges: accuracy, each class's recall, each business line's accuracy
    (lines with at least `line_min_rows` rows); for an ordinal model also the mean absolute error
    overall and per line, and quadratic weighted kappa."""
    truth = np.asarray(paired.truth, dtype=object)
    base_right, cand_right = paired.base == truth, paired.candidate == truth
    tests = [_right_wrong("accuracy", base_right, cand_right, t.overall)]
    for label in paired.labels:
        mask = truth == label
        if mask.any():
            tests.append(_right_wrong(f"recall of {label}", base_right[mask], cand_right[mask], t.class_recall))
    lines = np.asarray(paired.lines, dtype=object)
    judged = [line for line in _lines(lines) if (lines == line).sum() >= t.line_min_rows]
    for line in judged:
        mask = lines == line
        tests.append(_right_wrong(f"accuracy on {line}", base_right[mask], cand_right[mask], t.line_accuracy))
    if paired.graded:
        grades = list(paired.labels)
        true, base, cand = (ordinal.positions(v, grades) for v in (truth, paired.base, paired.candidate))
        base_off, cand_off = np.abs(true - base), np.abs(true - cand)
        tests.append(_errors("mean absolute error (grades)", base_off, cand_off, t.ordinal_mae))
        old, new = float(qwk(true, base)), float(qwk(true, cand))
        if old == old and new == new:  # kappa is undefined for a constant answer
            tests.append(_Test("quadratic weighted kappa", old, new, old - new, t.overall,
                               _qwk_fall_p(true, base, cand), len(true)))
        for line in judged:
            mask = lines == line
            tests.append(_errors(f"mean absolute error (grades) on {line}", base_off[mask], cand_off[mask],
                                 t.line_ordinal_mae))
    return tests


def _lines(lines: np.ndarray) -> list[str]:
    return sorted({line for line in lines if isinstance(line, str) and line})


def holm(p_values, level: float) -> list[bool]:
    """Which hypotheses Holm's step-down procedure rejects at family-wise `level`."""
    order = np.argsort(np.asarray(p_values, dtype=float), kind="stable")
    rejected = [False] * len(order)
    for rank, i in enumerate(order):
        if p_values[i] >= level / (len(order) - rank):
            break
        rejected[i] = True
    return rejected


def regressions(paired: Paired | None, tolerances: Tolerances | None = None,
                level: float | None = None) -> list[Regression]:
    """Where the candidate is worse than the base on the same test rows: a figure (see `_tests`)
    that fell by more than its tolerance, significantly at `level` (default: the guard_level
    setting) after Holm's correction over every figure tested. Empty without paired rows."""
    if paired is None or not paired.rows:
        return []
    t = tolerances or Tolerances.from_settings()
    tests = _tests(paired, t)
    significant = holm([x.p_value for x in tests], guard_level() if level is None else level)
    return [Regression(x.what, x.base, x.candidate, x.worse, x.tolerance, x.lower_is_better, x.p_value, x.rows)
            for x, sig in zip(tests, significant) if sig and x.worse > x.tolerance + 1e-12]


def guard_notes(paired: Paired | None, tolerances: Tolerances | None = None) -> list[str]:
    """What the guard did not judge, as sentences: business lines with too few test rows."""
    if paired is None:
        return []
    t = tolerances or Tolerances.from_settings()
    lines = np.asarray(paired.lines, dtype=object)
    truth = np.asarray(paired.truth, dtype=object)
    notes = []
    for line in _lines(lines):
        mask = lines == line
        if mask.sum() < t.line_min_rows:
            old, new = (float((answers[mask] == truth[mask]).mean()) for answers in (paired.base, paired.candidate))
            notes.append(f"{line} has {int(mask.sum())} test rows, too few to judge (a business line needs "
                         f"{t.line_min_rows}): accuracy {old:.3f} → {new:.3f} is not counted as a fall")
    return notes


# --- the trivial baseline -------------------------------------------------------------------

@dataclass(frozen=True)
class Baseline:
    """A version against always giving one answer on its test split. Classification: the majority
    class, judged on macro-F1 (the product's headline figure for a version) by a paired bootstrap of
    the test rows; ordinal: the median grade, judged on the mean absolute error by a sign-flip test
    on the paired errors. Beaten only when the version is better and significantly so (p < level):
    a version right a little more often than a constant on a small test split is not shown better."""
    version: int
    answer: str                # the trivial answer
    metric: str
    figure: float              # the version's
    trivial: float             # always answering `answer`
    lower_is_better: bool
    p_value: float
    rows: int
    level: float

    @property
    def beaten(self) -> bool:
        better = self.figure < self.trivial if self.lower_is_better else self.figure > self.trivial
        return better and self.p_value < self.level

    def sentence(self) -> str:
        figures = (f"{self.metric} {self.figure:.3f} against {self.trivial:.3f} on {self.rows} test rows, "
                   f"{_p_text(self.p_value)}")
        if self.beaten:
            return f"version {self.version} beats always answering {self.answer} ({figures})"
        return (f"version {self.version} is no better than always answering {self.answer} ({figures}, "
                f"not below the guard's level {self.level:g})")

    def as_regression(self) -> Regression:
        worse = self.figure - self.trivial if self.lower_is_better else self.trivial - self.figure
        return Regression(f"{self.metric} against always answering {self.answer}", self.trivial, self.figure,
                          float(worse), 0.0, self.lower_is_better, self.p_value, self.rows, self.answer)


def baseline(version, level: float | None = None) -> Baseline | None:
    """How `version` does against the trivial answer on its test split, from its confusion matrix
    (every row's true and predicted label); None for a version without test rows."""
    confusion = version.metrics.get("confusion") if version is not None else None
    if not confusion:
        return None
    labels, matrix = list(confusion["labels"]), np.asarray(confusion["matrix"], dtype=np.int64)
    n = int(matrix.sum())
    if not n:
        return None
    level = guard_level() if level is None else level
    counts = matrix.sum(axis=1)
    if "ordinal" in version.metrics:
        median = int(np.searchsorted(np.cumsum(counts), n / 2))  # the lower median grade
        true, said = np.arange(len(labels))[:, None], np.arange(len(labels))[None, :]
        model_off = np.abs(true - said)
        trivial_off = np.broadcast_to(np.abs(true - median), matrix.shape)
        gain = np.repeat((trivial_off - model_off).ravel(), matrix.ravel())  # > 0: the version is nearer
        return Baseline(version.version, labels[median], "mean absolute error (grades)",
                        float((model_off * matrix).sum() / n), float((trivial_off * matrix).sum() / n),
                        True, sign_flip_p(gain), n, level)
    majority = int(np.argmax(counts))  # the best constant on macro-F1 too; the first in label order on a tie
    return Baseline(version.version, labels[majority], "macro-F1", float(macro_f1(matrix)),
                    float(macro_f1(_always(matrix, majority))), False, _macro_f1_gain_p(matrix, majority), n, level)


def macro_f1(confusion) -> np.ndarray:
    """Macro-F1 of confusion matrices (rows true, columns predicted) along the last two axes; a
    label neither true nor predicted counts 0, as in the version's metrics."""
    confusion = np.asarray(confusion, dtype=float)
    right = np.diagonal(confusion, axis1=-2, axis2=-1)
    both = confusion.sum(axis=-1) + confusion.sum(axis=-2)
    return np.where(both > 0, 2 * right / np.where(both > 0, both, 1), 0.0).mean(axis=-1)


def _always(confusion, answer: int) -> np.ndarray:
    """The confusion matrices of always answering label `answer` on the same rows."""
    confusion = np.asarray(confusion)
    out = np.zeros_like(confusion)
    out[..., answer] = confusion.sum(axis=-1)
    return out


def _macro_f1_gain_p(confusion, answer: int, draws: int = BOOTSTRAPS, seed: int = SEED) -> float:
    """Paired bootstrap over the test rows (each row a cell of the confusion matrix): the share of
    resamples in which the version's macro-F1 is not above always answering `answer` (one-sided p)."""
    confusion = np.asarray(confusion, dtype=np.int64)
    n = int(confusion.sum())
    rows = np.random.default_rng(seed).multinomial(n, confusion.ravel() / n, size=draws).reshape(draws,
                                                                                                   *confusion.shape)
    gain = macro_f1(rows) - macro_f1(_always(rows, answer))
    return (int((gain <= 1e-12).sum()) + 1) / (draws + 1)


def describe(found: list[Regression], candidate: int, base: int) -> str:
    """One sentence listing what regressed, for errors and audit."""
    return (f"version {candidate} is worse than version {base} on the same test set: "
            + "; ".join(r.sentence() for r in found))


# --- the version diff -----------------------------------------------------------------------

def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts as one level with dotted keys ({"a": {"b": 1}} → {"a.b": 1})."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def version_facts(v) -> dict:
    """Everything recorded about a version, flattened: config, preprocessing, data, metrics, provenance."""
    facts = {"mode": v.mode}
    facts.update(flatten(v.model_config, "config."))
    facts.update(flatten(v.preprocess, "preprocess."))
    facts.update(flatten(v.data, "data."))
    facts.update(flatten(v.metrics, "metrics."))
    facts.update({"parent": v.parent_version, "created": f"{v.created_at:%Y-%m-%d %H:%M}",
                  "created by": v.created_by})
    return facts


def diff_table(a, b) -> pd.DataFrame:
    """One row per fact of either version: setting, vA, vB (raw values), differs (bool)."""
    fa, fb = version_facts(a), version_facts(b)
    keys = list(dict.fromkeys([*fa, *fb]))
    frame = pd.DataFrame({"setting": keys, f"v{a.version}": [fa.get(k) for k in keys],
                          f"v{b.version}": [fb.get(k) for k in keys]}, dtype=object)
    frame["differs"] = [fa.get(k) != fb.get(k) for k in keys]
    return frame


# --- N versions against a base, as a person reads them ---------------------------------------

@dataclass(frozen=True)
class Fact:
    """One fact of a version as a table row shows it. `kind` says how it reads and how its delta does:
    percent (a share, delta in pp), ratio (3 decimals), count (whole number), text (no delta)."""
    section: str
    name: str
    value: object
    kind: str = "text"
    judged: bool = False          # a figure where a change is better or worse
    lower_is_better: bool = False


SECTIONS = ("Metrics", "Per class", "Per business line", "Settings", "Preprocessing", "Data", "Provenance")
_SETTINGS = {"estimator": "estimator", "C": "C", "alpha": "alpha", "word_ngrams": "word n-grams",
             "char_ngrams": "character n-grams", "min_df": "min df", "max_features": "max features",
             "n_features": "hashed features", "max_iter": "max iterations", "epochs": "epochs per update",
             "seed": "random seed"}
_PREPROCESS = {"cut_mode": "jieba mode", "hmm": "HMM for unknown words", "new_words": "new words",
               "stop_words": "stop words", "fullwidth_to_halfwidth": "full-width to half-width",
               "lowercase": "lower case", "drop_punctuation": "drop punctuation"}
_SOURCES = {"import": "imported", "feedback": "from labelling", "review": "from review"}
_ORDINAL_EXACT = Measure("exact", "Exact grade", True, False)


def _setting_text(key: str, value) -> str:
    if key.endswith("ngrams"):
        return "none" if not value else f"{value[0]}–{value[1]}"
    if key == "max_features" and value is None:
        return "no limit"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        shown = "、".join(map(str, value[:5])) + ("…" if len(value) > 5 else "")
        return f"{len(value)}: {shown}" if value else "none"
    return as_text(value)


def _metric_facts(m: dict) -> list[tuple[str, Fact]]:
    facts = [(f"metrics.{x.key}", Fact("Metrics", x.label, m.get(x.key), "percent" if x.percent else "ratio", True,
                                       x.lower_is_better)) for x in OVERALL]
    facts.append(("metrics.n_test", Fact("Metrics", "Test rows", m.get("n_test"), "count")))
    for x in (*ORDINAL, _ORDINAL_EXACT) if "ordinal" in m else ():
        facts.append((f"metrics.ordinal.{x.key}", Fact("Metrics", x.label, m["ordinal"].get(x.key),
                                                       "percent" if x.percent else "ratio", True, x.lower_is_better)))
    for label, c in m.get("per_class", {}).items():
        facts += [(f"metrics.per_class.{label}.{k}", Fact("Per class", f"{label} {'F1' if k == 'f1' else k}",
                                                          c.get(k), "ratio", True)) for k in CLASS_MEASURES]
        facts.append((f"metrics.per_class.{label}.support", Fact("Per class", f"{label} test rows", c.get("support"),
                                                                 "count")))
    for line, c in m.get("by_business_line", {}).items():
        facts.append((f"metrics.by_business_line.{line}.accuracy",
                      Fact("Per business line", f"{line} accuracy", c.get("accuracy"), "percent", True)))
        facts.append((f"metrics.by_business_line.{line}.n", Fact("Per business line", f"{line} test rows",
                                                                   c.get("n"), "count")))
    for line, c in m.get("ordinal_by_line", {}).items():
        facts.append((f"metrics.ordinal_by_line.{line}.mae",
                      Fact("Per business line", f"{line} mean absolute error (grades)", c.get("mae"), "ratio", True,
                           True)))
    return facts


def readable_facts(v) -> dict[str, Fact]:
    """A version's facts by their dotted key (as `version_facts` names them), each with a readable name and
    a value ready to format: metrics first, then settings, data and provenance. Curves and matrices
    (reliability bins, confusion) are left to the charts; how the config was chosen is one sentence."""
    facts = dict(_metric_facts(v.metrics))
    for key, value in v.model_config.items():
        facts[f"config.{key}"] = Fact("Settings", _SETTINGS.get(key, key.replace("_", " ")), _setting_text(key, value))
    for key, value in v.preprocess.items():
        facts[f"preprocess.{key}"] = Fact("Preprocessing", _PREPROCESS.get(key, key.replace("_", " ")),
                                          _setting_text(key, value))
    data = v.data
    facts["data.rows"] = Fact("Data", "rows seen", data.get("rows"), "count")
    for source, n in data.get("rows_by_source", {}).items():
        facts[f"data.rows_by_source.{source}"] = Fact("Data", f"rows {_SOURCES.get(source, source)}", n, "count")
    facts["data.new_rows"] = Fact("Data", "new rows", data.get("new_rows"), "count")
    facts["data.test_rows"] = Fact("Data", "test rows", data.get("test_rows"), "count")
    facts["data.selection"] = Fact("Data", "config chosen", selection.chosen_how(v))
    facts["data.calibration"] = Fact("Data", "probabilities", data.get("calibration", "not recorded"))
    fingerprint = data.get("fingerprint")
    facts["data.fingerprint"] = Fact("Data", "training data (fingerprint)", fingerprint[:12] if fingerprint else None)
    facts["mode"] = Fact("Provenance", "training mode", v.mode)
    facts["parent"] = Fact("Provenance", "parent", f"v{v.parent_version}" if v.parent_version else None)
    facts["created"] = Fact("Provenance", "created", f"{v.created_at:%Y-%m-%d %H:%M}")
    facts["created by"] = Fact("Provenance", "created by", v.created_by)
    return facts


def fact_text(fact: Fact | None) -> str:
    """A fact's value as a table cell: 81.3%, 0.742, 1,234, or its text; – for none."""
    value = None if fact is None else fact.value
    if value is None or isinstance(value, float) and value != value:
        return "–"
    if fact.kind == "percent":
        return f"{value:.1%}"
    if fact.kind == "ratio":
        return f"{value:.3f}"
    if fact.kind == "count":
        return f"{int(value):,}"
    return str(value)


def delta_text(base: Fact | None, other: Fact | None) -> tuple[str, bool | None]:
    """The other version's change from the base as a cell (+1.2 pp, −0.013, +40, "changed"; "" when the
    same) and whether it is better (None: unchanged, not judged, or unknown)."""
    a, b = (None if f is None else f.value for f in (base, other))
    if a == b:
        return "", None
    kind = (other or base).kind
    if kind == "text" or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b)):
        return "changed", None
    delta = b - a
    if kind != "count" and abs(delta) < UNCHANGED_BELOW:
        return "±0", None
    text = (f"{delta * 100:+.1f} pp" if kind == "percent" else f"{delta:+.3f}" if kind == "ratio"
            else f"{int(delta):+,}").replace("-", "−")
    judged = other.judged if other is not None else False
    return text, ((delta < 0) == other.lower_is_better) if judged else None


def _merged_order(orders: list[list[str]]) -> list[str]:
    """Keys of several versions in one order: the first version's, with each key another version adds
    placed after the key that precedes it there (a new business line beside the others)."""
    merged = list(orders[0])
    for order in orders[1:]:
        for i, key in enumerate(order):
            if key not in merged:
                merged.insert(merged.index(order[i - 1]) + 1 if i else 0, key)
    return merged


def base_column(base) -> str:
    return f"v{base.version} (base)"


def compare_versions(versions: list, base) -> pd.DataFrame:
    """N versions beside a base, one row per fact of any of them, in reading order: section, what
    (a readable name), the base's value, then per other version vN its value and "Δ vN" (its change
    from the base), with "better vN" (True, False, None: for colouring) and `differs` (any differs)."""
    others = [v for v in versions if v.version != base.version]
    facts = {v.version: readable_facts(v) for v in [base, *others]}
    keys = _merged_order([list(f) for f in facts.values()])
    for f in facts.values():  # a source a version had no rows from: 0 rows, not unknown
        for key in keys:
            if key.startswith("data.rows_by_source.") and key not in f:
                known = next(g[key] for g in facts.values() if key in g)
                f[key] = Fact(known.section, known.name, 0, "count")
    rows = []
    for key in keys:
        mine = facts[base.version].get(key)
        any_fact = next(f[key] for f in facts.values() if key in f)
        row = {"section": any_fact.section, "what": any_fact.name, base_column(base): fact_text(mine)}
        differs = False
        for v in others:
            theirs = facts[v.version].get(key)
            delta, better = delta_text(mine, theirs)
            row.update({f"v{v.version}": fact_text(theirs), f"Δ v{v.version}": delta, f"better v{v.version}": better})
            differs |= fact_text(theirs) != fact_text(mine)
        rows.append({**row, "differs": differs})
    return pd.DataFrame(rows)


def settings_diff(saved: dict, shown: dict) -> pd.DataFrame:
    """The settings that differ between two (nested) config dicts: setting, saved, shown.

    Both should be normalised the same way (e.g. `ModelConfig.from_dict(d).to_dict()`)."""
    fs, fn = flatten(saved), flatten(shown)
    keys = [k for k in dict.fromkeys([*fs, *fn]) if fs.get(k) != fn.get(k)]
    return pd.DataFrame({"setting": keys, "saved": [fs.get(k) for k in keys], "shown": [fn.get(k) for k in keys]},
                        dtype=object)


def as_text(value) -> str:
    """A fact as a person reads it in a table cell: – for none, 4 significant digits, lists as JSON."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), ensure_ascii=False)
    return str(value)


# --- everything at once, for the CLI and the API -------------------------------------------

def comparison(candidate, base, paired: Paired | None = None, tolerances: Tolerances | None = None) -> dict:
    """Plain data comparing `candidate` with `base`: deltas are candidate − base; regressions (and
    the guard's notes) from both versions' answers on the same test rows (`paired`)."""
    note = not_comparable(candidate, base)
    return {
        "base": base.version, "candidate": candidate.version, "comparable": note is None, "note": note,
        "overall": [d.to_dict() for d in overall_deltas(candidate, base)],
        "per_class": per_class_rows(candidate, base),
        "by_line": by_line_rows(candidate, base),
        "regressions": [r.to_dict() for r in regressions(paired, tolerances)],
        "guard_notes": guard_notes(paired, tolerances),
        "configs": [selection.summary(base), selection.summary(candidate)],
        **({"ordinal": [d.to_dict() for d in ordinal_deltas(candidate, base)],
            "ordinal_by_line": ordinal_by_line_rows(candidate, base)} if "ordinal" in candidate.metrics else {}),
    }

