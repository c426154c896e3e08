"""Calibration and model selection (issue 21): ECE before and after on the demo's reviews and on
synthetic ten-class titles, and selection's pick against the best calibrated candidate.

"Before" is what versions were calibrated with until now: scikit-learn's CalibratedClassifierCV,
sigmoid per class (one against the rest, then normalised), 3 folds, the folds' models averaged.
"After" is `estimators.build_pipeline` (calibration.CalibratedScores: one map over the
out-of-fold decision scores, chosen by cross-validation on the training split).

Selection: a version trained in the default mode ("auto") on each set records every candidate's
cross-validated score (of the calibrated model, as trained); each tried candidate is then fitted
on the whole training split and scored on the test split, so the pick can be set against the best
candidate on both. "uncal. CV" is how selection scored candidates before (no calibration).
The ten-class titles and the uneven star reviews are generated (tests/topicfixtures.py,
tests/gradedfixtures.py). Prints figures; decides nothing.

    python bench/calibration.py [--topics-train 10000] [--topics-test 10000] [--stars-train 845] [--stars-test 363]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import header  # noqa: E402
from core import demo, estimators, imports, registry, train  # noqa: E402
from core.estimators import ModelConfig  # noqa: E402
from core.metrics import expected_calibration_error, sorted_log_loss  # noqa: E402
from core.preprocess import PreprocessConfig, Tokenizer  # noqa: E402
from core.store import Store  # noqa: E402
from gradedfixtures import STARS, star_reviews  # noqa: E402
from topicfixtures import CLASSES, topic_frame  # noqa: E402


def before(config: ModelConfig):
    """The calibration versions had until now."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline

    cv = StratifiedKFold(3, shuffle=True, random_state=config.seed)
    return Pipeline([("features", estimators.features(config)),
                     ("clf", CalibratedClassifierCV(estimators.classifier(config), method="sigmoid", cv=cv))])


def figures(pipeline, tokens, labels: list[str], classes: list[str]) -> dict:
    proba = estimators.predict_proba(pipeline, tokens, classes)
    truth = np.asarray(labels, dtype=object)
    correct = np.asarray(classes, dtype=object)[proba.argmax(axis=1)] == truth
    clipped = np.clip(proba, 1e-15, 1)
    return {"accuracy": correct.mean(), "ece": expected_calibration_error(proba.max(axis=1), correct),
            "log loss": sorted_log_loss(truth, clipped / clipped.sum(axis=1, keepdims=True), classes),
            "mean confidence": proba.max(axis=1).mean()}


def calibration_rows(name: str, config: ModelConfig, train_tokens, train_labels, test_tokens, test_labels,
                     classes) -> list[dict]:
    rows = []
    for how, pipeline in (("before: sigmoid one-vs-rest", before(config)),
                          ("after: map chosen by CV", estimators.build_pipeline(config))):
        began = time.perf_counter()
        pipeline.fit(train_tokens, train_labels)
        row = {"set": name, "config": config.describe(), "calibration": how,
               "fit s": time.perf_counter() - began, **figures(pipeline, test_tokens, test_labels, classes)}
        clf = pipeline.named_steps["clf"]
        row["map"] = getattr(clf, "method_", "sigmoid")
        rows.append(row)
    return rows


def selection_rows(name: str, store: Store, model: str, classes: list[str], grades, tokens, labels,
                   test_tokens, test_labels) -> tuple[list[dict], float]:
    """Train `model` in auto mode; then every tried candidate fitted and scored on the test split."""
    from sklearn.metrics import cohen_kappa_score, f1_score

    began = time.perf_counter()
    v = train.train_version(store, model, "bench")
    seconds = time.perf_counter() - began
    record = v.data["selection"]
    key = f"cv_{record['scoring']}"
    y = np.asarray(labels, dtype=object)
    rows = []
    for tried in record["tried"]:
        if key not in tried:
            continue
        config = ModelConfig.from_dict(tried["config"])
        pipeline = estimators.build_pipeline(config, estimators.calibration_folds(labels), grades).fit(tokens, labels)
        proba = estimators.predict_proba(pipeline, test_tokens, classes)
        predicted = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            test = (cohen_kappa_score(test_labels, predicted, labels=classes, weights="quadratic") if grades
                    else f1_score(test_labels, predicted, average="macro"))
            X = estimators.features(config).fit_transform(tokens)
            from sklearn.model_selection import StratifiedKFold
            folds = StratifiedKFold(3, shuffle=True, random_state=config.seed).split(np.zeros(len(y)), y)
            uncal = []
            for a, b in folds:
                raw = estimators.graded(estimators.classifier(config), grades).fit(X[a], y[a]).predict(X[b])
                uncal.append(cohen_kappa_score(y[b], raw, labels=classes, weights="quadratic") if grades
                             else f1_score(y[b], raw, average="macro"))
        rows.append({"set": name, "candidate": tried["describe"], "uncal. CV": float(np.mean(uncal)),
                     "CV": tried[key], "test": test, "CV ECE": tried["cv_ece"],
                     "picked": "<- pick" if tried["config"] == record["chosen"] else ""})
    print(f"{name}: {record['reason']}; trained in {seconds:.0f} s (selection {record['seconds']:.0f} s of a "
          f"{record['budget_seconds']:.0f} s budget), test ECE {v.metrics['ece']:.3f}, load {os.getloadavg()[0]:.1f}")
    return rows, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics-train", type=int, default=10000)
    parser.add_argument("--topics-test", type=int, default=10000)
    parser.add_argument("--stars-train", type=int, default=845)
    parser.add_argument("--stars-test", type=int, default=363)
    args = parser.parse_args()
    header("calibration and model selection")
    tokenizer = Tokenizer(PreprocessConfig())
    cut = lambda texts: tokenizer.cut_many(list(texts))  # noqa: E731

    reviews = demo.load_reviews().sample(frac=1.0, random_state=demo.SEED).reset_index(drop=True)
    demo_test, demo_train = reviews.iloc[:2000], reviews.iloc[2000:6000]  # the demo's split
    topics_train, topics_test = topic_frame(1, args.topics_train), topic_frame(2, args.topics_test)
    sets = {"demo reviews (2 classes)": (demo_train, demo_test, sorted(set(demo_train["label"]))),
            f"topics ({len(CLASSES)} classes)": (topics_train, topics_test, CLASSES)}
    rows = []
    for name, (tr, te, classes) in sets.items():
        a, b = cut(tr["text"]), cut(te["text"])
        for config in (ModelConfig(estimator="logreg"), ModelConfig(estimator="linear_svc", C=0.5, char_ngrams=(1, 3))):
            rows += calibration_rows(name, config, a, tr["label"].tolist(), b, te["label"].tolist(), classes)
            print(f"  {name}, {config.describe()}: done, load {os.getloadavg()[0]:.1f}", flush=True)
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.3f}"))

    picks = []
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "mms.duckdb")
        stars_train, stars_test = star_reviews(1, args.stars_train), star_reviews(2, args.stars_test)
        for name, model, classes, task, tr, te in (
                ("topics", "topics", CLASSES, "classification", topics_train, topics_test),
                ("stars 5/5/20/40/30 %", "stars", STARS, "ordinal", stars_train, stars_test)):
            registry.create_model(store, model, classes, "bench", task=task)
            imports.import_frame(store, model, tr, "train", "bench")
            imports.import_frame(store, model, te, "test", "bench")
            grades = classes if task == "ordinal" else None
            found, _ = selection_rows(name, store, model, classes, grades, cut(tr["text"]), tr["label"].tolist(),
                                      cut(te["text"]), te["label"].tolist())
            picks += found
    print("selection (topics: macro-F1, stars: QWK), each candidate calibrated as trained")
    print(pd.DataFrame(picks).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
