"""Bounded worker pools for compressions: the event loop never runs model code, a full queue is
refused at once (the caller answers 503 + Retry-After) instead of piling up, and a job past its
time limit is stopped.

    >>> pool = ProcessPool(workers=1, queue=16, execute=run_job)     # run_job(job, progress) -> result
    >>> await pool.start()
    >>> result = await pool.run(job, timeout=60)       # Overloaded / asyncio.TimeoutError / WorkerLost

`workers + queue` jobs may be admitted at a time; the rest raise Overloaded. A job whose time
ran out while it waited for a worker does not start at all. Two kinds, one interface:

ProcessPool (the default, `--isolation process`): each worker is a process forked from the
service once its models are loaded, so the weights are shared copy-on-write (nothing is loaded
twice) and a job is plain data (`job`, pickled) run by the worker's own copy of `execute`. A job
past its time limit, or whose waiting coroutine is cancelled (shutdown), gets its worker killed
(SIGKILL) and a fresh one forked in its place (milliseconds): the time limit holds whatever the
job is doing, pure-Python loops that never yield and catastrophic regexes included. The service process itself only does
I/O, so /healthz and /metrics answer while every worker is busy. A worker that dies on its own
(out of memory, a crash in native code) is replaced too; its job raises WorkerLost.

ThreadPool (`--isolation thread`, and off Linux, where forking a process with torch loaded is
not dependable): threads in the service's
process. A thread cannot be killed, so stopping is cooperative: each job gets a Cancel, set when
its time runs out; `cancel.check` is the method's progress callback, which raises Cancelled at
the next batch. Work that holds the interpreter lock without calling it (a pure-Python parser
on a hostile document) delays every other request, /healthz included, until it ends.

The threads of a forked worker (measured, docs/benchmarks.md "Freeze"): GNU OpenMP keeps its
thread team per thread that started a parallel region, and a child forked from such a thread
waits forever for team members that were not copied. So every fork happens on the pool's own
forker thread, which never runs model code: its children start OpenMP afresh and run torch on
the same thread count as the service (the same bytes as a thread worker). A forked probe checks
this once at start; should a parallel operation still not end within PROBE_S, the workers run
torch on one thread (and the log says so) instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import stat
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

from .._errors import Cancelled

log = logging.getLogger("elision.serve")

PROBE_S = 5.0  # a parallel torch operation in a forked probe ends in milliseconds; else it hangs


class Overloaded(Exception):
    """The queue is full."""


class WorkerLost(Exception):
    """The worker process died during the job (killed from outside, out of memory, a crash)."""


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


class _Admission:
    """workers + queue jobs admitted at a time; beyond that, Overloaded at once."""

    def __init__(self, workers: int, queue: int):
        self.workers, self.capacity = workers, workers + queue
        self._lock = threading.Lock()
        self._admitted = 0

    @property
    def depth(self) -> int:
        """Jobs running or waiting."""
        return self._admitted

    def _admit(self) -> None:
        with self._lock:
            if self._admitted >= self.capacity:
                raise Overloaded()
            self._admitted += 1

    def _release(self, _future=None) -> None:
        with self._lock:
            self._admitted -= 1


class ThreadPool(_Admission):
    """Jobs in threads of this process, stopped cooperatively (see the module docstring)."""

    kind = "thread"

    def __init__(self, workers: int = 1, queue: int = 16, execute=None):
        super().__init__(workers, queue)
        self._execute = execute
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="elision-compress")

    async def start(self) -> None:
        pass

    async def run(self, job, timeout: float):
        """`execute(job, cancel.check)` in a worker thread within `timeout` seconds (waiting
        included); a callable job runs as `job(cancel)`."""
        self._admit()
        cancel = Cancel()

        def work():
            cancel.check()  # timed out in the queue: do not start
            return job(cancel) if callable(job) else self._execute(job, cancel.check)

        try:
            future = self._executor.submit(work)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):  # time is up, or the client went away
            cancel.set()
            raise

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


Pool = ThreadPool  # the name before worker processes existed


class _Worker:
    """One forked worker: its pid and the service's end of its pipe."""

    def __init__(self, pid: int, conn):
        self.pid, self.conn = pid, conn

    def call(self, job):
        """Send the job, wait for its answer (in a waiter thread: the event loop never blocks)."""
        self.conn.send(job)
        return self.conn.recv()

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def reap(self) -> None:
        """Close the pipe and collect the exit status (the process is gone, or going)."""
        try:
            self.conn.close()
        except OSError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


class ProcessPool(_Admission):
    """Jobs in forked worker processes, killed and replaced at the time limit (see the module
    docstring). `execute(job, progress)` runs in the worker; `job` and its result are pickled."""

    kind = "process"

    def __init__(self, workers: int = 1, queue: int = 16, execute=None):
        super().__init__(workers, queue)
        self._execute = execute
        self._idle: asyncio.Queue | None = None
        self._all: dict[int, _Worker] = {}
        # one waiter thread per running job; a killed worker's waiter ends at once (EOF)
        self._waiters = ThreadPoolExecutor(max_workers=2 * workers + 1, thread_name_prefix="elision-wait")
        # every fork happens here: a thread that never runs model code (see the module docstring)
        self._forker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="elision-fork")
        self._loop: asyncio.AbstractEventLoop | None = None
        self.threads: int | None = None  # torch threads in a worker; None: torch not loaded
        self.replaced = 0  # workers killed at a time limit or found dead, and forked anew
        self.on_replace = None  # called at each replacement (the service counts them)

    async def start(self) -> None:
        self._idle = asyncio.Queue()
        self._loop = loop = asyncio.get_running_loop()
        torch = sys.modules.get("torch")
        if torch is not None:
            self.threads = torch.get_num_threads()
            if self.threads > 1 and not await loop.run_in_executor(self._forker, _openmp_forks):
                log.warning("a forked worker cannot start OpenMP threads here: compression workers run torch on "
                            "1 thread instead of %d", self.threads)
                self.threads = 1
        for _ in range(self.workers):
            self._idle.put_nowait(await loop.run_in_executor(self._forker, self._fork))

    def _fork(self) -> _Worker:
        import multiprocessing

        parent, child = multiprocessing.Pipe()
        keep = child.fileno()
        with warnings.catch_warnings():  # Python 3.12 warns of fork in a threaded process; the child
            warnings.simplefilter("ignore", DeprecationWarning)  # runs only _serve, on no lock but its own
            pid = os.fork()
        if pid == 0:  # the worker: never returns
            try:
                _release_inherited(keep)
                _serve(child, self._execute, self.threads)
            finally:
                os._exit(0)
        child.close()
        w = _Worker(pid, parent)
        self._all[pid] = w
        return w

    def _replace(self, w: _Worker) -> None:
        """Kill a worker (if alive), fork its successor into the idle queue, reap it off the loop."""
        w.kill()
        self._all.pop(w.pid, None)
        self.replaced += 1
        if self.on_replace is not None:
            self.on_replace()
        loop, idle = self._loop, self._idle

        def fork_and_reap():  # on the forker thread; the new worker joins the idle queue first
            fresh = self._fork()
            loop.call_soon_threadsafe(idle.put_nowait, fresh)
            w.reap()

        self._forker.submit(fork_and_reap)

    async def run(self, job, timeout: float):
        """`execute(job, None)` in a worker process within `timeout` seconds (waiting included)."""
        self._admit()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            w = await asyncio.wait_for(self._idle.get(), timeout)  # time out waiting: never started
            if deadline - loop.time() <= 0:  # a worker came free just too late: it stays free
                self._idle.put_nowait(w)
                raise asyncio.TimeoutError()
            try:
                answer = await asyncio.wait_for(loop.run_in_executor(self._waiters, w.call, job),
                                                max(0.0, deadline - loop.time()))
            except (asyncio.TimeoutError, asyncio.CancelledError):  # time is up, or the wait was cancelled
                self._replace(w)
                raise
            except (EOFError, OSError):  # died on its own
                self._replace(w)
                raise WorkerLost(f"the compression worker (pid {w.pid}) died during the request") from None
            self._idle.put_nowait(w)
        finally:
            self._release()
        status, value, extra = answer
        if status == "ok":
            return value
        raise _rebuild(value, extra)

    @property
    def pids(self) -> list[int]:
        return list(self._all)

    async def aclose(self) -> None:
        workers = list(self._all.values())
        self._all.clear()
        for w in workers:
            w.kill()
        for w in workers:
            w.reap()
        self._forker.shutdown(wait=True, cancel_futures=True)  # a replacement forked meanwhile ends too
        for w in list(self._all.values()):
            w.kill()
            w.reap()
        self._waiters.shutdown(wait=False, cancel_futures=True)


def _serve(conn, execute, threads: int | None) -> None:
    """A worker's life: jobs in, answers out, until the service closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the service ends us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if threads is not None:
        sys.modules["torch"].set_num_threads(threads)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        try:
            answer = ("ok", execute(job, None), None)
        except BaseException as e:  # noqa: BLE001 - every error goes back to the service, which answers it
            answer = ("err", type(e), str(e))
        try:
            conn.send(answer)
        except (pickle.PicklingError, TypeError, AttributeError) as e:  # a result that does not pickle
            conn.send(("err", RuntimeError, f"the result could not be sent back: {e}"))


def _rebuild(cls, message: str) -> BaseException:
    """The worker's exception as the same class (by reference: the worker is a fork of this
    process), without calling its __init__ (UnknownName's takes other arguments)."""
    try:
        e = cls.__new__(cls)
        Exception.__init__(e, message)
        return e
    except Exception:  # noqa: BLE001 - an exotic class: its message still comes back
        return RuntimeError(message)


def _release_inherited(keep: int) -> None:
    """In a fresh worker: every socket inherited from the service (the listening socket, its
    clients, the other workers' pipes) is pointed at /dev/null, so a closed connection really
    closes and the worker holds nothing open for anyone else. dup2 keeps the numbers valid for
    the Python objects that still name them."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd in (keep, null) or fd < 3:
                continue
            try:
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.dup2(null, fd)
            except OSError:
                pass
    except FileNotFoundError:  # no /proc: nothing to do the cheap way
        pass
    finally:
        os.close(null)


def _openmp_forks() -> bool:
    """Whether a forked child can run a parallel torch operation (see the module docstring)."""
    pid = os.fork()
    if pid == 0:
        try:
            import torch

            torch.ones(1 << 20).exp_().sum()  # over the grain size: an OpenMP parallel region
        finally:
            os._exit(0)
    t0 = time.monotonic()
    while time.monotonic() - t0 < PROBE_S:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return True
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return False
