"""What is decided about a request before its body is read (docs/security.md), as plain ASGI
middleware around the whole app:

    Host: evil.example                 -> 403 host_not_allowed (DNS rebinding)
    no / wrong service token           -> 401 unauthorized (but /healthz, the docs, the playground page)
    Content-Length over the limit      -> 413 body_too_large, before a byte is read
    a chunked body growing past it     -> 413 as soon as it does

The service token comes as X-Elision-Key, or as Authorization: Bearer outside the proxy (where
Authorization is the caller's upstream key and goes upstream). The gate also counts every answer
(elision_requests_total / elision_errors_total by endpoint and status), logs one line per
request (never the prompt), and answers an unexpected exception as a 500 in the one error shape.
Not here: what the body says (body.py) and CORS (outside the gate: a preflight carries no token).
"""

from __future__ import annotations

import hmac
import logging
import time

from .errors import ENDPOINTS, response_for
from .metrics import Metrics
from .playground import PATHS as PLAYGROUND_PATHS
from .settings import Settings

log = logging.getLogger("elision.serve")

OPEN_PATHS = ("/healthz", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect", *PLAYGROUND_PATHS)
PROXY_PATHS = ("/v1/chat/completions", "/v1/messages")  # Authorization goes upstream there


class Gate:
    """Everything decided before a request's body is read, as plain ASGI: the Host header
    (DNS rebinding: a page on evil.example resolving to 127.0.0.1 still sends its own name), the
    service token (an unauthenticated upload is refused from its headers), then the body size:
    at once from its Content-Length, and a body without one (chunked) counted while it is read,
    up to the limit. Also counts and logs every answer, and turns an unexpected exception
    into a 500 in the one error shape."""

    def __init__(self, app, settings: Settings, metrics: Metrics):
        self.app, self.settings, self.metrics, self.limit = app, settings, metrics, settings.max_body_bytes
        self.hosts = settings.host_check

    async def _answer(self, send, path: str, status: int, code: str, message: str, headers: dict | None = None,
                      **extra):
        response = response_for(path)(status, code, message, headers, **extra)  # the route's shape
        await response({"type": "http"}, _nothing, send)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        path = scope["path"]
        status = {"code": 500}

        async def counted_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, counted_send)
        except Exception:  # noqa: BLE001 - never a crash: logged (without the prompt), answered 500
            log.exception("unexpected error on %s", path)
            if status["code"] == 500:
                try:
                    await self._answer(counted_send, path, 500, "internal_error", "the service failed on this request")
                except Exception:  # noqa: BLE001 - the answer had started; the connection is closed
                    pass
        label = _label(path)
        self.metrics.inc("elision_requests_total", endpoint=label, status=str(status["code"]))
        if status["code"] >= 400:
            self.metrics.inc("elision_errors_total", endpoint=label, status=str(status["code"]))
        log.info("%s %s %d %.1f ms", scope.get("method"), path, status["code"], 1000 * (time.perf_counter() - t0))

    async def _handle(self, scope, receive, send):
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        path = scope["path"]
        if self.hosts is not None and _host_name(headers.get("host", "")) not in self.hosts:
            return await self._answer(send, path, 403, "host_not_allowed", "this service answers only requests "
                                      "addressed to " + ", ".join(sorted(self.hosts)) + " (ELISION_ALLOWED_HOSTS)")
        key = self.settings.api_key
        if key and scope["path"] not in OPEN_PATHS and not _authorized(headers, key, scope["path"]):
            return await self._answer(send, path, 401, "unauthorized", "missing or wrong service token: send "
                                      "X-Elision-Key: <token> (or Authorization: Bearer <token> outside the proxy)",
                                      headers={"WWW-Authenticate": "Bearer"})
        length = headers.get("content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.limit:
                return await self._too_large(send, path)
            return await self.app(scope, receive, send)  # the server holds the body to its length
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            size += len(message.get("body", b""))
            if size > self.limit:
                return await self._too_large(send, path)
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        whole = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return whole
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send, path: str):
        await self._answer(send, path, 413, "body_too_large", f"request body is over the limit of {self.limit} bytes "
                           "(ELISION_MAX_BODY_BYTES)", limit_bytes=self.limit)


async def _nothing():  # pragma: no cover - a JSONResponse never reads its request
    return {"type": "http.disconnect"}


def _label(path: str) -> str:
    return path if path in ENDPOINTS else "other"


def _host_name(host: str) -> str:
    """'LocalHost:8080' -> 'localhost', '[::1]:8080' -> '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _authorized(headers: dict, key: str, path: str) -> bool:
    given = headers.get("x-elision-key")
    if given is None and path not in PROXY_PATHS:  # the proxy forwards Authorization upstream
        auth = headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else None
    return given is not None and hmac.compare_digest(given.encode("latin-1"), key.encode("ascii"))
