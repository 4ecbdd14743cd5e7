"""No single request may freeze the service (issue 24): with worker processes (the default
isolation) a compression past its time limit is killed with its worker and answered 504 on
time, /healthz and /metrics answer meanwhile, the next request is served by a fresh worker,
and a served result is byte-identical to the library's in this process.

The slow work here is slow by nature and never yields: a catastrophic regex inside a method's
score() holds the interpreter lock for a minute in one C call and never calls its progress
callback, which no cooperative time limit can stop. The bounds below are generous (several
times what a healthy run takes); tests/test_hardening_serve.py covers the cooperative path.
"""

from __future__ import annotations

import asyncio
import os
import re
import time

import pytest

pytest.importorskip("fastapi")

from elision import Compressor  # noqa: E402
from elision.methods import Method, register  # noqa: E402
from elision.serve import Settings, create_app  # noqa: E402

from .test_serve import CHAT, DOC  # noqa: E402
from .upstream import in_process  # noqa: E402

HOG_RE = re.compile(r"(a+)+$")


@register
class Hog(Method):
    """Backtracks catastrophically inside one `re` call (2^34 steps: far beyond any time limit
    here), holding the interpreter lock and never calling progress."""

    name = "test_hog"

    def score(self, prompt, options, budget=None, progress=None):
        HOG_RE.match("a" * 34 + "b")
        raise AssertionError("unreachable: the match runs for hours")


@pytest.fixture(scope="module")
def comps():
    return {"truncate": Compressor("truncate"), "test_hog": Compressor("test_hog")}


def make(comps, **kw):
    kw.setdefault("method", "truncate")
    kw.setdefault("methods", ("test_hog",))
    return create_app(Settings(**kw), preloaded=comps)


def alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_hogging_request_is_killed_on_time_and_health_answers_meanwhile(comps):
    app = make(comps, timeout=1.5, workers=1, queue=4)

    async def scenario(c):
        before = list(app.state.pool.pids)
        t0 = time.monotonic()
        hog = asyncio.ensure_future(c.post("/v1/compress", json={"context": DOC, "method": "test_hog"}))
        await asyncio.sleep(0.3)  # the worker is inside the match by now
        health = []
        for path in ("/healthz", "/metrics", "/healthz"):
            h0 = time.monotonic()
            r = await c.get(path)
            health.append((path, r.status_code, time.monotonic() - h0))
        r = await hog
        took = time.monotonic() - t0
        ok = await c.post("/v1/compress", json={"context": DOC, "rate": 0.5})  # the queue keeps going
        return before, r, took, health, ok, list(app.state.pool.pids)

    before, r, took, health, ok, after = in_process(app, scenario)
    assert r.status_code == 504 and r.json()["error"]["code"] == "compression_timeout", r.text
    assert took < 1.5 + 3, f"the 504 came after {took:.1f} s, the limit is 1.5 s"
    for path, status, seconds in health:
        assert status == 200 and seconds < 1.0, (path, seconds)
    assert ok.status_code == 200 and ok.json()["compressed_tokens"] > 0
    assert before[0] not in after and len(after) == 1, "the hogging worker was replaced"
    assert not alive(before[0]), "the hogging worker was killed, not left running"
    assert app.state.metrics.value("elision_cancelled_total") == 1
    assert app.state.metrics.value("elision_worker_restarts_total") == 1


def test_another_client_is_served_while_one_request_hogs_a_worker(comps):
    app = make(comps, timeout=3, workers=2, queue=4)

    async def scenario(c):
        hog = asyncio.ensure_future(c.post("/v1/compress", json={"context": DOC, "method": "test_hog"}))
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        others = await asyncio.gather(*[c.post("/v1/compress", json={"context": DOC * 3, "rate": 0.5})
                                        for _ in range(5)])
        served_in = time.monotonic() - t0
        return await hog, others, served_in

    hog, others, served_in = in_process(app, scenario)
    assert hog.status_code == 504
    assert [r.status_code for r in others] == [200] * 5
    assert served_in < 3, "the other requests waited for the hogging one"


def test_a_request_waiting_behind_a_hog_is_served_by_the_fresh_worker(comps):
    app = make(comps, timeout=2, workers=1, queue=4)

    async def scenario(c):
        first = list(app.state.pool.pids)
        hog = asyncio.ensure_future(c.post("/v1/compress", json={"context": DOC, "method": "test_hog"}))
        await asyncio.sleep(0.2)
        # queued behind the hog, its own limit ends 0.2 s after the hog's: the hog's worker is
        # killed at 2 s and the fresh one (forked in milliseconds) serves this one in time
        queued = await c.post("/v1/compress", json={"context": DOC})
        return first, await hog, queued, list(app.state.pool.pids)

    first, hog, queued, now = in_process(app, scenario)
    assert hog.status_code == 504
    assert queued.status_code == 200, queued.text
    assert now != first


def test_a_worker_that_dies_is_replaced_and_the_request_gets_a_500_in_the_shape(comps):
    app = make(comps, timeout=30, workers=1)

    async def scenario(c):
        hog = asyncio.ensure_future(c.post("/v1/compress", json={"context": DOC, "method": "test_hog"}))
        await asyncio.sleep(0.3)
        os.kill(app.state.pool.pids[0], 9)  # out of memory, a crash in native code, an operator
        r = await hog
        ok = await c.post("/v1/compress", json={"context": DOC})
        return r, ok

    r, ok = in_process(app, scenario)
    assert r.status_code == 500 and r.json()["error"]["code"] == "worker_lost"
    assert "Traceback" not in r.text
    assert ok.status_code == 200


def test_thread_isolation_still_stops_at_the_time_limit_for_cooperative_work(comps):
    app = make(comps, timeout=0.5, isolation="thread")

    async def scenario(c):
        return (await c.get("/healthz")).json(), await c.post("/v1/compress", json={"context": DOC * 50})

    health, r = in_process(app, scenario)
    assert health["isolation"] == "thread" and r.status_code == 200


def test_process_results_are_byte_identical_to_the_library(llmlingua):
    """The stable chat policy and a plain prompt through a forked worker: the same bytes as the
    library here (the worker runs torch on the same thread count: forked off a clean thread)."""
    long = " ".join([DOC] * 4)
    app = create_app(Settings(method="llmlingua", methods=("truncate",)), preloaded={"llmlingua": llmlingua})

    async def scenario(c):
        h = (await c.get("/healthz")).json()
        a = await c.post("/v1/compress", json={"context": long, "question": "Who designed it?", "rate": 0.4})
        b = await c.post("/v1/compress", json={"messages": CHAT, "rate": 0.5})
        return h, a, b

    health, a, b = in_process(app, scenario)
    assert health["isolation"] == "process"
    import torch

    assert health["torch_threads"] == torch.get_num_threads()
    lib = llmlingua.compress(context=long, question="Who designed it?", rate=0.4)
    assert a.status_code == 200 and a.json()["compressed_prompt"] == lib.compressed_prompt
    chat = llmlingua.compress_messages(CHAT, rate=0.5)
    assert b.status_code == 200 and b.json()["messages"] == chat.messages
