"""Two versions of a model side by side, as numbers: what changed, and what got worse.

Every face that compares versions (Train and Versions pages, `compare` command, API, the
activation guard) reads the same figures from here. A version is anything with `version`,
`metrics` and `data` (and, for the diff and the configs, `mode`, `model_config`, `preprocess`, `parent_version`,
`created_at`, `created_by`), so this module needs neither the store nor the registry.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import pandas as pd

from . import selection, settings

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
    """How far a figure may fall before the candidate counts as worse (declared as settings)."""
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
    """A figure that got worse by more than its tolerance: fell, or rose where lower is better
    (an ordinal version's mean absolute error); `drop` is how much worse, always >= 0."""
    what: str
    base: float
    candidate: float
    drop: float
    tolerance: float
    lower_is_better: bool = False

    def to_dict(self) -> dict:
        """As plain data; `lower_is_better` only where it is true, so a fall keeps the five keys it always had."""
        d = asdict(self)
        if not self.lower_is_better:
            del d["lower_is_better"]
        return d

    def sentence(self) -> str:
        sign = "+" if self.lower_is_better else "−"
        return (f"{self.what} {self.base:.3f} → {self.candidate:.3f} ({sign}{self.drop:.3f}, "
                f"tolerance {self.tolerance:.3f})")


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


def _fall(what: str, old, new, tolerance: float) -> list[Regression]:
    if old is None or new is None or old - new <= tolerance + 1e-12:  # a fall of exactly the tolerance is allowed
        return []
    return [Regression(what, float(old), float(new), float(old - new), tolerance)]


def regressions(candidate, base, tolerances: Tolerances | None = None) -> list[Regression]:
    """Where the candidate is worse than the base beyond tolerances, on the same test set:
    accuracy or macro-F1, any class's recall, any business line's accuracy (lines with at least
    `line_min_rows` test rows). Empty when not comparable (see `not_comparable`)."""
    t = tolerances or Tolerances.from_settings()
    if base is None or not_comparable(candidate, base):
        return []
    new, old = candidate.metrics, base.metrics
    found = [r for key in ("accuracy", "macro_f1") for r in _fall(key, old.get(key), new.get(key), t.overall)]
    for label, c in new.get("per_class", {}).items():
        found += _fall(f"recall of {label}", old.get("per_class", {}).get(label, {}).get("recall"),
                       c.get("recall"), t.class_recall)
    for line, m in new.get("by_business_line", {}).items():
        before = old.get("by_business_line", {}).get(line, {})
        if min(m.get("n", 0), before.get("n", 0)) >= t.line_min_rows:
            found += _fall(f"accuracy on {line}", before.get("accuracy"), m.get("accuracy"), t.line_accuracy)
    return found + _ordinal_regressions(new, old, t)


def _rise(what: str, old, new, tolerance: float) -> list[Regression]:
    """`_fall` for a figure where lower is better."""
    if old is None or new is None or new - old <= tolerance + 1e-12:
        return []
    return [Regression(what, float(old), float(new), float(new - old), tolerance, lower_is_better=True)]


def _ordinal_regressions(new: dict, old: dict, t: Tolerances) -> list[Regression]:
    """For ordinal versions: quadratic weighted kappa falling, mean absolute error (grades) rising,
    overall and per business line (lines with at least `line_min_rows` test rows)."""
    a, b = old.get("ordinal"), new.get("ordinal")
    if not a or not b:
        return []
    found = _fall("quadratic weighted kappa", a.get("qwk"), b.get("qwk"), t.overall)
    found += _rise("mean absolute error (grades)", a.get("mae"), b.get("mae"), t.ordinal_mae)
    for line, m in new.get("ordinal_by_line", {}).items():
        before = old.get("ordinal_by_line", {}).get(line, {})
        if min(m.get("n", 0), before.get("n", 0)) >= t.line_min_rows:
            found += _rise(f"mean absolute error (grades) on {line}", before.get("mae"), m.get("mae"),
                           t.line_ordinal_mae)
    return found


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

def comparison(candidate, base, tolerances: Tolerances | None = None) -> dict:
    """Plain data comparing `candidate` with `base`: deltas are candidate − base."""
    note = not_comparable(candidate, base)
    return {
        "base": base.version, "candidate": candidate.version, "comparable": note is None, "note": note,
        "overall": [d.to_dict() for d in overall_deltas(candidate, base)],
        "per_class": per_class_rows(candidate, base),
        "by_line": by_line_rows(candidate, base),
        "regressions": [r.to_dict() for r in regressions(candidate, base, tolerances)],
        "configs": [selection.summary(base), selection.summary(candidate)],
        **({"ordinal": [d.to_dict() for d in ordinal_deltas(candidate, base)],
            "ordinal_by_line": ordinal_by_line_rows(candidate, base)} if "ordinal" in candidate.metrics else {}),
    }

