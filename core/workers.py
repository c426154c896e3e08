"""Large batches on every core: split a list, run the parts in lasting worker processes and in
this one, and join the results in order (identical to running the whole list here).

Workers end when the process that started them ends, however it ends (a kill -9 included): each
holds a model in memory, and an orphaned worker would otherwise wait for work forever.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from . import settings

MIN_ITEMS = 2000  # below this, handing work to another process costs more than it saves
WATCH_SECONDS = 0.5  # how often a worker checks that the process it works for is still there

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def default_workers() -> int:
    """Processes for large batches: MMS_WORKERS, or one per core."""
    return max(1, int(settings.get("workers")) or (os.cpu_count() or 1))


def _end_with_parent(starter: int) -> None:
    """Worker initializer: end this worker when the process that started the pool (`starter`) ends.

    A worker's parent is the forkserver, not the starter, and the forkserver lives until its last
    worker ends (every worker holds its pipe), so neither parent-death signals nor a closed pipe
    would ever reach a worker: a thread watches the starter instead, and the parent too."""
    parent = os.getppid()
    if not _alive(starter):  # gone before the watch began
        os._exit(1)
    threading.Thread(target=_watch, args=(parent, starter), name="mms-parent-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    """Whether `pid` still runs: a killed process nobody has reaped yet (a zombie) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc here: the signal's answer stands
        return True


def _watch(parent: int, starter: int) -> None:
    # a killed forkserver hands its workers to another parent (init or a subreaper)
    while os.getppid() == parent and _alive(starter):
        time.sleep(WATCH_SECONDS)
    os._exit(1)


def _worker_pool(size: int) -> ProcessPoolExecutor:
    """At least `size` workers, started from a clean forkserver, never as a fork of a threaded server
    process. A larger pool is kept for a smaller need: each worker holds a model in memory."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < size:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=True)
            context = multiprocessing.get_context("forkserver")
            # not the default ['__main__']: in a server that is whichever page script runs at the
            # moment, and the forkserver would run it, logging Streamlit's "No runtime found"
            context.set_forkserver_preload([__name__])
            _pool = ProcessPoolExecutor(size, mp_context=context, initializer=_end_with_parent,
                                        initargs=(os.getpid(),))
        return _pool


def shutdown() -> None:
    """End the worker processes (a server's last step): their queues' semaphores are released, not
    left to the resource tracker's 'leaked semaphore objects' warning."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None
        while _lanes:  # a fit may be half done: not waited for, its process ends with this one
            _lanes.popitem()[1].shutdown(wait=False, cancel_futures=True)


def split_map(func, items: list, args: tuple = (), workers: int | None = None) -> list:
    """func(part, *args) over contiguous parts of `items`, the first part in this process;
    the concatenated results. `func` must be a module-level function returning a list."""
    workers = default_workers() if workers is None else max(1, int(workers))
    if workers == 1 or len(items) < MIN_ITEMS:
        return func(items, *args)
    size = -(-len(items) // workers)
    parts = [items[i:i + size] for i in range(0, len(items), size)]
    pool = _worker_pool(workers - 1)
    futures = [pool.submit(func, part, *args) for part in parts[1:]]
    result = func(parts[0], *args)
    for f in futures:
        result.extend(f.result())
    return result


def serve_map(func, items: list, args: tuple = (), part_size: int = 32) -> list:
    """func(part, *args) over `items`, every part in a worker process, none in this one: a server's
    threads hold the GIL for requests while tokenising (pure Python) runs on every core. One part
    per `part_size` items, at most one per core. Same contract as `split_map`."""
    workers = default_workers()
    parts_wanted = max(1, min(workers, len(items) // part_size))
    size = -(-len(items) // parts_wanted)
    pool = _worker_pool(workers)
    futures = [pool.submit(func, items[i:i + size], *args) for i in range(0, len(items), size)]
    return [item for f in futures for item in f.result()]


def in_worker(func, *args):
    """func(*args) in a worker process, waiting for its result: a server's background thread runs
    its CPU-heavy steps (pure Python, which would hold the GIL) there, and its pages stay quick.
    `func` must be a module-level function."""
    return _worker_pool(default_workers()).submit(func, *args).result()


# --- low-priority lanes for a server's background work -------------------------------------------

NICE = 10  # a background lane's niceness: it gets the CPU the answering processes leave
_lanes: dict[str, ProcessPoolExecutor] = {}


def _low_priority(starter: int) -> None:
    """A lane's initializer: lower its priority, and end it with the process it works for."""
    os.nice(NICE)
    _end_with_parent(starter)


def _lane(name: str) -> ProcessPoolExecutor:
    with _pool_lock:
        if name not in _lanes:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            _lanes[name] = ProcessPoolExecutor(1, mp_context=context, initializer=_low_priority,
                                               initargs=(os.getpid(),))
        return _lanes[name]


def in_background(lane: str, func, *args):
    """func(*args) in the one low-priority worker process of `lane` (started on first use, lasting,
    ending with this process), waiting for its result: a server's long CPU-heavy background steps
    (a policy run's fit, the shadow's scoring) run there, off the GIL and below the answers in the
    CPU's queue, each lane apart so one does not queue behind the other. A worker that was killed
    fails this call (BrokenProcessPool) and the next call starts another."""
    try:
        return _lane(lane).submit(func, *args).result()
    except BrokenProcessPool:
        with _pool_lock:
            _lanes.pop(lane, None)
        raise
