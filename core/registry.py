"""Models and versions: create and change models, read versions, and the one activation path.

Each operation validates, opens one transaction, loads or raises a named error, changes, and
returns a plain entity. Model files are `artifacts`' topic; activation checks a version's file
through it before switching.
"""
from __future__ import annotations

import json
import threading
import unicodedata
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import artifacts, auth, compare, ordinal, selection
from . import store as db
from .errors import ArtifactError, InvalidInput, ModelExists, ModelNotFound, Regression, VersionNotFound
from .estimators import ModelConfig, predict_proba
from .preprocess import PreprocessConfig
from .store import Store

TASKS = ("classification", "ordinal")  # ordinal: ordered grades, the label list is the order (lowest first)
CLASSIFICATION, ORDINAL = TASKS
SKIP, UNCLEAR = "skip", "unclear"
NOT_TRAINING_LABELS = (SKIP, UNCLEAR)  # a labeller's decisions that are kept but never trained on
ACTIVE, INACTIVE = "active", "inactive"
FULL, INCREMENTAL = "full", "incremental"


@dataclass(frozen=True)
class Model:
    model_id: int
    name: str
    description: str
    task: str
    labels: list[str]
    preprocess: dict
    model_config: dict
    active_version: int | None
    created_at: pd.Timestamp
    created_by: str


@dataclass(frozen=True)
class Version:
    model_id: int
    version: int
    parent_version: int | None
    mode: str
    model_config: dict
    preprocess: dict
    data: dict
    metrics: dict
    max_example_id: int
    artifact: str
    sha256: str
    created_at: pd.Timestamp
    created_by: str
    status: str = INACTIVE

    @property
    def headline(self) -> float | None:
        """The metric shown wherever a version needs one number: macro-F1 on the test split."""
        return self.metrics.get("macro_f1")


def _model(row: dict) -> Model:
    return Model(**{**row, "labels": list(row["labels"]), "preprocess": json.loads(row["preprocess"]),
                    "model_config": json.loads(row["model_config"])})


def _version(row: dict, active_version: int | None) -> Version:
    decoded = {k: json.loads(row[k]) for k in ("model_config", "preprocess", "data", "metrics")}
    status = ACTIVE if row["version"] == active_version else INACTIVE
    return Version(**{**row, **decoded, "status": status})


def find_model(con, name: str) -> Model:
    row = db.model_by_name(con, name)
    if row is None:
        names = [m["name"] for m in db.all_models(con)]
        known = f"; known models: {', '.join(names)}" if names else "; the store has no models yet"
        raise ModelNotFound(f"unknown model {name!r}{known}")
    return _model(row)


def find_version(con, model: Model, version: int) -> Version:
    row = db.version_row(con, model.model_id, int(version))
    if row is None:
        raise VersionNotFound(f"model {model.name!r} has no version {version}")
    return _version(row, model.active_version)


def is_ordinal(model) -> bool:
    """Whether a model's labels are ordered grades (its `labels` list is the order, lowest first)."""
    return getattr(model, "task", CLASSIFICATION) == ORDINAL


def validate_labels(labels, task: str = CLASSIFICATION) -> list[str]:
    """The label set (for an ordinal model: the grades, lowest first), or InvalidInput saying what is wrong."""
    if isinstance(labels, str):
        labels = labels.split(",")
    labels = [str(l).strip() for l in labels if str(l).strip()]
    if len(labels) < 2:
        raise InvalidInput("a model needs at least two labels, e.g. --labels 正面,负面")
    if len(set(labels)) != len(labels):
        raise InvalidInput(f"labels must be distinct: {', '.join(labels)}")
    reserved = set(labels) & set(NOT_TRAINING_LABELS)
    if reserved:
        raise InvalidInput(f"{', '.join(sorted(reserved))} is reserved for feedback and cannot be a label")
    if task == ORDINAL and len(labels) < ordinal.MIN_GRADES:
        raise InvalidInput(f"an ordinal model needs at least {ordinal.MIN_GRADES} grades, lowest first, e.g. "
                           f"--labels 低,中,高; {len(labels)} labels are a classification")
    return labels


def create_model(store: Store, name: str, labels, user: str, description: str = "",
                 task: str = "classification", preprocess: dict | None = None,
                 model_config: dict | None = None, examples: dict | None = None) -> Model:
    """Register a model with its label set and configs; it has no version until trained.

    `examples` ({split: validated frame}) are imported in the same transaction: a model is
    never left half-made."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("a model name must be 1 to 100 characters")
    if "/" in name or "\\" in name:
        raise InvalidInput("a model name cannot contain / or \\ (it is part of the API's URLs)")
    if not name.strip("."):  # "." and ".." mean other folders in a URL or a path
        raise InvalidInput("a model name cannot be only dots; use letters, digits or other visible characters")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise InvalidInput("a model name cannot contain control characters (NUL, tab, new line…); "
                           "use letters, digits, spaces or other visible characters")
    if task not in TASKS:
        raise InvalidInput(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    labels = validate_labels(labels, task)
    prep = PreprocessConfig.from_dict(preprocess).to_dict()
    config = ModelConfig.from_dict(model_config).to_dict()
    with store.transaction() as con:
        auth.require(con, user, "manage")
        if db.model_by_name(con, name) is not None:
            raise ModelExists(f"a model named {name!r} already exists")
        model_id = db.insert_model(con, name, description or "", task, labels, prep, config, user)
        db.add_event(con, user, "create_model", model_id, {"name": name, "labels": labels, "task": task})
        for split, frame in (examples or {}).items():
            import_id = db.new_import_id(con)
            db.insert_examples(con, model_id, frame, split, "import", user, import_id)
            db.add_event(con, user, "import", model_id, {"import_id": import_id, "split": split, "rows": len(frame)})
        return _model(db.model_by_name(con, name))


def get_model(store: Store, name: str) -> Model:
    with store.connect() as con:
        return find_model(con, name)


def list_models(store: Store) -> list[Model]:
    with store.connect() as con:
        return [_model(r) for r in db.all_models(con)]


def update_model(store: Store, name: str, user: str, description: str | None = None,
                 preprocess: dict | None = None, model_config: dict | None = None, labels=None) -> Model:
    """Change what the next version will be trained with (existing versions keep theirs).

    `labels` may only repeat the model's label set as it is: versions, labels given and metrics
    refer to it (an ordinal model's grade order above all), so a change is refused with a sentence."""
    fields = {}
    if description is not None:
        fields["description"] = description
    if preprocess is not None:
        fields["preprocess"] = PreprocessConfig.from_dict(preprocess).to_dict()
    if model_config is not None:
        fields["model_config"] = ModelConfig.from_dict(model_config).to_dict()
    with store.transaction() as con:
        auth.require(con, user, "manage")
        model = find_model(con, name)
        if labels is not None:
            check_same_labels(model, labels)
        db.update_model(con, model.model_id, **fields)
        db.add_event(con, user, "update_model", model.model_id, fields)
        return find_model(con, name)


def check_same_labels(model: Model, labels) -> None:
    """InvalidInput unless `labels` is the model's label set (for an ordinal model: in its order)."""
    given = [str(l).strip() for l in (labels.split(",") if isinstance(labels, str) else labels) if str(l).strip()]
    if given == model.labels:
        return
    if is_ordinal(model) and sorted(given) == sorted(model.labels):
        raise InvalidInput(f"the grade order of {model.name!r} is fixed at creation ({' < '.join(model.labels)}); "
                           f"create a new model for the order {' < '.join(given)}")
    raise InvalidInput(f"the labels of {model.name!r} are fixed at creation ({', '.join(model.labels)}); "
                       f"create a new model for the labels {', '.join(given)}")


def list_versions(store: Store, name: str) -> list[Version]:
    with store.connect() as con:
        model = find_model(con, name)
        return [_version(r, model.active_version) for r in db.version_rows(con, model.model_id)]


def get_version(store: Store, name: str, version: int | None = None) -> Version:
    """A version of the model; the active one when `version` is None."""
    with store.connect() as con:
        return resolve_version(con, find_model(con, name), version)


def resolve_version(con, model: Model, version: int | None = None) -> Version:
    """On an open connection: the given version of `model`, or its active one."""
    if version is None:
        if model.active_version is None:
            raise VersionNotFound(f"model {model.name!r} has no active version yet; train one first")
        version = model.active_version
    return find_version(con, model, version)


def versions_table(store: Store, name: str) -> pd.DataFrame:
    """One row per version, as the Versions page and `versions` command show it; an ordinal
    model's rows carry its ordinal figures too (ORDINAL_COLUMNS), a classification model's never."""
    graded = is_ordinal(get_model(store, name))
    rows = []
    for v in list_versions(store, name):
        rows.append({
            "version": v.version, "status": v.status, "mode": v.mode, "parent": v.parent_version,
            "estimator": v.model_config.get("estimator"), "selected": selection.chosen_how(v),
            "rows_seen": v.data.get("rows"),
            "accuracy": v.metrics.get("accuracy"), "macro_f1": v.metrics.get("macro_f1"),
            "log_loss": v.metrics.get("log_loss"), "ece": v.metrics.get("ece"),
            "created_at": v.created_at, "created_by": v.created_by,
            **({k: v.metrics.get("ordinal", {}).get(k) for k in ORDINAL_COLUMNS} if graded else {}),
        })
    columns = ["version", "status", "mode", "parent", "estimator", "selected", "rows_seen",
               "accuracy", "macro_f1", "log_loss", "ece", "created_at", "created_by"]
    if graded:
        columns[columns.index("accuracy"):columns.index("accuracy")] = list(ORDINAL_COLUMNS)
    return pd.DataFrame(rows, columns=columns)


ORDINAL_COLUMNS = ("mae", "qwk", "spearman", "within_one")  # an ordinal version's figures in the versions table


def models_overview(store: Store) -> pd.DataFrame:
    """Every model with its active version and that version's headline metric."""
    with store.connect() as con:
        rows = []
        for m in (_model(r) for r in db.all_models(con)):
            active = db.version_row(con, m.model_id, m.active_version) if m.active_version else None
            metrics = json.loads(active["metrics"]) if active else {}
            rows.append({"model": m.name, "description": m.description, "labels": ", ".join(m.labels),
                         "versions": db.next_version_number(con, m.model_id) - 1,
                         "active_version": m.active_version, "macro_f1": metrics.get("macro_f1"),
                         "accuracy": metrics.get("accuracy")})
    return pd.DataFrame(rows, columns=["model", "description", "labels", "versions", "active_version",
                                       "macro_f1", "accuracy"])


def activate_version(store: Store, name: str, version: int, user: str, reason: str = "",
                     force: bool = False) -> Version:
    """Make `version` the one that answers predictions; any earlier version may be reactivated.

    One transaction: the permission check, the version's model file checked against its sha256
    (a missing or altered file cannot be activated), the promotion guard, the switch and its audit
    event. Training's `activate` goes through the same `activate_in`."""
    with store.connect() as con:  # both versions' test answers before the transaction: it stays short
        auth.require(con, user, "activate")  # before the file is read: a refusal costs nothing
        model = find_model(con, name)
        target = find_version(con, model, version)
        artifacts.verify(store, target)
        judge(store, con, model, target.version)
    with store.transaction() as con:
        model = find_model(con, name)
        artifacts.verify(store, target)
        activate_in(store, con, model, target.version, user, reason, force)
        return find_version(con, find_model(con, name), target.version)


def activate_in(store: Store, con, model: Model, version: int, user: str, reason: str = "",
                force: bool = False) -> None:
    """The one writer of a model's active version, on an open transaction: a permission check,
    the promotion guard (`promotion_guard`), the switch, and one audit event {from_version,
    to_version, reason}, plus {forced: true, regressions: [...]} when the guard was overridden.

    Called by `activate_version` and by training's register step, so that a new version and its
    activation commit together."""
    auth.require(con, user, "activate")
    verdict = promotion_guard(store, con, model, int(version), reason, force)
    details = {"from_version": model.active_version, "to_version": int(version), "reason": reason}
    if verdict.refused:
        details.update(forced=True, regressions=[r.to_dict() for r in verdict.found])
    db.set_active_version(con, model.model_id, int(version))
    db.add_event(con, user, "activate", model.model_id, details)
    if store.serving is not None:  # a server's model lookups drop what they read before
        store.serving.activated()


# --- the promotion guard ------------------------------------------------------------------------
# A version goes active only if it beats the trivial answer on its test split (compare.baseline)
# and, against the active version, no figure fell significantly on the test rows both answer now
# (compare.regressions). Those answers come from the two model files, predicted here: the metrics
# kept at training time say how often each was right, not on which rows, and pairing is what
# tells a real fall from a few rows' noise.

_answers: dict[tuple[str, str], dict[int, str]] = {}  # (store, model file sha256) -> {example_id: answer}
_answers_lock = threading.Lock()


def test_answers(store: Store, con, model: Model, version: Version) -> pd.DataFrame:
    """The model's test rows as they are now (example_id, label, business_line) with `version`'s
    answer to each (`answer`: its most likely label), predicted from its model file. A file's
    answer to a text never changes, so answers are kept per file in this process and only test
    rows added since are predicted."""
    rows = db.examples_with_tokens(con, model.model_id, "test", "", -1, model.labels)  # no tokens: mostly known
    key = (store.key, version.sha256)
    with _answers_lock:
        known = dict(_answers.get(key, {}))
    todo_ids = rows.loc[~rows["example_id"].isin(known), "example_id"].tolist()
    if todo_ids:
        prep = PreprocessConfig.from_dict(version.preprocess)
        todo = db.examples_with_tokens(con, model.model_id, "test", prep.fingerprint(), -1, model.labels, todo_ids)
        artifact = artifacts.load(store, version)
        tokenizer = artifact["tokenizer"]
        missing = todo["tokens"].isna()  # not cached for this preprocessing: rows imported after training
        tokens = [tokenizer(text) if gap else list(t) for t, text, gap in zip(todo["tokens"], todo["text"], missing)]
        proba = predict_proba(artifact["pipeline"], tokens, model.labels)
        fresh = dict(zip(todo["example_id"].astype(int), np.asarray(model.labels, dtype=object)[proba.argmax(axis=1)]))
        known.update(fresh)
        with _answers_lock:
            _answers.setdefault(key, {}).update(fresh)
    frame = rows[["example_id", "label", "business_line"]].copy()
    frame["business_line"] = frame["business_line"].fillna("")
    frame["answer"] = frame["example_id"].map(known)
    return frame


def paired_answers(store: Store, con, model: Model, candidate: Version, base: Version) -> compare.Paired:
    """Both versions' answers on the same test rows (the model's test split as it is now: never
    trained on by either)."""
    new = test_answers(store, con, model, candidate)
    old = test_answers(store, con, model, base)
    both = new.merge(old[["example_id", "answer"]], on="example_id", suffixes=("", "_base"))
    return compare.Paired(both["label"].to_numpy(dtype=object), both["answer_base"].to_numpy(dtype=object),
                          both["answer"].to_numpy(dtype=object), both["business_line"].to_numpy(dtype=object),
                          tuple(model.labels), is_ordinal(model))


@dataclass(frozen=True)
class Verdict:
    """What the promotion guard says of activating `version`: the figures that fell significantly
    against the active version `base` (None: no other version is active), what it could not judge
    (`notes`), and how the version does against the trivial answer (`baseline`; None without test rows)."""
    version: int
    base: int | None
    regressions: list
    notes: list
    baseline: compare.Baseline | None

    @property
    def below_baseline(self) -> bool:
        return self.baseline is not None and not self.baseline.beaten

    @property
    def refused(self) -> bool:
        """Whether activating needs forcing with a reason."""
        return bool(self.regressions) or self.below_baseline

    @property
    def found(self) -> list[compare.Regression]:
        """What forcing overrides: the baseline not beaten (first), then each fall."""
        return ([self.baseline.as_regression()] if self.below_baseline else []) + list(self.regressions)

    def sentence(self) -> str:
        """Why activating is refused, in one sentence ("" when it is not)."""
        parts = [self.baseline.sentence()] if self.below_baseline else []
        if self.regressions:
            parts.append(compare.describe(self.regressions, self.version, self.base))
        return "; and ".join(parts)


def judge(store: Store, con, model: Model, version: int) -> Verdict:
    """The promotion guard's verdict on `version` of `model`, on an open connection."""
    target = find_version(con, model, version)
    base = model.active_version if model.active_version not in (None, int(version)) else None
    found, notes = [], []
    if base is not None:
        try:
            paired = paired_answers(store, con, model, target, find_version(con, model, base))
        except ArtifactError as e:  # the active version's file is gone: it cannot hold the new one back
            notes.append(f"not compared with version {base}: {e}")
        else:
            found, notes = compare.regressions(paired), compare.guard_notes(paired)
            if not paired.rows:
                notes.append(f"not compared with version {base}: the model has no test rows")
    return Verdict(int(version), base, found, notes, compare.baseline(target))


def guard_verdict(store: Store, name: str, version: int) -> Verdict:
    """`judge` on its own connection: what the Train and Versions pages show before activating."""
    with store.connect() as con:
        return judge(store, con, find_model(con, name), version)


def promotion_guard(store: Store, con, model: Model, version: int, reason: str, force: bool) -> Verdict:
    """The promotion guard: Regression for a version that does not beat the trivial answer on its
    test split or is significantly worse than the active one, unless forced; forcing needs a reason.

    A rollback to an earlier, worse version is judged the same way. Returns the verdict (what a
    forced activation overrode)."""
    verdict = judge(store, con, model, version)
    if verdict.refused and not force:
        raise Regression(verdict.sentence() + "; activate it anyway only by forcing it with a reason",
                         [r.to_dict() for r in verdict.found])
    if verdict.refused and not (reason or "").strip():
        why = (f"no better than always answering {verdict.baseline.answer}" if verdict.below_baseline
               else f"worse than active version {model.active_version}")
        raise InvalidInput(f"forcing version {version}, which is {why}, needs a reason for the activation history")
    return verdict


def comparison(store: Store, name: str, a: int, b: int) -> dict:
    """Version b beside version a as plain data (compare.comparison), with what the guard would
    find if b replaced a, from both versions' answers on the model's test rows."""
    with store.connect() as con:
        model = find_model(con, name)
        base, candidate = find_version(con, model, a), find_version(con, model, b)
        paired = paired_answers(store, con, model, candidate, base) if a != b else None
    return compare.comparison(candidate, base, paired)


def activation_history(store: Store, name: str) -> pd.DataFrame:
    with store.connect() as con:
        model = find_model(con, name)
        ev = db.events(con, model.model_id, action="activate")
    if ev.empty:
        return pd.DataFrame(columns=["at", "user", "from_version", "to_version", "reason"])
    details = ev["details"].map(json.loads)
    return pd.DataFrame({"at": ev["at"], "user": ev["user"],
                         "from_version": details.map(lambda d: d.get("from_version")),
                         "to_version": details.map(lambda d: d.get("to_version")),
                         "reason": details.map(lambda d: d.get("reason", ""))})


def events_table(store: Store, name: str | None = None, limit: int = 1000) -> pd.DataFrame:
    """The audit log, newest first (all models, or one)."""
    with store.connect() as con:
        model_id = find_model(con, name).model_id if name else None
        return db.events(con, model_id, limit=limit)


def store_revision(store: Store) -> tuple:
    """A cheap token that changes with every write: pages key their caches on it."""
    with store.connect() as con:
        return db.revision(con)


# --- versions as experiments: a note and tags on each version ---------------------------------

MAX_NOTE, MAX_TAG, MAX_TAGS = 2000, 40, 20


@dataclass(frozen=True)
class Annotation:
    """What people wrote about a version: a free note and short tags ("baseline", "hotel-fix")."""
    version: int
    note: str = ""
    tags: tuple[str, ...] = ()
    updated_at: pd.Timestamp | None = None
    updated_by: str = ""


def clean_tags(tags) -> list[str]:
    """Tags as stored: trimmed, distinct, in the order given; a tag is one short word or phrase."""
    out = []
    for tag in tags or []:
        tag = " ".join(str(tag).split())
        if not tag:
            continue
        if len(tag) > MAX_TAG or "," in tag or any(unicodedata.category(ch) == "Cc" for ch in tag):
            raise InvalidInput(f"a tag is 1 to {MAX_TAG} characters without commas or control characters, "
                               f"not {tag[:60]!r}")
        if tag not in out:
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise InvalidInput(f"a version takes at most {MAX_TAGS} tags, not {len(out)}")
    return out


def version_annotations(store: Store, name: str) -> dict[int, Annotation]:
    """Each version's current note and tags (versions nobody annotated are left out)."""
    with store.connect() as con:
        model = find_model(con, name)
        return {r["version"]: Annotation(r["version"], r["note"], tuple(r["tags"]), r["updated_at"], r["updated_by"])
                for r in db.version_notes(con, model.model_id)}


def annotate_version(store: Store, name: str, version: int, user: str, note: str | None = None,
                     tags=None, add_tags=(), remove_tags=()) -> Annotation:
    """The one writer of a version's note and tags (owners): `note` and `tags` replace what is
    there, None keeps it; `add_tags` and `remove_tags` change the tags in the same transaction."""
    if note is not None and len(note) > MAX_NOTE:
        raise InvalidInput(f"a note is at most {MAX_NOTE} characters, not {len(note)}")
    with store.transaction() as con:
        auth.require(con, user, "manage")
        model = find_model(con, name)
        find_version(con, model, version)
        current = next((r for r in db.version_notes(con, model.model_id) if r["version"] == int(version)), None)
        new_note = (note if note is not None else current["note"] if current else "").strip()
        removed = set(clean_tags(remove_tags))
        new_tags = [t for t in clean_tags([*(tags if tags is not None else current["tags"] if current else []),
                                           *clean_tags(add_tags)]) if t not in removed]
        db.insert_version_note(con, model.model_id, int(version), new_note, new_tags, user)
        db.add_event(con, user, "annotate_version", model.model_id,
                     {"version": int(version), "note": new_note, "tags": new_tags})
    return version_annotations(store, name)[int(version)]


# --- which model a user's dashboard opens on ---------------------------------------------------

def remember_model(store: Store, user: str, name: str) -> None:
    """Record that `user` chose model `name`, so their next session opens on it."""
    with store.transaction() as con:
        db.insert_last_model(con, user, find_model(con, name).model_id)


def opening_model(store: Store, user: str | None) -> str | None:
    """The model a session opens on: the user's last one, else the one with traffic, else the first."""
    with store.connect() as con:
        chosen = (db.last_model_name(con, user) if user else None) or db.busiest_model_name(con)
        if chosen is None:
            models = db.all_models(con)
            chosen = models[0]["name"] if models else None
        return chosen
