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

