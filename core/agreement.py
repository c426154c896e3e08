"""Labelling as a team: overlap (a share of labelled items labelled again, blind, by a second
labeller), agreement between labellers (Cohen's kappa and raw agreement), the review queue where
an owner decides disagreements and unclear items, and per-labeller figures.

A person is a labeller or owner of the store (in open mode any name), never the demo builder:
overlap items are items another person labelled, and agreement pairs persons only. "Unclear" is
its own outcome: an item one of two persons found unclear waits for review as unclear, and is
counted apart, never as a disagreement or against kappa.

Only decided labels are trained on and counted: agreed, single-labelled, or decided by review
(the store keeps undecided disagreements out of training reads and the label rollups)."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import auth, registry, settings
from . import store as db
from .errors import InvalidInput
from .registry import NOT_TRAINING_LABELS, Model
from .store import Store

SKIP, UNCLEAR = NOT_TRAINING_LABELS
DISCARD = SKIP  # an owner's decision that an item is not trained on at all
ACTIVE_GAP = pd.Timedelta(minutes=5)  # a longer pause between two decisions is a break, not work


# --- overlap -------------------------------------------------------------------------------

def set_overlap_share(store: Store, name: str, share: float, user: str) -> None:
    """The share of labelled items a second labeller labels again (0 turns overlap off)."""
    try:
        share = float(share)
    except (TypeError, ValueError):
        raise InvalidInput(f"the overlap share must be a number from 0 to 1, not {share!r}") from None
    if not 0 <= share <= 1:
        raise InvalidInput(f"the overlap share must be from 0 to 1 (a share of items), not {share}")
    with store.transaction() as con:
        auth.require(con, user, "review")
        model = registry.find_model(con, name)
        db.insert_overlap_share(con, model.model_id, share, user)
        db.add_event(con, user, "set_overlap_share", model.model_id, {"share": share})


def overlap_share(store: Store, name: str) -> float:
    with store.connect() as con:
        return db.overlap_share(con, registry.find_model(con, name).model_id)


def overlap_places(share: float, k: int) -> int:
    """How many of a batch's k places go to items awaiting a second label."""
    return min(int(k), int(np.ceil(share * k - 1e-9))) if share > 0 else 0


def overlap_pool(con, model: Model, user: str, k: int, seed: int, **filters) -> pd.DataFrame:
    """Items of the slice that `user` may label a second time, for up to the overlap share of a
    batch of k (hard_example_pool's columns; the first label is never among them)."""
    share = db.overlap_share(con, model.model_id)
    places = overlap_places(share, k)
    if not places:
        return pd.DataFrame()  # no overlap: the log is not read at all
    return db.overlap_pool(con, model.model_id, user, share, model.labels, places, seed, **filters)


def open_for_second_label(con, model: Model, prediction_ids, user: str) -> set[int]:
    """Which of these already labelled predictions `user` may label now as their second label."""
    share = db.overlap_share(con, model.model_id)
    if share <= 0:
        return set()
    return db.open_for_second_label(con, model.model_id, list(prediction_ids), user, share, model.labels)


# --- review ----------------------------------------------------------------------------------

def review_queue(store: Store, name: str) -> pd.DataFrame:
    """Items waiting for an owner: disagreements and items marked unclear, oldest first."""
    with store.connect() as con:
        return db.review_queue(con, registry.find_model(con, name).model_id)


def decide(store: Store, name: str, prediction_id: int, label: str, user: str) -> None:
    """An owner's decision on an item in the review queue: one of the model's labels (trained on),
    or skip (never trained on). The one writer of a review; all or nothing."""
    with store.transaction() as con:
        auth.require(con, user, "review")
        model = registry.find_model(con, name)
        if label not in model.labels and label != DISCARD:
            raise InvalidInput(f"label {label!r} is not one of {', '.join(model.labels)}, or {DISCARD} to leave "
                               f"the item out of training")
        waiting = db.review_queue(con, model.model_id)
        item = waiting[waiting["prediction_id"] == int(prediction_id)]
        if item.empty and db.predictions_by_id(con, model.model_id, [int(prediction_id)]).empty:
            raise InvalidInput(f"no prediction {prediction_id} for model {name!r}")
        if item.empty:
            raise InvalidInput(f"prediction {prediction_id} is not waiting for review: someone decided it "
                               f"already, or its labels agree")
        reason = str(item["reason"].iloc[0])
        db.insert_review(con, model.model_id, int(prediction_id), label, reason, label in model.labels, user)
        db.add_event(con, user, "review", model.model_id,
                     {"prediction_id": int(prediction_id), "label": label, "reason": reason})


# --- agreement -------------------------------------------------------------------------------

def kappa_and_agreement(a, b) -> tuple[float, float, int]:
    """Cohen's kappa, raw agreement and the number of items of two aligned label lists.

    Kappa is undefined (NaN) when there are no items, or when both sides used one and the same
    label throughout: agreement expected by chance is then 1. Worked out here with numpy, as
    sklearn's cohen_kappa_score does, so the server does not load scikit-learn for it."""
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    if len(a) == 0:
        return np.nan, np.nan, 0
    raw = float(np.mean(a == b))
    labels = sorted(set(a) | set(b), key=str)
    if len(labels) < 2:
        return np.nan, raw, len(a)
    share_a = np.array([np.mean(a == label) for label in labels])
    share_b = np.array([np.mean(b == label) for label in labels])
    chance = float(share_a @ share_b)
    return (raw - chance) / (1 - chance), raw, len(a)


def _oriented(pairs: pd.DataFrame) -> pd.DataFrame:
    """Double-labelled items as (labeller_a, label_a, labeller_b, label_b) with a before b by name,
    so one pair's items line up whoever labelled first."""
    swap = pairs["first_by"] > pairs["second_by"]
    return pd.DataFrame({
        "labeller_a": np.where(swap, pairs["second_by"], pairs["first_by"]),
        "label_a": np.where(swap, pairs["second_label"], pairs["first_label"]),
        "labeller_b": np.where(swap, pairs["first_by"], pairs["second_by"]),
        "label_b": np.where(swap, pairs["first_label"], pairs["second_label"]),
        "business_line": pairs["business_line"]})


def unclear(first, second) -> np.ndarray:
    """Which items one of the two labels calls unclear: their own outcome, outside agreement and kappa."""
    return (np.asarray(first, dtype=object) == UNCLEAR) | (np.asarray(second, dtype=object) == UNCLEAR)


def judged_agreement(first, second) -> tuple[float, float, int]:
    """`kappa_and_agreement` over the items both labelled with a model label (unclear left out)."""
    first, second = np.asarray(first, dtype=object), np.asarray(second, dtype=object)
    both = ~unclear(first, second)
    return kappa_and_agreement(first[both], second[both])


def _agreement_rows(frame: pd.DataFrame, keys: list[str], a: str, b: str) -> pd.DataFrame:
    rows = []
    for key, group in frame.groupby(keys, sort=True):
        kappa, raw, n = judged_agreement(group[a], group[b])
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))), "items": n,
                     "agreement": raw, "kappa": kappa, "unclear": int(unclear(group[a], group[b]).sum())})
    return pd.DataFrame(rows, columns=[*keys, "items", "agreement", "kappa", "unclear"])


def pair_agreement(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per labeller pair: items both labelled with a model label, raw agreement and Cohen's kappa
    over them, and items one of the two found unclear."""
    return _agreement_rows(_oriented(pairs), ["labeller_a", "labeller_b"], "label_a", "label_b")


def line_agreement(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per business line: items labelled twice, raw agreement and Cohen's kappa (first label
    against second, whoever gave them; unclear items counted apart)."""
    return _agreement_rows(pairs, ["business_line"], "first_label", "second_label")


# --- per labeller ----------------------------------------------------------------------------

def decisions_per_hour(times) -> tuple[float, float]:
    """(decisions per hour of active time, active hours) from one labeller's decision times: each
    pause up to ACTIVE_GAP is the time one decision took; a longer one is a break and not counted."""
    at = pd.Series(pd.to_datetime(pd.Series(times))).sort_values()
    gaps = at.diff().dropna()
    worked = gaps[gaps <= ACTIVE_GAP]
    seconds = worked.dt.total_seconds().sum()
    if worked.empty or seconds <= 0:
        return np.nan, 0.0
    return len(worked) / seconds * 3600, seconds / 3600


def _decided(pairs: pd.DataFrame) -> pd.Series:
    """Each double-labelled item's decided label: the review's, else the two labels where they
    agree; none where undecided or left out of training in review."""
    agreed = pairs["first_label"].where(pairs["first_label"] == pairs["second_label"])
    decided = pairs["reviewed"].where(pairs["reviewed"].notna(), agreed)
    return decided.where(decided != DISCARD)  # left out of training: no answer to be right or wrong against


def _per_labeller_items(pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per labeller per double-labelled item: labeller, own label, other's label, decided, audit."""
    decided = _decided(pairs)
    sides = [pd.DataFrame({"labeller": pairs[f"{me}_by"], "label": pairs[f"{me}_label"],
                           "other": pairs[f"{you}_label"], "decided": decided, "audit": pairs["audit"]})
             for me, you in (("first", "second"), ("second", "first"))]
    return pd.concat(sides, ignore_index=True)


LABELLER_COLUMNS = ["labeller", "labelled", "per_hour", "active_hours", "skipped", "unclear", "double_labelled",
                    "agreement", "kappa", "audit_items", "audit_accuracy"]


def labeller_figures(times: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Per labeller: items labelled (with a model label), decisions per hour of active time (every
    decision: labels, skips and unclear), active hours, items skipped and found unclear, items
    labelled twice with a person (both with a model label) with their agreement and kappa, and
    accuracy on audit items whose label was decided by someone else too (agreed with, or decided
    in review). `times` has user, created_at and kind (labelled, skipped or unclear)."""
    items = _per_labeller_items(pairs)
    rows = []
    for user, own in times.groupby("user", sort=True):
        rate, hours = decisions_per_hour(own["created_at"])
        kinds = own["kind"].value_counts()
        mine = items[items["labeller"] == user]
        kappa, raw, n = judged_agreement(mine["label"], mine["other"])
        audited = mine[mine["audit"].astype(bool) & mine["decided"].notna() & (mine["label"] != UNCLEAR)]
        rows.append({"labeller": user, "labelled": int(kinds.get("labelled", 0)), "per_hour": rate,
                     "active_hours": hours, "skipped": int(kinds.get("skipped", 0)),
                     "unclear": int(kinds.get("unclear", 0)), "double_labelled": n, "agreement": raw, "kappa": kappa,
                     "audit_items": len(audited),
                     "audit_accuracy": float((audited["label"] == audited["decided"]).mean()) if len(audited)
                     else np.nan})
    return pd.DataFrame(rows, columns=LABELLER_COLUMNS)


@dataclass(frozen=True)
class TeamReport:
    share: float               # the overlap share set for the model
    waiting: int               # items in the review queue
    pairs: pd.DataFrame        # pair_agreement
    lines: pd.DataFrame        # line_agreement
    labellers: pd.DataFrame    # labeller_figures
    overall: tuple             # (kappa, agreement, items) over every item two persons labelled (unclear apart)

    def record(self) -> dict:
        """As plain data (what the CLI's JSON and the API answer), NaN as None: kappa is undefined
        where both labellers used one label."""
        kappa, raw, n = self.overall
        return {"share": self.share, "waiting": self.waiting,
                "overall": {"items": int(n), "agreement": _plain(raw), "kappa": _plain(kappa)},
                "pairs": _records(self.pairs), "lines": _records(self.lines), "labellers": _records(self.labellers)}


def _plain(value) -> float | None:
    return None if value is None or value != value else float(value)  # NaN is not equal to itself


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records", force_ascii=False))  # NaN -> null


def team_report(store: Store, name: str) -> TeamReport:
    """Everything the Review page shows about the team, read in one connection."""
    with store.connect() as con:
        model = registry.find_model(con, name)
        share = db.overlap_share(con, model.model_id)
        waiting = len(db.review_queue(con, model.model_id))
        pairs = db.double_labelled(con, model.model_id, float(settings.get("audit_share")))
        times = db.decision_times(con, model.model_id)
    return TeamReport(share, waiting, pair_agreement(pairs), line_agreement(pairs), labeller_figures(times, pairs),
                      judged_agreement(pairs["first_label"], pairs["second_label"]))
