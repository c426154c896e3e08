"""Crashes and concurrent writers: kill -9 at random moments, several processes on one store.

Each test prints what it tried and what survived (run pytest -s to see the figures)."""
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from core import artifacts, registry, train

import storeprobe as probe

ROOT = Path(__file__).resolve().parent.parent
M = "评论情感"


def _spawn(store, *args, env=None):
    return subprocess.Popen([sys.executable, "-m", "core", "--store", str(store.path), "--user", "ops", *map(str, args)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def _state(store):
    with store.connect() as con:
        counts = probe.table_counts(con)
    versions = registry.list_versions(store, M)
    return counts, versions


def _assert_sound(store, active_before):
    """The store opens, the active version is unchanged, every version's model file loads."""
    model = registry.get_model(store, M)
    assert model.active_version == active_before
    for v in registry.list_versions(store, M):
        artifacts.verify(store, v)


def test_kill_9_during_training_never_leaves_a_half_made_version(seeded_store):
    rng = random.Random(7)
    trials, completed, killed = 12, 0, 0
    for trial in range(trials):
        (_, before) = _state(seeded_store)
        proc = _spawn(seeded_store, "train", M)
        time.sleep(rng.uniform(0.5, 9.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        (_, after) = _state(seeded_store)
        assert len(after) in (len(before), len(before) + 1)
        completed += len(after) - len(before)
        _assert_sound(seeded_store, 1)
    strays = artifacts.strays(seeded_store)
    assert all(artifacts.remove_strays(seeded_store, older_than_seconds=0) == strays for _ in [0])
    assert artifacts.strays(seeded_store) == []
    print(f"\ntraining: {trials} runs, {killed} killed, {completed} completed versions, "
          f"{len(strays)} stray files removed, 0 half-made versions")


def test_kill_9_during_an_import_writes_all_rows_or_none(seeded_store, reviews, tmp_path):
    big = reviews.iloc[:12000][["text", "label"]]
    big.to_csv(tmp_path / "big.csv", index=False)
    rng = random.Random(11)
    trials, whole, none = 10, 0, 0
    for trial in range(trials):
        (before, _) = _state(seeded_store)
        proc = _spawn(seeded_store, "import", M, tmp_path / "big.csv", "--split", "train")
        time.sleep(rng.uniform(0.3, 3.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        (after, _) = _state(seeded_store)
        added = after["examples"] - before["examples"]
        assert added in (0, len(big)), f"trial {trial}: {added} rows of {len(big)} written"
        whole += added == len(big)
        none += added == 0
        _assert_sound(seeded_store, 1)
    print(f"\nimport: {trials} runs killed at random, {whole} complete, {none} left nothing, 0 partial")


def test_concurrent_writers_lose_nothing(seeded_store, reviews, tmp_path):
    """The app (threads in this process), the CLI and a second predicting process, at once."""
    texts = reviews["text"].iloc[:40].tolist()
    pd.DataFrame({"text": texts[:20], "business_line": "酒店"}).to_csv(tmp_path / "batch.csv", index=False)
    loop = tmp_path / "loop.py"
    loop.write_text(f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from core import predict
from core.errors import StoreBusy
from core.store import Store
ok = busy = 0
for i in range(12):
    try:
        ok += len(predict.predict_texts(Store({str(seeded_store.path)!r}), {M!r}, {texts[20:]!r}, "loop"))
    except StoreBusy:
        busy += 1
print(ok, busy)
""")
    env = {"MMS_LOCK_TIMEOUT": "30"}
    with seeded_store.connect() as con:
        before = probe.table_counts(con)
    looper = subprocess.Popen([sys.executable, str(loop)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, **env})
    clis = [_spawn(seeded_store, "predict", M, tmp_path / "batch.csv", env=env) for _ in range(4)]

    from core import feedback, predict
    os.environ["MMS_LOCK_TIMEOUT"] = "30"
    try:
        def app_work(i):
            logged = predict.predict_texts(seeded_store, M, texts[:5], "app")
            feedback.label_prediction(seeded_store, M, int(logged["prediction_id"].iloc[0]), "正面", "app")
            return len(logged)
        with ThreadPoolExecutor(4) as pool:
            app_predictions = sum(pool.map(app_work, range(16)))
    finally:
        del os.environ["MMS_LOCK_TIMEOUT"]
    for c in clis:
        assert c.wait(timeout=300) == 0, c.stderr.read()
    out, _ = looper.communicate(timeout=300)
    assert looper.returncode == 0, "the predicting loop failed (its error is above)"
    loop_ok, loop_busy = map(int, out.split())
    with seeded_store.connect() as con:
        after = probe.table_counts(con)
    expected = app_predictions + 4 * 20 + loop_ok
    assert after["predictions"] - before["predictions"] == expected
    assert after["feedback"] - before["feedback"] == 16
    print(f"\nconcurrent writers: {expected} predictions and 16 labels answered, "
          f"{after['predictions'] - before['predictions']} logged, {loop_busy} busy refusals, 0 lost")


def test_simultaneous_activations_leave_exactly_one_active_and_all_audited(seeded_store):
    for estimator in ("complement_nb", "sgd", "logreg"):
        train.train_version(seeded_store, M, "ops", model_config={"estimator": estimator})
    procs = [(v, _spawn(seeded_store, "activate", M, v, "--reason", f"race {v}", env={"MMS_LOCK_TIMEOUT": "30"}))
             for v in (1, 2, 3, 4) for _ in range(2)]
    codes = [(v, p.wait(timeout=120)) for v, p in procs]
    assert all(code == 0 for _, code in codes)
    history = registry.activation_history(seeded_store, M)
    races = history[history["reason"].str.startswith("race")]
    assert len(races) == len(procs)
    statuses = [v.status for v in registry.list_versions(seeded_store, M)]
    assert statuses.count("active") == 1
    assert registry.get_model(seeded_store, M).active_version == races["to_version"].iloc[0]  # the last one wins
    print(f"\nactivations: {len(procs)} at once, {len(races)} audited, exactly 1 active")
