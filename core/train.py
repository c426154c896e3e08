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
    frame = _read(store, model_id, split, prep, labels, after, ids)
    fresh = _tokenise([frame], prep, progress)
    if not fresh.empty:
        with store.transaction() as con:
            db.insert_tokens(con, prep.fingerprint(), fresh)
    return frame


def _read(store: Store, model_id: int, split: str, prep: PreprocessConfig, labels, after=-1,
          ids: list[int] | None = None) -> pd.DataFrame:
    """Examples of a split with their cached tokens, None where none are cached yet."""
    with store.connect() as con:
        return db.examples_with_tokens(con, model_id, split, prep.fingerprint(), after, labels, ids)


def _tokenise(frames: list[pd.DataFrame], prep: PreprocessConfig, progress=_quiet) -> pd.DataFrame:
    """Fill in the frames' missing tokens (each text tokenised once, whichever frames hold it) and
    turn every token array into a list; the fresh tokens (example_id, tokens), to be cached."""
    missing = pd.concat([f.loc[f["tokens"].isna(), ["example_id", "text"]] for f in frames]
                        ).drop_duplicates("example_id")
    fresh = missing[["example_id"]].copy()
    if len(missing):
        progress(0.1, f"tokenising {len(missing)} texts")
        fresh["tokens"] = Tokenizer(prep).cut_many(missing["text"])
        cut = dict(zip(fresh["example_id"], fresh["tokens"]))
        for frame in frames:
            gaps = frame["tokens"].isna()
            frame.loc[gaps, "tokens"] = frame.loc[gaps, "example_id"].map(cut)
    else:
        fresh["tokens"] = pd.Series(dtype=object)
    for frame in frames:
        frame["tokens"] = frame["tokens"].map(list)
    return fresh


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
    for configs that cannot learn incrementally.

    Three steps, which a server splits across processes (core.policy): `prepare` reads the store,
    `fit_job` fits, evaluates and saves the model file (no store opened), `finish` registers."""
    progress = progress or _quiet
    progress(0.05, "loading the examples")
    job = prepare(store, name, user, incremental, model_config, preprocess, budget, reselect)
    return finish(store, user, job, fit_job(job, progress), activate, progress)


@dataclass(frozen=True)
class Job:
    """One fit's inputs read from the store (versions, configs, rows): plain data that a worker
    process takes, since only the server's process may open an embedded store. Tokens are None
    where none are cached yet: the fit tokenises those and hands them back to be cached."""
    store: Store                  # names where the model file goes; the fit never opens the store
    model: registry.Model
    mode: str                     # full | incremental
    config: ModelConfig
    prep: PreprocessConfig
    frames: dict                  # train (every training row), new and replay (an update's), test
    parent: registry.Version | None = None   # the version an update starts from
    active: registry.Version | None = None   # a full fit's incumbent for selection, or the choice a refit keeps
    budget: float | None = None
    reselect: bool | None = None


@dataclass(frozen=True)
class Fitted:
    """What a fit hands back to register: the version's fields (its model file saved) and the tokens
    it computed, to be cached."""
    fields: dict
    tokens: pd.DataFrame          # example_id, tokens


def prepare(store: Store, name: str, user: str, incremental: bool = False, model_config: dict | None = None,
            preprocess: dict | None = None, budget: float | None = None, reselect: bool | None = None) -> Job:
    """Everything a fit needs, read from the store and checked (refused before any expensive work)."""
    with store.connect() as con:
        auth.require(con, user, "train")
        model = registry.find_model(con, name)
        parent = registry.resolve_version(con, model) if incremental else None
        active = registry.resolve_version(con, model) if model.active_version else None
    if incremental:
        if model_config:
            raise TrainingError("an incremental update keeps the parent's config; use a full retrain to change it")
        if reselect:
            raise TrainingError("an incremental update keeps its parent's selection; use a full retrain to re-select")
        config, prep = ModelConfig.from_dict(parent.model_config), PreprocessConfig.from_dict(parent.preprocess)
        if not updatable(model, config):
            raise TrainingError(f"version {parent.version} uses {config.estimator}, which cannot learn "
                                f"incrementally; run a full retrain, or choose the sgd estimator (or auto)")
        frames = {"new": _read(store, model.model_id, "train", prep, model.labels, parent.max_example_id)}
        if frames["new"].empty:
            raise TrainingError(f"no new labels since version {parent.version}; nothing to learn")
        if config.incremental:  # the replay sample's ids first: only those rows are read
            with store.connect() as con:
                ids = db.sample_example_ids(con, model.model_id, "train", parent.max_example_id,
                                            max(REPLAY_MIN, REPLAY_RATIO * len(frames["new"])), config.seed,
                                            model.labels)
            frames["replay"] = _read(store, model.model_id, "train", prep, model.labels, ids=ids)
        else:
            frames["train"] = _read(store, model.model_id, "train", prep, model.labels)
    else:
        config = ModelConfig.from_dict(model_config if model_config is not None else model.model_config)
        if reselect and config.pinned:
            raise TrainingError(f"there is nothing to re-select: the config names its estimator ({config.estimator}); "
                                f"set the estimator to auto for model selection")
        prep = PreprocessConfig.from_dict(preprocess if preprocess is not None else model.preprocess)
        frames = {"train": _read(store, model.model_id, "train", prep, model.labels)}
    frames["test"] = _read(store, model.model_id, "test", prep, model.labels)
    return Job(store, model, registry.INCREMENTAL if incremental else registry.FULL, config, prep, frames, parent,
               active, budget, reselect)


def fit_job(job: Job, progress=_quiet) -> Fitted:
    """A job's fit, its evaluation on the test split and its saved model file, touching no store:
    what runs in a worker process. `progress(fraction, message)` as train_version's."""
    fresh = _tokenise(list(job.frames.values()), job.prep, progress)
    if job.mode == registry.FULL:
        fit = _fit_full_on(job.frames["train"], job.model, job.config, job.prep, job.active, progress, job.budget,
                           job.reselect)
    elif job.config.incremental:
        fit = _fit_incremental_on(job.frames["new"], job.frames["replay"], job.store, job.model, job.parent, progress)
    else:
        fit = _refit_kept_on(job.frames["new"], job.frames["train"], job.store, job.model, job.parent, progress)
    return Fitted(_evaluate_and_save(job.store, job.model, fit, job.frames["test"], progress), fresh)


def finish(store: Store, user: str, job: Job, fitted: Fitted, activate: bool = False,
           progress=_quiet) -> registry.Version:
    """Cache the fit's fresh tokens and register its version (train_version's last step, in the
    process that holds the store); the model file goes if the registration fails."""
    with store.transaction() as con:
        db.insert_tokens(con, job.prep.fingerprint(), fitted.tokens)
    try:
        version = _register(store, job.model.name, fitted.fields, user, activate)
    except Regression:
        raise  # registered and kept, only not activated: its file stays
    except BaseException:
        artifacts.remove(store, fitted.fields["artifact"])
        raise
    progress(1.0, f"version {version.version} saved")
    return version


def fit_full(store: Store, model: registry.Model, config: ModelConfig, prep: PreprocessConfig,
             progress=_quiet, budget: float | None = None, reselect: bool | None = None) -> Fit:
    """A new pipeline fitted on every training example of the model (its config chosen first when
    "auto", or with `reselect` False the active version's choice kept)."""
    progress(0.05, "loading training examples")
    train = _tokens(store, model.model_id, "train", prep, model.labels, progress=progress)
    active = registry.get_version(store, model.name) if model.active_version and not config.pinned else None
    return _fit_full_on(train, model, config, prep, active, progress, budget, reselect)


def _fit_full_on(train: pd.DataFrame, model: registry.Model, config: ModelConfig, prep: PreprocessConfig,
                 active: registry.Version | None, progress=_quiet, budget: float | None = None,
                 reselect: bool | None = None) -> Fit:
    """fit_full on rows with their tokens; `active`: the model's active version, if any."""
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
    return _fit_incremental_on(train, replay, store, model, parent, progress)


def _fit_incremental_on(train: pd.DataFrame, replay: pd.DataFrame, store: Store, model: registry.Model,
                        parent: registry.Version, progress=_quiet) -> Fit:
    """fit_incremental on the new rows and the replay sample, with their tokens (`store`: only to
    find the parent's model file)."""
    config, prep = ModelConfig.from_dict(parent.model_config), PreprocessConfig.from_dict(parent.preprocess)
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
    prep = PreprocessConfig.from_dict(parent.preprocess)
    progress(0.05, "loading the new labels")
    new = _tokens(store, model.model_id, "train", prep, model.labels, parent.max_example_id, progress)
    if new.empty:
        raise TrainingError(f"no new labels since version {parent.version}; nothing to learn")
    train = _tokens(store, model.model_id, "train", prep, model.labels, progress=progress)
    return _refit_kept_on(new, train, store, model, parent, progress)


def _refit_kept_on(new: pd.DataFrame, train: pd.DataFrame, store: Store, model: registry.Model,
                   parent: registry.Version, progress=_quiet) -> Fit:
    """refit_kept_features on the new and every training row, with their tokens (`store`: only to
    find the parent's model file)."""
    config, prep = ModelConfig.from_dict(parent.model_config), PreprocessConfig.from_dict(parent.preprocess)
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


def _evaluate_and_save(store: Store, model: registry.Model, fit: Fit, test: pd.DataFrame,
                       progress=_quiet) -> dict:
    """Evaluate a fit on the test rows (with tokens) and save its model file: the version's fields."""
    progress(0.75, "evaluating on the test split")
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
    return {"parent_version": fit.parent_version, "mode": fit.mode, "model_config": fit.config.to_dict(),
            "preprocess": fit.prep.to_dict(), "data": data, "metrics": metrics,
            "max_example_id": fit.max_example_id, "artifact": rel, "sha256": digest}


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
