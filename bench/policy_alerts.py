"""The self-running loop and alerts (issue 26) on the demo store, with the store held open and
predictions logged by the group-commit writer as in the server:

1. a policy run from trigger to active version: N labels given to live predictions start it, it
   trains (full), the promotion guard judges, the one activation writer switches; its time and what
   it did, and the p50 / p95 latency of single-text predictions answered meanwhile (requests from
   --clients threads) against the same requests with no run going on. The fit runs where the server
   runs it: in the low-priority worker process (workers.in_background); with --fit-here, on a
   nice-10 thread of the serving process instead (how runs trained before), for the comparison;
2. alert delivery from trigger to the receiver (a loopback HTTP server): the time from the threshold
   check that raises the alerts to each one's arrival; then a receiver outage of --outage seconds
   (nothing listens on its port): the attempts recorded meanwhile and the time from the alert to its
   arrival once the receiver is back.

    python bench/policy_alerts.py [--small] [--labels 300] [--clients 2] [--outage 6] [--fit-here] [--no-alerts]
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

import pandas as pd

from _common import ROOT, header, timer

sys.path.insert(0, str(ROOT / "tests"))
from webhook import Receiver  # noqa: E402  (the tests' loopback receiver)
from servers import free_port  # noqa: E402

from core import alerts, demo, feedback, policy, predict, registry, workers  # noqa: E402
from core.serving import Serving  # noqa: E402
from core.store import Store  # noqa: E402

USER = "bench"


def latencies(store: Store, texts: list[str], clients: int, until) -> list[float]:
    """Seconds per single-text prediction from `clients` threads, until `until()` is true."""
    times, lock = [], threading.Lock()

    def client(offset: int) -> None:
        i = offset
        while not until():
            began = time.perf_counter()
            predict.predict_texts(store, demo.MODEL, [texts[i % len(texts)]], USER, business_line="酒店")
            with lock:
                times.append(time.perf_counter() - began)
            i += clients

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 2 else float("nan")


def policy_run(store: Store, n_labels: int, clients: int, round_: int = 0) -> None:
    texts = demo.load_reviews().sample(1500 + 4 * n_labels, random_state=11)
    truth = dict(zip(texts["text"], texts["label"]))
    quiet_for = 15.0
    began = time.monotonic()
    quiet = latencies(store, texts["text"].tolist()[:1500], clients, lambda: time.monotonic() - began > quiet_for)
    print(f"serving alone: {len(quiet)} predictions in {quiet_for:.0f} s from {clients} clients, p50 "
          f"{pct(quiet, 50):.1f} ms, p95 {pct(quiet, 95):.1f} ms (load average {os.getloadavg()[0]:.1f})")
    fresh = texts["text"].tolist()[1500 + round_ * n_labels:1500 + (round_ + 1) * n_labels]
    logged = predict.predict_texts(store, demo.MODEL, fresh, USER, business_line="酒店")
    feedback.record_labels(store, demo.MODEL, pd.DataFrame({"prediction_id": logged["prediction_id"],
                                                            "label": logged["text"].map(truth)}), USER)
    policy.set_policy(store, demo.MODEL, USER, enabled=True, new_labels=n_labels)
    before = registry.get_model(store, demo.MODEL).active_version
    done = threading.Event()
    result = {}

    def run() -> None:  # as the server's loop does: the run on a thread of its own, below the requests
        with timer() as t:
            result["said"] = policy.check_model(store, demo.MODEL, wait=False)
            while policy.runs_table(store, demo.MODEL).iloc[0]["state"] in policy.OPEN_STATES:
                time.sleep(0.05)
        result["seconds"] = t.seconds
        done.set()

    threading.Thread(target=run).start()
    busy = latencies(store, texts["text"].tolist()[:1500], clients, done.is_set)
    runs = policy.runs_table(store, demo.MODEL)
    last = policy.get_run(store, int(runs.iloc[0]["run_id"]))
    trained = last.details.get("trained", {})
    print(f"policy run {last.run_id}: trigger {last.trigger} ({last.details['why']['sentence']}), {last.mode} retrain "
          f"of version {before} -> version {last.version} on {trained.get('rows')} rows ({trained.get('estimator')}, "
          f"macro-F1 {trained.get('macro_f1', float('nan')):.3f}) in {trained.get('seconds')} s; guard "
          f"{'passed' if last.details.get('guard', {}).get('passed') else 'refused'}; state {last.state}; "
          f"active version now {registry.get_model(store, demo.MODEL).active_version}")
    print(f"trigger to active version: {result['seconds']:.1f} s (check, train, guard, activate); fitted in "
          f"{trained.get('fitted_in')} (load average {os.getloadavg()[0]:.1f})")
    print(f"serving meanwhile: {len(busy)} predictions from {clients} clients, p50 {pct(busy, 50):.1f} ms, p95 "
          f"{pct(busy, 95):.1f} ms; p50 ratio to serving alone {pct(busy, 50) / pct(quiet, 50):.2f} "
          f"(load average {os.getloadavg()[0]:.1f})")


def wait_for(receiver: Receiver, n: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while len(receiver.bodies) < n and time.monotonic() < deadline:
        time.sleep(0.005)


def alert_delivery(store: Store, outage: float) -> None:
    os.environ["MMS_ALERT_RETRY_SECONDS"] = "0.5"
    sender = alerts.Sender(store).start()
    try:
        with Receiver() as receiver:
            alerts.set_settings(store, demo.MODEL, USER, webhook=receiver.url, estimated_below=0.99)
            began = time.perf_counter()
            raised = alerts.check_model(store, demo.MODEL)
            checked = time.perf_counter() - began
            wait_for(receiver, len(raised))
            waits = [at - began for at in receiver.arrived]
            if waits:
                print(f"alerts: {len(raised)} raised by one threshold check ({checked:.2f} s to read the figures "
                      f"and record them); {len(waits)} received, from the check's start: first {waits[0]:.2f} s, "
                      f"median {statistics.median(waits):.2f} s, last {waits[-1]:.2f} s")
            else:
                print(f"alerts: the threshold check raised none ({checked:.2f} s)")
            waits = []
            for k in range(20):  # one at a time: each alert's own trip from its raising to the receiver
                began = time.perf_counter()
                alerts.raise_alert(store, demo.MODEL, alerts.ESTIMATED, f"bench {k}", f"bench alert {k}")
                wait_for(receiver, len(raised) + k + 1)
                waits.append(receiver.arrived[-1] - began)
            print(f"alerts raised one at a time (20): raise to receiver p50 {1000 * statistics.median(waits):.0f} ms, "
                  f"max {1000 * max(waits):.0f} ms")
        port = free_port()
        alerts.set_settings(store, demo.MODEL, USER, webhook=f"http://127.0.0.1:{port}/hook")
        began = time.perf_counter()
        alert = alerts.raise_alert(store, demo.MODEL, alerts.ESTIMATED, "bench outage", "a bench alert during an outage")
        time.sleep(outage)
        during = alerts.deliveries(store, alert.alert_id)
        with Receiver(port) as back:
            back_at = time.perf_counter()
            deadline = time.monotonic() + 120
            while not back.bodies and time.monotonic() < deadline:
                time.sleep(0.01)
            got = time.perf_counter()
        attempts = alerts.deliveries(store, alert.alert_id)
        print(f"outage: receiver down {outage:.0f} s; {len(during)} failed attempts recorded meanwhile "
              f"({during['error'].iloc[0] if len(during) else 'none'}); after it came back the alert arrived in "
              f"{got - back_at:.2f} s at attempt {int(attempts['attempt'].iloc[-1])}, {got - began:.2f} s after it "
              f"was raised; state kept: {alerts.alerts_table(store, demo.MODEL).set_index('alert_id').loc[alert.alert_id, 'delivery']}")
    finally:
        sender.stop()


def fit_on_this_thread(lane: str, func, *args):
    """workers.in_background as runs trained before: on the calling thread, lowered to nice 10."""
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    return func(*args)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true", help="a small demo (1,200 rows) instead of the default one")
    parser.add_argument("--labels", type=int, default=300, help="N of the policy: labels that start the run")
    parser.add_argument("--clients", type=int, default=2, help="threads sending single-text predictions")
    parser.add_argument("--outage", type=float, default=6.0, help="seconds the receiver is down")
    parser.add_argument("--fit-here", action="store_true",
                        help="fit on a nice-10 thread of the serving process (the old way), not in the worker process")
    parser.add_argument("--no-alerts", action="store_true", help="the policy run only")
    parser.add_argument("--rounds", type=int, default=1, help="policy runs, one after another (each with its own N labels)")
    parser.add_argument("--compare", action="store_true",
                        help="alternate the fit's place between rounds: worker process, then a thread here")
    args = parser.parse_args()
    if args.fit_here:
        workers.in_background = fit_on_this_thread
    in_worker = workers.in_background
    header("policy run and alert delivery (issue 26)")
    folder = tempfile.mkdtemp(prefix="mms-bench-policy-")
    try:
        store = Store(os.path.join(folder, "mms.duckdb"))
        sizes = dict(n_train=800, n_test=300, n_traffic=1000, weeks=2) if args.small else {}
        with timer() as t:
            demo.build_store(store, USER, **sizes)
        print(f"demo store built in {t.seconds:.0f} s ({'small' if args.small else 'default sizes'})")
        store.hold()
        serving = Serving(store).start()
        try:
            for k in range(args.rounds):
                if args.compare:  # every other run fits on a thread of this process, as runs did before
                    workers.in_background = fit_on_this_thread if k % 2 else in_worker
                    print(f"-- round {k + 1}: fit {'on a nice-10 thread here (before)' if k % 2 else 'in the worker process'}")
                policy_run(store, args.labels, args.clients, k)
            if not args.no_alerts:
                alert_delivery(store, args.outage)
        finally:
            serving.stop()
            store.unhold()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
