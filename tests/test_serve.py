"""The HTTP service, in process (httpx.ASGITransport) and once on a real loopback server; the
proxy against a real local upstream (tests/upstream.py) on 127.0.0.1, streaming included."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402

from elision import Compressor  # noqa: E402
from elision.serve import Settings, create_app  # noqa: E402

from .upstream import LoopbackServer, free_port, in_process, make_upstream  # noqa: E402

DOC = ("The Tay Bridge, opened in 1878, carried the North British Railway across the Firth of Tay near Dundee. "
       "Its designer, Thomas Bouch, was knighted after the opening, but less than two years later the central "
       "girders collapsed in a violent storm on 28 December 1879 while a train was crossing, and all aboard died.")
CHAT = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Tell me about this bridge. " + DOC},
    {"role": "assistant", "content": "It was a railway bridge in Scotland that collapsed in 1879. " + DOC},
    {"role": "user", "content": "Who designed it?"},
]


@pytest.fixture(scope="module")
def comps():
    return {"llmlingua2": Compressor("llmlingua2"), "truncate": Compressor("truncate")}


@pytest.fixture(scope="module")
def upstream():
    server = LoopbackServer(make_upstream()).start()
    yield server
    server.stop()


def make(comps, **kw):
    kw.setdefault("methods", ("truncate",))
    return create_app(Settings(**kw), preloaded=comps)


def call(app, fn):
    """Run `await fn(client)` against the app in process, lifespan included."""
    return in_process(app, fn)


def post(app, path, **kw):
    return call(app, lambda c: c.post(path, **kw))


# --- /v1/compress ---------------------------------------------------------------------------

def test_compress_matches_the_library(comps):
    app = make(comps)
    body = {"context": [DOC, "Bread rises because yeast makes gas."], "question": "Who designed the Tay Bridge?",
            "rate": 0.4, "target": "cl100k_base"}
    r = post(app, "/v1/compress", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    lib = Compressor("llmlingua2", target="cl100k_base").compress(
        context=body["context"], question=body["question"], rate=0.4)
    assert got["compressed_prompt"] == lib.compressed_prompt
    assert got["origin_tokens"] == lib.origin_tokens and got["compressed_tokens"] == lib.compressed_tokens
    assert got["method"] == "llmlingua2" and got["target"] == "cl100k_base" and got["original_prompt"] is None
    r = post(app, "/v1/compress", json={"prompt": DOC, "target_tokens": 20, "method": "truncate",
                                        "return_original": True})
    assert r.status_code == 200 and r.json()["compressed_tokens"] <= 20 and r.json()["original_prompt"] == DOC


def test_compress_messages_endpoint(comps):
    r = post(make(comps), "/v1/compress", json={"messages": CHAT, "rate": 0.5})
    assert r.status_code == 200, r.text
    out = r.json()
    assert [m["role"] for m in out["messages"]] == [m["role"] for m in CHAT]
    assert out["messages"][0] == CHAT[0] and out["messages"][-1] == CHAT[-1]
    assert out["compressed_tokens"] < out["origin_tokens"]


@pytest.mark.parametrize("body, status, match", [
    ({"context": 3}, 400, "context"),
    ({"context": ""}, 400, "empty prompt"),
    ({"context": DOC, "rate": 2}, 400, "rate"),
    ({"context": DOC, "method": "nope"}, 400, "not loaded"),
    ({"context": DOC, "options": {"bogus": 1}}, 400, "bogus"),
    ({"context": DOC, "colour": "red"}, 400, "colour"),
    ({"context": DOC, "prompt": DOC}, 400, "not both"),
    ({"messages": []}, 400, "empty"),
    ({"messages": [{"role": "user", "content": "hi"}], "context": DOC}, 400, "not both"),
])
def test_compress_bad_input(comps, body, status, match):
    r = post(make(comps), "/v1/compress", json=body)
    assert r.status_code == status
    assert match in r.json()["error"]["message"]


def test_not_json_is_a_clear_400(comps):
    r = post(make(comps), "/v1/compress", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()


def test_size_and_token_limits(comps):
    app = make(comps, max_body_bytes=2000, max_prompt_tokens=50)
    r = post(app, "/v1/compress", json={"context": "word " * 1000})
    assert r.status_code == 413 and "2000 bytes" in r.json()["error"]["message"]

    async def chunked(c):  # no Content-Length: refused while reading
        async def gen():
            for _ in range(10):
                yield b" " * 500
        return await c.post("/v1/compress", content=gen(), headers={"content-type": "application/json"})
    r = call(app, chunked)
    assert r.status_code == 413
    r = post(app, "/v1/compress", json={"context": DOC})
    assert r.status_code == 413 and "over the limit of 50" in r.json()["error"]["message"]
    assert r.json()["error"]["limit_tokens"] == 50


def test_overloaded_queue_answers_503(comps):
    app = make(comps, workers=1, queue=0, isolation="thread")  # admission is the same for both pools
    release = threading.Event()

    async def scenario(c):
        blocker = asyncio.ensure_future(app.state.pool.run(lambda cancel: release.wait(), timeout=30))  # occupy the one worker
        await asyncio.sleep(0.05)
        r = await c.post("/v1/compress", json={"context": DOC})
        release.set()
        await blocker
        ok = await c.post("/v1/compress", json={"context": DOC})
        return r, ok
    r, ok = call(app, scenario)
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "overloaded"
    assert ok.status_code == 200
    assert app.state.pool.depth == 0
    assert app.state.metrics.value("elision_rejected_total") == 1


def test_compression_timeout_is_504(comps):
    app = make(comps, timeout=0.001)

    async def scenario(c):
        r = await c.post("/v1/compress", json={"context": DOC * 20})
        for _ in range(600):  # the compression finishes in its thread, then frees its slot
            if not app.state.pool.depth:
                break
            await asyncio.sleep(0.05)
        return r, app.state.pool.depth
    r, depth = call(app, scenario)
    assert r.status_code == 504 and "0.001" in r.json()["error"]["message"]
    assert depth == 0


def test_service_token(comps, upstream):
    app = make(comps, api_key="s3cret", upstream=upstream.url + "/v1")
    assert post(app, "/v1/compress", json={"context": DOC}).status_code == 401
    assert post(app, "/v1/compress", json={"context": DOC}, headers={"authorization": "Bearer wrong"}).status_code == 401
    assert post(app, "/v1/compress", json={"context": DOC}, headers={"authorization": "Bearer s3cret"}).status_code == 200
    assert post(app, "/v1/compress", json={"context": DOC}, headers={"x-elision-key": "s3cret"}).status_code == 200
    assert call(app, lambda c: c.get("/healthz")).status_code == 200
    assert call(app, lambda c: c.get("/metrics")).status_code == 401
    chat = {"model": "m", "messages": CHAT}
    # on the proxy, Authorization belongs to the upstream: the service token goes in X-Elision-Key
    r = post(app, "/v1/chat/completions", json=chat, headers={"authorization": "Bearer s3cret"})
    assert r.status_code == 401
    r = post(app, "/v1/chat/completions", json=chat, headers={"authorization": "Bearer up-key", "x-elision-key": "s3cret"})
    assert r.status_code == 200 and json.loads(r.json()["choices"][0]["message"]["content"])["authorization"] == "Bearer up-key"


# --- the proxy ----------------------------------------------------------------------------------

def _echo(r) -> dict:
    return json.loads(r.json()["choices"][0]["message"]["content"])


def test_proxy_compresses_and_forwards(comps, upstream):
    app = make(comps, upstream=upstream.url + "/v1", rate=0.5)
    body = {"model": "echo", "messages": CHAT, "temperature": 0, "elision": {"rate": 0.4}}
    r = post(app, "/v1/chat/completions", json=body, headers={"authorization": "Bearer caller-key"})
    assert r.status_code == 200, r.text
    seen = _echo(r)
    assert seen["authorization"] == "Bearer caller-key" and seen["elision_field_seen"] is False
    from elision.messages import RECALL_HEADER

    # the stable policy (default): user turns whole, the long assistant message at 0.4 of its own
    # tokens, then (recall) what the question needs of the text compression removed, verbatim
    assert [m["role"] for m in seen["messages"]] == [m["role"] for m in CHAT] + ["user"]
    assert seen["messages"][-1]["content"].startswith(RECALL_HEADER)
    assert seen["messages"][:2] == CHAT[:2] and seen["messages"][-2] == CHAT[-1]
    assert len(seen["messages"][2]["content"]) < 0.6 * len(CHAT[2]["content"])
    assert r.headers["x-elision-method"] == "llmlingua2" and r.headers["x-elision-policy"] == "stable"
    assert r.json()["object"] == "chat.completion"  # the upstream's body, unchanged
    # policy age: the whole history (the older user turn too) fitted to the budget
    r = post(app, "/v1/chat/completions", json={**body, "elision": {"rate": 0.4, "policy": "age"}})
    seen = _echo(r)
    assert len(seen["messages"][1]["content"]) < len(CHAT[1]["content"]) and seen["messages"][-1] == CHAT[-1]
    origin, comp = int(r.headers["x-elision-origin-tokens"]), int(r.headers["x-elision-compressed-tokens"])
    assert comp <= round(0.4 * origin) + 1 and r.headers["x-elision-policy"] == "age"


def test_proxy_per_request_control(comps, upstream):
    app = make(comps, upstream=upstream.url + "/v1")
    r = post(app, "/v1/chat/completions", json={"model": "echo", "messages": CHAT}, headers={"x-elision-off": "1"})
    assert _echo(r)["messages"] == CHAT and r.headers["x-elision-method"] == "off"
    r = post(app, "/v1/chat/completions", json={"model": "echo", "messages": CHAT},
             headers={"x-elision-method": "truncate", "x-elision-rate": "0.3", "x-elision-policy": "age"})
    assert r.headers["x-elision-method"] == "truncate"
    assert int(r.headers["x-elision-compressed-tokens"]) <= round(0.3 * int(r.headers["x-elision-origin-tokens"])) + 1
    r = post(app, "/v1/chat/completions", json={"model": "echo", "messages": CHAT, "elision": {"off": True}})
    assert _echo(r)["messages"] == CHAT
    r = post(app, "/v1/chat/completions", json={"model": "echo", "messages": CHAT}, headers={"x-elision-off": "No"})
    assert r.status_code == 200 and r.headers["x-elision-method"] == "llmlingua2"  # compressed
    r = post(app, "/v1/chat/completions", json={"model": "echo", "messages": CHAT}, headers={"x-elision-off": "maybe"})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith(
        "X-Elision-Off must be true or false (1/true/yes/on or 0/false/no/off), got 'maybe'")
    r = post(app, "/v1/chat/completions", json={"model": "echo", "messages": CHAT, "elision": {"off": "perhaps"}})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith('"off" must be true or false')
    r = post(app, "/v1/chat/completions", json={"model": "echo", "messages": CHAT, "elision": {"ratee": 1}})
    assert r.status_code == 400 and "ratee" in r.json()["error"]["message"]
    r = post(app, "/v1/chat/completions", json={"model": "echo", "messages": "hi"})
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
    r = post(app, "/v1/chat/completions", json={"model": "echo", "messages": CHAT, "elision": {"repeats": False}})
    assert r.status_code == 200, r.text
    for control, headers, says in (({"policy": "fifo"}, {}, "elision.policy must be one of stable, age"),
                                   ({}, {"x-elision-policy": "lru"}, "X-Elision-Policy must be stable or age"),
                                   ({"hot_tokens": "x"}, {}, "elision.hot_tokens must be a whole number"),
                                   ({"condition": "later"}, {}, "elision.condition must be one of"),
                                   ({"target_tokens": 50}, {}, "policy='age'"),
                                   ({"age_decay": 0.5}, {}, "belong to policy='age'"),
                                   ({"repeats": "no"}, {}, "elision.repeats must be true or false"),
                                   ({"policy": "age", "repeats": False}, {}, "repeats belongs to policy='stable'")):
        r = post(app, "/v1/chat/completions", json={"model": "echo", "messages": CHAT, "elision": control},
                 headers=headers)
        assert r.status_code == 400 and says in r.json()["error"]["message"], (control, r.text)


def test_proxy_streams_sse(comps, upstream):
    app = make(comps, upstream=upstream.url + "/v1")

    async def stream(c):
        events = []
        async with c.stream("POST", "/v1/chat/completions", json={"model": "echo", "messages": CHAT, "stream": True}) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
            return r, events
    r, events = call(app, stream)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "[DONE]" and len(events) == 3
    text = "".join(json.loads(e)["choices"][0]["delta"]["content"] for e in events[:-1])
    seen = json.loads(text)
    assert len(seen["messages"][2]["content"]) < len(CHAT[2]["content"])
    assert "x-elision-compressed-tokens" in r.headers


def test_proxy_faults(comps, upstream):
    def chat(app, model, **kw):
        return post(app, "/v1/chat/completions", json={"model": model, "messages": CHAT, **kw})
    down = make(comps, upstream=f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    r = chat(down, "echo")
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_unreachable"
    app = make(comps, upstream=upstream.url + "/v1", upstream_timeout=0.5)
    r = chat(app, "slow-3")
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
    r = chat(app, "fail-500")
    assert r.status_code == 502 and r.json()["error"]["upstream_status"] == 500
    assert "exploded" not in r.text  # the upstream's own 5xx body is not relayed (docs/security.md)
    r = chat(app, "malformed")
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_invalid_json"
    r = chat(app, "unauthorized")  # the upstream's own 4xx passes through unchanged
    assert r.status_code == 401 and r.json()["error"]["message"] == "bad key"

    async def stalled(c):  # the stream breaks off mid-way: a final error event, no crash
        async with c.stream("POST", "/v1/chat/completions",
                            json={"model": "stall-3", "messages": CHAT, "stream": True}) as r:
            return r.status_code, [line async for line in r.aiter_lines() if line.startswith("data: ")]
    status, events = call(app, stalled)
    assert status == 200 and "upstream_error" in events[-1]
    assert call(app, lambda c: c.get("/healthz")).status_code == 200  # still serving


def test_proxy_without_upstream_is_501(comps):
    r = post(make(comps), "/v1/chat/completions", json={"model": "m", "messages": CHAT})
    assert r.status_code == 501 and "--upstream" in r.json()["error"]["message"]


# --- health, metrics, logs ----------------------------------------------------------------------

def test_healthz_and_metrics(comps):
    app = make(comps)

    async def go(c):
        h = await c.get("/healthz")
        await c.post("/v1/compress", json={"context": DOC, "rate": 0.5})
        await c.post("/v1/compress", json={"context": ""})
        return h, await c.get("/metrics")
    h, m = call(app, go)
    assert h.json()["status"] == "ok" and h.json()["methods"] == ["llmlingua2", "truncate"]
    text = m.text
    assert m.headers["content-type"].startswith("text/plain")
    assert 'elision_requests_total{endpoint="/v1/compress",status="200"} 1.0' in text
    assert 'elision_errors_total{endpoint="/v1/compress",status="400"} 1.0' in text
    saved = app.state.metrics.value("elision_tokens_saved_total")
    assert saved > 0 and saved == app.state.metrics.value("elision_tokens_in_total") - app.state.metrics.value(
        "elision_tokens_out_total")
    assert 'elision_compression_seconds_count{method="llmlingua2"} 1' in text
    assert 'elision_compression_seconds_bucket{le="+Inf",method="llmlingua2"} 1.0' in text
    for line in text.splitlines():  # every sample line is name{labels} value
        if line and not line.startswith("#"):
            assert line.startswith(("elision_", "process_", "python_")) and float(line.rsplit(" ", 1)[1]) >= 0


def test_prompts_not_logged_unless_asked(comps, caplog):
    secret = "Zanzibar-7731 is the launch code."
    with caplog.at_level(logging.INFO, logger="elision.serve"):
        post(make(comps), "/v1/compress", json={"context": secret + " " + DOC})
    assert caplog.records and not any("Zanzibar" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="elision.serve"):
        post(make(comps, log_prompts=True), "/v1/compress", json={"context": secret + " " + DOC})
    assert any("Zanzibar" in r.getMessage() for r in caplog.records)


def test_settings_from_env_and_flags():
    s = Settings.from_env({"ELISION_PORT": "9001", "ELISION_METHODS": "truncate, random", "ELISION_LOG_PROMPTS": "1",
                           "ELISION_API_KEY": "k"}, port=9002)
    assert s.port == 9002 and s.methods == ("truncate", "random") and s.log_prompts and s.api_key == "k"
    with pytest.raises(ValueError, match="ELISION_QUEUE"):
        Settings.from_env({"ELISION_QUEUE": "many"})
    assert Settings.from_env({"ELISION_LOG_PROMPTS": "On"}).log_prompts is True
    assert Settings.from_env({"ELISION_LOG_PROMPTS": "off"}).log_prompts is False
    with pytest.raises(ValueError, match=r"ELISION_LOG_PROMPTS must be true or false .*'sometimes'"):
        Settings.from_env({"ELISION_LOG_PROMPTS": "sometimes"})
    with pytest.raises(ValueError, match="upstream"):
        Settings(upstream="ftp://x")
    s = Settings.from_env({"ELISION_POLICY": "age", "ELISION_HOT_TOKENS": "512", "ELISION_RECALL_TOKENS": "0",
                           "ELISION_ANTHROPIC_BREAKPOINTS": "auto", "ELISION_CACHE_PRICES": "gpt-4o*: cache_read=0.5"})
    assert (s.policy, s.hot_tokens, s.recall_tokens, s.anthropic_breakpoints) == ("age", 512, 0, "auto")
    assert s.price_table.prices("gpt-4o-mini", "openai").cache_read == 0.5
    assert Settings().price_table.prices("gpt-5", "openai").cache_read == 0.1


# --- real servers on loopback -----------------------------------------------------------------

def test_real_server_on_loopback(comps, upstream):
    server = LoopbackServer(make(comps, upstream=upstream.url + "/v1")).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            r = c.post("/v1/compress", json={"context": DOC, "rate": 0.5})
            assert r.status_code == 200 and r.json()["compressed_tokens"] < r.json()["origin_tokens"]
            with c.stream("POST", "/v1/chat/completions", json={"model": "echo", "messages": CHAT, "stream": True}) as s:
                lines = [x for x in s.iter_lines() if x.startswith("data: ")]
            assert lines[-1] == "data: [DONE]"
            assert c.get("/openapi.json").json()["paths"]["/v1/compress"]["post"]
    finally:
        server.stop()


def test_cli_serve_starts_and_answers(tmp_path):
    port = free_port()
    env = {**os.environ, "ELISION_PORT": str(port), "ELISION_API_KEY": "cli-key"}
    proc = subprocess.Popen([sys.executable, "-m", "elision.cli", "serve", "--method", "truncate", "--log-level",
                             "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
            time.sleep(0.2)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/compress", json={"context": DOC, "rate": 0.5},
                       headers={"x-elision-key": "cli-key"})
        assert r.status_code == 200 and r.json()["method"] == "truncate"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
