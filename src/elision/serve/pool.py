"""A bounded worker pool for compressions: the event loop never runs model code, and a full
queue is refused at once (the caller answers 503 + Retry-After) instead of piling up.

    >>> pool = Pool(workers=1, queue=16)
    >>> result = await pool.run(fn, timeout=60)      # Overloaded / asyncio.TimeoutError

`workers + queue` jobs may be admitted at a time; a job that times out keeps its worker until it
finishes (a thread cannot be stopped), and its slot is freed only then, so a stuck model makes
the service refuse work rather than over-commit.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor


class Overloaded(Exception):
    """The queue is full."""


class Pool:
    def __init__(self, workers: int = 1, queue: int = 16):
        self.workers, self.capacity = workers, workers + queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="elision-compress")
        self._lock = threading.Lock()
        self._admitted = 0

    @property
    def depth(self) -> int:
        """Jobs running or waiting."""
        return self._admitted

    def _release(self, _future=None) -> None:
        with self._lock:
            self._admitted -= 1

    async def run(self, fn, timeout: float):
        with self._lock:
            if self._admitted >= self.capacity:
                raise Overloaded()
            self._admitted += 1
        try:
            future = self._executor.submit(fn)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
