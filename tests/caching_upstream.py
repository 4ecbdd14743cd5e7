"""A loopback upstream that caches and bills like OpenAI and Anthropic, for end-to-end tests of
the cache-stable proxy: POST /v1/chat/completions and POST /v1/messages bill each request with a
warm simulator of the provider's prompt cache (elision.billing) and answer a short assistant text
with usage in the shape the real APIs give it, as one JSON body or as server-sent events.

    >>> app = make_caching_upstream(); server = LoopbackServer(app).start()    # tests/upstream.py
    >>> ... the proxy forwards turn 1, then turn 2 of a conversation ...
    >>> got = app.state.upstream.received[-1]     # what reached the upstream, and what it answered
    >>> got.raw[:17], got.body["messages"][0], got.usage["prompt_tokens_details"]["cached_tokens"]
    (b'{"model":"gpt-5",', {'role': 'system', ...}, 1152)

What it models (billing.py's docstring has the rules and where they were read):

- OpenAI: one OpenAIPrefixCache per model (exact prefix, from 1,024 tokens in 128-token steps),
  fed `openai_request_tokens(body)`. The answer: `usage: {prompt_tokens (cached included),
  completion_tokens, total_tokens, prompt_tokens_details: {cached_tokens, audio_tokens},
  completion_tokens_details}`. A stream (`stream: true`) is chat.completion.chunk events, then,
  only with `stream_options: {"include_usage": true}`, a last chunk with `choices: []` and the
  usage (the chunks before it carry `usage: null`), then `data: [DONE]`.
- Anthropic: one AnthropicCache per model (breakpoints, the top-level automatic cache_control,
  the 20-position lookback, the model's minimum, 1h before 5m), fed
  `anthropic_request_blocks(body)`. The answer: `usage: {input_tokens (reads and writes
  excluded), cache_creation_input_tokens, cache_read_input_tokens, cache_creation:
  {ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}, output_tokens}`. A stream is
  event-named SSE: message_start (message.usage with output_tokens 1), content_block_start, ping,
  content_block_delta x2, content_block_stop, message_delta (usage, cumulative: every count so
  far), message_stop. A request the simulator refuses (over 4 breakpoints, 1h after 5m, an
  unknown ttl) gets HTTP 400 in Anthropic's error shape, {"type": "error", "error": {"type":
  "invalid_request_error", "message": ...}, "request_id": ...}, as the real API answers it.

Why one simulator per model, not one per provider: the real caches are per model (and Anthropic's
minimum length is per model), so a test that switches models does not get reads it would not get.

NOT modelled: keys and authentication (any key is taken), expiry (every entry stays warm),
OpenAI's routing (always the best case), validation of the rest of the body: unknown fields in a
cache_control (`"x-future": 1`), `prompt_cache_key`, a `cache_control` on an OpenAI content part
are accepted and ignored here, where the real APIs may refuse some of them. Token counts use
o200k_base for both providers (Claude's tokenizer is not public), so Anthropic's are close, not
exact. `state.reset()` empties the caches and the record between tests.
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures at run time
import json
import time
from dataclasses import dataclass

from elision.billing import (
    AnthropicCache,
    CacheControlError,
    OpenAIPrefixCache,
    anthropic_request_blocks,
    openai_request_tokens,
)
from elision.tokenizers import get_target

REPLY = "Noted; the answer follows from the notes."  # every answer's text


@dataclass
class Received:
    """One request as it reached the upstream, and the usage it was answered with."""

    path: str
    raw: bytes  # the body's bytes as sent (what a real cache sees)
    body: dict  # the same, parsed (key order kept)
    headers: dict
    status: int = 200
    usage: dict | None = None  # the usage object of the answer (None for an error)


class CachingState:
    """The upstream's memory: warm simulators per (provider, model) and every request received."""

    def __init__(self, encoding: str = "o200k_base"):
        self.encode = get_target(encoding).encode
        self.reset()

    def reset(self) -> None:
        self.received: list[Received] = []
        self._caches: dict[tuple[str, str], object] = {}

    def cache(self, provider: str, model: str):
        key = (provider, model)
        if key not in self._caches:
            self._caches[key] = OpenAIPrefixCache(model=model) if provider == "openai" else AnthropicCache(model=model)
        return self._caches[key]

    def openai(self, body: dict) -> dict:
        """OpenAI's usage object for this request, the cache updated."""
        u = self.cache("openai", str(body.get("model", ""))).request(openai_request_tokens(body, self.encode))
        out = len(self.encode(REPLY))
        return {"prompt_tokens": u.prompt_tokens, "completion_tokens": out, "total_tokens": u.prompt_tokens + out,
                "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}

    def anthropic(self, body: dict) -> dict:
        """Anthropic's usage object for this request, the cache updated; CacheControlError where the
        real API answers 400."""
        u = self.cache("anthropic", str(body.get("model", ""))).request(
            *anthropic_request_blocks(body, self.encode))
        return {"input_tokens": u.input_tokens,
                "cache_creation_input_tokens": u.cache_write_tokens + u.cache_write_1h_tokens,
                "cache_read_input_tokens": u.cache_read_tokens,
                "cache_creation": {"ephemeral_5m_input_tokens": u.cache_write_tokens,
                                   "ephemeral_1h_input_tokens": u.cache_write_1h_tokens},
                "output_tokens": len(self.encode(REPLY)), "service_tier": "standard"}


def make_caching_upstream(encoding: str = "o200k_base"):
    """The FastAPI app; its CachingState is `app.state.upstream` (see the module docstring)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI()
    state = app.state.upstream = CachingState(encoding)

    async def receive(request: Request) -> Received:
        raw = await request.body()
        got = Received(request.url.path, raw, json.loads(raw), dict(request.headers))
        state.received.append(got)
        return got

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        got = await receive(request)
        body = got.body
        model = str(body.get("model", ""))
        got.usage = usage = state.openai(body)
        n = len(state.received)
        head = {"id": f"chatcmpl-{n}", "created": int(time.time()), "model": model,
                "system_fingerprint": "fp_loopback"}
        if not body.get("stream"):
            return {**head, "object": "chat.completion", "usage": usage, "choices": [{
                "index": 0, "logprobs": None, "finish_reason": "stop",
                "message": {"role": "assistant", "content": REPLY, "refusal": None}}]}
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict, finish=None) -> str:
            obj = {**head, "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            if with_usage:
                obj["usage"] = None  # every chunk but the last says null when usage is asked for
            return f"data: {json.dumps(obj)}\n\n"

        async def events():
            yield chunk({"role": "assistant", "content": "", "refusal": None})
            half = len(REPLY) // 2
            for piece in (REPLY[:half], REPLY[half:]):
                yield chunk({"content": piece})
            yield chunk({}, "stop")
            if with_usage:
                yield f"data: {json.dumps({**head, 'object': 'chat.completion.chunk', 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/messages")
    async def messages(request: Request):
        got = await receive(request)
        body = got.body
        model = str(body.get("model", ""))
        n = len(state.received)
        try:
            got.usage = usage = state.anthropic(body)
        except CacheControlError as e:
            got.status = 400
            return JSONResponse({"type": "error", "error": {"type": "invalid_request_error", "message": str(e)},
                                 "request_id": f"req_{n}"}, status_code=400, headers={"request-id": f"req_{n}"})
        message = {"id": f"msg_{n}", "type": "message", "role": "assistant", "model": model,
                   "content": [{"type": "text", "text": REPLY}], "stop_reason": "end_turn", "stop_sequence": None,
                   "usage": usage}
        if not body.get("stream"):
            return JSONResponse(message, headers={"request-id": f"req_{n}"})

        def sse(kind: str, data: dict) -> str:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

        async def events():
            # message_start carries the input counts and output_tokens so far; message_delta the
            # final cumulative counts (all of them, as the API sends them today)
            yield sse("message_start", {"message": {**message, "content": [], "stop_reason": None,
                                                    "usage": {**usage, "output_tokens": 1}}})
            yield sse("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            yield sse("ping", {})
            half = len(REPLY) // 2
            for piece in (REPLY[:half], REPLY[half:]):
                yield sse("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
            yield sse("content_block_stop", {"index": 0})
            cumulative = {k: v for k, v in usage.items() if k not in ("cache_creation", "service_tier")}
            yield sse("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                        "usage": cumulative})
            yield sse("message_stop", {})

        return StreamingResponse(events(), media_type="text/event-stream", headers={"request-id": f"req_{n}"})

    return app
