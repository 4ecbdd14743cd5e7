"""The Anthropic Messages format in the proxy: POST /v1/messages, compressed the way
/v1/chat/completions is, forwarded to an Anthropic-compatible upstream with the caller's own
x-api-key / anthropic-version / anthropic-beta headers, the answer (server-sent events included)
passed back as it comes.

    client = anthropic.Anthropic(base_url="http://127.0.0.1:8080")      # key: ANTHROPIC_API_KEY, relayed
    client.messages.create(model=..., max_tokens=512, system=..., messages=[...])

How a request maps onto compress_messages (elision.messages), so both proxies keep the same things:

    system (a string or text blocks)          -> a system message: kept verbatim
    user content (string or text blocks)      -> a user message: kept (stable policy), the question
                                                  the text after it is compressed toward
    assistant content (string or text)        -> an assistant message: compressed once if long
    tool_result blocks (string or text blocks) -> one tool message each: compressed once, toward the
                                                  user text before it
    image / document / tool_use / thinking ... -> passed through untouched, as is every other key

Prompt caching (issue 23): with the stable policy (the default) every block's text is a pure
function of itself and what precedes it, so the bytes at and before a breakpoint the caller set
are the same at every later turn, and Anthropic's cache entry written at turn N is read at turn
N+1. cache_control markers (on tools, system, message and tool_result blocks, and the top-level
automatic one) stay where the caller put them and are counted, never dropped: a request over
Anthropic's 4-breakpoint limit goes up as sent and gets Anthropic's own 400. When the caller
marked any breakpoint the stable policy compresses on arrival (hot_tokens 0): a closing block
would rewrite text at or before a breakpoint already sent. With --anthropic-breakpoints auto, a
request with no marker gets the top-level `cache_control: {"type": "ephemeral"}` (Anthropic
places it on the last block; below the model's minimum length nothing is cached or charged).
X-Elision-Breakpoints tells how many the request carries.

Per request, the same controls as the OpenAI proxy: a body field "elision": {"rate", "method",
"off", "policy", ...} (removed before forwarding) or X-Elision-Rate / X-Elision-Method /
X-Elision-Off / X-Elision-Policy headers; the answer carries X-Elision-Origin-Tokens /
X-Elision-Compressed-Tokens, and the usage priced with cache reads and writes
(X-Elision-Billed-Input beside X-Elision-Billed-Input-Uncompressed; serve/usage.py). Every error
on this route (the gate's 401 / 403 / 413, a 415, a caller's mistake, 503 / 504, upstream
failures) comes back in Anthropic's shape, {"type": "error", "error": {"type", "message",
"code"}} (errors.anthropic_body: `code` is the service's stable code, as on the other routes),
so Anthropic's SDKs raise their usual errors.

Not handled: compressing text inside `document` blocks, and the count_tokens endpoint (forward it
to the upstream directly).
"""

# no `from __future__ import annotations`: FastAPI reads the route signature at run time
import copy
import json

from fastapi import APIRouter, Request

from .._errors import InvalidInput
from .body import check_counts, read_proxy_request
from .errors import anthropic_response
from .forward import forward, redact
from .service import service_of
from .usage import Accounting, tail_tokens

PATH = "/v1/messages"
PASS_UP = ("x-api-key", "authorization", "anthropic-version", "anthropic-beta")
PASS_DOWN = ("content-type", "request-id", "retry-after", "location", "anthropic-organization-id")

Path = tuple  # keys from the request body down to one text, e.g. ("messages", 2, "content", 0, "text")

router = APIRouter()


def to_chat(body: dict) -> tuple[list[dict], list[list[Path]]]:
    """The request as OpenAI-style messages with text parts, and where each part came from.

    >>> to_chat({"system": "Be brief.", "messages": [{"role": "user", "content": [
    ...     {"type": "tool_result", "tool_use_id": "t1", "content": "42 rows"},
    ...     {"type": "text", "text": "Sum them."}]}]})[0]          # doctest: +NORMALIZE_WHITESPACE
    [{'role': 'system', 'content': [{'type': 'text', 'text': 'Be brief.'}]},
     {'role': 'tool', 'content': [{'type': 'text', 'text': '42 rows'}]},
     {'role': 'user', 'content': [{'type': 'text', 'text': 'Sum them.'}]}]
    """
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidInput('"messages" must be a non-empty list of {"role": ..., "content": ...} objects')
    chat: list[dict] = []
    places: list[list[Path]] = []

    def add(role: str, texts: list[tuple[Path, str]]) -> None:
        if texts:
            chat.append({"role": role, "content": [{"type": "text", "text": t} for _, t in texts]})
            places.append([p for p, _ in texts])

    add("system", _texts(body.get("system"), ("system",), "system", allow_none=True))
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise InvalidInput(f"{where} must be an object with role 'user' or 'assistant'")
        content = m.get("content")
        if isinstance(content, str):
            add(m["role"], [(("messages", i, "content"), content)])
            continue
        if not isinstance(content, list):
            raise InvalidInput(f"{where}.content must be a string or a list of content blocks")
        own: list[tuple[Path, str]] = []
        at = len(chat)  # the message's own text goes where its first text block was (among tool results)
        for b, block in enumerate(content):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise InvalidInput(f"{where}.content[{b}] must be an object with a 'type'")
            path = ("messages", i, "content", b)
            if block["type"] == "text":
                if not own:
                    at = len(chat)
                own.append(_text(block, path, f"{where}.content[{b}]"))
            elif block["type"] == "tool_result":
                add("tool", _texts(block.get("content"), (*path, "content"), f"{where}.content[{b}].content",
                                   allow_none=True))
        if own:
            chat.insert(at, {"role": m["role"], "content": [{"type": "text", "text": t} for _, t in own]})
            places.insert(at, [p for p, _ in own])
    return chat, places


def _text(block: dict, path: Path, where: str) -> tuple[Path, str]:
    if not isinstance(block.get("text"), str):
        raise InvalidInput(f"{where} is a text block without a 'text' string")
    return (*path, "text"), block["text"]


def _texts(value, path: Path, where: str, allow_none: bool = False) -> list[tuple[Path, str]]:
    """The texts of a string or a list of blocks (only text blocks count; images pass through)."""
    if value is None and allow_none:
        return []
    if isinstance(value, str):
        return [(path, value)]
    if not isinstance(value, list):
        raise InvalidInput(f"{where} must be a string or a list of content blocks")
    out = []
    for b, block in enumerate(value):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise InvalidInput(f"{where}[{b}] must be an object with a 'type'")
        if block["type"] == "text":
            out.append(_text(block, (*path, b), f"{where}[{b}]"))
    return out


def from_chat(body: dict, places: list[list[Path]], chat: list[dict]) -> dict:
    """A copy of the request with each text replaced by its compressed version."""
    out = copy.deepcopy(body)
    for paths, message in zip(places, chat):
        for path, part in zip(paths, message["content"]):
            target = out
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = part["text"]
    return out


def _broken_event(error: str) -> bytes:
    """Anthropic's error event, ending a stream whose upstream broke off."""
    event = {"type": "error", "error": {"type": "api_error", "code": "upstream_error",
                                        "message": f"the upstream stream broke off: {error}"}}
    return f"event: error\ndata: {json.dumps(event)}\n\n".encode()


@router.post(PATH)
async def messages(request: Request):
    """Anthropic Messages API: compress the conversation, forward, pass the answer back."""
    service = service_of(request)
    settings = service.settings
    base = settings.anthropic_upstream or settings.upstream
    if not base:
        return anthropic_response(501, "no_upstream", "this service was started without --anthropic-upstream or "
                                  "--upstream, so it cannot forward messages; use POST /v1/compress")
    body, control = await read_proxy_request(request, settings, "messages")
    headers = {"X-Elision-Method": "off"}
    marks = count_breakpoints(body)
    added = False
    if marks == 0 and settings.anthropic_breakpoints == "auto" and isinstance(body.get("messages"), list):
        body["cache_control"] = {"type": "ephemeral"}  # Anthropic's automatic caching: the last block, moving on
        marks, added = 1, True
    saved = tail = 0
    if not control.get("off"):
        check_counts(settings, messages=body.get("messages"))
        chat, places = to_chat(body)
        if chat:  # else only images and tool calls: nothing to compress
            compressed, headers, res = await service.compress_chat(chat, control, breakpoints=marks > 0)
            roles = [m.get("role") if isinstance(m, dict) else None for m in body["messages"]]
            body = from_chat(body, places, compressed)
            saved = res.origin_tokens - res.compressed_tokens
            tail = tail_tokens(res.per_message, [p[0][1] if p and p[0][0] == "messages" else -1 for p in places],
                               roles)
            if res.recall and roles[-1] == "user":  # after every block the caller sent, markers included
                last = body["messages"][-1]
                if isinstance(last.get("content"), str):
                    last["content"] = [{"type": "text", "text": last["content"]}]
                last["content"].append({"type": "text", "text": res.recall})
    headers = {**headers, "X-Elision-Breakpoints": f"{marks}" + (" (added)" if added else "")
               + (f" (over Anthropic's limit of {MAX_BREAKPOINTS}: passed on as sent)" if marks > MAX_BREAKPOINTS else "")}
    accounting = Accounting("anthropic", str(body.get("model", "")), service.prices, saved_tokens=saved,
                            tail_tokens=tail, breakpoints=marks > 0, metrics=service.metrics)
    url = base.rstrip("/") + "/messages"
    return await forward(request, url, body, pass_up=PASS_UP, elision_headers=headers, fail=anthropic_response,
                         pass_down=lambda k: k in PASS_DOWN or k.startswith(("anthropic-ratelimit", "x-ratelimit")),
                         broken_event=_broken_event, timeout_s=settings.upstream_timeout, where=redact(url),
                         accounting=accounting)


MAX_BREAKPOINTS = 4  # Anthropic's limit of blocks with cache_control per request (the top-level one counts)


def count_breakpoints(body: dict) -> int:
    """cache_control markers the caller set: on tools, system blocks, message content blocks
    (tool_result contents included), plus the top-level automatic one. Counted, never moved or
    dropped: a request over the limit goes up as sent, and Anthropic's 400 comes back.

    >>> count_breakpoints({"cache_control": {"type": "ephemeral"}, "system": [{"type": "text", "text": "S",
    ...     "cache_control": {"type": "ephemeral"}}], "messages": [{"role": "user", "content": "hi"}]})
    2
    """
    n = 1 if body.get("cache_control") else 0
    stack = [body.get("tools"), body.get("system"), body.get("messages")]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack += v
        elif isinstance(v, dict):
            n += 1 if isinstance(v.get("cache_control"), dict) else 0
            c = v.get("content")
            if isinstance(c, list):
                stack.append(c)
    return n
