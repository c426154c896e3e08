"""Training: a model config builds a scikit-learn Pipeline over jieba tokens; full or incremental.

The pipeline's input is a list of tokens per text (from `preprocess.Tokenizer`), so stored
examples are tokenised once per preprocessing config and cached in the store.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from . import auth, registry
from . import store as db
from .errors import TrainingError
from .estimators import ESTIMATORS, ModelConfig, build_pipeline
# Model files written before estimators.py existed pickled the analyzer as core.train.TokenNgrams.
from .estimators import TokenNgrams  # noqa: F401
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


def _tokens(store: Store, model_id: int, split: str, prep: PreprocessConfig, labels, after=-1,
            progress=None) -> pd.DataFrame:
    """Examples of a split with their tokens; tokenises and caches only the ones not cached yet."""
    key = prep.fingerprint()
    with store.connect() as con:
        frame = db.examples_with_tokens(con, model_id, split, key, after, labels)
    missing = frame["tokens"].isna()
    if missing.any():
        if progress:
            progress(0.1, f"tokenising {int(missing.sum())} {split} texts")
        tokenizer = Tokenizer(prep)
        fresh = frame.loc[missing, ["example_id"]].copy()
        fresh["tokens"] = tokenizer.cut_many(frame.loc[missing, "text"])
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
    model = registry.get_model(store, name)
    active = registry.get_version(store, name) if model.active_version else None
    with store.connect() as con:
        summary = db.example_summary(con, model.model_id)
        new = db.examples_since(con, model.model_id, active.max_example_id if active else -1)
    train_rows = summary[summary["split"] == "train"].groupby("source")["rows"].sum().to_dict()
    if active is None:
        possible, reason = False, "no active version to update yet"
    elif not ModelConfig.from_dict(active.model_config).incremental:
        possible, reason = False, f"the active version uses {active.model_config['estimator']}, which cannot learn incrementally"
    elif not new:
        possible, reason = False, f"no new labels since version {active.version}"
    else:
        possible, reason = True, f"{sum(new.values())} new labels since version {active.version}"
    return TrainingPlan({k: int(v) for k, v in train_rows.items()}, {k: int(v) for k, v in new.items()},
                        model.active_version, possible, reason)


def train_version(store: Store, name: str, user: str, incremental: bool = False,
                  model_config: dict | None = None, preprocess: dict | None = None,
                  activate: bool = False, progress=None) -> registry.Version:
    """Train and register a new version; the model's first version becomes active by itself.

    Full: every training example (imported and feedback) with the model's (or given) config.
    Incremental: the active version's SGD model, updated with `partial_fit` on the labels added
    since that version only; refused for configs that cannot learn incrementally."""
    progress = progress or (lambda fraction, message: None)
    auth.check(store, user, "train")
    model = registry.get_model(store, name)
    labels = model.labels
    if incremental:
        parent = registry.get_version(store, name)  # the active one
        config = ModelConfig.from_dict(parent.model_config)
        if model_config:
            raise TrainingError("an incremental update keeps the parent's config; use a full retrain to change it")
        if not config.incremental:
            raise TrainingError(f"version {parent.version} uses {config.estimator}, which cannot learn "
                                f"incrementally; run a full retrain, or choose the sgd estimator")
        prep = PreprocessConfig.from_dict(parent.preprocess)
        progress(0.05, "loading the new labels")
        train = _tokens(store, model.model_id, "train", prep, labels, parent.max_example_id, progress)
        if train.empty:
            raise TrainingError(f"no new labels since version {parent.version}; nothing to learn")
        pipeline = copy.deepcopy(registry.load_artifact(store, parent)["pipeline"])
        progress(0.4, f"updating on {len(train)} new labels")
        _partial_fit(pipeline, train, labels, config)
        parent_version, mode = parent.version, registry.INCREMENTAL
        seen = dict(parent.data.get("rows_by_source", {}))
        for source, n in train["source"].value_counts().items():
            seen[source] = seen.get(source, 0) + int(n)
    else:
        config = ModelConfig.from_dict(model_config if model_config is not None else model.model_config)
        prep = PreprocessConfig.from_dict(preprocess if preprocess is not None else model.preprocess)
        progress(0.05, "loading training examples")
        train = _tokens(store, model.model_id, "train", prep, labels, progress=progress)
        classes = sorted(set(train["label"]))
        if not classes:
            raise TrainingError(f"training needs examples of at least two labels; model {name!r} has no "
                                f"training rows yet (import some with --split train)")
        if len(classes) < 2:
            raise TrainingError(f"training needs examples of at least two labels; the training split has "
                                f"{len(train)} rows, all {classes[0]}")
        progress(0.4, f"fitting {config.estimator} on {len(train)} examples")
        pipeline = build_pipeline(config)
        pipeline.fit(train["tokens"].tolist(), train["label"].tolist())
        parent_version, mode = model.active_version, registry.FULL
        seen = {k: int(v) for k, v in train["source"].value_counts().items()}

    from .metrics import evaluate

    progress(0.75, "evaluating on the test split")
    test = _tokens(store, model.model_id, "test", prep, labels)
    metrics = evaluate(pipeline, test, labels) if len(test) else {"note": "no test rows"}
    progress(0.9, "saving the model file")
    max_seen = int(train["example_id"].max()) if len(train) else -1
    if mode == registry.INCREMENTAL:
        max_seen = max(max_seen, parent.max_example_id)
    data = {"rows": int(sum(seen.values())), "rows_by_source": seen, "new_rows": int(len(train)),
            "fingerprint": _fingerprint(train), "test_rows": int(len(test))}
    features = pipeline.named_steps["features"]
    if hasattr(features, "vocabulary_"):  # numpy ints pickle one by one: 3x slower to save and load
        features.vocabulary_ = {term: int(i) for term, i in features.vocabulary_.items()}
    artifact = {"format": 1, "labels": labels, "tokenizer": Tokenizer(prep), "pipeline": pipeline}
    rel, digest = registry.save_artifact(store, model.model_id, artifact)
    try:
        version = _register(store, model, {
            "parent_version": parent_version, "mode": mode, "model_config": config.to_dict(),
            "preprocess": prep.to_dict(), "data": data, "metrics": metrics, "max_example_id": max_seen,
            "artifact": rel, "sha256": digest}, user, activate)
    except BaseException:
        (store.path.parent / rel).unlink(missing_ok=True)
        raise
    progress(1.0, f"version {version.version} saved")
    return version


def _partial_fit(pipeline, train: pd.DataFrame, labels: list[str], config: ModelConfig) -> None:
    X = pipeline.named_steps["features"].transform(train["tokens"].tolist())
    y = np.asarray(train["label"].tolist())
    clf = pipeline.named_steps["clf"]
    unseen = sorted(set(y) - set(clf.classes_))
    if unseen:
        raise TrainingError(f"the parent version never saw the label(s) {', '.join(unseen)}; "
                            f"an incremental update cannot add labels, run a full retrain")
    rng = np.random.RandomState(config.seed)
    for _ in range(config.epochs):
        order = rng.permutation(len(y))
        clf.partial_fit(X[order], y[order])


def _register(store: Store, model: registry.Model, fields: dict, user: str, activate: bool) -> registry.Version:
    with store.transaction() as con:
        auth.require(con, user, "train")
        number = db.next_version_number(con, model.model_id)
        db.insert_version(con, {"model_id": model.model_id, "version": number, **fields,
                                "created_at": db.now(), "created_by": user})
        db.add_event(con, user, "train", model.model_id,
                     {"version": number, "mode": fields["mode"], "parent": fields["parent_version"],
                      "rows": fields["data"]["rows"], "macro_f1": fields["metrics"].get("macro_f1")})
        current = db.model_by_name(con, model.name)["active_version"]
        if activate or current is None:
            db.set_active_version(con, model.model_id, number)
            db.add_event(con, user, "activate", model.model_id,
                         {"from_version": current, "to_version": number,
                          "reason": "first version" if current is None else "activated after training"})
    return registry.get_version(store, model.name, number)
