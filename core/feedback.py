"""Labels given to predictions: they become training examples (source `feedback`) for the next
retrain; `skip` and `unclear` are kept but never trained on. Also the Label page's skips (no
label: the item comes back later) and each model's labelling guidelines."""
from __future__ import annotations

import pandas as pd

from . import agreement, auth, registry
from . import store as db
from .errors import InvalidInput
from .files import display_name, read_table
from .ids import LARGEST_ID
from .registry import NOT_TRAINING_LABELS, SKIP
from .store import Store


def _prediction_ids(values: pd.Series, filename: str) -> pd.Series:
    """Ids as written: whole numbers only, never rounded (5.7 or 1e1 is refused, not read as 5 or 10)."""
    text = values.astype(str).str.strip()
    whole = text.str.fullmatch(r"[0-9]+")
    if not whole.all():
        row = int((~whole).idxmax())
        raise InvalidInput(f"{filename}: prediction_id {text[row]!r} is not a number in row {row + 2}: ids are "
                           f"whole numbers, written as such")
    ids = text.map(int)
    too_large = ids > LARGEST_ID
    if too_large.any():
        row = int(too_large.idxmax())
        raise InvalidInput(f"{filename}: prediction_id {text[row]} in row {row + 2} is too large to be an id")
    return ids.astype("int64")


def record_labels(store: Store, name: str, labels: pd.DataFrame, user: str, batch_id: int | None = None,
                  filename: str = "labels") -> list[int]:
    """Record (prediction_id, label) rows in one transaction; returns the feedback ids.

    Refused as a whole if a prediction is unknown, already labelled, or a label is not one of the
    model's labels, skip or unclear."""
    frame = labels.copy()
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    for col in ("prediction_id", "label"):
        if col not in frame:
            raise InvalidInput(f"{filename}: no {col} column")
    if frame.empty:
        raise InvalidInput(f"{filename}: no labels to record")
    frame = frame.reset_index(drop=True)
    frame["prediction_id"] = _prediction_ids(frame["prediction_id"], filename)
    frame["label"] = frame["label"].astype(str).str.strip()
    if "comment" in frame:  # a reason beside the decision, kept with it (the Review page shows it)
        frame["comment"] = [comment_text(c, f"{filename}: row {row + 2}: ") for row, c in enumerate(frame["comment"])]
    duplicated = frame["prediction_id"].duplicated()
    if duplicated.any():
        row = int(duplicated.idxmax()) + 2
        raise InvalidInput(f"{filename}: prediction {frame.loc[row - 2, 'prediction_id']} appears twice (row {row})")
    with store.transaction() as con:
        auth.require(con, user, "label")
        model = registry.find_model(con, name)
        allowed = set(model.labels) | set(NOT_TRAINING_LABELS)
        bad = ~frame["label"].isin(allowed)
        if bad.any():
            row = int(bad.idxmax()) + 2
            raise InvalidInput(f"{filename}: label {frame.loc[row - 2, 'label']!r} in row {row} is not one of "
                               f"{', '.join(model.labels)}, skip or unclear")
        known = db.predictions_by_id(con, model.model_id, frame["prediction_id"].tolist())
        merged = frame.merge(known[["prediction_id", "text_key", "feedback_label"]], how="left",
                             on="prediction_id")
        unknown = merged["text_key"].isna()
        if unknown.any():
            row = int(unknown.idxmax()) + 2
            raise InvalidInput(f"{filename}: no prediction {merged.loc[row - 2, 'prediction_id']} for model "
                               f"{name!r} (row {row})")
        # a labelled item in the overlap share, labelled by someone else: this is its second label
        again = merged["prediction_id"].isin(agreement.open_for_second_label(con, model, merged["prediction_id"], user))
        done = merged["feedback_label"].notna() & ~again
        if done.any():
            row = int(done.idxmax()) + 2
            raise InvalidInput(f"{filename}: prediction {merged.loc[row - 2, 'prediction_id']} is already "
                               f"labelled (row {row})")
        merged["text_key"] = merged["text_key"].astype("uint64")
        ids = pd.Series(0, index=merged.index, dtype="int64")
        if (~again).any():
            ids[~again] = db.insert_feedback(con, model.model_id, merged[~again], user, batch_id,
                                             list(NOT_TRAINING_LABELS))
        if again.any():
            ids[again] = db.insert_second_labels(con, model.model_id, merged[again], user, batch_id)
        feedback_ids = ids.tolist()
        for row in merged[merged["comment"].notna()].itertuples() if "comment" in merged else ():
            db.insert_comment(con, model.model_id, row.prediction_id, row.label, row.comment, user)
        db.add_event(con, user, "label", model.model_id,
                     {"rows": len(merged), "batch_id": batch_id,
                      "labels": merged["label"].value_counts().to_dict()})
    return feedback_ids


def record_labels_file(store: Store, name: str, source, user: str, filename: str | None = None) -> list[int]:
    filename = display_name(source, filename)
    return record_labels(store, name, read_table(source, filename), user, filename=filename)


def label_prediction(store: Store, name: str, prediction_id: int, label: str, user: str,
                     batch_id: int | None = None, comment: str | None = None) -> int:
    """One decision from the Label page or the API, with the labeller's comment if any; returns its
    feedback id (for undo)."""
    frame = pd.DataFrame({"prediction_id": [prediction_id], "label": [label], "comment": [comment]})
    return record_labels(store, name, frame, user, batch_id, filename="label")[0]


def undo_labels(store: Store, name: str, feedback_ids: list[int], user: str) -> None:
    """Take labels back (the Label page's undo): the feedback and its training examples go."""
    with store.transaction() as con:
        auth.require(con, user, "label")
        model = registry.find_model(con, name)
        rows = db.feedback_rows(con, feedback_ids)
        if rows.empty or (rows["model_id"] != model.model_id).any():
            raise InvalidInput("nothing to undo: those labels no longer exist")
        judged = db.relabelled(con, feedback_ids)
        if judged:
            raise InvalidInput(f"prediction {judged[0]} has been labelled again or reviewed since: its label "
                               f"is now the review's to decide (Review page)")
        db.delete_second_labels(con, feedback_ids)
        db.delete_feedback(con, feedback_ids)
        for row in rows.itertuples():
            db.delete_comment(con, model.model_id, row.prediction_id, row.label, row.created_by)
        db.add_event(con, user, "undo_label", model.model_id,
                     {"feedback_ids": list(map(int, feedback_ids)),
                      "prediction_ids": rows["prediction_id"].astype(int).tolist()})


def skip_prediction(store: Store, name: str, prediction_id: int, user: str, batch_id: int | None = None,
                    comment: str | None = None) -> None:
    """The Label page's skip: no label, so the item stays in the queue (behind the items not
    skipped, see skipped); the skip, and the labeller's comment if any, are kept for the counters,
    the Review page and an undo."""
    comment = comment_text(comment)
    with store.transaction() as con:
        auth.require(con, user, "label")
        model = registry.find_model(con, name)
        if db.predictions_by_id(con, model.model_id, [int(prediction_id)]).empty:
            raise InvalidInput(f"no prediction {prediction_id} for model {name!r}")
        db.insert_skip(con, model.model_id, int(prediction_id), user, batch_id)
        if comment:
            db.insert_comment(con, model.model_id, int(prediction_id), SKIP, comment, user)


def undo_skip(store: Store, name: str, prediction_id: int, user: str) -> None:
    """Take back `user`'s last skip of the prediction."""
    with store.transaction() as con:
        auth.require(con, user, "label")
        model = registry.find_model(con, name)
        if not db.delete_skip(con, model.model_id, int(prediction_id), user):
            raise InvalidInput("nothing to undo: that skip no longer exists")
        db.delete_comment(con, model.model_id, int(prediction_id), SKIP, user)


def skipped(store: Store, name: str, user: str, prediction_ids) -> set[int]:
    """Which of these predictions `user` has skipped: the Label page puts them at the end of a batch."""
    with store.connect() as con:
        model = registry.find_model(con, name)
        return db.skipped_predictions(con, model.model_id, user, list(prediction_ids))


def labelled_counts(store: Store, name: str, user: str | None = None, since=None) -> dict[str, int]:
    """Decisions (per label, skip and unclear included; skips from the Label page's skip key
    counted under skip too), by one user and since a time if given."""
    with store.connect() as con:
        model = registry.find_model(con, name)
        counts = db.feedback_counts(con, model.model_id, user, since)
        skips = db.skip_count(con, model.model_id, user, since)
    if skips:
        counts[SKIP] = counts.get(SKIP, 0) + skips
    return counts


def labelled_today(store: Store, name: str, user: str) -> dict[str, int]:
    """Labels `user` gave since midnight (local time, as the store keeps it), per label."""
    return labelled_counts(store, name, user=user, since=pd.Timestamp.now().normalize())


def label_history(store: Store, name: str, prediction_id: int) -> tuple[str, pd.DataFrame]:
    """One item's full history, oldest first: who predicted it with which version, who gave which
    label (first and second), skips, undone labels and the review's decision.

    Returns (the item's text, a frame with at, user, step, label, detail); InvalidInput when the
    model has no such prediction."""
    with store.connect() as con:
        model = registry.find_model(con, name)
        known = db.predictions_by_id(con, model.model_id, [int(prediction_id)])
        if known.empty:
            raise InvalidInput(f"no prediction {prediction_id} for model {name!r}")
        history = db.label_history(con, model.model_id, int(prediction_id))
    return str(known["text"].iloc[0]), history


GUIDELINES_MAX_CHARS = 20_000


def set_guidelines(store: Store, name: str, text: str, user: str) -> None:
    """An owner's labelling guidelines for the model (markdown); the newest wins, earlier ones are kept."""
    text = str(text).strip()
    if len(text) > GUIDELINES_MAX_CHARS:
        raise InvalidInput(f"guidelines are {len(text):,} characters; at most {GUIDELINES_MAX_CHARS:,} fit")
    with store.transaction() as con:
        auth.require(con, user, "manage")
        model = registry.find_model(con, name)
        db.insert_guidelines(con, model.model_id, text, user)
        db.add_event(con, user, "guidelines", model.model_id, {"chars": len(text)})


def guidelines(store: Store, name: str) -> str:
    """The model's labelling guidelines (markdown), or "" when no owner has written any."""
    with store.connect() as con:
        model = registry.find_model(con, name)
        row = db.latest_guidelines(con, model.model_id)
    return row["text"] if row else ""


COMMENT_MAX_CHARS = 500


def comment_text(comment, where: str = "") -> str | None:
    """A decision's comment as stored: None when blank, a sentence when it is too long."""
    if comment is None or (not isinstance(comment, str) and pd.isna(comment)):
        return None
    text = str(comment).strip()
    if len(text) > COMMENT_MAX_CHARS:
        raise InvalidInput(f"{where}the comment has {len(text)} characters; at most {COMMENT_MAX_CHARS} are kept")
    return text or None


def comments(store: Store, name: str, prediction_ids) -> pd.DataFrame:
    """The labellers' comments on these predictions' decisions (prediction_id, decision, comment,
    created_by, created_at), oldest first."""
    with store.connect() as con:
        model = registry.find_model(con, name)
        return db.decision_comments(con, model.model_id, list(prediction_ids))
