"""Hard examples: the unlabelled texts most worth a label, by a named query strategy.

A strategy is a score (higher = more worth labelling) plus one shared selector. The pool is the
slice's distinct unlabelled texts (the newest `MMS_HARD_EXAMPLE_POOL`), re-scored when the batch
is drawn by the version the labels are for (the active one unless another is chosen), never read
from probabilities an older version logged. The selector walks the ranking, optionally in turns
across business lines, and passes over near-duplicates of texts already picked. Every batch is
recorded with the strategy that chose it and the version that scored it.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import agreement, auth, ordinal, predict, registry, settings
from . import store as db
from .errors import EmptyPool, InvalidInput
from .estimators import proba_frame
from .slices import Slice
from .store import Store

NEAR_DUPLICATE = 0.9  # Jaccard similarity of character 3-grams above which two texts count as one
SHINGLE = 3


@dataclass(frozen=True)
class Strategy:
    """A query strategy: `str(strategy)` is its name, as recorded with every batch it chooses.

    `diverse`: rank within clusters of the pool (k-means on character TF-IDF) and take the clusters
    in turns, so one kind of text cannot fill the batch."""
    name: str
    description: str
    score: Callable[[np.ndarray], np.ndarray] | None  # rows x labels -> one score per row; None: random order
    diverse: bool = False

    def __str__(self) -> str:
        return self.name


def _least_confidence(proba: np.ndarray) -> np.ndarray:
    return 1 - proba.max(axis=1)


def _margin(proba: np.ndarray) -> np.ndarray:
    ordered = -np.sort(-proba, axis=1)
    second = ordered[:, 1] if proba.shape[1] > 1 else 0
    return -(ordered[:, 0] - second)


def _entropy(proba: np.ndarray) -> np.ndarray:
    safe = np.where(proba > 0, proba, 1.0)
    return -(proba * np.log(safe)).sum(axis=1)


# With two labels the three uncertainty scores rank alike; with more they differ: least
# confidence looks at the top label only, margin at the top two, entropy at all of them.
STRATEGIES = {s.name: s for s in (
    Strategy("least_confidence", "lowest top probability first", _least_confidence),
    Strategy("margin", "smallest gap between the two most likely labels first", _margin),
    Strategy("entropy", "most uncertain probability spread first", _entropy),
    Strategy("random", "uniformly at random (a control)", None),
    Strategy("diverse_margin", "smallest margin within each cluster of similar texts, clusters in turns",
             _margin, diverse=True),
)}
# Ordinal models only (their label columns are grades in order): least confidence ignores how far
# apart the likely grades are, these two count it. The strategies above apply to them too.
ORDINAL_STRATEGIES = {s.name: s for s in (
    Strategy("expected_error", "ordinal models: largest expected error in grades first, sum of p(grade) x "
             "|grade - most likely grade| (a text torn between 低 and 高 before one torn between 低 and 中)",
             ordinal.expected_absolute_error),
    Strategy("spread", "ordinal models: widest distribution over the grades first (its standard deviation "
             "in grades)", ordinal.spread),
)}
EVERY_STRATEGY = {**STRATEGIES, **ORDINAL_STRATEGIES}


def strategies_for(model) -> dict[str, Strategy]:
    """The strategies a model can use, in the order a face offers them: an ordinal model's own first."""
    return {**ORDINAL_STRATEGIES, **STRATEGIES} if registry.is_ordinal(model) else dict(STRATEGIES)


def _for_task(strategy: Strategy, model) -> None:
    """InvalidInput for an ordinal strategy asked of a classification model."""
    if strategy.name not in strategies_for(model):
        raise InvalidInput(f"strategy {strategy.name!r} is for ordinal models (ordered grades); model "
                           f"{model.name!r} classifies, use one of {', '.join(STRATEGIES)}")


@dataclass(frozen=True)
class HardExamples:
    batch_id: int
    strategy: str
    examples: pd.DataFrame  # prediction_id, created_at, business_line, version (that scored), text, label,
    #                         top_prob, p_*, score


def _strategy(strategy: str | Strategy) -> Strategy:
    if str(strategy) not in EVERY_STRATEGY:
        raise InvalidInput(f"strategy must be one of {', '.join(EVERY_STRATEGY)}, not {str(strategy)!r}")
    return EVERY_STRATEGY[str(strategy)]


def select_hard_examples(store: Store, name: str, k: int, user: str, strategy: str | Strategy = "least_confidence",
                         business_lines=None, since=None, until=None, version: int | None = None,
                         seed: int = 0, for_version: int | None = None, balance_lines: bool = False,
                         near_duplicate: float | None = NEAR_DUPLICATE) -> HardExamples:
    """The k texts to label next, recorded as one batch. EmptyPool when none is left.

    The slice (`business_lines`, `since`, `until`, and `version`: predictions that version made)
    is given loose and checked by Slice.of. `for_version` scores the pool (default: the active
    version); `balance_lines` takes the lines in turns; `near_duplicate` is the similarity above
    which a text is passed over beside one already picked (None: only identical texts)."""
    chosen = _strategy(strategy)
    if int(k) < 1:
        raise InvalidInput("k must be at least 1")
    if near_duplicate is not None and not 0 < near_duplicate <= 1:
        raise InvalidInput(f"near_duplicate must be a similarity above 0 and at most 1, not {near_duplicate!r}")
    filters = Slice.of(business_lines, since, until, version).filters()
    with store.connect() as con:
        auth.require(con, user, "sample")
        model = registry.find_model(con, name)
        _for_task(chosen, model)
        scorer = registry.resolve_version(con, model, for_version)
        pool = db.hard_example_pool(con, model.model_id, int(settings.get("hard_example_pool")), **filters)
        again = agreement.overlap_pool(con, model, user, int(k), seed, **filters)  # for a blind second label
        skipped = db.skipped_predictions(con, model.model_id, user)
    if pool.empty and again.empty:
        raise EmptyPool(f"no unlabelled predictions of {name!r} match these filters")
    pool = pd.concat([again, pool], ignore_index=True) if len(again) else pool
    proba = _pool_probabilities(store, scorer, model.labels, pool)
    pool = pool.drop(columns=["logged_by", "probs"])
    pool["score"] = chosen.score(proba) if chosen.score else np.random.default_rng(seed).random(len(pool))
    hard = pool.iloc[len(again):].reset_index(drop=True)
    picked = _hard_picks(hard, chosen, int(k) - len(again), seed, balance_lines, near_duplicate, skipped)
    picked = _mixed_in([len(again) + i for i in picked], len(again), seed)
    found, proba = pool.iloc[picked].reset_index(drop=True), proba[picked]
    params = {"k": int(k), "seed": seed, "scored_by_version": scorer.version, "pool": len(hard),
              "second_labels": len(again), "balance_lines": balance_lines, "near_duplicate": near_duplicate,
              **filters}
    with store.transaction() as con:
        auth.require(con, user, "sample")
        batch_id = db.insert_batch(con, model.model_id, chosen.name, params, found["prediction_id"].tolist(), user)
    found = found.assign(version=scorer.version, label=np.asarray(model.labels)[proba.argmax(axis=1)],
                         top_prob=proba.max(axis=1))
    columns = ["prediction_id", "created_at", "business_line", "version", "text", "label", "top_prob"]
    if registry.is_ordinal(model):  # the grade a client sorts by, as predictions carry it
        found["expected_grade"], columns = ordinal.expected_grade(proba), columns + ["expected_grade"]
    return HardExamples(batch_id, chosen.name,
                        pd.concat([found[columns], proba_frame(proba, model.labels), found[["score"]]], axis=1))


def _hard_picks(pool: pd.DataFrame, strategy: Strategy, k: int, seed: int, balance_lines: bool,
                near_duplicate: float | None, skipped: set[int] = frozenset()) -> list[int]:
    """Positions of the k unlabelled texts most worth a label (none when k < 1); texts the labeller
    skipped come after all others, so skipping a whole batch brings new texts, not the same ones."""
    if k < 1 or pool.empty:
        return []
    order = _ranking(pool, strategy, k, seed)
    if balance_lines:
        order = _in_turns(order, pool["business_line"].to_numpy())
    if skipped:
        order = order[np.argsort(pool["prediction_id"].isin(skipped).to_numpy()[order], kind="stable")]
    return _pick(pool["text"].to_numpy(), order, k, near_duplicate)


def _mixed_in(picked: list[int], n_again: int, seed: int) -> list[int]:
    """`picked` with positions 0..n_again-1 (items for a second label) put in at random places, so a
    labeller cannot tell them from the rest; the hard examples keep their order."""
    ordered = list(picked)
    rng = np.random.default_rng(seed)
    for i in range(n_again):
        ordered.insert(int(rng.integers(0, len(ordered) + 1)), i)
    return ordered


def _pool_probabilities(store: Store, version: registry.Version, labels: list[str], pool: pd.DataFrame) -> np.ndarray:
    """The scoring version's probabilities for the pool: what that same version logged is its own
    answer already (a version's prediction is deterministic), so only texts other versions answered
    are scored again."""
    proba = np.zeros((len(pool), len(labels)))
    own = (pool["logged_by"] == version.version).to_numpy()
    if own.any():
        proba[own] = np.stack(pool.loc[own, "probs"].map(lambda p: np.asarray(p, dtype=float)).to_numpy())
    if (~own).any():
        proba[~own] = score_pool(store, version, labels, pool.loc[~own, "text"].tolist())
    return proba


def score_pool(store: Store, version: registry.Version, labels: list[str], texts: list[str]) -> np.ndarray:
    """The version's probabilities for `texts` (rows x labels), not logged."""
    return predict.score_texts(store, version, labels, texts)


def _ranking(pool: pd.DataFrame, strategy: Strategy, k: int, seed: int) -> np.ndarray:
    """Pool positions, most worth labelling first (ties: the newer prediction first)."""
    order = np.lexsort((-pool["prediction_id"].to_numpy(), -pool["score"].to_numpy()))
    if not strategy.diverse or len(order) <= k:
        return order
    head = order[:min(len(order), 10 * k)]  # cluster the most uncertain part, where the batch comes from
    clusters = _clusters(pool["text"].to_numpy()[head], max(2, min(k, 50)), seed)
    return np.concatenate([_in_turns_by(head, clusters), order[len(head):]])


def _clusters(texts: np.ndarray, n: int, seed: int) -> np.ndarray:
    """k-means cluster of each text in the TF-IDF space of its character 1-3-grams."""
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    X = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True).fit_transform(texts)
    n = min(n, X.shape[0])
    return MiniBatchKMeans(n_clusters=n, n_init=1, random_state=seed, batch_size=1024).fit_predict(X)


def _in_turns_by(order: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """`order` re-ranked so each group (group of order[i] is groups[i]) gives its best in turn."""
    rank_in_group = pd.Series(groups).groupby(groups).cumcount().to_numpy()
    return order[np.lexsort((np.arange(len(order)), rank_in_group))]


def _in_turns(order: np.ndarray, group_of_position: np.ndarray) -> np.ndarray:
    """`order` re-ranked so each group (indexed by pool position) gives its best in turn."""
    return _in_turns_by(order, group_of_position[order])


def _pick(texts: np.ndarray, order: np.ndarray, k: int, threshold: float | None) -> list[int]:
    """The first k positions of `order` whose text is not a near-duplicate of one already picked."""
    picked, kept = [], _Picked(threshold) if threshold is not None else None
    for i in order:
        if kept is not None and not kept.add_unless_near(_shingles(texts[i])):
            continue
        picked.append(int(i))
        if len(picked) == k:
            break
    return picked


class _Picked:
    """The picked texts' shingle sets, indexed by each set's prefix (its first |s| - ceil(t·|s|) + 1
    shingles in sorted order): two sets with Jaccard >= t share a shingle of their prefixes (prefix
    filtering), so a text is compared only with the picks it shares one with, by the same test that
    comparing every pair made (125,250 comparisons for 500 picks took seconds)."""

    def __init__(self, threshold: float):
        self.threshold, self.sets, self.by_shingle = threshold, [], {}

    def add_unless_near(self, mine: set) -> bool:
        """Keep `mine` unless it is a near-duplicate of a kept set; whether it was kept."""
        prefix = sorted(mine)[:len(mine) - math.ceil(self.threshold * len(mine)) + 1]
        near = {j for s in prefix for j in self.by_shingle.get(s, ())}
        if any(self._similar(mine, self.sets[j]) for j in near):
            return False
        for s in prefix:
            self.by_shingle.setdefault(s, []).append(len(self.sets))
        self.sets.append(mine)
        return True

    def _similar(self, a: set, b: set) -> bool:
        """Jaccard(a, b) >= threshold, as `|a & b| >= t * |a | b|` in floats."""
        small, large = sorted((len(a), len(b)))
        if small < self.threshold * large:  # |a & b| <= small and |a | b| >= large: cannot pass, skip the sets
            return False
        shared = len(a & b)
        return shared >= self.threshold * (len(a) + len(b) - shared)


def _shingles(text: str) -> set:
    """The text's character 3-grams, case and whitespace ignored (never empty: "" for an empty text)."""
    squeezed = "".join(text.lower().split())
    return {squeezed[i:i + SHINGLE] for i in range(max(1, len(squeezed) - SHINGLE + 1))}


def queue_size(store: Store, name: str, business_lines=None, since=None, until=None,
               version: int | None = None) -> int:
    """How many distinct unlabelled texts the filters leave to label."""
    filters = Slice.of(business_lines, since, until, version).filters()
    with store.connect() as con:
        model = registry.find_model(con, name)
        return db.unlabelled_count(con, model.model_id, **filters)
