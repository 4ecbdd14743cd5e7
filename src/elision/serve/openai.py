"""The OpenAI format in the proxy: POST /v1/chat/completions, the request's messages compressed
(compress_messages), forwarded to the upstream with the caller's own Authorization header, the
answer passed back: its status and body unchanged (4xx and 3xx included), event streams
relayed as they arrive (decoded).

    client = openai.OpenAI(base_url="http://127.0.0.1:8080/v1")      # key: OPENAI_API_KEY, relayed
    client.chat.completions.create(model=..., messages=[...], extra_body={"elision": {"rate": 0.4}})

The conversation is compressed with the stable policy by default (elision.messages: each
message once, the same bytes at every later turn, so OpenAI's automatic prefix cache keeps
hitting); system messages, tools and every field but the messages' texts go up untouched
(prompt_cache_key, prompt_cache_retention, cache_control on content parts for OpenAI-compatible
routers). Per request: a body field "elision": {"rate", "target_tokens", "method", "off",
"policy", "hot_tokens", "condition", "recall_tokens", "repeats", "age_decay", "keep_recent"} (removed before
forwarding) or
headers X-Elision-Rate / X-Elision-Method / X-Elision-Off / X-Elision-Policy. Answer headers
X-Elision-Origin-Tokens / X-Elision-Compressed-Tokens report the counts, and the upstream's usage
priced with its cache multipliers comes back as X-Elision-Billed-Input beside
X-Elision-Billed-Input-Uncompressed (serve/usage.py). Upstream failures (forward.py) come back in the service's one error shape: 5xx as 502
without its body, time-outs as 504, never the upstream's URL credentials.

Not handled: other OpenAI endpoints (/v1/responses, /v1/embeddings, ...): call the upstream
directly for those.
"""

# no `from __future__ import annotations`: FastAPI reads the route signature at run time
import json

from fastapi import APIRouter, Request

from .body import check_counts, read_proxy_request
from .errors import ServiceError, error_body, error_response
from .forward import forward, redact
from .service import service_of
from .usage import Accounting, tail_tokens

PATH = "/v1/chat/completions"
PASS_UP = ("authorization", "openai-organization", "openai-project", "anthropic-version", "x-api-key")
PASS_DOWN = ("content-type", "x-request-id", "openai-processing-ms", "openai-version", "location", "retry-after")

router = APIRouter()


@router.post(PATH)
async def chat_completions(request: Request):
    """OpenAI-compatible: compress the messages, forward, pass the answer back unchanged."""
    service = service_of(request)
    settings = service.settings
    if not settings.upstream:
        raise ServiceError(501, "no_upstream", "this service was started without --upstream, so it cannot "
                           "forward chat completions; use POST /v1/compress")
    body, control = await read_proxy_request(request, settings, "chat")
    headers = {"X-Elision-Method": "off"}
    saved = tail = 0
    if not control.get("off"):
        check_counts(settings, messages=body.get("messages"))
        original = body.get("messages")
        body["messages"], headers, res = await service.compress_chat(original, control)
        saved = res.origin_tokens - res.compressed_tokens
        tail = tail_tokens(res.per_message, range(len(original)), [m.get("role") for m in original])
    # everything else (tools, prompt_cache_key, prompt_cache_retention, ...) goes up as it came
    accounting = Accounting("openai", str(body.get("model", "")), service.prices, saved_tokens=saved,
                            tail_tokens=tail, metrics=service.metrics)
    url = settings.upstream.rstrip("/") + "/chat/completions"
    return await forward(request, url, body, pass_up=PASS_UP, elision_headers=headers, fail=error_response,
                         pass_down=lambda k: k in PASS_DOWN or k.startswith("x-ratelimit"),
                         broken_event=_broken_event, timeout_s=settings.upstream_timeout, where=redact(url),
                         accounting=accounting)


def _broken_event(error: str) -> bytes:
    """The last SSE event of a chat stream whose upstream broke off: an error object in the one shape."""
    return ("data: " + json.dumps(error_body(502, "upstream_error", f"the upstream stream broke off: {error}"))
            + "\n\n").encode()
