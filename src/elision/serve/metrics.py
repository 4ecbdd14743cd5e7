"""Prometheus metrics in the text exposition format (version 0.0.4), without a client library.

    >>> m = Metrics(); m.inc("elision_requests_total", endpoint="/v1/compress", status="200")
    >>> "elision_requests_total{endpoint=\"/v1/compress\",status=\"200\"} 1" in m.render()
    True

Counters and histograms are kept under one lock (updates come from the event loop and from
worker threads). Label sets are bounded by the code (endpoints, status codes, methods).
"""

from __future__ import annotations

import threading

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HELP = {
    "elision_requests_total": ("counter", "HTTP requests answered, by endpoint and status code."),
    "elision_errors_total": ("counter", "Requests answered with a 4xx or 5xx status, by endpoint and status code."),
    "elision_tokens_in_total": ("counter", "Target tokens received for compression."),
    "elision_tokens_out_total": ("counter", "Target tokens after compression."),
    "elision_tokens_saved_total": ("counter", "Target tokens removed by compression."),
    "elision_compression_seconds": ("histogram", "Time to compress one request (queue wait excluded)."),
    "elision_upstream_seconds": ("histogram", "Time until the upstream's answer started."),
    "elision_queue_depth": ("gauge", "Compressions running or waiting for a worker."),
    "elision_rejected_total": ("counter", "Requests refused with 503 because the queue was full."),
}


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    esc = {k: str(v).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n") for k, v in labels.items()}
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(esc.items())) + "}"


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str], float] = {}
        self._hist: dict[tuple[str, str], list] = {}  # -> [bucket counts..., sum, count]
        self._gauges: dict[str, callable] = {}

    def inc(self, name: str, value: float = 1.0, **labels) -> None:
        key = (name, _labels(labels))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + value

    def observe(self, name: str, seconds: float, **labels) -> None:
        key = (name, _labels(labels))
        with self._lock:
            h = self._hist.setdefault(key, [0] * len(LATENCY_BUCKETS) + [0.0, 0])
            for i, b in enumerate(LATENCY_BUCKETS):
                if seconds <= b:
                    h[i] += 1
            h[-2] += seconds
            h[-1] += 1

    def gauge(self, name: str, read) -> None:
        """A gauge read at scrape time."""
        self._gauges[name] = read

    def value(self, name: str, **labels) -> float:
        with self._lock:
            return self._values.get((name, _labels(labels)), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            values, hist = dict(self._values), {k: list(v) for k, v in self._hist.items()}
        names = sorted({n for n, _ in values} | {n for n, _ in hist} | set(self._gauges) | set(HELP))
        for name in names:
            kind, text = HELP.get(name, ("untyped", name))
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            if name in self._gauges:
                lines.append(f"{name} {float(self._gauges[name]())}")
            for (n, lab), v in sorted(values.items()):
                if n == name:
                    lines.append(f"{name}{lab} {v}")
            for (n, lab), h in sorted(hist.items()):
                if n != name:
                    continue
                inner = lab[1:-1]
                for b, c in zip(LATENCY_BUCKETS, h):
                    lines.append(f'{name}_bucket{{{inner + "," if inner else ""}le="{b}"}} {c}')
                lines.append(f'{name}_bucket{{{inner + "," if inner else ""}le="+Inf"}} {h[-1]}')
                lines.append(f"{name}_sum{lab} {h[-2]}")
                lines.append(f"{name}_count{lab} {h[-1]}")
        return "\n".join(lines) + "\n"
