"""The HTTP service: a compression API and an OpenAI-compatible compressing proxy.

    >>> app = create_app(Settings(method="llmlingua2", upstream="https://api.openai.com/v1"))
    >>> # uvicorn.run(app, host="127.0.0.1", port=8080)      (what `elision serve` does)

- POST /v1/compress: the library's arguments as JSON (context | prompt | messages, instruction,
  question, rate | target_tokens, method, target, protect, options); answers the result's fields
  (compressed_prompt, origin_tokens, compressed_tokens, ...), or for messages the compressed
  messages and their counts.
- POST /v1/chat/completions: compresses the request's messages (compress_messages), forwards
  the request to the upstream with the caller's own Authorization header, and passes the
  answer back unchanged, server-sent events included. Per request: a body field
  "elision": {"rate", "target_tokens", "method", "off", "age_decay", "keep_recent"} (removed
  before forwarding) or headers X-Elision-Rate / X-Elision-Method / X-Elision-Off. Answer
  headers X-Elision-Origin-Tokens / X-Elision-Compressed-Tokens report the counts.
- GET /healthz, GET /metrics (Prometheus text, names prefixed elision_).

Safety: models load before the first request; compressions run in a bounded thread pool (503 +
Retry-After when its queue is full), each with a time limit (504); bodies over the size limit
get 413 and prompts over the token limit 413 with the limit named; an optional bearer token
(Authorization: Bearer, or X-Elision-Key, which the proxy needs since Authorization goes
upstream) guards everything but /healthz and the docs; upstream failures become 502 and upstream
time-outs 504, each with a JSON body that says what happened; prompts are never logged unless
log_prompts is set. Every error body is {"error": {"type": ..., "message": ...}}.
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures at run time
import asyncio
import contextlib
import hmac
import json
import logging
import threading
import time
from typing import Any

from .._errors import ElisionError, InvalidInput, TooLong
from ..parsing import parse_bool
from .metrics import Metrics
from .pool import Overloaded, Pool
from .settings import Settings

log = logging.getLogger("elision.serve")

ENDPOINTS = ("/v1/compress", "/v1/chat/completions", "/healthz", "/metrics")
OPEN_PATHS = ("/healthz", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")
PASS_UP = ("authorization", "openai-organization", "openai-project", "anthropic-version", "x-api-key")
PASS_DOWN = ("content-type", "x-request-id", "openai-processing-ms", "openai-version")
PROXY_CONTROL = ("rate", "target_tokens", "method", "off", "age_decay", "keep_recent")


class ServiceError(Exception):
    def __init__(self, status: int, kind: str, message: str, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers, self.extra = status, kind, message, headers or {}, extra


class Compressors:
    """The loaded compressors, one per (method, target); one lock each, since a compressor keeps
    per-prompt memos. Models are shared between targets (CausalLM / TokenClassifier .shared)."""

    def __init__(self, settings: Settings, preloaded: dict | None = None):
        from ..compressor import Compressor

        self._make = Compressor
        self.settings = settings
        self._items: dict[tuple[str, str], tuple[Any, threading.Lock]] = {}
        self._guard = threading.Lock()
        for m in settings.all_methods:
            c = (preloaded or {}).get(m)
            if c is None:
                c = Compressor(m, model=settings.model if m == settings.method else None, target=settings.target,
                               max_input_tokens=settings.max_prompt_tokens)
            c.max_input_tokens = settings.max_prompt_tokens
            self._items[(m, settings.target)] = (c, threading.Lock())

    @property
    def methods(self) -> tuple[str, ...]:
        return self.settings.all_methods

    def get(self, method: str | None, target: str | None):
        """(compressor, lock); a new target reuses the loaded model (runs in a worker thread)."""
        method = method or self.settings.method
        target = target or self.settings.target
        if method not in self.methods:
            raise ServiceError(400, "unknown_method", f"method {method!r} is not loaded by this service; "
                               f"loaded: {', '.join(self.methods)} (start it with --methods to add more)")
        with self._guard:
            if (method, target) not in self._items:
                # the model as configured (a method's reported model_name may name a pair, as
                # llmlingua2's default does); the loaded weights are shared, not loaded again
                model = self.settings.model if method == self.settings.method else None
                c = self._make(method, model=model, target=target, max_input_tokens=self.settings.max_prompt_tokens)
                self._items[(method, target)] = (c, threading.Lock())
            return self._items[(method, target)]


def _error_body(kind: str, message: str, **extra) -> dict:
    return {"error": {"type": kind, "message": message, **extra}}


def create_app(settings: Settings | None = None, preloaded: dict | None = None):
    """The ASGI app. `preloaded`: method -> Compressor already loaded (tests, embedding)."""
    try:
        import httpx
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
        from starlette.background import BackgroundTask
    except ImportError as e:  # pragma: no cover - depends on the install
        from .._errors import MissingDependency

        raise MissingDependency("the service (fastapi, uvicorn, httpx)", "pip install 'elision[serve]'") from e
    from .schemas import CompressRequest

    settings = settings or Settings()
    compressors = Compressors(settings, preloaded)  # load every model before serving
    metrics = Metrics()
    metrics.gauge("elision_queue_depth", lambda: app.state.pool.depth if app.state.pool else 0)

    @contextlib.asynccontextmanager
    async def lifespan(app):  # per serving run: the upstream client and the worker pool
        app.state.client = httpx.AsyncClient(timeout=httpx.Timeout(settings.upstream_timeout, connect=10.0))
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

    def respond_error(status: int, kind: str, message: str, headers: dict | None = None, **extra):
        return JSONResponse(_error_body(kind, message, **extra), status_code=status, headers=headers)

    @app.exception_handler(ServiceError)
    async def _service_error(request, e: ServiceError):
        return respond_error(e.status, e.kind, e.message, e.headers, **e.extra)

    @app.exception_handler(TooLong)
    async def _too_long(request, e):
        return respond_error(413, "prompt_too_long", str(e), limit_tokens=settings.max_prompt_tokens)

    @app.exception_handler(ElisionError)
    async def _bad_input(request, e):
        return respond_error(400, "invalid_input", str(e))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e):
        problems = "; ".join(f"{'.'.join(str(x) for x in err['loc'][1:]) or 'body'}: {err['msg']}" for err in e.errors())
        return respond_error(400, "invalid_request", problems or "the request body is not valid")

    @app.exception_handler(Exception)
    async def _unexpected(request, e):  # never a crash: log (without the prompt) and answer 500
        log.exception("unexpected error on %s", request.url.path)
        return respond_error(500, "internal_error", f"{type(e).__name__}: the service failed on this request")

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        path = request.url.path
        label = _label(path)
        t0 = time.perf_counter()
        if settings.api_key and path not in OPEN_PATHS and not _authorized(request, settings.api_key, path):
            response = respond_error(401, "unauthorized", "missing or wrong service token: send X-Elision-Key: "
                                     "<token> (or Authorization: Bearer <token> outside the proxy)",
                                     headers={"WWW-Authenticate": "Bearer"})
        else:
            try:
                response = await call_next(request)
            except Exception as e:  # noqa: BLE001 - answered as 500 and counted
                response = await _unexpected(request, e)
        metrics.inc("elision_requests_total", endpoint=label, status=str(response.status_code))
        if response.status_code >= 400:
            metrics.inc("elision_errors_total", endpoint=label, status=str(response.status_code))
        log.info("%s %s %d %.1f ms", request.method, path, response.status_code, 1000 * (time.perf_counter() - t0))
        return response

    async def compress_in_pool(fn, method: str):
        def timed():  # the compression alone, not its wait in the queue
            t0 = time.perf_counter()
            return fn(), time.perf_counter() - t0

        try:
            result, seconds = await app.state.pool.run(timed, settings.timeout)
        except Overloaded:
            metrics.inc("elision_rejected_total")
            raise ServiceError(503, "overloaded", f"all {settings.workers} workers are busy and "
                               f"{settings.queue} requests are waiting; retry shortly",
                               headers={"Retry-After": "1"}) from None
        except asyncio.TimeoutError:
            raise ServiceError(504, "compression_timeout", f"compression took longer than {settings.timeout:g} s "
                               "(queue wait included)") from None
        metrics.observe("elision_compression_seconds", seconds, method=method)
        metrics.inc("elision_tokens_in_total", result.origin_tokens)
        metrics.inc("elision_tokens_out_total", result.compressed_tokens)
        metrics.inc("elision_tokens_saved_total", result.origin_tokens - result.compressed_tokens)
        return result

    def locked(method: str | None, target: str | None, call):
        def run():
            comp, lock = compressors.get(method, target)
            with lock:
                return call(comp)
        return run

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "methods": list(compressors.methods), "default_method": settings.method,
                "target": settings.target, "upstream": settings.upstream is not None,
                "queue_depth": app.state.pool.depth, "queue_capacity": app.state.pool.capacity}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics_endpoint():
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post("/v1/compress")
    async def compress(req: CompressRequest, request: Request) -> dict:
        """Compress a prompt (context / prompt, instruction, question) or chat messages."""
        if settings.log_prompts:
            log.info("compress request: %s", req.model_dump_json())
        method = req.method or settings.method
        budget = {"rate": req.rate, "target_tokens": req.target_tokens}
        if req.messages is not None:
            if req.context is not None or req.prompt is not None:
                raise InvalidInput("give messages or a prompt / context, not both")
            if req.format not in (None, "text") or req.format_options:
                raise InvalidInput("format applies to a prompt / context, not to chat messages")
            res = await compress_in_pool(locked(method, req.target, lambda c: c.compress_messages(
                req.messages, **budget, protect=req.protect, **req.options)), method)
            return res.to_dict()
        if req.context is not None and req.prompt is not None:
            raise InvalidInput("give the text as prompt or as context, not both")
        res = await compress_in_pool(locked(method, req.target, lambda c: c.compress(
            context=req.context if req.context is not None else req.prompt, instruction=req.instruction,
            question=req.question, protect=req.protect, format=req.format, format_options=req.format_options,
            **budget, **req.options)), method)
        out = res.to_dict()
        out["original_prompt"] = res.original_prompt if req.return_original else None
        return out

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        """OpenAI-compatible: compress the messages, forward, pass the answer back unchanged."""
        if not settings.upstream:
            raise ServiceError(501, "no_upstream", "this service was started without --upstream, so it cannot "
                               "forward chat completions; use POST /v1/compress")
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise InvalidInput(f"the request body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise InvalidInput("the request body must be a JSON object")
        if settings.log_prompts:
            log.info("chat request: %s", raw.decode("utf-8", "replace"))
        control = _control(body, request.headers)
        headers = {"X-Elision-Method": "off"}
        if not control.get("off"):
            method = control.get("method") or settings.method
            budget = ({"target_tokens": control["target_tokens"]} if control.get("target_tokens") is not None
                      else {"rate": control.get("rate", settings.rate)})
            extra = {k: control[k] for k in ("age_decay", "keep_recent") if k in control}
            res = await compress_in_pool(locked(method, None, lambda c: c.compress_messages(
                body.get("messages"), **budget, **extra)), method)
            body["messages"] = res.messages
            headers = {"X-Elision-Method": method, "X-Elision-Origin-Tokens": str(res.origin_tokens),
                       "X-Elision-Compressed-Tokens": str(res.compressed_tokens)}
        up_headers = {k: v for k, v in request.headers.items() if k.lower() in PASS_UP}
        url = settings.upstream.rstrip("/") + "/chat/completions"
        client = request.app.state.client
        t0 = time.perf_counter()
        try:
            up = await client.send(client.build_request("POST", url, json=body, headers=up_headers),
                                   stream=True)
        except httpx.TimeoutException:
            raise ServiceError(504, "upstream_timeout", f"the upstream did not answer within "
                               f"{settings.upstream_timeout:g} s", headers=headers) from None
        except httpx.HTTPError as e:
            raise ServiceError(502, "upstream_unreachable", f"cannot reach the upstream at {url}: "
                               f"{type(e).__name__}", headers=headers) from None
        metrics.observe("elision_upstream_seconds", time.perf_counter() - t0)
        down = {k: v for k, v in up.headers.items() if k.lower() in PASS_DOWN or k.lower().startswith("x-ratelimit")}
        down.update(headers)
        streaming = "text/event-stream" in up.headers.get("content-type", "")
        if up.status_code < 400 and streaming:
            return StreamingResponse(_relay(up, log), status_code=up.status_code, headers=down,
                                     background=BackgroundTask(up.aclose))
        try:
            content = await up.aread()
        except httpx.TimeoutException:
            raise ServiceError(504, "upstream_timeout", "the upstream stopped sending its answer", headers=headers) from None
        except httpx.HTTPError as e:
            raise ServiceError(502, "upstream_error", f"the upstream's answer broke off: {type(e).__name__}",
                               headers=headers) from None
        finally:
            await up.aclose()
        if up.status_code >= 500:
            raise ServiceError(502, "upstream_error", f"the upstream answered HTTP {up.status_code}", headers=headers,
                               upstream_status=up.status_code, upstream_body=content[:2000].decode("utf-8", "replace"))
        try:
            json.loads(content)
        except ValueError:
            raise ServiceError(502, "upstream_invalid_json", f"the upstream answered HTTP {up.status_code} with a "
                               "body that is not JSON", headers=headers, upstream_status=up.status_code,
                               upstream_body=content[:2000].decode("utf-8", "replace")) from None
        return Response(content=content, status_code=up.status_code, headers=down, media_type="application/json")

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, metrics=metrics)
    return app


class BodyLimit:
    """Refuses a body over `limit` bytes with 413: at once from its Content-Length (nothing is
    read), and a body without one (chunked) by reading it here, up to the limit, before the app
    sees it."""

    def __init__(self, app, limit: int, metrics: Metrics):
        self.app, self.limit, self.metrics = app, limit, metrics

    async def _refuse(self, scope, receive, send):
        from fastapi.responses import JSONResponse

        label = _label(scope["path"])
        self.metrics.inc("elision_requests_total", endpoint=label, status="413")
        self.metrics.inc("elision_errors_total", endpoint=label, status="413")
        body = _error_body("body_too_large", f"request body is over the limit of {self.limit} bytes")
        await JSONResponse(body, status_code=413)(scope, receive, send)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", ())).get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.limit:
                return await self._refuse(scope, receive, send)
            return await self.app(scope, receive, send)  # the server holds the body to its length
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            size += len(message.get("body", b""))
            if size > self.limit:
                return await self._refuse(scope, receive, send)
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


def _label(path: str) -> str:
    return path if path in ENDPOINTS else "other"


def _authorized(request, key: str, path: str) -> bool:
    given = request.headers.get("x-elision-key")
    if given is None and path != "/v1/chat/completions":  # the proxy forwards Authorization upstream
        auth = request.headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else None
    return given is not None and hmac.compare_digest(given.encode(), key.encode())


def _control(body: dict, headers) -> dict:
    """The request's compression settings: body field "elision" (removed), then X-Elision-*."""
    control = body.pop("elision", None) or {}
    if not isinstance(control, dict):
        raise InvalidInput('"elision" must be an object such as {"rate": 0.5} or {"off": true}')
    unknown = set(control) - set(PROXY_CONTROL)
    if unknown:
        raise InvalidInput(f"unknown elision setting(s) {', '.join(sorted(unknown))}; known: {', '.join(PROXY_CONTROL)}")
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


async def _relay(up, log):
    """The upstream's event stream, byte for byte; if it breaks off, one last SSE event with
    an error object instead of a half-closed connection."""
    import httpx

    try:
        async for chunk in up.aiter_raw():
            yield chunk
    except httpx.HTTPError as e:
        log.warning("upstream stream broke off: %s", type(e).__name__)
        yield ("data: " + json.dumps(_error_body("upstream_error", f"the upstream stream broke off: "
                                                 f"{type(e).__name__}")) + "\n\n").encode()


def _version() -> str:
    from .. import __version__

    return __version__
