"""Hard examples: the unlabelled texts most worth a label, by a named query strategy.

A strategy is a score (higher = more worth labelling) plus one shared selector; a strategy may also
order the pool itself (uncertain_spread, the default: the most uncertain candidates spread over the
kinds of text). The pool is the slice's distinct unlabelled texts over all its history, or when
there are more than `MMS_HARD_EXAMPLE_POOL`, a uniform sample of that many (a hash order of the
text salted with the scoring version: the same sample for every draw the version scores, another
one after a retrain). It is scored when the batch is drawn by the version the labels are for (the
active one unless another is chosen), never read from probabilities an older version logged; what
a version scored once is kept in the store (per version and model file), so any process reuses it.
The selector walks the ranking, keeps each business line to its share of the pool unless told not
to (or takes the lines in turns), and passes over near-duplicates of texts already picked. Every
batch is recorded with the strategy that chose it and the version that scored it.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import agreement, auth, disagreement, ordinal, predict, registry, settings
from . import store as db
from .background import Every
from .errors import EmptyPool, InvalidInput, MMSError
from .estimators import proba_frame
from .slices import Slice
from .store import Store

log = logging.getLogger("mms.sampling")

NEAR_DUPLICATE = 0.9  # Jaccard similarity of character 3-grams above which two texts count as one
SHINGLE = 3
PRESCORE_START_SECONDS = 30.0  # a starting server draws its first pages before it scores any pool
SCORES_KEPT = 300_000  # rows of re-scored probabilities kept in this process (all versions together)


@dataclass(frozen=True)
class Draw:
    """What a strategy's order sees: the pool (prediction_id, business_line, text, ... one row per
    text), the scoring version's probabilities and each text's score, how many to pick, the seed;
    and the store, model and scoring version, for a strategy that needs more than these."""
    pool: pd.DataFrame
    proba: np.ndarray
    scores: np.ndarray
    k: int
    seed: int
    store: Store | None = None
    model: object = None
    version: object = None


@dataclass(frozen=True)
class Strategy:
    """A query strategy: `str(strategy)` is its name, as recorded with every batch it chooses.

    `score`: rows x labels probabilities -> one score per row, higher first (None: random order).
    `order`: Draw -> pool positions, the most worth labelling first, for a strategy that is more
    than its score (None: by score, the newer prediction first on ties)."""
    name: str
    description: str
    score: Callable[[np.ndarray], np.ndarray] | None
    order: Callable[[Draw], np.ndarray] | None = None
    ordinal: bool = False  # for ordinal models only (their label columns are grades in order)

    def __str__(self) -> str:
        return self.name


STRATEGIES: dict[str, Strategy] = {}
ORDINAL_STRATEGIES: dict[str, Strategy] = {}
EVERY_STRATEGY: dict[str, Strategy] = {}


def register(name: str, description: str, *, order: Callable[[Draw], np.ndarray] | None = None,
             ordinal: bool = False):
    """Decorator: the score function (or None given as `add(None)`) becomes strategy `name`; a new
    strategy is this one decorated function (with `order` when ranking by the score is not enough)."""
    def add(score):
        strategy = Strategy(name, description, score, order, ordinal)
        (ORDINAL_STRATEGIES if ordinal else STRATEGIES)[name] = strategy
        EVERY_STRATEGY.clear()
        EVERY_STRATEGY.update({**STRATEGIES, **ORDINAL_STRATEGIES})
        return score
    return add


# With two labels the three uncertainty scores rank alike; with more they differ: least
# confidence looks at the top label only, margin at the top two, entropy at all of them.
@register("least_confidence", "lowest top probability first")
def _least_confidence(proba: np.ndarray) -> np.ndarray:
    return 1 - proba.max(axis=1)


@register("margin", "smallest gap between the two most likely labels first")
def _margin(proba: np.ndarray) -> np.ndarray:
    ordered = -np.sort(-proba, axis=1)
    second = ordered[:, 1] if proba.shape[1] > 1 else 0
    return -(ordered[:, 0] - second)


@register("entropy", "most uncertain probability spread first")
def _entropy(proba: np.ndarray) -> np.ndarray:
    safe = np.where(proba > 0, proba, 1.0)
    return -(proba * np.log(safe)).sum(axis=1)


register("random", "uniformly at random (a control)")(None)


def _clusters_in_turns(draw: Draw) -> np.ndarray:
    """The most uncertain 10 k clustered (k-means on character TF-IDF), the clusters in turns."""
    order = _by_score(draw)
    if len(order) <= draw.k:
        return order
    head = order[:min(len(order), 10 * draw.k)]  # cluster the most uncertain part, where the batch comes from
    clusters = _clusters(draw.pool["text"].to_numpy()[head], max(2, min(draw.k, 50)), draw.seed)
    return np.concatenate([_in_turns_by(head, clusters), order[len(head):]])


register("diverse_margin", "smallest margin within each cluster of similar texts, clusters in turns",
         order=_clusters_in_turns)(_margin)

# Ordinal models: least confidence ignores how far apart the likely grades are, these two count it.
# The strategies above apply to them too.
register("expected_error", "ordinal models: largest expected error in grades first, sum of p(grade) x "
         "|grade - most likely grade| (a text torn between 低 and 高 before one torn between 低 and 中)",
         ordinal=True)(ordinal.expected_absolute_error)
register("spread", "ordinal models: widest distribution over the grades first (its standard deviation in grades)",
         ordinal=True)(ordinal.spread)
# The version in shadow against the scoring version (core.disagreement); its score: the scoring version's uncertainty.
register(disagreement.NAME, disagreement.DESCRIPTION, order=disagreement.order)(_least_confidence)


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
    batch_id: int | None  # None for a preview, which records nothing
    strategy: str
    examples: pd.DataFrame  # prediction_id, created_at, business_line, version (that scored), text, label,
    #                         top_prob, p_*, score


def _strategy(strategy: str | Strategy) -> Strategy:
    if str(strategy) not in EVERY_STRATEGY:
        raise InvalidInput(f"strategy must be one of {', '.join(EVERY_STRATEGY)}, not {str(strategy)!r}")
    return EVERY_STRATEGY[str(strategy)]


DEFAULT_STRATEGY = "uncertain_spread"


def select_hard_examples(store: Store, name: str, k: int, user: str, strategy: str | Strategy = DEFAULT_STRATEGY,
                         business_lines=None, since=None, until=None, version: int | None = None,
                         seed: int = 0, for_version: int | None = None, balance_lines: bool = False,
                         near_duplicate: float | None = NEAR_DUPLICATE, text: str | None = None,
                         record: bool = True, spread_lines: bool = True) -> HardExamples:
    """The k texts to label next, recorded as one batch (`record` False: a preview, nothing recorded,
    batch_id None). EmptyPool when none is left.

    The slice (`business_lines`, `since`, `until`, and `version`: predictions that version made)
    is given loose and checked by Slice.of; `text` keeps the texts that contain it (a search).
    `for_version` scores the pool (default: the active version). `spread_lines` (the default)
    keeps each business line to its share of the pool, rounded up (the line's share of the slice's
    unlabelled texts, sampled as the pool is); `balance_lines` takes the lines in turns instead;
    with both False the strategy alone decides. `near_duplicate` is the similarity above which a
    text is passed over beside one already picked (None: only identical texts)."""
    chosen = _strategy(strategy)
    if int(k) < 1:
        raise InvalidInput("k must be at least 1")
    if near_duplicate is not None and not 0 < near_duplicate <= 1:
        raise InvalidInput(f"near_duplicate must be a similarity above 0 and at most 1, not {near_duplicate!r}")
    filters = {**Slice.of(business_lines, since, until, version).filters(), **search_filter(text)}
    with store.connect() as con:
        auth.require(con, user, "sample")
        model = registry.find_model(con, name)
        _for_task(chosen, model)
        scorer = registry.resolve_version(con, model, for_version)
        pool = _read_pool(con, model, scorer, **filters)
        again = agreement.overlap_pool(con, model, user, int(k), seed, **filters)  # for a blind second label
        skipped = db.skipped_predictions(con, model.model_id, user)
    if pool.empty and again.empty:
        raise EmptyPool(f"no unlabelled predictions of {name!r} match these filters")
    pool = pd.concat([again, pool], ignore_index=True) if len(again) else pool
    proba, fresh = _pool_probabilities(store, scorer, model.labels, pool)
    pool = pool.drop(columns=["logged_by", "probs", "stored"], errors="ignore")
    pool["score"] = chosen.score(proba) if chosen.score else np.random.default_rng(seed).random(len(pool))
    hard = pool.iloc[len(again):].reset_index(drop=True)
    draw = Draw(hard, proba[len(again):], hard["score"].to_numpy(), int(k) - len(again), seed, store, model, scorer)
    picked = _hard_picks(draw, chosen, balance_lines, spread_lines, near_duplicate, skipped)
    picked = _mixed_in([len(again) + i for i in picked], len(again), seed)
    found, proba = pool.iloc[picked].reset_index(drop=True), proba[picked]
    params = {"k": int(k), "seed": seed, "scored_by_version": scorer.version, "pool": len(hard),
              "second_labels": len(again), "balance_lines": balance_lines, "spread_lines": spread_lines,
              "near_duplicate": near_duplicate, **filters}
    batch_id = None
    if record:
        with store.transaction() as con:
            auth.require(con, user, "sample")
            batch_id = db.insert_batch(con, model.model_id, chosen.name, params, found["prediction_id"].tolist(),
                                       user)
            _keep_in_store(con, scorer, fresh)
    else:
        keep_scores(store, scorer, fresh)
    found = found.assign(version=scorer.version, label=np.asarray(model.labels)[proba.argmax(axis=1)],
                         top_prob=proba.max(axis=1))
    columns = ["prediction_id", "created_at", "business_line", "version", "text", "label", "top_prob"]
    if registry.is_ordinal(model):  # the grade a client sorts by, as predictions carry it
        found["expected_grade"], columns = ordinal.expected_grade(proba), columns + ["expected_grade"]
    return HardExamples(batch_id, chosen.name,
                        pd.concat([found[columns], proba_frame(proba, model.labels), found[["score"]]], axis=1))


def _read_pool(con, model, scorer: registry.Version, **filters) -> pd.DataFrame:
    """The pool the scoring version draws from (its own sample of the slice's history), with the
    probabilities it already keeps in the store."""
    return db.hard_example_sample(con, model.model_id, int(settings.get("hard_example_pool")),
                                  _salt(scorer), (scorer.version, scorer.sha256), **filters)


def _salt(version: registry.Version) -> int:
    """The pool sample's salt: one per version, so each retrain looks at another sample of history."""
    return version.model_id * 100_003 + version.version


def _hard_picks(draw: Draw, strategy: Strategy, balance_lines: bool, spread_lines: bool,
                near_duplicate: float | None, skipped: set[int] = frozenset()) -> list[int]:
    """Positions of the k unlabelled texts most worth a label (none when k < 1); texts the labeller
    skipped come after all others, so skipping a whole batch brings new texts, not the same ones."""
    pool, k = draw.pool, draw.k
    if k < 1 or pool.empty:
        return []
    order = np.asarray(strategy.order(draw) if strategy.order else _by_score(draw))
    lines = pool["business_line"].to_numpy()
    if balance_lines:
        order = _in_turns(order, lines)
    elif spread_lines:
        order = _within_shares(order, lines, k)
    if skipped:
        order = order[np.argsort(pool["prediction_id"].isin(skipped).to_numpy()[order], kind="stable")]
    return _pick(pool["text"].array, order, k, near_duplicate)


def _by_score(draw: Draw) -> np.ndarray:
    """Pool positions by score, the newer prediction first on ties."""
    return np.lexsort((-draw.pool["prediction_id"].to_numpy(), -draw.scores))


def _within_shares(order: np.ndarray, lines: np.ndarray, k: int) -> np.ndarray:
    """`order` with each line's picks beyond its share of k (its share of the pool, rounded up) moved
    after every other line's: a line that would take more than its share gives way, a line that
    takes less keeps what the strategy gave it, and the batch still fills when the others run out."""
    names, counts = np.unique(lines, return_inverse=False, return_counts=True)
    quota = dict(zip(names, np.ceil(k * counts / len(lines)).astype(int)))
    ranked = lines[order]
    rank_in_line = pd.Series(ranked).groupby(ranked).cumcount().to_numpy()
    beyond = rank_in_line >= np.array([quota[line] for line in ranked])
    return order[np.argsort(beyond, kind="stable")]


def _mixed_in(picked: list[int], n_again: int, seed: int) -> list[int]:
    """`picked` with positions 0..n_again-1 (items for a second label) put in at random places, so a
    labeller cannot tell them from the rest; the hard examples keep their order."""
    ordered = list(picked)
    rng = np.random.default_rng(seed)
    for i in range(n_again):
        ordered.insert(int(rng.integers(0, len(ordered) + 1)), i)
    return ordered


def _pool_probabilities(store: Store, version: registry.Version, labels: list[str],
                        pool: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """The scoring version's probabilities for the pool, and the rows it scored now (text_key,
    probs) for the store to keep. What that same version logged is its own answer already (a
    version's prediction is deterministic); what it scored for any earlier draw is kept in the
    store (the pool's `stored`) and in this process (_SCORES); only texts it never answered are scored."""
    proba = np.zeros((len(pool), len(labels)))
    own = (pool["logged_by"] == version.version).to_numpy()
    if own.any():  # one flat array, reshaped: every logged row has the model's labels
        proba[own] = np.concatenate(pool["probs"].to_numpy()[own]).reshape(int(own.sum()), len(labels))
    kept = ~own & (pool["stored"].notna().to_numpy() if "stored" in pool else False)
    if kept.any():
        proba[kept] = np.concatenate(pool["stored"].to_numpy()[kept]).reshape(int(kept.sum()), len(labels))
    rest = np.flatnonzero(~own & ~kept)
    fresh = pd.DataFrame({"text_key": [], "probs": []})
    if len(rest):
        proba[rest], scored = _kept_or_scored(store, version, labels, list(pool["text"].array.take(rest)))
        if "text_key" in pool:  # rows for a second label come without one: they are not pool texts
            keys = pool["text_key"].to_numpy()[rest]
            known = pd.notna(keys)
            fresh = pd.DataFrame({"text_key": keys[known].astype("uint64"), "probs": list(proba[rest][known])})
    return proba, fresh


def keep_scores(store: Store, version: registry.Version, fresh: pd.DataFrame) -> None:
    """Keep the version's new probabilities (text_key, probs) in the store for every process's next
    draw; a store that cannot take them now (busy, read-only) only costs the next draw a re-score."""
    if fresh.empty:
        return
    try:
        with store.transaction() as con:
            _keep_in_store(con, version, fresh)
    except MMSError as e:
        log.warning("MMS: %d scores of version %d not kept in the store: %s", len(fresh), version.version, e)


def _keep_in_store(con, version: registry.Version, fresh: pd.DataFrame) -> None:
    db.insert_version_scores(con, version.model_id, version.version, version.sha256, fresh)


def _kept_or_scored(store: Store, version: registry.Version, labels: list[str], texts: list[str],
                    in_background: bool = False) -> tuple[np.ndarray, int]:
    """The version's probabilities for `texts`: kept ones from _SCORES, the rest scored and kept;
    and how many were scored."""
    proba = np.zeros((len(texts), len(labels)))
    missing = _SCORES.fill(store, version, texts, proba)
    if len(missing):
        scored = score_pool(store, version, labels, [texts[i] for i in missing], in_background)
        proba[missing] = scored
        _SCORES.keep(store, version, [texts[i] for i in missing], scored)
    return proba, len(missing)


class _ScoreCache:
    """Probabilities a version scored, per text, so that after a retrain only the first draw scores
    the pool and later draws cost what a draw from logged probabilities costs.

    Keyed by the store, the model, the version and its model file's sha256 (a version's scores
    never change: its file is verified by that hash, and a restored store whose version differs
    has another hash), then by the raw text (normalising is the version's own first step). Bounded
    to `rows` rows in all (SCORES_KEPT, about 100 MB of short reviews at most): the versions used
    least recently are dropped first, and one version's oldest texts when it alone is too many."""

    def __init__(self, rows: int):
        self.rows, self._versions, self._lock = rows, OrderedDict(), threading.Lock()

    @staticmethod
    def _key(store: Store, version: registry.Version) -> tuple:
        return store.key, version.model_id, version.version, version.sha256

    def fill(self, store: Store, version: registry.Version, texts: list[str], proba: np.ndarray) -> np.ndarray:
        """Put the kept rows of `texts` into proba (one row per text); the positions not kept."""
        with self._lock:
            known = self._versions.get(self._key(store, version))
            if known is None:
                return np.arange(len(texts))
            self._versions.move_to_end(self._key(store, version))
            rows = [known.get(t) for t in texts]
        found = np.fromiter((r is not None for r in rows), dtype=bool, count=len(rows))
        if found.any():
            proba[found] = [r for r in rows if r is not None]
        return np.flatnonzero(~found)

    def keep(self, store: Store, version: registry.Version, texts: list[str], proba: np.ndarray) -> None:
        if self.rows < 1:
            return
        with self._lock:
            known = self._versions.setdefault(self._key(store, version), {})
            self._versions.move_to_end(self._key(store, version))
            known.update(zip(texts[-self.rows:], proba[-self.rows:].tolist()))
            total = sum(map(len, self._versions.values()))
            while total > self.rows and len(self._versions) > 1:
                total -= len(self._versions.popitem(last=False)[1])
            for text in list(known)[:max(0, total - self.rows)]:
                del known[text]

    def clear(self) -> None:
        with self._lock:
            self._versions.clear()


_SCORES = _ScoreCache(SCORES_KEPT)


def prescore(store: Store, name: str) -> int:
    """Score the model's whole pool (all lines, all time: the active version's sample of at most
    MMS_HARD_EXAMPLE_POOL distinct unlabelled texts) by its active version and keep the scores in the
    store, as the first batch drawn for it would; the server does this in the background after an
    activation (Prescorer). Returns how many texts were scored (0: none missing, or no active version)."""
    with store.connect() as con:
        model = registry.find_model(con, name)
        if model.active_version is None:
            return 0
        version = registry.resolve_version(con, model, None)
        pool = _read_pool(con, model, version)
    missing = (pool["logged_by"] != version.version).to_numpy() & pool["stored"].isna().to_numpy()
    rest = np.flatnonzero(missing)
    if not len(rest):
        return 0
    proba, n = _kept_or_scored(store, version, model.labels, list(pool["text"].array.take(rest)), True)
    keep_scores(store, version, pd.DataFrame({"text_key": pool["text_key"].to_numpy()[rest].astype("uint64"),
                                              "probs": list(proba)}))
    return n


class Prescorer(Every):
    """The server's thread that scores a newly active version's pool before anyone asks for a batch
    (a retrain's first batch would otherwise wait for the whole pool: seconds at 5,000 texts). Every
    `seconds` it looks at each model's active version (a query of the models table) and scores the
    pool of one it has not seen active yet, including the versions active when the server starts;
    failures are logged, never raised. A starting server draws its first pages before it scores any
    pool (PRESCORE_START_SECONDS)."""
    name = "mms-prescore"

    def __init__(self, store: Store, seconds: float | None = None):
        self.store = store
        self.seen: set[tuple] = set()
        super().__init__(settings.get("prescore_seconds") if seconds is None else seconds, PRESCORE_START_SECONDS)

    def once(self) -> None:
        try:
            models = registry.list_models(self.store)
        except MMSError as e:  # the store unusable for a moment (a DuckLake's catalog down): said, no traceback
            log.warning("MMS: looking for newly active versions: %s", e)
            return
        except Exception:
            log.exception("MMS: looking for newly active versions failed")
            return
        for model in models:
            key = (model.model_id, model.active_version)
            if model.active_version is None or key in self.seen or self.stopping():
                continue
            self.seen.add(key)  # once per activation, whatever happens: a failure is not retried forever
            try:
                started = time.perf_counter()
                n = prescore(self.store, model.name)
                if n:
                    log.warning("MMS: %s version %d scored %d texts of its hard-example pool in %.1f s",
                                model.name, model.active_version, n, time.perf_counter() - started)
            except EmptyPool:
                pass
            except MMSError as e:
                log.warning("MMS: the hard-example pool of %s was not scored: %s", model.name, e)
            except Exception:
                log.exception("MMS: scoring the hard-example pool of %s failed", model.name)


def score_pool(store: Store, version: registry.Version, labels: list[str], texts: list[str],
               in_background: bool = False) -> np.ndarray:
    """The version's probabilities for `texts` (rows x labels), not logged; `in_background` (the
    server's Prescorer): all on the worker processes, so the server's requests keep the GIL."""
    return predict.score_texts(store, version, labels, texts, off_this_process=in_background)


def _clusters(texts: np.ndarray, n: int, seed: int) -> np.ndarray:
    """k-means cluster of each text in the TF-IDF space of its character 1-3-grams."""
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    X = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True).fit_transform(texts)
    n = min(n, X.shape[0])
    return MiniBatchKMeans(n_clusters=n, n_init=1, random_state=seed, batch_size=1024).fit_predict(X)


# The default strategy's knobs: how far down the ranking it may reach (SPREAD_CANDIDATES x k texts),
# and how much a text's likeness to a text already picked counts against its uncertainty (chosen by
# `bench/learning_curve.py --tune`, on a split of the training pool, never the test split).
SPREAD_CANDIDATES = 4
SPREAD_PENALTY = 0.5


def _uncertain_spread(draw: Draw) -> np.ndarray:
    """Of the SPREAD_CANDIDATES x k most uncertain texts, the k picked one at a time by uncertainty
    minus likeness to the texts picked before (maximal marginal relevance: its rank among the
    candidates as 1 .. 0, less SPREAD_PENALTY x its largest cosine similarity to a pick, in TF-IDF
    of character 1-3-grams); then the other candidates and the rest of the pool by score. One kind
    of text then gives a few picks, not fifty, and every pick is among the most uncertain."""
    order = _by_score(draw)
    n = min(len(order), SPREAD_CANDIDATES * draw.k)
    if draw.k < 2 or n <= draw.k:
        return order
    head = order[:n]
    chosen = _least_alike(draw.pool["text"].to_numpy()[head], draw.k)
    rest = np.setdiff1d(np.arange(n), chosen, assume_unique=True)
    return np.concatenate([head[chosen], head[rest], order[n:]])


def _least_alike(texts: np.ndarray, k: int) -> np.ndarray:
    """k positions of `texts` (most uncertain first) picked greedily by rank value minus
    SPREAD_PENALTY x the largest similarity to an earlier pick; in the order picked."""
    likeness = _likeness(texts)
    value = 1.0 - np.arange(len(texts)) / len(texts)
    alike = np.zeros(len(texts))
    taken = np.zeros(len(texts), dtype=bool)
    picks = []
    for _ in range(k):
        i = int(np.argmax(np.where(taken, -np.inf, value - SPREAD_PENALTY * alike)))
        picks.append(i)
        taken[i] = True
        alike = np.maximum(alike, likeness[i])
    return np.asarray(picks)


def _likeness(texts) -> np.ndarray:
    """Cosine similarity of every pair of texts in TF-IDF of their character 1-3-grams."""
    X = _char_tfidf(texts)
    return (X @ X.T).toarray()


def _char_tfidf(texts):
    """Each text's TF-IDF row of its character 1-3-grams, unit length (scikit-learn's
    TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True), written out: scikit-learn's
    import alone would cost a new process a second)."""
    from scipy import sparse

    grams, rows = {}, []
    for text in texts:
        squeezed = " ".join(str(text).lower().split()) if text else ""
        counts = {}
        for n in (1, 2, 3):
            for i in range(len(squeezed) - n + 1):
                g = grams.setdefault(squeezed[i:i + n], len(grams))
                counts[g] = counts.get(g, 0) + 1
        rows.append(counts)
    lengths = [len(r) for r in rows]
    cols = np.fromiter((g for r in rows for g in r), dtype=np.int64, count=sum(lengths))
    tf = 1 + np.log(np.fromiter((c for r in rows for c in r.values()), dtype=float, count=sum(lengths)))
    df = np.bincount(cols, minlength=len(grams))
    idf = np.log((1 + len(rows)) / (1 + df)) + 1
    X = sparse.csr_matrix((tf * idf[cols], (np.repeat(np.arange(len(rows)), lengths), cols)),
                          shape=(len(rows), max(1, len(grams))))
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    return (sparse.diags(1 / np.where(norms > 0, norms, 1)) @ X).tocsr()


register("uncertain_spread", "the most uncertain texts, each next one also as unlike the ones picked before as "
         "it can be (smallest margin first, less its likeness to a pick; the default)",
         order=_uncertain_spread)(_margin)


def _in_turns_by(order: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """`order` re-ranked so each group (group of order[i] is groups[i]) gives its best in turn."""
    rank_in_group = pd.Series(groups).groupby(groups).cumcount().to_numpy()
    return order[np.lexsort((np.arange(len(order)), rank_in_group))]


def _in_turns(order: np.ndarray, group_of_position: np.ndarray) -> np.ndarray:
    """`order` re-ranked so each group (indexed by pool position) gives its best in turn."""
    return _in_turns_by(order, group_of_position[order])


def _pick(texts, order: np.ndarray, k: int, threshold: float | None) -> list[int]:
    """The first k positions of `order` whose text is not a near-duplicate of one already picked.

    `texts` is anything with `take(positions)` (an array, a column's .array): only the texts the walk
    reaches are read, k at a time and then twice as many (most draws read k texts of a large pool)."""
    if threshold is None:
        return [int(i) for i in order[:k]]
    picked, kept, start, step = [], _Picked(threshold), 0, k
    while start < len(order) and len(picked) < k:
        part = order[start:start + step]
        for i, mine in zip(part, _shingle_sets(list(texts.take(part)))):
            if kept.add_unless_near(mine):
                picked.append(int(i))
                if len(picked) == k:
                    break
        start, step = start + len(part), 2 * step
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


def _shingle_sets(texts: list[str]) -> list[set]:
    """_shingles of each text, each 3-gram as one int (its code points + 1 in 21 bits each, 0 past
    the text's end: one int per distinct 3-gram), computed for all texts at once in numpy; the
    same Jaccard similarities as the strings', at a third of the cost."""
    squeezed = ["".join(t.lower().split()) for t in texts]
    lengths = np.fromiter(map(len, squeezed), dtype=np.int64, count=len(squeezed))
    codes = np.frombuffer("".join(squeezed).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    padded = np.zeros(int(lengths.sum()) + SHINGLE * len(texts), dtype=np.int64)  # SHINGLE zeros after each text
    padded[np.arange(len(codes)) + SHINGLE * np.repeat(np.arange(len(texts)), lengths)] = codes.astype(np.int64) + 1
    packed = ((padded[:-2] << 42) | (padded[1:-1] << 21) | padded[2:]).tolist()
    starts = (np.cumsum(lengths + SHINGLE) - lengths - SHINGLE).tolist()
    counts = np.maximum(1, lengths - SHINGLE + 1).tolist()
    return [set(packed[a:a + n]) for a, n in zip(starts, counts)]


def queue_size(store: Store, name: str, business_lines=None, since=None, until=None,
               version: int | None = None, text: str | None = None) -> int:
    """How many distinct unlabelled texts the filters (and the search `text`) leave to label."""
    filters = {**Slice.of(business_lines, since, until, version).filters(), **search_filter(text)}
    with store.connect() as con:
        model = registry.find_model(con, name)
        return db.unlabelled_count(con, model.model_id, **filters)


SEARCH_MAX_CHARS = 200


def search_filter(text: str | None) -> dict:
    """The store's filter for a search of the queue by text: {} when there is nothing to search
    for (blank), a sentence when it is not text or too long to be part of one."""
    if text is None:
        return {}
    if not isinstance(text, str):
        raise InvalidInput(f"the search text must be text, not {text!r}")
    text = text.strip()
    if len(text) > SEARCH_MAX_CHARS:
        raise InvalidInput(f"the search text has {len(text)} characters; at most {SEARCH_MAX_CHARS} are searched for")
    return {"text": text} if text else {}
