"""Large batches on every core: split a list, run the parts in lasting worker processes and in
this one, and join the results in order (identical to running the whole list here)."""
from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor

from . import settings

MIN_ITEMS = 2000  # below this, handing work to another process costs more than it saves

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def default_workers() -> int:
    """Processes for large batches: MMS_WORKERS, or one per core."""
    return max(1, int(settings.get("workers")) or (os.cpu_count() or 1))


def _worker_pool(size: int) -> ProcessPoolExecutor:
    """Workers start from a clean forkserver, never as a fork of a threaded server process."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers != size:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=True)
            _pool = ProcessPoolExecutor(size, mp_context=multiprocessing.get_context("forkserver"))
        return _pool


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
