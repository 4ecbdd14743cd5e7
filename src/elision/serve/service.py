"""What every route shares, in one object on `app.state.service`: the settings, the metrics, the
compressors (loaded at start-up) and, per serving run, the worker pool and the upstream client;
and the two steps the routes call to compress.

    >>> service = Service(Settings(method="truncate", methods=("truncate",)))
    >>> async with service.running():                   # what the app's lifespan does
    ...     result = await service.compress_in_pool("truncate", None, lambda c, check: c.compress(
    ...         "some long text", rate=0.5, progress=check))
    ...     messages, headers, result = await service.compress_chat(chat, {"rate": 0.3})   # both proxies

A route finds it with `service_of(request)`. Compressions run in the bounded pool (pool.py): a
full queue is refused at once (503 + Retry-After), and a compression past `settings.timeout`
(its wait in the queue included) is told to stop between two batches (504). Each one is counted
(elision_compression_seconds, elision_tokens_in/out/saved_total; elision_rejected_total and
elision_cancelled_total for the refused and the stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from .._errors import Cancelled
from .compressors import Compressors
from .errors import ServiceError
from .metrics import Metrics
from .pool import Overloaded, Pool
from .settings import Settings


class Service:
    """The service's state and shared steps; `running()` holds the pool and the client."""

    def __init__(self, settings: Settings, preloaded: dict | None = None):
        self.settings = settings
        self.compressors = Compressors(settings, preloaded)  # load every model before serving
        self.metrics = Metrics()
        self.metrics.gauge("elision_queue_depth", "Compressions running or waiting for a worker.",
                           lambda: self.pool.depth if self.pool else 0)
        self.pool: Pool | None = None  # per serving run, from running()
        self.client = None  # httpx.AsyncClient to the upstream, per serving run
        self.prices = settings.price_table  # billed-input multipliers (serve/usage.py)

    @contextlib.asynccontextmanager
    async def running(self):
        """Per serving run (the app's lifespan): the upstream client and the worker pool."""
        import httpx

        # follow_redirects stays off: a 3xx goes back to the caller, the service never follows one
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(self.settings.upstream_timeout, connect=10.0),
                                        follow_redirects=False)
        self.pool = Pool(self.settings.workers, self.settings.queue)
        try:
            yield self
        finally:
            await self.client.aclose()
            self.pool.shutdown()

    async def compress_in_pool(self, method: str | None, target: str | None, call):
        """`call(compressor, check)` in a worker, on the compressor for (method, target): its
        result, counted. `check` is the progress callback that stops it at the time limit."""
        settings, metrics = self.settings, self.metrics
        key = self.compressors.check(method, target)  # before queueing: a bad name costs no worker

        def job(cancel):  # the compression alone, not its wait in the queue
            comp = self.compressors.get(*key)
            t0 = time.perf_counter()
            return call(comp, cancel.check), time.perf_counter() - t0

        try:
            result, seconds = await self.pool.run(job, settings.timeout)
        except Overloaded:
            metrics.inc("elision_rejected_total")
            raise ServiceError(503, "overloaded", f"all {settings.workers} workers are busy and "
                               f"{settings.queue} requests are waiting; retry shortly",
                               headers={"Retry-After": "1"}) from None
        except asyncio.TimeoutError:
            metrics.inc("elision_cancelled_total")
            raise ServiceError(504, "compression_timeout", f"compression took longer than {settings.timeout:g} s "
                               "(queue wait included); it was stopped") from None
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
        method = control.get("method") or settings.method
        policy = control.get("policy") or settings.policy
        if control.get("target_tokens") is not None:
            kwargs = {"target_tokens": control["target_tokens"]}
        else:
            kwargs = {"rate": control.get("rate", settings.rate)}
        # the request's own settings (the library refuses one that belongs to the other policy)
        kwargs.update({k: control[k] for k in ("hot_tokens", "condition", "recall_tokens", "age_decay", "keep_recent")
                       if k in control})
        if policy == "stable":  # the service's defaults; no block may close behind a breakpoint
            kwargs["hot_tokens"] = 0 if breakpoints else kwargs.get("hot_tokens", settings.hot_tokens)
            kwargs.setdefault("recall_tokens", settings.recall_tokens)
        res = await self.compress_in_pool(method, None, lambda c, check: c.compress_messages(
            messages, policy=policy, progress=check, **kwargs))
        return res.messages, {"X-Elision-Method": method, "X-Elision-Policy": policy,
                              "X-Elision-Origin-Tokens": str(res.origin_tokens),
                              "X-Elision-Compressed-Tokens": str(res.compressed_tokens)}, res


def service_of(request) -> Service:
    """The Service of the app that got `request` (create_app puts it on app.state)."""
    return request.app.state.service
