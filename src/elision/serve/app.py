"""The HTTP service: a compression API and an OpenAI-compatible compressing proxy.

    >>> app = create_app(Settings(method="llmlingua2", upstream="https://api.openai.com/v1"))
    >>> # uvicorn.run(app, host="127.0.0.1", port=8080)      (what `elision serve` does)

This module only wires; each concern has its own module:

    POST /v1/compress            compress_route.py   the library's arguments as JSON, the result's fields back
    POST /v1/chat/completions    openai.py           the proxy, OpenAI's format: compress, forward, pass back
    POST /v1/messages            anthropic.py        the same proxy for Anthropic's Messages format
    GET /healthz, GET /metrics   health.py           status, and Prometheus through prometheus-client
    GET /                        playground.py       the web playground

    service.py       Service (on app.state.service): settings, metrics, compressors, the pool and
                     the upstream client; compress_in_pool and compress_chat, the steps the routes share
    compressors.py   the target allow-list and the cache of shared compressors
    body.py          bodies read strictly, count caps, options the operator fixed, proxy controls
    forward.py       the one upstream call of both proxies
    gate.py          Host check, service token and body limit, before the body is read; counts and logs
    errors.py        the one error shape, and the handlers that give FastAPI's own errors that shape too

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

Routers of other endpoints plug in with `app.include_router(...)` next to the ones below (a
route finds the Service with `service_of(request)`); the gate, the error shape and the metrics
cover them too.
"""

from __future__ import annotations

import contextlib

from .errors import add_error_handlers
from .gate import Gate
from .service import Service
from .settings import Settings


def create_app(settings: Settings | None = None, preloaded: dict | None = None):
    """The ASGI app. `preloaded`: method -> Compressor already loaded (tests, embedding)."""
    try:
        from fastapi import FastAPI
    except ImportError as e:  # pragma: no cover - depends on the install
        from .._errors import MissingDependency

        raise MissingDependency("the service (fastapi, uvicorn, httpx, prometheus-client)",
                                "pip install 'elision[serve]'") from e
    # the routes' modules import fastapi: only once it is known to be there
    from . import anthropic, compress_route, health, openai
    from .playground import add_playground

    service = Service(settings or Settings(), preloaded)  # loads every model before serving
    settings = service.settings

    @contextlib.asynccontextmanager
    async def lifespan(app):  # per serving run: the upstream client and the worker pool
        async with service.running():
            app.state.client, app.state.pool = service.client, service.pool  # what forward() and tests read
            yield

    app = FastAPI(title="elision", version=_version(), lifespan=lifespan,
                  description="Prompt compression API and OpenAI-compatible compressing proxy.")
    app.state.service = service
    app.state.settings, app.state.metrics, app.state.compressors = settings, service.metrics, service.compressors
    app.state.pool = None

    add_error_handlers(app, max_prompt_tokens=settings.max_prompt_tokens)
    app.include_router(health.router)  # GET /healthz, GET /metrics
    app.include_router(compress_route.router)  # POST /v1/compress
    app.include_router(openai.router)  # POST /v1/chat/completions: the OpenAI format
    app.include_router(anthropic.router)  # POST /v1/messages: the Anthropic format
    add_playground(app)  # GET /: the web playground
    app.add_middleware(Gate, settings=settings, metrics=service.metrics)
    if settings.cors_origins:  # outside the gate: a preflight carries no token
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type", "x-elision-key", "x-elision-rate",
                                          "x-elision-method", "x-elision-off", "x-elision-policy"])
    return app


def _version() -> str:
    from .. import __version__

    return __version__
