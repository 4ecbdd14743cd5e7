"""Hardening of the HTTP service (issue 16): bounded work per request, one error shape, faithful
relaying, a gate before the body is read, cancellation, shared compressors. In process through
httpx.ASGITransport, and on real loopback servers where the network path matters (the token
check before the body, the upstream's gzip and redirects)."""

# no `from __future__ import annotations`: FastAPI reads the fake upstream's signature at run time
import asyncio
import gzip
import json
import math
import os
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from elision import Compressor  # noqa: E402
from elision._errors import ElisionError, InvalidInput  # noqa: E402
from elision.methods import Method, register  # noqa: E402
from elision.selection import Units, word_spans  # noqa: E402
from elision.serve import Settings, create_app  # noqa: E402

from .test_serve import CHAT, DOC, call, post  # noqa: E402
from .upstream import LoopbackServer, free_port  # noqa: E402


@register
class Spin(Method):
    """Scores slowly: calls progress every 10 ms for up to 30 s (a stand-in for a long prompt's
    batches), so only cooperative cancellation frees its worker early."""

    name = "test_spin"

    def score(self, prompt, options, budget=None, progress=None):
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            if progress:
                progress(0, 1)
            time.sleep(0.01)
        out = []
        for s in prompt.segments:
            st, en = word_spans(s.text)
            out.append(Units(st, en, -st.astype(float)))
        return out


BARRIER = threading.Barrier(2, timeout=15)


@register
class Meet(Method):
    """Two calls must be inside score() at once to get past the barrier: passes only when two
    workers share one compressor concurrently."""

    name = "test_meet"

    def score(self, prompt, options, budget=None, progress=None):
        BARRIER.wait()
        out = []
        for s in prompt.segments:
            st, en = word_spans(s.text)
            out.append(Units(st, en, -st.astype(float)))
        return out


@pytest.fixture(scope="module")
def comps():  # no model: most of this file runs without one
    return {"truncate": Compressor("truncate"), "random": Compressor("random"), "test_spin": Compressor("test_spin"),
            "test_meet": Compressor("test_meet")}


@pytest.fixture(scope="module")
def l2(comps):
    return {**comps, "llmlingua2": Compressor("llmlingua2")}


def make(comps, **kw):
    kw.setdefault("method", "truncate")
    kw.setdefault("methods", ("random",))
    return create_app(Settings(**kw), preloaded=comps)


def err(r) -> dict:
    body = r.json()
    assert set(body) == {"error"}, body  # never FastAPI's {"detail": ...}
    e = body["error"]
    assert isinstance(e["code"], str) and isinstance(e["type"], str) and isinstance(e["message"], str)
    return e


# --- targets: an allow-list, no path or hub probing, a bounded cache ----------------------------

def test_targets_come_from_an_allow_list(comps):
    app = make(comps)
    t0 = time.perf_counter()
    answers = [post(app, "/v1/compress", json={"context": DOC, "target": t})
               for t in ("/etc", "/no/such/dir", "org/name", "../../etc/passwd", "p50k_base")]
    assert time.perf_counter() - t0 < 10  # no hub lookup (that took ~47 s)
    for r, t in zip(answers, ("/etc", "/no/such/dir", "org/name", "../../etc/passwd", "p50k_base")):
        assert r.status_code == 400 and err(r)["code"] == "unknown_target"
        assert "gpt-4o" in err(r)["message"] and "ELISION_TARGETS" in err(r)["message"]
    # an existing and a missing path answer alike: nothing tells the caller which paths exist
    assert err(answers[0])["message"].replace("/etc", "X") == err(answers[1])["message"].replace("/no/such/dir", "X")
    r = post(app, "/v1/compress", json={"context": DOC, "target": "cl100k_base"})
    assert r.status_code == 200 and r.json()["target"] == "cl100k_base"


def test_operator_targets_and_one_cache_entry_per_spelling(comps):
    from elision.models.registry import prepare

    path = str(prepare("minilm-l6"))  # a local tokenizer directory
    app = make(comps, targets=(path,), isolation="thread")  # the cache of this process (a worker has its own)
    before = len(app.state.compressors)
    for spelling in (path, path + "/", path + "//", path.replace("/", "//")):
        r = post(app, "/v1/compress", json={"context": DOC, "target": spelling, "method": "truncate", "rate": 0.5})
        assert r.status_code == 200, r.text
    assert len(app.state.compressors) == before + 1  # one entry, not four


def test_compressor_cache_is_bounded(comps):
    app = make(comps, compressors=3, isolation="thread")  # truncate and random at the default target stay
    for t in ("gpt-4", "gpt-4o-mini", "cl100k_base", "o200k_base", "o1", "gpt-3.5-turbo"):
        r = post(app, "/v1/compress", json={"context": DOC, "target": t, "method": "truncate"})
        assert r.status_code == 200
        assert len(app.state.compressors) <= 3


def test_bad_operator_target_stops_the_start(comps):
    with pytest.raises(ElisionError, match="unknown target"):
        make(comps, targets=("/etc",))


# --- options: ranges from the library, and the operator's fixed ones -----------------------------

def test_request_options_are_restricted_llmlingua2(l2):
    comps = l2
    app = make(comps, method="llmlingua2")
    r = post(app, "/v1/compress", json={"context": DOC, "options": {"batch_tokens": 100}})
    assert r.status_code == 400 and err(r)["code"] == "option_not_allowed" and "batch_tokens" in err(r)["message"]
    open_app = make(comps, method="llmlingua2", fixed_options=())
    r = post(open_app, "/v1/compress", json={"context": DOC, "options": {"batch_tokens": 10**9}})
    assert r.status_code == 400 and "batch_tokens must be in [16, 65536]" in err(r)["message"]
    r = post(open_app, "/v1/compress", json={"context": DOC, "options": {"batch_tokens": 512}})
    assert r.status_code == 200
    for key in ("rate", "question", "protect", "progress", "target_tokens"):
        r = post(app, "/v1/compress", json={"context": DOC, "options": {key: 1}})
        assert r.status_code == 400 and err(r)["code"] == "invalid_option" and f"options.{key}" in err(r)["message"]


# --- counts: contexts, protect entries, messages -----------------------------------------------

def test_counts_are_capped_with_the_limit_named(comps):
    app = make(comps, max_contexts=3, max_protect=2, max_messages=2)
    r = post(app, "/v1/compress", json={"context": ["a b"] * 4})
    assert r.status_code == 413 and err(r)["limit"] == 3 and "limit of 3" in err(r)["message"]
    r = post(app, "/v1/compress", json={"context": DOC, "protect": ["a", "b", "c"]})
    assert r.status_code == 413 and err(r)["code"] == "too_many_protect" and "limit of 2" in err(r)["message"]
    r = post(app, "/v1/compress", json={"messages": CHAT})
    assert r.status_code == 413 and err(r)["code"] == "too_many_messages"


def test_many_protect_entries_on_many_contexts_answer_quickly(comps):
    app = make(comps, max_contexts=10_000, max_protect=10_000)
    body = {"context": [f"x y z {i}" for i in range(4000)], "protect": [f"w{i}" for i in range(4000)],
            "method": "truncate", "rate": 0.5}
    t0 = time.perf_counter()
    r = post(app, "/v1/compress", json=body)
    assert r.status_code == 200 and time.perf_counter() - t0 < 20  # 4000 x 4000 one by one: ~10 s of search


# --- cancellation: a timed-out compression stops and frees its worker ---------------------------

def test_timed_out_compression_stops_and_frees_the_worker(comps):
    app = make(comps, methods=("test_spin",), timeout=0.3, workers=1, queue=0)

    async def scenario(c):
        r = await c.post("/v1/compress", json={"context": DOC, "method": "test_spin"})
        t0 = time.monotonic()
        while app.state.pool.depth and time.monotonic() - t0 < 10:
            await asyncio.sleep(0.05)
        freed = app.state.pool.depth == 0
        ok = await c.post("/v1/compress", json={"context": DOC, "method": "truncate"})  # the one worker serves
        return r, freed, ok
    r, freed, ok = call(app, scenario)
    assert r.status_code == 504 and err(r)["code"] == "compression_timeout"
    assert freed, "the worker kept running a compression nobody waits for (it spins 30 s)"
    assert ok.status_code == 200
    assert app.state.metrics.value("elision_cancelled_total") == 1


# --- concurrency: workers share compressors ------------------------------------------------------

def test_workers_share_one_compressor_concurrently(comps):
    app = make(comps, methods=("test_meet",), workers=2, isolation="thread")  # threads share one

    async def two(c):
        return await asyncio.gather(*[c.post("/v1/compress", json={"context": DOC, "method": "test_meet"})
                                      for _ in range(2)])
    a, b = call(app, two)
    assert a.status_code == b.status_code == 200, (a.text, b.text)


def test_concurrent_llmlingua2_matches_serial(l2):
    texts = [f"{i}. " + DOC * (1 + i % 3) for i in range(6)]
    serial = [l2["llmlingua2"].compress(t, rate=0.4).compressed_prompt for t in texts]
    app = make(l2, method="llmlingua2", workers=2)

    async def many(c):
        return await asyncio.gather(*[c.post("/v1/compress", json={"context": t, "rate": 0.4}) for t in texts])
    got = call(app, many)
    assert [r.json()["compressed_prompt"] for r in got] == serial


def test_serve_sets_torch_threads_per_worker(tmp_path):
    import subprocess
    import sys

    port = free_port()
    env = {**os.environ, "ELISION_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "elision.cli", "serve", "--method", "truncate", "--workers", "2",
                             "--log-level", "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                h = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                if h.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
            time.sleep(0.2)
        cores = len(os.sched_getaffinity(0))
        assert h.json()["torch_threads"] == max(1, cores // 2) and h.json()["workers"] == 2
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# --- the gate: the token before the body, Host, content type, CORS --------------------------------

def test_token_is_checked_before_the_body_is_read(comps):
    server = LoopbackServer(make(comps, api_key="s3cret")).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            # chunked upload, headers only: the body never comes
            s.sendall(b"POST /v1/compress HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            try:
                head = s.recv(4096)
            except socket.timeout:
                pytest.fail("the service waited for the body of an unauthenticated request")
        assert head.startswith(b"HTTP/1.1 401")
    finally:
        server.stop()


def test_host_header_is_checked(comps):
    app = make(comps)
    r = call(app, lambda c: c.get("/healthz", headers={"host": "evil.example"}))
    assert r.status_code == 403 and err(r)["code"] == "host_not_allowed"
    assert call(app, lambda c: c.get("/healthz", headers={"host": "localhost:8080"})).status_code == 200
    assert call(app, lambda c: c.get("/healthz", headers={"host": "[::1]:8080"})).status_code == 200
    anyhost = make(comps, allowed_hosts=("*",))
    assert call(anyhost, lambda c: c.get("/healthz", headers={"host": "evil.example"})).status_code == 200
    named = make(comps, allowed_hosts=("elision.internal",))
    assert call(named, lambda c: c.get("/healthz", headers={"host": "elision.internal"})).status_code == 200
    assert call(named, lambda c: c.get("/healthz")).status_code == 403
    assert make(comps, host="0.0.0.0").state.settings.host_check is None  # bound to all: the operator's call


def test_json_content_type_is_required(comps):
    app = make(comps)
    r = post(app, "/v1/compress", content=json.dumps({"context": DOC}), headers={"content-type": "text/plain"})
    assert r.status_code == 415 and err(r)["code"] == "unsupported_media_type"


def test_no_cors_unless_configured(comps):
    pre = {"origin": "https://evil.example", "access-control-request-method": "POST"}
    r = call(make(comps), lambda c: c.options("/v1/compress", headers=pre))
    assert "access-control-allow-origin" not in r.headers
    app = make(comps, cors_origins=("https://app.example",))
    r = call(app, lambda c: c.options("/v1/compress", headers={**pre, "origin": "https://app.example"}))
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
    r = call(app, lambda c: c.options("/v1/compress", headers=pre))
    assert r.headers.get("access-control-allow-origin") != "https://evil.example"


# --- one error shape ------------------------------------------------------------------------------

def test_fastapi_own_errors_use_the_one_shape(comps):
    app = make(comps)
    r = call(app, lambda c: c.get("/nope"))
    assert r.status_code == 404 and err(r)["code"] == "not_found"
    r = call(app, lambda c: c.get("/v1/compress"))
    assert r.status_code == 405 and err(r)["code"] == "method_not_allowed"
    r = post(app, "/v1/compress", content=b'{"context": "\xff\xfe"}', headers={"content-type": "application/json"})
    assert r.status_code == 400 and err(r)["code"] == "invalid_utf8"
    r = post(app, "/v1/compress", json={"context": DOC, "colour": 1})
    assert r.status_code == 400 and err(r)["code"] == "invalid_request" and "colour" in err(r)["message"]
    r = post(app, "/v1/compress", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and err(r)["code"] == "invalid_json"


def _chat(*extra):
    return [{"role": "user", "content": DOC}, {"role": "assistant", "content": DOC}, *extra,
            {"role": "user", "content": "Who designed it?"}]


@pytest.mark.parametrize("name, body, status, field", [
    ("option repeats rate", {"context": DOC, "options": {"rate": 0.3}}, 400, "options.rate"),
    ("option progress", {"context": DOC, "options": {"progress": 1}}, 400, "options.progress"),
    ("age_decay x", {"messages": _chat(), "options": {"age_decay": "x"}}, 400, "age_decay"),
    ("age_decay null", {"messages": _chat(), "options": {"age_decay": None}}, 400, "age_decay"),
    ("random seed -1", {"context": DOC, "method": "random", "options": {"seed": -1}}, 400, "seed"),
    ("target_tokens true", {"context": DOC, "target_tokens": True}, 400, "target_tokens"),
    ("surrogate", None, 400, "surrogate"),
    ("deep json", None, 400, "deeper than 32"),
    ("deep message key", {"messages": [{"role": "user", "content": DOC, "x": json.loads("[" * 600 + "]" * 600)},
                                       {"role": "user", "content": "q"}]}, 400, "deeper than 32"),
    ("1.2M characters", {"context": "ab " * 400_000, "method": "truncate"}, 413, "characters"),
    # issue 24: an option named like the call's own parameter; a JSON document (inside the
    # context string, which the body's own depth check cannot see) too deep or with a number
    # too long for Python's parser; an empty method name
    ("option self", {"context": "abc def", "options": {"self": 1}}, 400, "options.self"),
    ("option context", {"context": "abc def", "options": {"context": "x"}}, 400, "options.context"),
    ("deep json document", {"context": '{"a":' * 5000 + "1" + "}" * 5000, "format": "json"}, 400, "JSON"),
    ("5000-digit number", {"context": '{"a": 1' + "0" * 5000 + "}", "format": "json"}, 400, "JSON"),
    ("empty method", {"context": DOC, "method": ""}, 400, "method ''"),
    ("force_tokens null", {"context": DOC, "options": {"force_tokens": [None]}}, 400, "force_tokens"),
])
def test_caller_mistakes_are_4xx_not_500(comps, name, body, status, field):
    app = make(comps, max_body_bytes=16 * 2**20, max_prompt_tokens=10**6)
    if name == "surrogate":
        r = post(app, "/v1/compress", content=b'{"context": "abc \\ud800 def"}',
                 headers={"content-type": "application/json"})
    elif name == "deep json":
        r = post(app, "/v1/compress", content=b'{"context": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                 headers={"content-type": "application/json"})
    else:
        r = post(app, "/v1/compress", json=body)
    assert r.status_code == status, r.text
    assert field in err(r)["message"]


@register
class Deep(Method):
    """Raises what Python's own JSON reader raises on a hostile document (RecursionError, or
    ValueError past 4,300 integer digits), as if the library had let it through."""

    name = "test_deep"

    def score(self, prompt, options, budget=None, progress=None):
        if "digits" in prompt.segments[0].text:
            raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")
        raise RecursionError("maximum recursion depth exceeded")


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_json_reader_failures_are_400_naming_the_field_whatever_the_library_lets_through(comps, isolation):
    app = make({**comps, "test_deep": Compressor("test_deep")}, methods=("test_deep",), isolation=isolation)
    for text in ('{"a": "deep"}', '{"a": "digits"}'):
        r = post(app, "/v1/compress", json={"context": text, "format": "json", "method": "test_deep"})
        assert r.status_code == 400 and "context (format json)" in err(r)["message"], r.text
    r = post(app, "/v1/compress", json={"context": "deep", "method": "test_deep"})  # not a JSON document: a bug
    assert r.status_code == 500 and err(r)["code"] == "internal_error" and "Traceback" not in r.text


# --- the proxy --------------------------------------------------------------------------------------

def make_faulty_upstream():
    """An upstream that misbehaves in ways tests/upstream.py does not: gzip streams, a 4xx as an
    event stream, redirects, a 500 with internals in its body."""
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        model = body.get("model")
        if model == "gzip-stream":
            events = b"".join(f"data: {json.dumps({'n': i})}\n\n".encode() for i in range(3)) + b"data: [DONE]\n\n"
            return Response(gzip.compress(events), media_type="text/event-stream",
                            headers={"content-encoding": "gzip"})
        if model == "gzip-json":
            return Response(gzip.compress(json.dumps({"ok": True}).encode()), media_type="application/json",
                            headers={"content-encoding": "gzip"})
        if model == "stream-429":
            return Response(b'data: {"error": {"message": "slow down"}}\n\n', status_code=429,
                            media_type="text/event-stream", headers={"retry-after": "7"})
        if model == "redirect":
            return Response(b"moved", status_code=307, headers={"location": "https://elsewhere.example/v1"})
        if model == "fail-500":
            return Response(b"Traceback: secret internals", status_code=500)
        return {"echo": body.get("temperature")}

    return app


@pytest.fixture(scope="module")
def faulty():
    server = LoopbackServer(make_faulty_upstream()).start()
    yield server
    server.stop()


def chat(app, model, **kw):
    return post(app, "/v1/chat/completions", json={"model": model, "messages": CHAT, "elision": {"off": True}, **kw})


def test_gzip_upstream_is_relayed_decoded(comps, faulty):
    app = make(comps, upstream=faulty.url + "/v1")

    async def stream(c):
        async with c.stream("POST", "/v1/chat/completions",
                            json={"model": "gzip-stream", "messages": CHAT, "stream": True,
                                  "elision": {"off": True}}) as r:
            raw = b"".join([chunk async for chunk in r.aiter_raw()])
            return r, raw
    r, raw = call(app, stream)
    assert r.status_code == 200 and "content-encoding" not in r.headers
    assert raw.startswith(b"data: ") and raw.endswith(b"data: [DONE]\n\n")
    r = chat(app, "gzip-json")
    assert r.status_code == 200 and r.json() == {"ok": True}


def test_upstream_4xx_stream_and_3xx_pass_through(comps, faulty):
    app = make(comps, upstream=faulty.url + "/v1")
    r = chat(app, "stream-429", stream=True)
    assert r.status_code == 429 and b"slow down" in r.content and r.headers["retry-after"] == "7"
    r = chat(app, "redirect")
    assert r.status_code == 307 and r.headers["location"] == "https://elsewhere.example/v1"  # not followed


def test_upstream_errors_are_redacted(comps, faulty):
    port = free_port()  # nothing listens there
    app = make(comps, upstream=f"http://user:pa55word@127.0.0.1:{port}/v1?api-key=k3y")
    r = chat(app, "echo")
    assert r.status_code == 502 and err(r)["code"] == "upstream_unreachable"
    assert "pa55word" not in r.text and "k3y" not in r.text and f"127.0.0.1:{port}" in r.text
    r = chat(make(comps, upstream=faulty.url + "/v1"), "fail-500")
    assert r.status_code == 502 and "internals" not in r.text and err(r)["upstream_status"] == 500


def test_proxy_body_mistakes_are_400(comps, faulty):
    app = make(comps, upstream=faulty.url + "/v1")
    r = post(app, "/v1/chat/completions", content=b'{"model": "m", "messages": [], "temperature": NaN}',
             headers={"content-type": "application/json"})
    assert r.status_code == 400 and "NaN" in err(r)["message"]
    for control, field in (({"age_decay": "x"}, "age_decay"), ({"age_decay": None}, "age_decay"),
                           ({"rate": "half"}, "rate"), ({"target_tokens": True}, "target_tokens")):
        r = post(app, "/v1/chat/completions", json={"model": "m", "messages": _chat(), "elision": control})
        assert r.status_code == 400 and field in err(r)["message"], (control, r.text)
    r = post(app, "/v1/chat/completions", content=json.dumps({"model": "m", "messages": CHAT}),
             headers={"content-type": "text/plain"})
    assert r.status_code == 415


# --- settings are checked at start-up ----------------------------------------------------------------

@pytest.mark.parametrize("kw, match", [
    ({"timeout": math.nan}, "timeout"),
    ({"upstream_timeout": math.inf}, "upstream_timeout"),
    ({"port": True}, "port"),
    ({"workers": 2.5}, "workers"),
    ({"api_key": "clé-secrète"}, "ASCII"),
    ({"cors_origins": ("evil",)}, "cors_origins"),
    ({"policy": "fifo"}, "policy must be stable or age"),
    ({"hot_tokens": -1}, "hot_tokens must be >= 0"),
    ({"recall_tokens": -1}, "recall_tokens must be >= 0"),
    ({"anthropic_breakpoints": "always"}, "anthropic_breakpoints must be off or auto"),
    ({"cache_prices": "gpt-4o*: cache_raed=0.5"}, "cache_raed.*cache_read"),  # names the valid keys
    ({"cache_prices": "{not json"}, "cache_prices"),
    ({"isolation": "fork"}, "isolation must be process or thread"),
])
def test_settings_are_validated(kw, match):
    with pytest.raises(InvalidInput, match=match):
        Settings(**kw)


def test_isolation_comes_from_the_environment_and_the_flag():
    from click.testing import CliRunner

    from elision.cli import cli

    assert Settings().isolation == "process"
    assert Settings.from_env({"ELISION_ISOLATION": "thread"}).isolation == "thread"
    assert Settings.from_env({"ELISION_ISOLATION": "thread"}, isolation="process").isolation == "process"
    r = CliRunner().invoke(cli, ["serve", "--help"])
    assert "--isolation [process|thread]" in r.output and "ELISION_ISOLATION" in r.output


def test_serve_refuses_bad_settings_with_exit_2():
    from elision.cli import cli

    r = CliRunner().invoke(cli, ["serve", "--method", "truncate", "--timeout", "nan"])
    assert r.exit_code == 2 and "timeout must be a finite number" in r.output


# --- metrics through prometheus-client ------------------------------------------------------------------

def test_metrics_include_the_standard_process_metrics(comps):
    app = make(comps)

    async def go(c):
        await c.post("/v1/compress", json={"context": DOC, "method": "truncate"})
        await c.get("/nope")
        return await c.get("/metrics")
    m = call(app, go)
    assert "process_resident_memory_bytes" in m.text
    assert 'elision_requests_total{endpoint="/v1/compress",status="200"} 1.0' in m.text
    assert 'elision_errors_total{endpoint="other",status="404"} 1.0' in m.text
