"""A bounded worker pool for compressions: the event loop never runs model code, a full queue
is refused at once (the caller answers 503 + Retry-After) instead of piling up, and a job past
its time limit is told to stop.

    >>> pool = Pool(workers=1, queue=16)
    >>> result = await pool.run(lambda cancel: work(progress=cancel.check), timeout=60)
    ...                                              # Overloaded / asyncio.TimeoutError

`workers + queue` jobs may be admitted at a time; a slot is freed when its job's thread ends.
A thread cannot be killed, so stopping is cooperative: each job gets a Cancel, set when its
time runs out; `cancel.check` raises Cancelled, and the pipeline passes it to the method as
its progress callback, which methods call between batches. A job whose time ran out while it
waited for a worker does not start at all.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from .._errors import Cancelled


class Overloaded(Exception):
    """The queue is full."""


class Cancel:
    """Set by the pool at the job's time limit; `check(*progress)` raises Cancelled once set."""

    def __init__(self):
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self, *progress) -> None:  # fits the progress signature (done, total)
        if self._event.is_set():
            raise Cancelled("stopped at the time limit")


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
        """fn(cancel) in a worker, within `timeout` seconds (waiting included)."""
        with self._lock:
            if self._admitted >= self.capacity:
                raise Overloaded()
            self._admitted += 1
        cancel = Cancel()

        def job():
            cancel.check()  # timed out in the queue: do not start
            return fn(cancel)

        try:
            future = self._executor.submit(job)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):  # time is up, or the client went away
            cancel.set()
            raise

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
