"""Items run ahead of pytest's loop, several at once.

A probe item spends most of its time waiting (for a peer, a timer, a
child), not on the CPU, so `make check` runs many at once: a pool of
threads starts the items, each its own process group under sp-isolate
(runner/execute.py), in the order pytest will report them (slow items
first), and pytest's loop takes each result as it comes. One Python
process does it all: no worker interpreters to start and no collection
repeated per worker, which on a small machine cost more than the items.

On every way out of the loop (the end, -x, Ctrl-C, SIGTERM) the items not
yet started are dropped and the running ones' groups are killed before
the loop returns.
"""
from __future__ import annotations

import concurrent.futures as cf
import os

from . import execute

# Items at once per core when the count is "auto".
PER_CORE = 8


def width(workers) -> int:
    """The number of items at once for a `-n`/JOBS value (None: one)."""
    if not workers:
        return 1
    if workers == "auto":
        return PER_CORE * (os.cpu_count() or 1)
    return int(workers)


class RunAhead:
    def __init__(self, items: list, settings: execute.Settings, n: int):
        execute.allow_runs()
        self._pool = cf.ThreadPoolExecutor(n, thread_name_prefix="sp-item")
        self._futures = {id(it): self._pool.submit(execute.run_item, it.sp_item, settings)
                         for it in items}

    def result(self, item):
        """The item's result record, or None if it was not sent ahead."""
        fut = self._futures.get(id(item))
        return fut.result() if fut is not None else None

    def stop(self) -> None:
        execute.stop_all()
        self._pool.shutdown(wait=True, cancel_futures=True)
