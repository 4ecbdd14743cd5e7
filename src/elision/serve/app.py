"""The HTTP service: a compression API and an OpenAI-compatible compressing proxy.

    >>> app = create_app(Settings(method="llmlingua2", upstream="https://api.openai.com/v1"))
    >>> # uvicorn.run(app, host="127.0.0.1", port=8080)      (what `elision serve` does)

- POST /v1/compress: the library's arguments as JSON (context | prompt | messages, instruction,
  question, rate | target_tokens, method, target, protect, options); answers the result's fields
  (compressed_prompt, origin_tokens, compressed_tokens, ...), or for messages the compressed
  messages and their counts.
- POST /v1/chat/completions: compresses the request's messages (compress_messages), forwards
  the request to the upstream with the caller's own Authorization header, and passes the
  answer back: its status and body unchanged (4xx and 3xx included), event streams relayed as
  they arrive (decoded). Per request: a body field "elision": {"rate", "target_tokens",
  "method", "off", "age_decay", "keep_recent"} (removed before forwarding) or headers
  X-Elision-Rate / X-Elision-Method / X-Elision-Off. Answer headers X-Elision-Origin-Tokens /
  X-Elision-Compressed-Tokens report the counts.
- POST /v1/messages: the same proxy for Anthropic's Messages format (anthropic.py).
- GET /: the web playground (playground.py); GET /healthz, GET /metrics (Prometheus, through
  prometheus-client).

Safety (docs/security.md): before anything is read, the Host header is checked (DNS rebinding)
and the service token (Authorization: Bearer, or X-Elision-Key, which the proxy needs since
Authorization goes upstream) guards everything but /healthz and the docs; bodies are JSON
(application/json, so a web page cannot send one without a CORS preflight, and there is no
CORS unless configured), bounded in bytes, nesting, contexts, protect entries and messages;
a request names only targets from the allow-list and sets only the options the operator did
not fix; compressions run in a bounded pool (503 + Retry-After when its queue is full), each
with a time limit after which it stops between two batches (504); upstream failures become 502
and upstream time-outs 504, never echoing the upstream's body or URL credentials; prompts are
never logged unless log_prompts is set. Every error body, FastAPI's own included, is
{"error": {"type": <class>, "code": <stable code>, "message": <what to do>, ...}} (the shape
of OpenAI's errors, so OpenAI clients show the message).

Routers of other endpoints plug in with `app.include_router(...)` next to the ones below; the
gate, the error shape and the metrics cover them too.
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures at run time
import asyncio
import contextlib
import hmac
import json
import logging
import sys
import threading
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .._errors import Cancelled, ElisionError, InvalidInput, TooLong, UnknownName
from ..parsing import parse_bool
from .forward import forward
from .metrics import Metrics
from .playground import PATHS as PLAYGROUND_PATHS
from .pool import Overloaded, Pool
from .settings import Settings

log = logging.getLogger("elision.serve")

ENDPOINTS = ("/v1/compress", "/v1/chat/completions", "/v1/messages", "/healthz", "/metrics", "/")
OPEN_PATHS = ("/healthz", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect", *PLAYGROUND_PATHS)
PROXY_PATHS = ("/v1/chat/completions", "/v1/messages")  # Authorization goes upstream there
PASS_UP = ("authorization", "openai-organization", "openai-project", "anthropic-version", "x-api-key")
PASS_DOWN = ("content-type", "x-request-id", "openai-processing-ms", "openai-version", "location", "retry-after")
PROXY_CONTROL = ("rate", "target_tokens", "method", "off", "age_decay", "keep_recent")
# compress() / compress_messages() arguments: given as top-level fields, never inside "options"
CALL_ARGUMENTS = ("prompt", "context", "instruction", "question", "messages", "rate", "target_tokens", "protect",
                  "progress", "format", "format_options")


class ServiceError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.extra = status, code, message, headers or {}, extra


def error_body(status: int, code: str, message: str, **extra) -> dict:
    """The one error shape: {"error": {"type", "code", "message", ...}}; type is the class of
    error (OpenAI's names), code the stable machine-readable reason."""
    if code.startswith("upstream"):
        kind = "upstream_error"
    else:
        kind = {401: "authentication_error", 403: "permission_error", 503: "overloaded_error",
                504: "timeout_error"}.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"type": kind, "code": code, "message": message, **extra}}


class Compressors:
    """The compressors a request may use: one per (method, target), shared by the workers (a
    compressor keeps no per-call state: the pipeline's caches are thread-safe), at most
    `settings.compressors` of them (least recently used first out; the start-up ones stay).
    A target must be on the allow-list: OpenAI models and encodings, the default target and the
    operator's `targets` (loaded at start-up). A request never makes the service open a path or
    ask the hub."""

    def __init__(self, settings: Settings, preloaded: dict | None = None):
        from ..compressor import Compressor
        from ..tokenizers import get_target, known_targets, normalize_target

        self._make, self._normalize = Compressor, normalize_target
        self.settings = settings
        self.default_target = normalize_target(settings.target)
        extra = [normalize_target(t) for t in (settings.target, *settings.targets)]
        self.allowed = dict.fromkeys([*known_targets(), *extra])  # ordered, for the error message
        for t in extra:
            get_target(t)  # a bad operator target stops the start, not a request
        self._items: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._pinned: set[tuple[str, str]] = set()
        self._guard = threading.Lock()
        for m in settings.all_methods:
            c = (preloaded or {}).get(m)
            if c is None:
                c = Compressor(m, model=settings.model if m == settings.method else None, target=settings.target,
                               max_input_tokens=settings.max_prompt_tokens)
            c.max_input_tokens = settings.max_prompt_tokens
            self._items[(m, self.default_target)] = c
            self._pinned.add((m, self.default_target))

    @property
    def methods(self) -> tuple[str, ...]:
        return self.settings.all_methods

    def __len__(self) -> int:
        return len(self._items)

    def check(self, method: str | None, target: str | None) -> tuple[str, str]:
        """(method, target) as the cache knows them, or a 400 naming what is allowed."""
        method = method or self.settings.method
        if method not in self.methods:
            raise ServiceError(400, "unknown_method", f"method {method!r} is not loaded by this service; "
                               f"loaded: {', '.join(self.methods)} (start it with --methods to add more)")
        if target is None:
            return method, self.default_target
        key = self._normalize(target) if isinstance(target, str) else target
        if key not in self.allowed:  # the same answer whether or not such a path exists
            raise ServiceError(400, "unknown_target", f"target {str(target)[:200]!r} is not allowed here; allowed: "
                               f"{', '.join(self.allowed)} (the operator adds more with --targets / ELISION_TARGETS)")
        return method, key

    def get(self, method: str, target: str):
        """The compressor for a checked (method, target); a new target reuses the loaded model
        (runs in a worker thread)."""
        key = (method, target)
        with self._guard:
            c = self._items.get(key)
            if c is not None:
                self._items.move_to_end(key)
                return c
        # the model as configured (a method's reported model_name may name a pair, as
        # llmlingua2's default does); the loaded weights are shared, not loaded again
        model = self.settings.model if method == self.settings.method else None
        c = self._make(method, model=model, target=target, max_input_tokens=self.settings.max_prompt_tokens)
        with self._guard:
            c = self._items.setdefault(key, c)
            self._items.move_to_end(key)
            for k in [k for k in self._items if k not in self._pinned]:
                if len(self._items) <= max(self.settings.compressors, len(self._pinned)):
                    break
                del self._items[k]
        return c


def create_app(settings: Settings | None = None, preloaded: dict | None = None):
    """The ASGI app. `preloaded`: method -> Compressor already loaded (tests, embedding)."""
    try:
        import httpx
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse, Response
        from pydantic import ValidationError
        from starlette.exceptions import HTTPException as StarletteHTTPException
    except ImportError as e:  # pragma: no cover - depends on the install
        from .._errors import MissingDependency

        raise MissingDependency("the service (fastapi, uvicorn, httpx, prometheus-client)",
                                "pip install 'elision[serve]'") from e
    from .schemas import CompressRequest

    settings = settings or Settings()
    compressors = Compressors(settings, preloaded)  # load every model before serving
    metrics = Metrics()
    metrics.gauge("elision_queue_depth", "Compressions running or waiting for a worker.",
                  lambda: app.state.pool.depth if app.state.pool else 0)

    @contextlib.asynccontextmanager
    async def lifespan(app):  # per serving run: the upstream client and the worker pool
        # follow_redirects stays off: a 3xx goes back to the caller, the service never follows one
        app.state.client = httpx.AsyncClient(timeout=httpx.Timeout(settings.upstream_timeout, connect=10.0),
                                             follow_redirects=False)
        app.state.pool = Pool(settings.workers, settings.queue)
        try:
            yield
        finally:
            await app.state.client.aclose()
            app.state.pool.shutdown()

    app = FastAPI(title="elision", version=_version(), lifespan=lifespan,
                  description="Prompt compression API and OpenAI-compatible compressing proxy.")
    app.state.settings, app.state.metrics, app.state.compressors = settings, metrics, compressors
    app.state.pool = None

    def respond_error(status: int, code: str, message: str, headers: dict | None = None, **extra):
        return JSONResponse(error_body(status, code, message, **extra), status_code=status, headers=headers)

    @app.exception_handler(ServiceError)
    async def _service_error(request, e: ServiceError):
        return respond_error(e.status, e.code, e.message, e.headers, **e.extra)

    @app.exception_handler(TooLong)
    async def _too_long(request, e):
        return respond_error(413, "prompt_too_long", str(e), limit_tokens=settings.max_prompt_tokens)

    @app.exception_handler(ElisionError)
    async def _bad_input(request, e):
        code = "unknown_name" if isinstance(e, UnknownName) else "invalid_input"
        return respond_error(400, code, str(e))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e):
        return respond_error(400, "invalid_request", _problems(e.errors()))

    @app.exception_handler(ValidationError)
    async def _invalid_body(request, e):
        return respond_error(400, "invalid_request", _problems(e.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, e):  # FastAPI's own 404 / 405 / ..., in the one shape
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, f"http_{e.status_code}")
        detail = e.detail if isinstance(e.detail, str) else json.dumps(e.detail)
        if e.status_code == 404:
            detail = f"no endpoint {request.url.path}; endpoints: {', '.join(ENDPOINTS)}"
        return respond_error(e.status_code, code, detail, headers=getattr(e, "headers", None))

    async def read_json(request, model=None):
        """The body as JSON: application/json only (a page's plain-text POST needs no CORS
        preflight), strict UTF-8, no NaN / Infinity, nesting within max_json_depth and no lone
        surrogates (what the library could not encode later). `model`: validated into it."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ServiceError(415, "unsupported_media_type", "send the body as JSON with Content-Type: "
                               f"application/json (got {ctype or 'none'!r})")
        raw = await request.body()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ServiceError(400, "invalid_utf8", f"the body is not UTF-8 ({e.reason} at byte {e.start})") from None
        try:
            body = json.loads(text, parse_constant=_no_constant)
        except RecursionError:
            raise ServiceError(400, "too_deep", f"the JSON body nests deeper than {settings.max_json_depth} "
                               "levels") from None
        except ValueError as e:
            raise ServiceError(400, "invalid_json", f"the request body is not valid JSON: {e}") from None
        _check_json(body, settings.max_json_depth)
        if model is None:
            return body
        if not isinstance(body, dict):
            raise ServiceError(400, "invalid_request", "the request body must be a JSON object")
        return model.model_validate(body)

    def check_counts(contexts=None, protect=None, messages=None):
        for what, items, limit, setting in (("contexts", contexts, settings.max_contexts, "MAX_CONTEXTS"),
                                            ("protect entries", protect, settings.max_protect, "MAX_PROTECT"),
                                            ("messages", messages, settings.max_messages, "MAX_MESSAGES")):
            if isinstance(items, list) and len(items) > limit:
                raise ServiceError(413, f"too_many_{what.split()[0]}", f"{len(items)} {what}, over the limit of "
                                   f"{limit} (ELISION_{setting})", limit=limit)

    def check_options(options: dict) -> None:
        for k in options:
            if k in CALL_ARGUMENTS:
                raise ServiceError(400, "invalid_option", f"options.{k}: give {k} as a top-level field, not "
                                   "inside options")
            if k in settings.fixed_options:
                raise ServiceError(400, "option_not_allowed", f"options.{k} is fixed by this service's operator "
                                   f"(ELISION_FIXED_OPTIONS: {', '.join(settings.fixed_options)})")

    async def compress_in_pool(method: str, target: str | None, call):
        key = compressors.check(method, target)  # before queueing: a bad name costs no worker

        def job(cancel):  # the compression alone, not its wait in the queue
            comp = compressors.get(*key)
            t0 = time.perf_counter()
            return call(comp, cancel.check), time.perf_counter() - t0

        try:
            result, seconds = await app.state.pool.run(job, settings.timeout)
        except Overloaded:
            metrics.inc("elision_rejected_total")
            raise ServiceError(503, "overloaded", f"all {settings.workers} workers are busy and "
                               f"{settings.queue} requests are waiting; retry shortly",
                               headers={"Retry-After": "1"}) from None
        except asyncio.TimeoutError:
            metrics.inc("elision_cancelled_total")
            raise ServiceError(504, "compression_timeout", f"compression took longer than {settings.timeout:g} s "
                               "(queue wait included); it was stopped") from None
        except Cancelled:  # pragma: no cover - the time-out above answers first
            raise ServiceError(504, "compression_timeout", "compression was stopped") from None
        metrics.observe("elision_compression_seconds", seconds, method=key[0])
        metrics.inc("elision_tokens_in_total", result.origin_tokens)
        metrics.inc("elision_tokens_out_total", result.compressed_tokens)
        metrics.inc("elision_tokens_saved_total", result.origin_tokens - result.compressed_tokens)
        return result

    @app.get("/healthz")
    async def healthz():
        torch = sys.modules.get("torch")
        return {"status": "ok", "methods": list(compressors.methods), "default_method": settings.method,
                "target": settings.target, "upstream": settings.upstream is not None,
                "workers": settings.workers, "torch_threads": torch.get_num_threads() if torch else None,
                "queue_depth": app.state.pool.depth, "queue_capacity": app.state.pool.capacity}

    @app.get("/metrics")
    async def metrics_endpoint():
        return Response(metrics.render(), media_type=metrics.content_type)

    compress_schema = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": CompressRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}}

    @app.post("/v1/compress", openapi_extra=compress_schema)
    async def compress(request: Request) -> dict:
        """Compress a prompt (context / prompt, instruction, question) or chat messages."""
        req = await read_json(request, CompressRequest)
        if settings.log_prompts:
            log.info("compress request: %s", req.model_dump_json())
        check_counts(req.context if req.context is not None else req.prompt, req.protect, req.messages)
        check_options(req.options)
        budget = {"rate": req.rate, "target_tokens": req.target_tokens}
        if req.messages is not None:
            if req.context is not None or req.prompt is not None:
                raise InvalidInput("give messages or a prompt / context, not both")
            if req.format not in (None, "text") or req.format_options:
                raise InvalidInput("format applies to a prompt / context, not to chat messages")
            res = await compress_in_pool(req.method, req.target, lambda c, check: c.compress_messages(
                req.messages, **budget, protect=req.protect, progress=check, **req.options))
            return res.to_dict()
        if req.context is not None and req.prompt is not None:
            raise InvalidInput("give the text as prompt or as context, not both")
        res = await compress_in_pool(req.method, req.target, lambda c, check: c.compress(
            context=req.context if req.context is not None else req.prompt, instruction=req.instruction,
            question=req.question, protect=req.protect, format=req.format, format_options=req.format_options,
            progress=check, **budget, **req.options))
        out = res.to_dict()
        out["original_prompt"] = res.original_prompt if req.return_original else None
        return out

    async def compress_chat(messages, control: dict) -> tuple[list, dict]:
        """compress_messages in the pool, under a proxied request's controls (method, rate or
        target_tokens, age_decay, keep_recent; the service's defaults else): the compressed
        messages and the X-Elision-* headers the answer carries. Both proxies use it."""
        method = control.get("method") or settings.method
        budget = ({"target_tokens": control["target_tokens"]} if control.get("target_tokens") is not None
                  else {"rate": control.get("rate", settings.rate)})
        extra = {k: control[k] for k in ("age_decay", "keep_recent") if k in control}
        res = await compress_in_pool(method, None, lambda c, check: c.compress_messages(
            messages, **budget, progress=check, **extra))
        return res.messages, {"X-Elision-Method": method, "X-Elision-Origin-Tokens": str(res.origin_tokens),
                              "X-Elision-Compressed-Tokens": str(res.compressed_tokens)}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        """OpenAI-compatible: compress the messages, forward, pass the answer back unchanged."""
        if not settings.upstream:
            raise ServiceError(501, "no_upstream", "this service was started without --upstream, so it cannot "
                               "forward chat completions; use POST /v1/compress")
        body = await read_json(request)
        if not isinstance(body, dict):
            raise InvalidInput("the request body must be a JSON object")
        if settings.log_prompts:
            log.info("chat request: %s", json.dumps(body, ensure_ascii=False))
        control = _control(body, request.headers)
        headers = {"X-Elision-Method": "off"}
        if not control.get("off"):
            check_counts(messages=body.get("messages"))
            body["messages"], headers = await compress_chat(body.get("messages"), control)
        url = settings.upstream.rstrip("/") + "/chat/completions"
        return await forward(request, url, body, pass_up=PASS_UP, elision_headers=headers, fail=respond_error,
                             pass_down=lambda k: k in PASS_DOWN or k.startswith("x-ratelimit"),
                             broken_event=_broken_event, timeout_s=settings.upstream_timeout, where=_redact(url))

    from .anthropic import add_messages_route
    from .playground import add_playground

    add_messages_route(app, read_json=read_json, compress_chat=compress_chat, check_counts=check_counts,
                       control=_control, redact=_redact)  # POST /v1/messages: the Anthropic format
    add_playground(app)  # GET /: the web playground
    app.add_middleware(Gate, settings=settings, metrics=metrics)
    if settings.cors_origins:  # outside the gate: a preflight carries no token
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type", "x-elision-key", "x-elision-rate",
                                          "x-elision-method", "x-elision-off"])
    return app


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

    async def _answer(self, send, status: int, code: str, message: str, headers: dict | None = None, **extra):
        from fastapi.responses import JSONResponse

        response = JSONResponse(error_body(status, code, message, **extra), status_code=status, headers=headers)
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
                    await self._answer(counted_send, 500, "internal_error", "the service failed on this request")
                except Exception:  # noqa: BLE001 - the answer had started; the connection is closed
                    pass
        label = _label(path)
        self.metrics.inc("elision_requests_total", endpoint=label, status=str(status["code"]))
        if status["code"] >= 400:
            self.metrics.inc("elision_errors_total", endpoint=label, status=str(status["code"]))
        log.info("%s %s %d %.1f ms", scope.get("method"), path, status["code"], 1000 * (time.perf_counter() - t0))

    async def _handle(self, scope, receive, send):
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        if self.hosts is not None and _host_name(headers.get("host", "")) not in self.hosts:
            return await self._answer(send, 403, "host_not_allowed", "this service answers only requests addressed "
                                      "to " + ", ".join(sorted(self.hosts)) + " (ELISION_ALLOWED_HOSTS)")
        key = self.settings.api_key
        if key and scope["path"] not in OPEN_PATHS and not _authorized(headers, key, scope["path"]):
            return await self._answer(send, 401, "unauthorized", "missing or wrong service token: send "
                                      "X-Elision-Key: <token> (or Authorization: Bearer <token> outside the proxy)",
                                      headers={"WWW-Authenticate": "Bearer"})
        length = headers.get("content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.limit:
                return await self._too_large(send)
            return await self.app(scope, receive, send)  # the server holds the body to its length
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            size += len(message.get("body", b""))
            if size > self.limit:
                return await self._too_large(send)
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

    async def _too_large(self, send):
        await self._answer(send, 413, "body_too_large", f"request body is over the limit of {self.limit} bytes "
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


def _problems(errors) -> str:
    out = []
    for err in errors:
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        out.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(out) or "the request body is not valid"


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number (give a finite number)")


def _check_json(value, max_depth: int) -> None:
    """Nesting depth and lone surrogates, without recursion (the body may be deep)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth > max_depth:
                raise ServiceError(400, "too_deep", f"the JSON body nests deeper than {max_depth} levels")
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, x in items:
                if isinstance(k, str):
                    _check_string(k)
                stack.append((x, depth + 1))
        elif isinstance(v, str):
            _check_string(v)


def _check_string(s: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ServiceError(400, "invalid_text", f"the body holds a lone surrogate (U+{ord(s[e.start]):04X}), "
                           "which is not text") from None


def _redact(url: str) -> str:
    """The URL without user:password and without the query (where keys often travel)."""
    u = urlsplit(url)
    host = u.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{u.port}" if u.port else "")
    return urlunsplit((u.scheme, netloc, u.path, "", ""))


def _number(value, name: str, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise InvalidInput(f"{name} must be {'a whole number' if integer else 'a number'}, got {value!r}")
    return value


def _control(body: dict, headers) -> dict:
    """The request's compression settings: body field "elision" (removed), then X-Elision-*."""
    control = body.pop("elision", None) or {}
    if not isinstance(control, dict):
        raise InvalidInput('"elision" must be an object such as {"rate": 0.5} or {"off": true}')
    unknown = set(control) - set(PROXY_CONTROL)
    if unknown:
        raise InvalidInput(f"unknown elision setting(s) {', '.join(sorted(unknown))}; known: {', '.join(PROXY_CONTROL)}")
    for k in ("rate", "age_decay"):
        if k in control:
            _number(control[k], f"elision.{k}")
    for k in ("target_tokens", "keep_recent"):
        if control.get(k) is not None:
            _number(control[k], f"elision.{k}", integer=True)
    if control.get("method") is not None and not isinstance(control["method"], str):
        raise InvalidInput(f"elision.method must be a method name, got {control['method']!r}")
    if "x-elision-rate" in headers:
        try:
            control["rate"] = float(headers["x-elision-rate"])
        except ValueError:
            raise InvalidInput(f"X-Elision-Rate must be a number, got {headers['x-elision-rate']!r}") from None
    if "x-elision-method" in headers:
        control["method"] = headers["x-elision-method"]
    if "x-elision-off" in headers:
        control["off"] = parse_bool(headers["x-elision-off"], "X-Elision-Off")
    elif control.get("off") is not None:  # null: not given
        control["off"] = parse_bool(control["off"], '"off"')
    return control


def _broken_event(error: str) -> bytes:
    """The last SSE event of a chat stream whose upstream broke off: an error object in the one shape."""
    return ("data: " + json.dumps(error_body(502, "upstream_error", f"the upstream stream broke off: {error}"))
            + "\n\n").encode()


def _version() -> str:
    from .. import __version__

    return __version__
