"""Forwarding a compressed request to the upstream and passing its answer back: one function
for both proxies (the OpenAI chat completions in openai.py, the Anthropic messages in
anthropic.py), which differ only in their error shape, the headers they pass and the error
event that ends a broken stream.

    >>> return await forward(request, url, body, pass_up=PASS_UP, pass_down=PASS_DOWN,
    ...                      elision_headers={"X-Elision-Method": "llmlingua2"}, fail=error_response,
    ...                      broken_event=lambda name: b"data: {...}\\n\\n", timeout_s=60, where=redact(url))

What the caller gets back: the upstream's event stream relayed as it arrives (decoded: a gzip
stream is not relayed under a header that no longer says gzip; a stream that breaks off ends
with `broken_event`), its 3xx / 4xx with status and body as they came, a 5xx as 502 without
its body (it may name the upstream's internals), a 2xx body that is not JSON as 502, and
timeouts / unreachable upstreams as 504 / 502 in the caller's error shape (`fail`). `where` is
the URL an error message may show (no credentials, no query).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger("elision.serve")


async def _relay(up, broken_event: Callable[[str], bytes], accounting=None):
    import httpx

    try:
        async for chunk in up.aiter_bytes():
            if accounting is not None:
                accounting.feed(chunk)
            yield chunk
    except httpx.HTTPError as e:
        log.warning("upstream stream broke off: %s", type(e).__name__)
        yield broken_event(type(e).__name__)
        return
    if accounting is not None:
        tail = accounting.end_of_stream()  # the usage, as an SSE comment clients skip
        if tail:
            yield tail


async def forward(request, url: str, body: dict, *, pass_up: tuple[str, ...], pass_down: Callable[[str], bool],
                  elision_headers: dict, fail: Callable, broken_event: Callable[[str], bytes], timeout_s: float,
                  where: str, accounting=None):
    """POST `body` to `url` with the caller's `pass_up` headers; the response to send back,
    with the upstream headers `pass_down(name)` accepts plus `elision_headers` (see the module
    docstring). `fail(status, code, message, headers, **extra)` makes an error response.
    `accounting` (serve/usage.Accounting) reads the usage of a 2xx answer: headers on a JSON
    answer, a closing SSE comment on a stream."""
    import httpx
    from fastapi.responses import Response, StreamingResponse
    from starlette.background import BackgroundTask

    headers = elision_headers
    up_headers = {k: v for k, v in request.headers.items() if k.lower() in pass_up}
    client = request.app.state.client
    t0 = time.perf_counter()
    try:
        up = await client.send(client.build_request("POST", url, json=body, headers=up_headers), stream=True)
    except httpx.TimeoutException:
        return fail(504, "upstream_timeout", f"the upstream did not answer within {timeout_s:g} s", headers)
    except httpx.ConnectError as e:
        return fail(502, "upstream_unreachable", f"cannot reach the upstream at {where}: {type(e).__name__}", headers)
    except httpx.HTTPError as e:  # connected, then reset or closed before an answer
        return fail(502, "upstream_error", f"the upstream at {where} broke the connection before answering: "
                    f"{type(e).__name__}", headers)
    request.app.state.metrics.observe("elision_upstream_seconds", time.perf_counter() - t0)
    down = {k: v for k, v in up.headers.items() if pass_down(k.lower())}
    down.update(headers)
    if up.status_code < 300 and "text/event-stream" in up.headers.get("content-type", ""):
        return StreamingResponse(_relay(up, broken_event, accounting), status_code=up.status_code, headers=down,
                                 background=BackgroundTask(up.aclose))
    try:
        content = await up.aread()  # decoded (gzip, br, ...): the answer goes out without the encoding
    except httpx.TimeoutException:
        return fail(504, "upstream_timeout", "the upstream stopped sending its answer", headers)
    except httpx.HTTPError as e:
        return fail(502, "upstream_error", f"the upstream's answer broke off: {type(e).__name__}", headers)
    finally:
        await up.aclose()
    if up.status_code >= 500:  # its body is not relayed: it may name internals of the upstream
        return fail(502, "upstream_error", f"the upstream ({where}) answered HTTP {up.status_code}", headers,
                    upstream_status=up.status_code)
    if up.status_code >= 300:  # the upstream's own 3xx / 4xx (a bad key, a bad model), as it came
        return Response(content=content, status_code=up.status_code, headers=down)
    try:
        json.loads(content)
    except ValueError:
        return fail(502, "upstream_invalid_json", f"the upstream answered HTTP {up.status_code} with a body that "
                    "is not JSON", headers, upstream_status=up.status_code)
    if accounting is not None:
        accounting.read_body(content)
        down.update(accounting.headers())
    return Response(content=content, status_code=up.status_code, headers=down, media_type="application/json")


def redact(url: str) -> str:
    """The URL without user:password and without the query (where keys often travel):
    'https://u:p@api.example:8443/v1?key=k' -> 'https://api.example:8443/v1'."""
    u = urlsplit(url)
    host = u.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{u.port}" if u.port else "")
    return urlunsplit((u.scheme, netloc, u.path, "", ""))
