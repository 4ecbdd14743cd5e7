"""POST /v1/messages (the Anthropic Messages format) against a fake Anthropic upstream on
127.0.0.1: what reaches the upstream (system and the latest question kept, history and tool
results compressed exactly as compress_messages does, the caller's key headers relayed), the
answer relayed as it came (server-sent events as they arrive), errors in Anthropic's shape; and
Anthropic's own SDK as the client."""

# no `from __future__ import annotations`: FastAPI reads the fake upstream's signature at run time
import asyncio
import doctest
import json
import time

import pytest

pytest.importorskip("fastapi")
import httpx

from elision import Compressor
from elision.serve import Settings, anthropic, create_app

from .conftest import is_subsequence
from .upstream import LoopbackServer

DOC = ("The Tay Bridge, opened in 1878, carried the North British Railway across the Firth of Tay near Dundee. "
       "Its designer, Thomas Bouch, was knighted after the opening, but less than two years later the central "
       "girders collapsed in a violent storm on 28 December 1879 while a train was crossing, and all aboard died.")
LOG = ("2024-05-01 12:00:01 INFO service started on port 8080 with 4 workers and a queue of 16 requests. "
       "2024-05-01 12:00:07 WARN request 17 took 2.4 s because the cache was cold and the model loaded late. ") * 3
QUESTION = "Who designed the bridge, and when did it fall?"


def make_fake_anthropic():
    """An Anthropic-compatible upstream that echoes what it received; `model` picks misbehaviour:
    fail-500 (HTTP 500 with internals in its body), stall-<s> (streams one event, then waits)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI()

    @app.post("/v1/messages")
    async def messages(request: Request):
        body = await request.json()
        model = body.get("model", "")
        # Anthropic takes the key as x-api-key (what curl users send) or as a bearer token (what
        # its current Python SDK sends)
        if "good-key" not in (request.headers.get("x-api-key"), request.headers.get("authorization", "")[7:]):
            return JSONResponse({"type": "error", "error": {"type": "authentication_error",
                                                            "message": "invalid x-api-key"}}, status_code=401)
        if model == "fail-500":
            return JSONResponse({"type": "error", "error": {"type": "api_error", "message": "db at 10.0.0.7 down"}},
                                status_code=500)
        echo = json.dumps({"body": body, "headers": {k: request.headers.get(k) for k in (
            "x-api-key", "anthropic-version", "anthropic-beta", "authorization", "x-elision-key")}})
        usage = {"input_tokens": 1, "output_tokens": 1}
        if not body.get("stream"):
            return JSONResponse({"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                                 "content": [{"type": "text", "text": echo}], "stop_reason": "end_turn",
                                 "stop_sequence": None, "usage": usage},
                                headers={"request-id": "req_123", "anthropic-ratelimit-requests-remaining": "99"})

        async def events():
            def sse(kind, data):
                return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"
            yield sse("message_start", {"message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                    "model": model, "content": [], "stop_reason": None,
                                                    "stop_sequence": None, "usage": usage}})
            yield sse("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            for piece in (echo[: len(echo) // 2], echo[len(echo) // 2:]):
                yield sse("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
                if model.startswith("stall-"):
                    await asyncio.sleep(float(model[6:]))
            yield sse("content_block_stop", {"index": 0})
            yield sse("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                        "usage": {"output_tokens": 2}})
            yield sse("message_stop", {})

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def upstream():
    server = LoopbackServer(make_fake_anthropic()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def comp():
    return Compressor("llmlingua2")


@pytest.fixture(scope="module")
def service(upstream, comp):
    """elision serve on loopback, forwarding /v1/messages to the fake upstream."""
    app = create_app(Settings(anthropic_upstream=upstream.url + "/v1", api_key="svc-token"),
                     preloaded={"llmlingua2": comp})
    server = LoopbackServer(app).start()
    yield server
    server.stop()


def conversation():
    return {
        "model": "claude-test", "max_tokens": 64,
        "system": [{"type": "text", "text": "You are a careful assistant. " + DOC[:80]}],
        "messages": [
            {"role": "user", "content": "Here is a document. " + DOC},
            {"role": "assistant", "content": [{"type": "text", "text": "Noted. " + DOC},
                                              {"type": "tool_use", "id": "t1", "name": "logs", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": LOG}]},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "text", "text": QUESTION}]},
        ],
    }


HEADERS = {"x-api-key": "good-key", "anthropic-version": "2023-06-01", "anthropic-beta": "tools-2024",
           "X-Elision-Key": "svc-token"}


def test_to_chat_docstring():
    assert doctest.testmod(anthropic).failed == 0


def test_messages_are_compressed_like_chat_completions(service, comp):
    body = conversation()
    r = httpx.post(service.url + "/v1/messages", json={**body, "elision": {"rate": 0.4}}, headers=HEADERS,
                   timeout=60)
    assert r.status_code == 200, r.text
    seen = json.loads(r.json()["content"][0]["text"])
    sent = seen["body"]
    assert seen["headers"] == {"x-api-key": "good-key", "anthropic-version": "2023-06-01",
                               "anthropic-beta": "tools-2024", "authorization": None, "x-elision-key": None}
    assert "elision" not in sent and sent["model"] == "claude-test" and sent["max_tokens"] == 64
    assert sent["system"] == body["system"]  # kept
    last = sent["messages"][2]["content"]
    assert last[2] == {"type": "text", "text": QUESTION} and last[1] == body["messages"][2]["content"][1]
    assert sent["messages"][1]["content"][1] == body["messages"][1]["content"][1]  # tool_use untouched
    tool_text = last[0]["content"][0]["text"]
    assert len(tool_text) < len(LOG) and is_subsequence(tool_text, LOG)
    # exactly what the library does with the same conversation in OpenAI form
    chat, _ = anthropic.to_chat(body)
    lib = comp.compress_messages(chat, rate=0.4)
    assert sent["messages"][0]["content"] == lib.messages[1]["content"][0]["text"]
    assert sent["messages"][1]["content"][0]["text"] == lib.messages[2]["content"][0]["text"]
    assert tool_text == lib.messages[3]["content"][0]["text"]
    assert r.headers["x-elision-origin-tokens"] == str(lib.origin_tokens)
    assert r.headers["x-elision-compressed-tokens"] == str(lib.compressed_tokens)
    assert r.headers["request-id"] == "req_123" and r.headers["anthropic-ratelimit-requests-remaining"] == "99"
    # off: forwarded as it came
    r = httpx.post(service.url + "/v1/messages", json=body, headers={**HEADERS, "X-Elision-Off": "1"}, timeout=60)
    assert json.loads(r.json()["content"][0]["text"])["body"] == body and r.headers["x-elision-method"] == "off"


def test_the_anthropic_sdk_streams_through_the_proxy(service):
    sdk = pytest.importorskip("anthropic")
    client = sdk.Anthropic(base_url=service.url, api_key="good-key",
                           default_headers={"X-Elision-Key": "svc-token", "X-Elision-Rate": "0.5"})
    body = conversation()
    with client.messages.stream(model="claude-test", max_tokens=64, system=body["system"],
                                messages=body["messages"]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    seen = json.loads(text)
    assert seen["body"]["stream"] is True
    # the caller's own key, as the SDK sent it (its current version sends a bearer token)
    assert seen["headers"]["x-api-key"] == "good-key" or seen["headers"]["authorization"] == "Bearer good-key"
    assert seen["body"]["messages"][2]["content"][2]["text"] == QUESTION
    assert final.stop_reason == "end_turn"
    plain = client.messages.create(model="claude-test", max_tokens=64, messages=body["messages"])
    assert json.loads(plain.content[0].text)["body"]["messages"][2]["content"][2]["text"] == QUESTION
    # the upstream's own 401 reaches the SDK as its usual exception
    bad = sdk.Anthropic(base_url=service.url, api_key="wrong", default_headers={"X-Elision-Key": "svc-token"},
                        max_retries=0)
    with pytest.raises(sdk.AuthenticationError, match="invalid x-api-key"):
        bad.messages.create(model="claude-test", max_tokens=8, messages=body["messages"])


def test_events_are_relayed_as_they_arrive(service):
    body = {**conversation(), "model": "stall-3", "stream": True}
    got, first_at = [], None
    t0 = time.monotonic()
    with httpx.stream("POST", service.url + "/v1/messages", json=body, headers=HEADERS, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for chunk in r.iter_text():
            if first_at is None and "content_block_delta" in chunk:
                first_at = time.monotonic() - t0
            got.append(chunk)
    total = time.monotonic() - t0
    assert first_at is not None and first_at < total - 2  # the first delta came before the stall ended
    assert "event: message_stop" in "".join(got)


def test_errors(service, upstream, comp):
    url = service.url + "/v1/messages"
    r = httpx.post(url, json={**conversation(), "model": "fail-500"}, headers=HEADERS, timeout=60)
    assert r.status_code == 502
    err = r.json()
    assert err["type"] == "error" and err["error"]["type"] == "api_error" and err["error"]["code"] == "upstream_error"
    assert "10.0.0.7" not in r.text  # the upstream's internals are not relayed
    r = httpx.post(url, json=conversation(), headers={k: v for k, v in HEADERS.items() if k != "X-Elision-Key"})
    assert r.status_code == 401  # the service token guards the proxy
    r = httpx.post(url, json=conversation(), headers={**HEADERS, "Authorization": "Bearer svc-token",
                                                      "X-Elision-Key": ""})
    assert r.status_code == 401  # Authorization goes upstream, it is not the service token here
    for bad, msg in ((
            {"model": "m", "messages": "hi"}, '"messages" must be a non-empty list'),
            ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "role 'user' or 'assistant'"),
            ({"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
             "messages[0].content[0] is a text block without a 'text' string"),
            ({"model": "m", "system": 5, "messages": [{"role": "user", "content": "q"}]},
             "system must be a string or a list of content blocks")):
        r = httpx.post(url, json=bad, headers=HEADERS, timeout=30)
        assert r.status_code == 400 and msg in r.json()["error"]["message"], r.text
    # no upstream configured: 501 that says what to do
    app = create_app(Settings(), preloaded={"llmlingua2": comp})
    server = LoopbackServer(app).start()
    try:
        r = httpx.post(server.url + "/v1/messages", json=conversation(), timeout=30)
        assert r.status_code == 501 and "--anthropic-upstream" in r.json()["error"]["message"]
    finally:
        server.stop()
    # an unreachable upstream: 502 naming it without credentials
    app = create_app(Settings(anthropic_upstream="http://user:pw@127.0.0.1:9/v1"), preloaded={"llmlingua2": comp})
    server = LoopbackServer(app).start()
    try:
        r = httpx.post(server.url + "/v1/messages", json=conversation(), headers={"x-api-key": "k"}, timeout=30)
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_unreachable"
        assert "pw" not in r.text and "127.0.0.1:9/v1/messages" in r.text
    finally:
        server.stop()


def test_tool_only_user_turn_is_not_the_question():
    body = {"messages": [
        {"role": "user", "content": "Find the failing request."},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "logs", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": LOG}]}]}
    chat, places = anthropic.to_chat(body)
    assert [m["role"] for m in chat] == ["user", "tool"]  # the human's turn stays the question
    assert places == [[("messages", 0, "content")], [("messages", 2, "content", 0, "content")]]
    back = anthropic.from_chat(body, places, [{"content": [{"text": "A"}]}, {"content": [{"text": "B"}]}])
    assert back["messages"][0]["content"] == "A" and back["messages"][2]["content"][0]["content"] == "B"
    assert body["messages"][0]["content"] == "Find the failing request."  # the caller's dict is not changed


# --- every error on /v1/messages in Anthropic's shape (issue 24) -----------------------------------

def anthropic_error(r, kind: str, code: str) -> dict:
    """The body Anthropic's SDKs read: {"type": "error", "error": {"type", "message"}} (+ our code)."""
    body = r.json()
    assert set(body) == {"type", "error"} and body["type"] == "error", r.text
    e = body["error"]
    assert e["type"] == kind and e["code"] == code and isinstance(e["message"], str) and e["message"], r.text
    assert "Traceback" not in r.text
    return e


def test_every_error_status_has_anthropics_shape(upstream, comp):
    """Caller mistakes, 401, 403, 405, 413 (body and message count), 415, 503, 504, 501 and the
    upstream's failures: all in Anthropic's shape; the OpenAI routes keep theirs."""
    from .test_freeze import Hog  # noqa: F401 - registers test_hog (holds a worker past its limit)

    hog = Compressor("test_hog")
    app = create_app(Settings(anthropic_upstream=upstream.url + "/v1", api_key="svc-token", max_body_bytes=20000,
                              max_messages=3, timeout=1, workers=1, queue=0, methods=("test_hog",)),
                     preloaded={"llmlingua2": comp, "test_hog": hog})
    server = LoopbackServer(app).start()
    url = server.url + "/v1/messages"
    small = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "Who designed it?"}]}
    try:
        cases = [
            (httpx.post(url, json={"model": "m", "messages": "hi"}, headers=HEADERS), 400, "invalid_request_error",
             "invalid_input"),
            (httpx.post(url, content=b"{nope", headers={**HEADERS, "content-type": "application/json"}), 400,
             "invalid_request_error", "invalid_json"),
            (httpx.post(url, json={**small, "elision": {"rate": "x"}}, headers=HEADERS), 400,
             "invalid_request_error", "invalid_input"),
            (httpx.post(url, json=small, headers={"x-api-key": "good-key"}), 401, "authentication_error",
             "unauthorized"),
            (httpx.post(url, json=small, headers={**HEADERS, "Host": "evil.example"}), 403, "permission_error",
             "host_not_allowed"),
            (httpx.get(url, headers=HEADERS), 405, "invalid_request_error", "method_not_allowed"),
            (httpx.post(url, json={**small, "system": "x" * 30000}, headers=HEADERS), 413, "request_too_large",
             "body_too_large"),
            (httpx.post(url, json={**small, "messages": small["messages"] * 4}, headers=HEADERS), 413,
             "request_too_large", "too_many_messages"),
            (httpx.post(url, content=json.dumps(small), headers={**HEADERS, "content-type": "text/plain"}), 415,
             "invalid_request_error", "unsupported_media_type"),
            (httpx.post(url, json={**small, "model": "fail-500"}, headers=HEADERS), 502, "api_error",
             "upstream_error"),
        ]
        with httpx.Client(timeout=30) as c:  # the one worker held by a hog: 504, then 503 for the next
            import threading

            out = {}
            t = threading.Thread(target=lambda: out.update(hog=c.post(url, json={  # its tool result is scored
                **conversation(), "elision": {"method": "test_hog"}}, headers=HEADERS)))
            t.start()
            time.sleep(0.3)
            busy = c.post(url, json=small, headers=HEADERS)
            t.join()
        cases += [(busy, 503, "overloaded_error", "overloaded"),
                  (out["hog"], 504, "timeout_error", "compression_timeout")]
        for r, status, kind, code in cases:
            assert r.status_code == status, (status, r.text)
            anthropic_error(r, kind, code)
        # the OpenAI-shaped routes keep their shape on the same service
        r = httpx.post(server.url + "/v1/compress", json={"context": 3}, headers=HEADERS)
        assert r.status_code == 400 and set(r.json()) == {"error"}
    finally:
        server.stop()
    app = create_app(Settings(), preloaded={"llmlingua2": comp})  # no upstream: 501
    server = LoopbackServer(app).start()
    try:
        r = httpx.post(server.url + "/v1/messages", json=small, timeout=30)
        assert r.status_code == 501
        anthropic_error(r, "not_found_error", "no_upstream")
    finally:
        server.stop()
