"""Prometheus metrics through `prometheus-client`, the ecosystem's library: the standard process
metrics (CPU, resident memory, open files) come with it, and so does multiprocess mode (set
PROMETHEUS_MULTIPROC_DIR for several server processes behind one scrape).

    >>> m = Metrics(); m.inc("elision_requests_total", endpoint="/v1/compress", status="200")
    >>> 'elision_requests_total{endpoint="/v1/compress",status="200"} 1.0' in m.render().decode()
    True

One registry per app (two apps in one process, as in the tests, do not share counts). Label sets
are bounded by the code (endpoints, status codes, methods), never by what a request names.
"""

from __future__ import annotations

import os

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# name -> (kind, help, labels)
METRICS = {
    "elision_requests_total": ("counter", "HTTP requests answered, by endpoint and status code.", ("endpoint", "status")),
    "elision_errors_total": ("counter", "Requests answered with a 4xx or 5xx status, by endpoint and status code.",
                             ("endpoint", "status")),
    "elision_tokens_in_total": ("counter", "Target tokens received for compression.", ()),
    "elision_tokens_out_total": ("counter", "Target tokens after compression.", ()),
    "elision_tokens_saved_total": ("counter", "Target tokens removed by compression.", ()),
    "elision_rejected_total": ("counter", "Requests refused with 503 because the queue was full.", ()),
    "elision_cancelled_total": ("counter", "Compressions stopped at their time limit.", ()),
    "elision_worker_restarts_total": ("counter", ("Compression worker processes killed at a time limit (or found "
                                                  "dead) and forked anew."), ()),
    "elision_compression_seconds": ("histogram", "Time to compress one request (queue wait excluded).", ("method",)),
    "elision_upstream_seconds": ("histogram", "Time until the upstream's answer started.", ()),
    # the real bill (serve/usage.py): the upstream's own usage, priced with the cache multipliers
    "elision_upstream_input_tokens_total": ("counter", ("Input tokens the upstream reported, by provider and kind "
                                                        "(uncached, cache_read, cache_write)."), ("provider", "kind")),
    "elision_billed_input_tokens_total": ("counter", ("Billed-equivalent input tokens of proxied requests (cache "
                                                      "reads and writes at their price multipliers)."), ("provider",)),
    "elision_billed_input_uncompressed_tokens_total": ("counter", ("Estimate of the same requests' billed-equivalent "
                                                                   "input sent uncompressed with caching."),
                                                       ("provider",)),
}


class Metrics:
    def __init__(self):
        import prometheus_client as pc

        self._pc = pc
        self.registry = pc.CollectorRegistry()
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        if not self.multiprocess:  # in multiprocess mode the library's collector reads every process's files
            pc.ProcessCollector(registry=self.registry)
            pc.PlatformCollector(registry=self.registry)
        self._m = {}
        for name, (kind, text, labels) in METRICS.items():
            if kind == "counter":
                self._m[name] = pc.Counter(name, text, labels, registry=self.registry)
            else:
                self._m[name] = pc.Histogram(name, text, labels, buckets=LATENCY_BUCKETS, registry=self.registry)

    def inc(self, name: str, value: float = 1.0, **labels) -> None:
        m = self._m[name]
        (m.labels(**labels) if labels else m).inc(value)

    def observe(self, name: str, seconds: float, **labels) -> None:
        m = self._m[name]
        (m.labels(**labels) if labels else m).observe(seconds)

    def gauge(self, name: str, text: str, read) -> None:
        """A gauge read at scrape time (e.g. the queue depth)."""
        g = self._pc.Gauge(name, text, registry=self.registry, multiprocess_mode="livesum")
        g.set_function(read)

    def value(self, name: str, **labels) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    @property
    def content_type(self) -> str:
        return self._pc.CONTENT_TYPE_LATEST

    def render(self) -> bytes:
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = self._pc.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return self._pc.generate_latest(registry)
        return self._pc.generate_latest(self.registry)
