"""What every route shares, in one object on `app.state.service`: the settings, the metrics, the
compressors (loaded at start-up) and, per serving run, the worker pool and the upstream client;
and the two steps the routes call to compress.

    >>> service = Service(Settings(method="truncate", methods=("truncate",)))
    >>> async with service.running():                   # what the app's lifespan does
    ...     result = await service.compress_in_pool("truncate", None, "compress", prompt="some long text", rate=0.5)
    ...     messages, headers, result = await service.compress_chat(chat, {"rate": 0.3})   # both proxies

A route finds it with `service_of(request)`. Compressions run in the bounded pool (pool.py) as
plain data, a `Job` (method, target, which call, its keyword arguments): in a worker process
by default, so a compression past `settings.timeout` (its wait in the queue included) is killed
with its worker (504) whatever it is doing, and a fresh worker takes its place; with
`isolation="thread"` in a thread, told to stop between two batches. A full queue is refused at
once (503 + Retry-After). Each one is counted (elision_compression_seconds,
elision_tokens_in/out/saved_total; elision_rejected_total, elision_cancelled_total and
elision_worker_restarts_total for the refused, the stopped and the workers replaced).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
import time

from .._errors import Cancelled, ElisionError, InvalidInput
from .compressors import Compressors
from .errors import ServiceError
from .metrics import Metrics
from .pool import Overloaded, ProcessPool, ThreadPool, WorkerLost
from .settings import Settings

CALLS = ("compress", "compress_messages")  # what a Job may call on a compressor


@dataclasses.dataclass(frozen=True)
class Job:
    """One compression as data (it crosses to a worker process pickled): `call` on the
    compressor for (method, target) with `kwargs`.

    Job("truncate", "o200k_base", "compress", {"prompt": "some long text", "rate": 0.5})
    """

    method: str
    target: str
    call: str
    kwargs: dict


class Service:
    """The service's state and shared steps; `running()` holds the pool and the client."""

    def __init__(self, settings: Settings, preloaded: dict | None = None):
        self.settings = settings
        self.compressors = Compressors(settings, preloaded)  # load every model before serving
        self.metrics = Metrics()
        self.metrics.gauge("elision_queue_depth", "Compressions running or waiting for a worker.",
                           lambda: self.pool.depth if self.pool else 0)
        self.pool: ProcessPool | ThreadPool | None = None  # per serving run, from running()
        self.client = None  # httpx.AsyncClient to the upstream, per serving run
        self.prices = settings.price_table  # billed-input multipliers (serve/usage.py)

    @contextlib.asynccontextmanager
    async def running(self):
        """Per serving run (the app's lifespan): the upstream client and the worker pool."""
        import httpx

        # follow_redirects stays off: a 3xx goes back to the caller, the service never follows one
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(self.settings.upstream_timeout, connect=10.0),
                                        follow_redirects=False)
        # worker processes need fork, and a fork of a process with torch loaded is dependable on Linux only
        forks = hasattr(os, "fork") and sys.platform.startswith("linux")
        kind = ProcessPool if self.settings.isolation == "process" and forks else ThreadPool
        self.pool = kind(self.settings.workers, self.settings.queue, execute=self.execute)
        self.pool.on_replace = lambda: self.metrics.inc("elision_worker_restarts_total")
        try:
            await self.pool.start()
            yield self
        finally:
            await self.client.aclose()
            await self.pool.aclose()

    def execute(self, job: Job, progress=None):
        """Run one job (in a worker): its result and the seconds it took. A JSON document
        too deep or with too long a number for Python's parser is the caller's mistake, named
        (elision.structured refuses both under its own limits first; this maps whatever a
        reader still lets through, so it can never become a 500)."""
        if job.call not in CALLS:
            raise InvalidInput(f"unknown call {job.call!r}")
        comp = self.compressors.get(job.method, job.target)
        t0 = time.perf_counter()
        try:
            result = getattr(comp, job.call)(progress=progress, **job.kwargs)
        except RecursionError:
            if job.kwargs.get("format") != "json":
                raise
            raise InvalidInput("context (format json): the JSON document nests too deep to read") from None
        except ValueError as e:  # Python's limit on integer digits (4,300) and its like
            if job.kwargs.get("format") != "json" or isinstance(e, ElisionError):
                raise
            raise InvalidInput(f"context (format json): a value in the JSON document cannot be read ({e})") from None
        return result, time.perf_counter() - t0

    async def compress_in_pool(self, method: str | None, target: str | None, call: str, **kwargs):
        """`compressor.call(**kwargs)` in a worker, on the compressor for (method, target): its
        result, counted. Past the time limit it is stopped (504)."""
        settings, metrics = self.settings, self.metrics
        key = self.compressors.check(method, target)  # before queueing: a bad name costs no worker
        try:
            result, seconds = await self.pool.run(Job(*key, call, kwargs), settings.timeout)
        except Overloaded:
            metrics.inc("elision_rejected_total")
            raise ServiceError(503, "overloaded", f"all {settings.workers} workers are busy and "
                               f"{settings.queue} requests are waiting; retry shortly",
                               headers={"Retry-After": "1"}) from None
        except asyncio.TimeoutError:
            metrics.inc("elision_cancelled_total")
            raise ServiceError(504, "compression_timeout", f"compression took longer than {settings.timeout:g} s "
                               "(queue wait included); it was stopped") from None
        except WorkerLost as e:
            raise ServiceError(500, "worker_lost", f"{e}; a new worker took its place, retry") from None
        except Cancelled:  # pragma: no cover - the time-out above answers first
            raise ServiceError(504, "compression_timeout", "compression was stopped") from None
        metrics.observe("elision_compression_seconds", seconds, method=key[0])
        metrics.inc("elision_tokens_in_total", result.origin_tokens)
        metrics.inc("elision_tokens_out_total", result.compressed_tokens)
        metrics.inc("elision_tokens_saved_total", max(0, result.origin_tokens - result.compressed_tokens))
        return result

    async def compress_chat(self, messages, control: dict, *, breakpoints: bool = False):
        """compress_messages in the pool, under a proxied request's controls (method, rate or
        target_tokens, policy and its settings; the service's defaults else): the compressed
        messages, the X-Elision-* headers the answer carries and the MessagesResult. Both
        proxies use it. `breakpoints`: the caller marked cache breakpoints (Anthropic), so
        nothing already sent may change: the stable policy then compresses on arrival
        (hot_tokens 0: a closing block would rewrite text at or before a breakpoint)."""
        settings = self.settings
        method = settings.method if control.get("method") is None else control["method"]  # "": refused by name
        policy = control.get("policy") or settings.policy
        if control.get("target_tokens") is not None:
            kwargs = {"target_tokens": control["target_tokens"]}
        else:
            kwargs = {"rate": control.get("rate", settings.rate)}
        # the request's own settings (the library refuses one that belongs to the other policy)
        kwargs.update({k: control[k] for k in ("hot_tokens", "condition", "recall_tokens", "repeats", "age_decay",
                                                        "keep_recent")
                       if k in control})
        if policy == "stable":  # the service's defaults; no block may close behind a breakpoint
            kwargs["hot_tokens"] = 0 if breakpoints else kwargs.get("hot_tokens", settings.hot_tokens)
            kwargs.setdefault("recall_tokens", settings.recall_tokens)
        res = await self.compress_in_pool(method, None, "compress_messages", messages=messages, policy=policy,
                                          **kwargs)
        return res.messages, {"X-Elision-Method": method, "X-Elision-Policy": policy,
                              "X-Elision-Origin-Tokens": str(res.origin_tokens),
                              "X-Elision-Compressed-Tokens": str(res.compressed_tokens)}, res


def service_of(request) -> Service:
    """The Service of the app that got `request` (create_app puts it on app.state)."""
    return request.app.state.service
