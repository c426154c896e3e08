"""Several servers on one DuckLake store share the loop's background work through leases: two
processes scoring one shadow at the same moment write each answer once, and two processes checking
one model's policy at the same moment open one run and train one version."""
import subprocess
import sys
import time

import pytest

from conftest import ROOT, WORSE_CONFIG
from core import demo, migrate, policy, predict, shadow, train
from lakefixtures import new_lake, pg_cluster  # noqa: F401  (fixtures)

M = demo.MODEL
START_IN = 12.0  # seconds: both processes have imported core by then, and start their step together


def at_once(lake, body: str, n: int = 2) -> list[str]:
    """`body` (Python; `store` is the lake) in `n` processes of their own, each its own DuckDB on the
    lake's catalog as a server on another host has, started together; what each printed."""
    script = ("import sys, time; from core.store import Store; from core import policy, shadow, demo\n"
              "store = Store(sys.argv[1], sys.argv[2]); store.exists()\n"
              "time.sleep(max(0.0, float(sys.argv[3]) - time.time()))\n" + body)
    start = str(time.time() + START_IN)
    procs = [subprocess.Popen([sys.executable, "-c", script, lake.url, lake.data_path, start], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        outs.append(out.strip())
    return outs


@pytest.fixture
def lake(seeded_store, pg_cluster, tmp_path):  # noqa: F811
    store = new_lake(pg_cluster, tmp_path)
    migrate.migrate(seeded_store, store, "tester")
    return store


@pytest.mark.stress
def test_two_servers_scoring_one_shadow_write_each_answer_once(lake, reviews):
    train.train_version(lake, M, "tester", model_config=WORSE_CONFIG)
    shadow.start(lake, M, 2, "tester")
    texts = reviews["text"].iloc[-1500:].tolist()
    predict.predict_texts(lake, M, texts, "tester", business_line="两台服务器")
    outs = at_once(lake, "print(shadow.catch_up(store, demo.MODEL))")
    with lake.connect() as con:
        rows, distinct = con.execute("SELECT count(*), count(DISTINCT prediction_id) FROM shadow_predictions "
                                     "WHERE version = 2").fetchone()
    assert (rows, distinct) == (len(texts), len(texts)), outs  # every prediction scored, none written twice
    assert shadow.pending(lake, M) == 0


@pytest.mark.stress
def test_two_servers_checking_one_policy_open_one_run(lake):
    policy.set_policy(lake, M, "tester", enabled=True, new_labels=10)
    outs = at_once(lake, "print(policy.check_model(store, demo.MODEL))")
    runs = policy.runs_table(lake, M)
    assert len(runs) == 1, outs
    assert sorted(train_versions(lake)) == [1, 2], outs  # one version trained, not one per server
    assert runs.iloc[0].state == "activated"


def train_versions(lake) -> list[int]:
    with lake.connect() as con:
        return [v for (v,) in con.execute("SELECT version FROM versions").fetchall()]
