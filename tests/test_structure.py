"""The shape of core: no import circle, no import hidden in a function to dodge one, SQL only in core/store/,
and plain unit tests for what moved into estimators, artifacts, train and the activation writer."""
import ast
import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import artifacts, estimators, imports, registry, train
from core.errors import ArtifactError, InvalidInput, TrainingError
from core.preprocess import PreprocessConfig

from conftest import make_model

CORE = Path(__file__).resolve().parent.parent / "core"
# Modules allowed to import core modules inside functions, and why. Lazy third-party imports
# (scikit-learn in estimators and metrics) are not relative, so they need no entry here.
LAZY_CORE_IMPORTS = {
    "cli": "each command imports only the modules it runs, so `python -m core --help` is fast",
}


def _module_level(tree: ast.Module):
    """Import statements that run when the module is imported (not inside a def or class)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            todo.extend(ast.iter_child_nodes(node))
        elif isinstance(node, ast.ExceptHandler):
            todo.extend(node.body)


def _core_targets(node, modules: set[str]) -> set[str]:
    """The core modules an import statement names."""
    if isinstance(node, ast.Import):
        return {a.name.split(".")[1] for a in node.names if a.name.startswith("core.")} & modules
    if node.level == 0:
        return {node.module.split(".")[1]} & modules if (node.module or "").startswith("core.") else set()
    if node.module:
        return {node.module.split(".")[0]} & modules
    return {a.name for a in node.names} & modules


def _trees() -> dict[str, ast.Module]:
    """Each core module's syntax tree; a package (core/store/) is one node: its modules' statements
    together, with imports inside the package left out (they are its own business)."""
    trees = {p.stem: ast.parse(p.read_text(encoding="utf-8")) for p in sorted(CORE.glob("*.py"))}
    for package in sorted(p.parent for p in CORE.glob("*/__init__.py")):
        body = []
        for path in sorted(package.glob("*.py")):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.ImportFrom) and node.level == 1:
                    continue  # from .engine import ..., from . import schema
                if isinstance(node, ast.ImportFrom) and node.level == 2:
                    node.level = 1  # from .. import settings: as core/<package>.py would write it
                body.append(node)
        trees[package.name] = ast.Module(body=body, type_ignores=[])
    return trees


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_core_has_no_import_circle():
    trees = _trees()
    modules = set(trees)
    graph = {m: set().union(*(_core_targets(n, modules) for n in _module_level(t))) - {m}
             for m, t in trees.items()}
    assert graph["train"] >= {"registry", "estimators", "metrics", "artifacts"}  # the walk sees imports
    assert _cycle(graph) is None, f"import circle in core: {' -> '.join(_cycle(graph))}"


def test_the_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_core_import_is_hidden_inside_a_function():
    hidden = []
    for name, tree in _trees().items():
        if name in LAZY_CORE_IMPORTS:
            continue
        for func in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(func):
                if isinstance(node, ast.ImportFrom) and node.level > 0:
                    hidden.append(f"core/{name}.py:{node.lineno} in {func.name}()")
    assert hidden == [], f"function-level imports of core modules: {hidden}"


def test_sql_runs_only_in_the_store_package():
    root = CORE.parent
    outside = [p for p in sorted(CORE.rglob("*.py")) if p.relative_to(CORE).parts[0] != "store"]
    outside += sorted((root / "pages").rglob("*.py")) + [root / "app.py"]
    calls = [f"{p.relative_to(root)}:{node.lineno}" for p in outside
             for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr in ("execute", "executemany", "sql")]
    assert calls == [], f"SQL outside core/store/: {calls}"
    assert (CORE / "store" / "engine.py").exists() and not (CORE / "store.py").exists()

# --- estimators ---------------------------------------------------------------------------

def test_probability_columns_are_named_once():
    assert estimators.prob_column("正面") == "p_正面"
    frame = estimators.proba_frame([[0.9, 0.1], [0.3, 0.7]], ["正面", "负面"])
    assert list(frame.columns) == ["p_正面", "p_负面"]
    assert frame.to_numpy().tolist() == [[0.9, 0.1], [0.3, 0.7]]
    assert list(estimators.proba_frame([], ["a", "b"]).columns) == ["p_a", "p_b"]


def test_token_ngrams_make_word_and_character_ngrams():
    assert estimators.TokenNgrams((1, 2))(["质量", "不错", "啊"]) == ["质量", "不错", "啊", "质量 不错", "不错 啊"]
    assert estimators.TokenNgrams((2, 2))(["a", "b"]) == ["a b"]
    assert estimators.TokenNgrams((1, 1), (2, 2))(["好", "评"]) == ["好", "评", "\x01好评"]


def test_model_config_refuses_what_it_cannot_build():
    for bad, message in [({"estimator": "bert"}, "estimator must be one of"), ({"colour": 1}, "unknown model setting"),
                         ({"word_ngrams": [3, 1]}, "word_ngrams must be a range"), ({"C": 0}, "C must be a positive"),
                         ({"max_iter": "many"}, "max_iter must be a whole number")]:
        with pytest.raises(InvalidInput, match=message):
            estimators.ModelConfig.from_dict(bad)
    config = estimators.ModelConfig.from_dict({"estimator": "sgd", "word_ngrams": [1, 3]})
    assert config.incremental and config.word_ngrams == (1, 3)
    assert estimators.ModelConfig.from_dict(config.to_dict()) == config
    assert json.loads(json.dumps(config.to_dict()))["word_ngrams"] == [1, 3]


def test_predict_proba_follows_the_models_label_order(reviews):
    rows = reviews.iloc[:200]
    tokens = [list(t) for t in rows["text"]]
    pipeline = estimators.build_pipeline(estimators.ModelConfig(estimator="complement_nb"))
    pipeline.fit(tokens, rows["label"].tolist())
    proba = estimators.predict_proba(pipeline, tokens[:5], ["负面", "中性", "正面"])
    assert proba.shape == (5, 3)
    assert np.allclose(proba.sum(axis=1), 1) and (proba[:, 1] == 0).all()  # 中性 never seen: probability 0


def test_model_files_pickled_before_the_move_still_load():
    old = pickle.dumps(estimators.TokenNgrams((1, 2)), protocol=2)
    old = old.replace(b"core.estimators", b"core.train")  # how files written by the old core.train name it
    assert b"core.train" in old
    assert pickle.loads(old)(["a", "b"]) == ["a", "b", "a b"]


# --- artifacts ----------------------------------------------------------------------------

def test_artifacts_save_verify_load_and_refuse_a_tampered_file(store):
    rel, digest = artifacts.save(store, 7, {"labels": ["a", "b"]})
    assert rel.startswith("artifacts/7/") and not list(store.artifacts_dir.rglob("*" + artifacts.PARTIAL))
    version = registry.Version(model_id=7, version=1, parent_version=None, mode="full", model_config={},
                               preprocess={}, data={}, metrics={}, max_example_id=0, artifact=rel, sha256=digest,
                               created_at=pd.Timestamp.now(), created_by="u")
    assert artifacts.verify(store, version) == (store.path.parent / rel).resolve()
    assert artifacts.load(store, version) == {"labels": ["a", "b"]}
    with open(store.path.parent / rel, "ab") as f:
        f.write(b"x")
    with pytest.raises(ArtifactError, match="has been altered"):
        artifacts.verify(store, version)
    outside = dataclasses.replace(version, artifact="../elsewhere.joblib")
    with pytest.raises(ArtifactError, match="outside the store's folder"):
        artifacts.verify(store, outside)


# --- train --------------------------------------------------------------------------------

def test_fit_full_and_fit_incremental_each_make_a_version(store, reviews):
    _, _, rest = make_model(store, reviews, config={"estimator": "sgd"})
    model = registry.get_model(store, "m")
    full = train.fit_full(store, model, estimators.ModelConfig(estimator="sgd"), PreprocessConfig())
    assert (full.mode, full.parent_version, full.rows_by_source, len(full.train)) == (registry.FULL, None, {"import": 300}, 300)
    v1 = train.train_version(store, "m", "u")
    assert (v1.version, v1.mode, v1.data["rows"]) == (1, registry.FULL, 300)
    with pytest.raises(TrainingError, match="no new labels"):
        train.fit_incremental(store, model, v1)
    imports.import_frame(store, "m", rest.iloc[:50], "train", "u")
    update = train.fit_incremental(store, registry.get_model(store, "m"), v1)
    assert (update.mode, update.parent_version, update.rows_by_source, len(update.train)) == \
        (registry.INCREMENTAL, 1, {"import": 350}, 50)
    v2 = train.train_version(store, "m", "u", incremental=True)
    assert (v2.version, v2.mode, v2.parent_version, v2.data["rows"], v2.data["new_rows"]) == \
        (2, registry.INCREMENTAL, 1, 350, 50)


# --- one activation writer ----------------------------------------------------------------

def _activations(store) -> list[dict]:
    events = registry.events_table(store, "m")
    return [json.loads(d) for d in events[events["action"] == "activate"]["details"]][::-1]


def test_training_and_activate_version_write_the_same_activation(store, reviews):
    make_model(store, reviews)
    train.train_version(store, "m", "u")
    train.train_version(store, "m", "u", activate=True)
    assert len(_activations(store)) == 2  # the first version's, and exactly one for activate=True
    registry.activate_version(store, "m", 1, "u", "back to the first")
    first, after_training, by_hand = _activations(store)
    assert (first["from_version"], first["to_version"], first["reason"]) == (None, 1, "first version")
    assert (after_training["from_version"], after_training["to_version"], after_training["reason"]) == \
        (1, 2, "activated after training")
    assert (by_hand["from_version"], by_hand["to_version"], by_hand["reason"]) == (2, 1, "back to the first")
    assert set(first) == set(after_training) == set(by_hand)  # one writer, one shape
    assert registry.get_model(store, "m").active_version == 1
