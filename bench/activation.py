"""Activation: how soon a (re)activated version answers predictions, without a restart.

In one process: activate the other version with core.registry.activate_version, then predict
until a prediction comes from the new version. Across processes: `python -m core activate`
while a predicting loop in this process (one text per call, a pause between calls) notices the
change; the delay is counted from the CLI's exit.

    python bench/activation.py [--rounds 20] [--cli-rounds 5] [--pause 0.02]
"""
import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from _common import ROOT, header, timer
from core import demo, predict, registry, train
from core.errors import StoreBusy
from core.store import Store

USER = "bench"
TEXT = "房间很干净，服务也周到，下次还会再来。"


def predict_version(store: Store) -> int:
    return int(predict.predict_texts(store, demo.MODEL, [TEXT], USER, business_line="bench")["version"].iloc[0])


def in_process(store: Store, rounds: int) -> None:
    switch, effect = [], []
    current = registry.get_version(store, demo.MODEL).version
    for _ in range(rounds):
        target = 3 - current
        with timer() as t_effect:
            with timer() as t_switch:
                registry.activate_version(store, demo.MODEL, target, USER, "bench")
            calls = 1
            while predict_version(store) != target:
                calls += 1
        if calls != 1:
            print(f"  (the new version answered only at prediction {calls})")
        switch.append(t_switch.seconds)
        effect.append(t_effect.seconds)
        current = target
    print(f"in one process, {rounds} activations (each version's model file is loaded by its first prediction):")
    print(f"  activate_version:                      median {statistics.median(switch) * 1000:6.1f} ms  "
          f"max {max(switch) * 1000:6.1f} ms")
    print(f"  activation to a prediction from it:    median {statistics.median(effect) * 1000:6.1f} ms  "
          f"max {max(effect) * 1000:6.1f} ms   (target < 1000 ms)")


class Predictor(threading.Thread):
    """Predicts one text after another, recording when each answer came and from which version."""

    def __init__(self, store: Store, pause: float):
        super().__init__(daemon=True)
        self.store, self.pause = store, pause
        self.answers: list[tuple[float, int]] = []  # (perf_counter, version)
        self.clock: list[float] = []  # the wall clock of each answer, as the store's timestamps use
        self.busy = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                version = predict_version(self.store)
                self.answers.append((time.perf_counter(), version))
                self.clock.append(time.time())
            except StoreBusy:
                self.busy += 1
            time.sleep(self.pause)

    def first_from(self, version: int, after: float) -> float | None:
        return next((t for t, v in self.answers if v == version and t > after), None)

    def first_clock_from(self, version: int, after: float) -> float:
        return next(c for (t, v), c in zip(self.answers, self.clock) if v == version and t > after)


def activated_at(store: Store) -> float:
    """The wall-clock time of the newest activation, from its audit event (written in the same
    transaction as the switch, just before it commits)."""
    at = registry.activation_history(store, demo.MODEL)["at"].max()  # naive local time
    return time.mktime(at.timetuple()) + at.microsecond / 1e6


def across_processes(store: Store, rounds: int, pause: float) -> None:
    delays, from_event, cli_seconds, calls = [], [], [], []
    busy = 0
    current = registry.get_version(store, demo.MODEL).version
    for _ in range(rounds):
        target = 3 - current
        loop = Predictor(store, pause)
        loop.start()
        time.sleep(0.5)  # the loop is answering before the CLI starts
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "core", "--store", str(store.path), "--user", USER, "activate",
                        demo.MODEL, str(target), "--reason", "bench"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        exited = time.perf_counter()
        deadline = exited + 10
        while loop.first_from(target, start) is None and time.perf_counter() < deadline:
            time.sleep(0.005)
        loop.stop.set()
        loop.join()
        seen = loop.first_from(target, start)
        if seen is None:
            print(f"  no prediction from version {target} within 10 s of the CLI's exit")
            continue
        delays.append(seen - exited)
        from_event.append(loop.first_clock_from(target, start) - activated_at(store))
        cli_seconds.append(exited - start)
        calls.append(sum(1 for t, _ in loop.answers if start < t <= exited))
        busy += loop.busy
        current = target
    if not delays:
        return
    print(f"across processes, {len(delays)} activations by `python -m core activate` while this process predicts "
          f"(one text per call, {pause * 1000:.0f} ms pause):")
    print(f"  the CLI, start to exit:                median {statistics.median(cli_seconds):.2f} s  "
          f"max {max(cli_seconds):.2f} s  ({statistics.median(calls):.0f} predictions answered meanwhile)")
    print(f"  CLI exit to a prediction from the new version: median {statistics.median(delays) * 1000:6.1f} ms  "
          f"max {max(delays) * 1000:6.1f} ms   (negative: before the CLI process had ended)")
    print(f"  the switch's commit (its audit event) to a prediction from the new version: "
          f"median {statistics.median(from_event) * 1000:6.1f} ms  max {max(from_event) * 1000:6.1f} ms   "
          f"(target < 1000 ms)")
    if busy:
        print(f"  predictions refused as 'store is busy': {busy}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cli-rounds", type=int, default=5)
    parser.add_argument("--pause", type=float, default=0.02, help="seconds between the loop's predictions")
    args = parser.parse_args()
    header("activation")
    folder = tempfile.mkdtemp(prefix="mms-bench-activation-")
    try:
        store = Store(folder + "/bench.duckdb")
        demo.build_store(store, USER, n_train=2000, n_test=500, n_traffic=0)
        train.train_version(store, demo.MODEL, USER, model_config={"estimator": "complement_nb"})
        print("versions: 1 (logreg), 2 (complement_nb); version 1 active")
        in_process(store, args.rounds)
        across_processes(store, args.cli_rounds, args.pause)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
