"""Worker processes end with the process that started them (issue 12, item 8)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
M = "评论情感"

# Predicts batches large enough for the worker pool, forever: only a kill ends it.
LOOP = """
import sys
sys.path.insert(0, sys.argv[1])
from core import predict
from core.store import Store
texts = ["质量不错，物流很快，下次还会再来", "服务太差了，再也不来了", "房间干净，早餐一般"] * 1500
while True:
    predict.predict_texts(Store(sys.argv[2]), sys.argv[3], texts, "ops", workers=3)
"""


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids of every live (not zombie) process, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if state != "Z":
                tree.setdefault(int(ppid), []).append(int(entry))
    return tree


def _descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _grandchildren(pid: int) -> set[int]:
    tree = _children()
    return {g for child in tree.get(pid, []) for g in tree.get(child, [])}


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie runs nothing and holds no model)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(condition, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    return condition()


@pytest.mark.stress
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_killed_predict_leaves_no_worker_processes(seeded_store):
    proc = subprocess.Popen([sys.executable, "-c", LOOP, str(ROOT), str(seeded_store.path), M],
                            stderr=subprocess.PIPE, text=True)
    try:
        # the pool's workers are the forkserver's children: grandchildren of the predicting process
        workers = _wait_for(lambda: _grandchildren(proc.pid) if len(_grandchildren(proc.pid)) >= 2 else set(), 120)
        assert proc.poll() is None, f"the predicting process ended by itself: {proc.stderr.read()}"
        assert len(workers) >= 2, "the large prediction never started worker processes"
        everything = _descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        # checked before the killed process is reaped: a parent that never reaps it (a zombie
        # starter) must not keep its workers alive either
        gone = _wait_for(lambda: not {p for p in everything if _running(p)}, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the kill did not happen"
    assert gone, f"processes of the killed predict still running: {sorted(p for p in everything if _running(p))}"
