"""Training a version: a full fit or an incremental update, then one evaluate-and-register step.

What a model is (config, pipeline, probabilities) is `estimators`' topic; this module decides
what a version learns from and records it. Stored examples are tokenised once per preprocessing
config and cached in the store.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import artifacts, auth, registry, selection
from . import store as db
from .errors import Regression, TrainingError
from .estimators import (ModelConfig, build_pipeline, calibration_folds, calibration_note, incremental_core,
                         model_step)
# Model files written before estimators.py existed pickled their analyzer as core.train.TokenNgrams.
from .estimators import TokenNgrams  # noqa: F401
from .metrics import evaluate
from .preprocess import PreprocessConfig, Tokenizer
from .store import Store


@dataclass(frozen=True)
class TrainingPlan:
    """What the next version would learn from: training rows by source, and what is new."""
    rows_by_source: dict
    new_since_active: dict
    active_version: int | None
    incremental_possible: bool
    reason: str
    full_retrain: str = ""     # what a full retrain would do: re-select by cross-validation, or refit only


@dataclass(frozen=True)
class Fit:
    """A fitted pipeline and what it learned from: everything the register step records."""
    pipeline: object
    config: ModelConfig
    prep: PreprocessConfig
    train: pd.DataFrame        # the rows this fit learned from (new labels only, when incremental)
    mode: str
    parent_version: int | None
    rows_by_source: dict       # every row the version has seen, by source
    max_example_id: int
    notes: dict = None         # how the config was chosen (selection), calibration, replay: kept in data


def _quiet(fraction: float, message: str) -> None:
    pass


def _tokens(store: Store, model_id: int, split: str, prep: PreprocessConfig, labels, after=-1,
            progress=_quiet, ids: list[int] | None = None) -> pd.DataFrame:
    """Examples of a split (after an id, or only `ids`) with their tokens; tokenises and caches
    only the ones not cached yet."""
    key = prep.fingerprint()
    with store.connect() as con:
        frame = db.examples_with_tokens(con, model_id, split, key, after, labels, ids)
    missing = frame["tokens"].isna()
    if missing.any():
        progress(0.1, f"tokenising {int(missing.sum())} {split} texts")
        fresh = frame.loc[missing, ["example_id"]].copy()
        fresh["tokens"] = Tokenizer(prep).cut_many(frame.loc[missing, "text"])
        with store.transaction() as con:
            db.insert_tokens(con, key, fresh)
        frame.loc[missing, "tokens"] = fresh["tokens"]
    frame["tokens"] = frame["tokens"].map(list)
    return frame


def _fingerprint(frame: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for text, label in zip(frame["text"], frame["label"]):
        h.update(text.encode("utf-8"))
        h.update(b"\x1f")
        h.update(label.encode("utf-8"))
        h.update(b"\x1e")
    return h.hexdigest()


def training_plan(store: Store, name: str) -> TrainingPlan:
    """What a full retrain would use and whether an incremental update is possible, and why."""
    with store.connect() as con:
        model = registry.find_model(con, name)
        active = registry.resolve_version(con, model) if model.active_version else None
        summary = db.example_summary(con, model.model_id)
        new = db.examples_since(con, model.model_id, active.max_example_id if active else -1)
    train_rows = summary[summary["split"] == "train"].groupby("source")["rows"].sum().to_dict()
    if active is None:
        possible, reason = False, "no active version to update yet"
    elif not updatable(model, ModelConfig.from_dict(active.model_config)):
        possible, reason = False, (f"the active version uses {active.model_config['estimator']}, which cannot learn "
                                   f"incrementally (with the estimator set to auto, an update refits the chosen one)")
    elif not new:
        possible, reason = False, f"no new labels since version {active.version}"
    else:
        possible, reason = True, f"{sum(new.values())} new labels since version {active.version}"
    return TrainingPlan({k: int(v) for k, v in train_rows.items()}, {k: int(v) for k, v in new.items()},
                        model.active_version, possible, reason, full_retrain_plan(model, active))


def updatable(model: registry.Model, config: ModelConfig) -> bool:
    """Whether a version with `config` of `model` can be updated incrementally: an sgd model learns
    on (partial_fit); a model in the default mode (estimator "auto") keeps its parent's selection
    and fitted features and refits the classifier, which skips the search that makes most of a full
    retrain's time. A pinned non-sgd config is refused: its full retrain does no search either."""
    return config.incremental or not ModelConfig.from_dict(model.model_config).pinned


def full_retrain_plan(model: registry.Model, active: registry.Version | None) -> str:
    """What a full retrain does by default and what the owner may choose instead, in a sentence."""
    config = ModelConfig.from_dict(model.model_config)
    if config.pinned:
        return f"refits the pinned config ({config.describe()}): no model selection"
    if active is None:
        return "selects the estimator and features by cross-validation (the default mode), then fits"
    return (f"re-selects by cross-validation (keeping version {active.version}'s "
            f"{ModelConfig.from_dict(active.model_config).describe()} unless a candidate beats it beyond the "
            f"folds' noise), or, if you choose refit, fits that choice again on every row with no search")


def train_version(store: Store, name: str, user: str, incremental: bool = False,
                  model_config: dict | None = None, preprocess: dict | None = None,
                  activate: bool = False, progress=None, budget: float | None = None,
                  reselect: bool | None = None) -> registry.Version:
    """Train and register a new version; the model's first version becomes active by itself when it
    beats the trivial answer (the promotion guard's baseline), else it is kept and Regression says why.

    Full: every training example (imported and feedback) with the model's (or given) config; a
    config whose estimator is "auto" is chosen by cross-validation within `budget` seconds
    (default: scaled to the data, see selection.budget_seconds).
    Incremental: the active version's SGD model, updated on the labels added since that version
    plus a replay sample of the rows it learned from; it keeps the parent's config and is refused
    for configs that cannot learn incrementally."""
    progress = progress or _quiet
    with store.connect() as con:
        auth.require(con, user, "train")  # refused before any expensive work
        model = registry.find_model(con, name)
        parent = registry.resolve_version(con, model) if incremental else None
    if incremental:
        if model_config:
            raise TrainingError("an incremental update keeps the parent's config; use a full retrain to change it")
        if reselect:
            raise TrainingError("an incremental update keeps its parent's selection; use a full retrain to re-select")
        fit = fit_incremental(store, model, parent, progress)
    else:
        config = ModelConfig.from_dict(model_config if model_config is not None else model.model_config)
        if reselect and config.pinned:
            raise TrainingError(f"there is nothing to re-select: the config names its estimator ({config.estimator}); "
                                f"set the estimator to auto for model selection")
        prep = PreprocessConfig.from_dict(preprocess if preprocess is not None else model.preprocess)
        fit = fit_full(store, model, config, prep, progress, budget, reselect)
    return _evaluate_and_register(store, model, fit, user, activate, progress)


def fit_full(store: Store, model: registry.Model, config: ModelConfig, prep: PreprocessConfig,
             progress=_quiet, budget: float | None = None, reselect: bool | None = None) -> Fit:
    """A new pipeline fitted on every training example of the model (its config chosen first when
    "auto", or with `reselect` False the active version's choice kept)."""
    progress(0.05, "loading training examples")
    train = _tokens(store, model.model_id, "train", prep, model.labels, progress=progress)
    classes = sorted(set(train["label"]))
    if not classes:
        raise TrainingError(f"training needs examples of at least two labels; model {model.name!r} has no "
                            f"training rows yet (import some with --split train)")
    if len(classes) < 2:
        raise TrainingError(f"training needs examples of at least two labels; the training split has "
                            f"{len(train)} rows, all {classes[0]}")
    tokens, labels = train["tokens"].tolist(), train["label"].tolist()
    notes = {}
    if not config.pinned:
        active = registry.get_version(store, model.name) if model.active_version else None
        incumbent = ModelConfig.from_dict(active.model_config) if active else None
        asked = {None: "default (re-select)", True: "re-select", False: "refit"}[reselect]
        if reselect is False and active is not None:
            config = incumbent
            notes["selection"] = selection.reused(active, f"the owner chose to refit version {active.version}'s "
                                                          f"choice with no new search", asked)
            progress(0.4, f"refitting version {active.version}'s choice, {config.describe()}, with no search")
        else:
            chosen = selection.select(tokens, labels, config, budget, progress, incumbent, _grades(model))
            config, notes["selection"] = chosen.config, {**chosen.record, "asked": asked}
            if reselect is False:
                notes["selection"]["asked"] = "refit, but there was no active version to take a choice from: selected"
            progress(0.4, chosen.record.get("fallback") or f"chose {config.describe()}: {chosen.record['reason']}")
    folds = calibration_folds(labels)
    pipeline = build_pipeline(config, folds, _grades(model))  # the very model_step selection scored
    progress(0.45, f"fitting {config.describe()} on {len(train)} examples")
    pipeline.fit(tokens, labels)
    notes["calibration"] = _calibration_record(pipeline, config, folds, labels)
    seen = {k: int(v) for k, v in train["source"].value_counts().items()}
    return Fit(pipeline, config, prep, train, registry.FULL, model.active_version, seen,
               int(train["example_id"].max()), notes)


def _grades(model: registry.Model) -> list[str] | None:
    """An ordinal model's grades (the order its model learns); None for a classification model."""
    return list(model.labels) if registry.is_ordinal(model) else None


def _calibration_record(pipeline, config: ModelConfig, folds: int, labels: list[str]) -> str:
    """How the fitted pipeline's probabilities are calibrated, in a sentence for the version's record."""
    if folds < 2:
        fewest = min(labels.count(label) for label in set(labels))
        return f"uncalibrated: a label has {fewest} training row, calibration needs 2 per label"
    how = "one model refitted on all rows" if config.incremental else "the folds' models averaged"
    return (f"{folds}-fold cross-validation on the training split, {how}; "
            f"{calibration_note(pipeline.named_steps['clf'])}")


REPLAY_MIN = 2000   # earlier rows replayed beside the new labels, at least (or all, if fewer)
REPLAY_RATIO = 3    # ... and at least this many per new label, so old classes keep their weight


def fit_incremental(store: Store, model: registry.Model, parent: registry.Version, progress=_quiet) -> Fit:
    """The parent's pipeline (a copy) warm-started with `partial_fit` on the labels added since it
    plus a seeded replay sample of the rows it learned from: new labels alone pull an SGD model
    towards the hard examples' corner and it forgets the rest (0.918 -> 0.911 over two rounds)."""
    config = ModelConfig.from_dict(parent.model_config)
    if not updatable(model, config):
        raise TrainingError(f"version {parent.version} uses {config.estimator}, which cannot learn "
                            f"incrementally; run a full retrain, or choose the sgd estimator (or auto)")
    if not config.incremental:
        return refit_kept_features(store, model, parent, progress)
    prep = PreprocessConfig.from_dict(parent.preprocess)
    progress(0.05, "loading the new labels")
    train = _tokens(store, model.model_id, "train", prep, model.labels, parent.max_example_id, progress)
    if train.empty:
        raise TrainingError(f"no new labels since version {parent.version}; nothing to learn")
    with store.connect() as con:  # the replay sample's ids first: only those rows are read and tokenised
        ids = db.sample_example_ids(con, model.model_id, "train", parent.max_example_id,
                                    max(REPLAY_MIN, REPLAY_RATIO * len(train)), config.seed, model.labels)
    replay = _tokens(store, model.model_id, "train", prep, model.labels, progress=progress, ids=ids)
    pipeline = copy.deepcopy(artifacts.load(store, parent)["pipeline"])
    progress(0.4, f"updating on {len(train)} new labels and {len(replay)} replayed earlier rows")
    _partial_fit(pipeline, pd.concat([train, replay], ignore_index=True), config)
    seen = dict(parent.data.get("rows_by_source", {}))
    for source, n in train["source"].value_counts().items():
        seen[source] = seen.get(source, 0) + int(n)
    notes = {"replay": {"rows": int(len(replay)), "how": f"seeded sample of the rows up to version "
                                                          f"{parent.version}, {config.epochs} epochs with the new labels"},
             "calibration": parent.data.get("calibration", "as the parent's")}
    return Fit(pipeline, config, prep, train, registry.INCREMENTAL, parent.version, seen,
               max(int(train["example_id"].max()), parent.max_example_id), notes)


def refit_kept_features(store: Store, model: registry.Model, parent: registry.Version, progress=_quiet) -> Fit:
    """An incremental update of a model in the default mode: the parent's selection (its config) and
    its fitted features (vocabulary and IDF) are kept, and the classifier step, calibration included,
    is refitted on every training row, the new labels among them. No model selection runs, which is
    most of a full retrain's time. LinearSVC (liblinear) has no warm start and a refit of the
    classifier alone takes seconds, so the classifier is refitted whole rather than continued."""
    config = ModelConfig.from_dict(parent.model_config)
    prep = PreprocessConfig.from_dict(parent.preprocess)
    progress(0.05, "loading the new labels")
    new = _tokens(store, model.model_id, "train", prep, model.labels, parent.max_example_id, progress)
    if new.empty:
        raise TrainingError(f"no new labels since version {parent.version}; nothing to learn")
    train = _tokens(store, model.model_id, "train", prep, model.labels, progress=progress)
    from sklearn.pipeline import Pipeline  # scikit-learn loads when a model is fitted, not at start-up

    # the parent's fitted features step itself, not a copy: it is only read (a deep copy of its
    # vocabulary took longer than the refit)
    features = artifacts.load(store, parent)["pipeline"].named_steps["features"]
    tokens, labels = train["tokens"].tolist(), train["label"].tolist()
    progress(0.3, f"refitting {config.describe()} on {len(train)} rows over version {parent.version}'s features")
    X = features.transform(tokens)
    folds = calibration_folds(labels)
    pipeline = Pipeline([("features", features),
                         ("clf", model_step(config, folds, _grades(model)).fit(X, np.asarray(labels)))])
    seen = {k: int(v) for k, v in train["source"].value_counts().items()}
    notes = {"selection": selection.reused(parent, "an incremental update keeps its parent's choice", "incremental"),
             "refit": {"rows": int(len(train)), "how": f"the classifier refitted on every training row over "
                                                       f"version {parent.version}'s fitted features "
                                                       f"({len(getattr(features, 'vocabulary_', {})):,} terms kept); "
                                                       f"no model selection"},
             "calibration": _calibration_record(pipeline, config, folds, labels)}
    return Fit(pipeline, config, prep, new, registry.INCREMENTAL, parent.version, seen,
               max(int(new["example_id"].max()), parent.max_example_id), notes)


def _partial_fit(pipeline, train: pd.DataFrame, config: ModelConfig) -> None:
    X = pipeline.named_steps["features"].transform(train["tokens"].tolist())
    y = np.asarray(train["label"].tolist())
    clf = incremental_core(pipeline)
    unseen = sorted(set(y) - set(clf.classes_))
    if unseen:
        raise TrainingError(f"the parent version never saw the label(s) {', '.join(unseen)}; "
                            f"an incremental update cannot add labels, run a full retrain")
    rng = np.random.RandomState(config.seed)
    for _ in range(config.epochs):
        order = rng.permutation(len(y))
        try:
            clf.partial_fit(X[order], y[order])
        except ValueError as e:  # an ordinal model's threshold that cannot start learning (ordinal.FrankHall)
            raise TrainingError(str(e)) from None


def _evaluate_and_register(store: Store, model: registry.Model, fit: Fit, user: str, activate: bool,
                           progress=_quiet) -> registry.Version:
    """Evaluate a fit on the model's test split, save its file and register it as the next version."""
    progress(0.75, "evaluating on the test split")
    test = _tokens(store, model.model_id, "test", fit.prep, model.labels)
    metrics = evaluate(fit.pipeline, test, model.labels, registry.is_ordinal(model)) if len(test) else {"note": "no test rows"}
    progress(0.9, "saving the model file")
    features = fit.pipeline.named_steps["features"]
    if hasattr(features, "vocabulary_"):  # numpy ints pickle one by one: 3x slower to save and load
        features.vocabulary_ = {term: int(i) for term, i in features.vocabulary_.items()}
    artifact = {"format": 1, "labels": model.labels, "tokenizer": Tokenizer(fit.prep), "pipeline": fit.pipeline}
    rel, digest = artifacts.save(store, model.model_id, artifact)
    data = {"rows": int(sum(fit.rows_by_source.values())), "rows_by_source": fit.rows_by_source,
            "new_rows": int(len(fit.train)), "fingerprint": _fingerprint(fit.train), "test_rows": int(len(test)),
            **(fit.notes or {})}
    fields = {"parent_version": fit.parent_version, "mode": fit.mode, "model_config": fit.config.to_dict(),
              "preprocess": fit.prep.to_dict(), "data": data, "metrics": metrics,
              "max_example_id": fit.max_example_id, "artifact": rel, "sha256": digest}
    try:
        version = _register(store, model.name, fields, user, activate)
    except Regression:
        raise  # registered and kept, only not activated: its file stays
    except BaseException:
        artifacts.remove(store, rel)
        raise
    progress(1.0, f"version {version.version} saved")
    return version


def _register(store: Store, name: str, fields: dict, user: str, activate: bool) -> registry.Version:
    """The new version, its audit event and, when asked or when it is the first, its activation (the
    promotion guard applies to both):
    one transaction, so a version is never left registered but half-activated. A version the
    promotion guard refuses is kept, not activated, and the refusal is raised after it is saved."""
    refused = None
    try:
        return _insert_version(store, name, fields, user, activate)
    except Regression as e:
        refused = e
    version = _insert_version(store, name, fields, user, activate=None)  # kept, not even as a first version
    raise Regression(f"version {version.version} was trained and kept but not activated: {refused}",
                     refused.regressions, version.version)


def _insert_version(store: Store, name: str, fields: dict, user: str, activate: bool | None) -> registry.Version:
    with store.transaction() as con:
        auth.require(con, user, "train")
        model = registry.find_model(con, name)  # read again: another version may have landed meanwhile
        number = db.next_version_number(con, model.model_id)
        db.insert_version(con, {"model_id": model.model_id, "version": number, **fields,
                                "created_at": db.now(), "created_by": user})
        db.add_event(con, user, "train", model.model_id,
                     {"version": number, "mode": fields["mode"], "parent": fields["parent_version"],
                      "rows": fields["data"]["rows"], "macro_f1": fields["metrics"].get("macro_f1")})
        if model.active_version is None and activate is not None:  # the guard's baseline still applies
            registry.activate_in(store, con, model, number, user, reason="first version")
        elif activate:
            registry.activate_in(store, con, model, number, user, reason="activated after training")
        return registry.find_version(con, registry.find_model(con, name), number)
