"""The service's one error shape, for its own errors and FastAPI's alike (the shape of OpenAI's
errors, so OpenAI clients show the message):

    >>> error_body(503, "overloaded", "all 2 workers are busy; retry shortly")
    {'error': {'type': 'overloaded_error', 'code': 'overloaded', 'message': 'all 2 workers are busy; retry shortly'}}

`type` is the class of error (OpenAI's names), `code` the stable machine-readable reason, and
`message` says what to do. A step anywhere in the service raises `ServiceError(status, code,
message)`; the library's own errors (TooLong, InvalidInput, ...) and FastAPI's (validation,
404, 405) are turned into the same shape by the handlers `add_error_handlers` installs.

On /v1/messages every error, whichever step gives it (the gate's 401 / 403 / 413, a 415, a
caller's mistake, a 503 / 504, an upstream failure, FastAPI's own 405), takes Anthropic's shape
instead, which Anthropic's SDKs read, with the same stable code beside its type:

    >>> anthropic_body(413, "body_too_large", "request body is over the limit of 8388608 bytes")
    {'type': 'error', 'error': {'type': 'request_too_large', 'code': 'body_too_large', 'message': 'request body is over the limit of 8388608 bytes'}}

`response_for(path)` picks the shape. Not here: an unexpected exception, which the gate
answers as a 500 in the path's shape (gate.py).
"""

from __future__ import annotations

import json

from .._errors import ElisionError, TooLong, UnknownName

# what a 404 lists; the gate labels its metrics by them too (anything else is "other")
ENDPOINTS = ("/v1/compress", "/v1/chat/completions", "/v1/messages", "/healthz", "/metrics", "/")


class ServiceError(Exception):
    """An answer in the error shape, raised from any step: `headers` go out with it (e.g.
    Retry-After), `extra` fields join the error object (e.g. limit=...)."""

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


def error_response(status: int, code: str, message: str, headers: dict | None = None, **extra):
    """`error_body` as a JSON response (also the `fail` that forward() calls for the OpenAI proxy)."""
    from fastapi.responses import JSONResponse

    return JSONResponse(error_body(status, code, message, **extra), status_code=status, headers=headers)


ANTHROPIC_PATHS = ("/v1/messages",)
# Anthropic's error types by status (docs.anthropic.com, "Errors"); its SDKs pick the exception by status
ANTHROPIC_KINDS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                   503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error"}
ANTHROPIC_CODES = {"no_upstream": "not_found_error", "upstream_timeout": "timeout_error"}


def anthropic_body(status: int, code: str, message: str, **extra) -> dict:
    """Anthropic's error shape, {"type": "error", "error": {"type", "message"}}, with the
    service's stable code beside its type (so `body["error"]["code"]` reads the same on every route)."""
    kind = ANTHROPIC_CODES.get(code) or ANTHROPIC_KINDS.get(status) or (
        "invalid_request_error" if status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "code": code, "message": message, **extra}}


def anthropic_response(status: int, code: str, message: str, headers: dict | None = None, **extra):
    """`anthropic_body` as a JSON response (the `fail` that forward() calls for /v1/messages)."""
    from fastapi.responses import JSONResponse

    return JSONResponse(anthropic_body(status, code, message, **extra), status_code=status, headers=headers)


def response_for(path: str):
    """The error response maker of the route at `path`: Anthropic's shape on /v1/messages."""
    return anthropic_response if path in ANTHROPIC_PATHS else error_response


def add_error_handlers(app, max_prompt_tokens: int) -> None:
    """Answer ServiceError, the library's errors and FastAPI's own in the one shape.
    `max_prompt_tokens`: the limit a 413 prompt_too_long names."""
    from fastapi.exceptions import RequestValidationError
    from pydantic import ValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(ServiceError)
    async def _service_error(request, e: ServiceError):
        return response_for(request.url.path)(e.status, e.code, e.message, e.headers, **e.extra)

    @app.exception_handler(TooLong)
    async def _too_long(request, e):
        return response_for(request.url.path)(413, "prompt_too_long", str(e), limit_tokens=max_prompt_tokens)

    @app.exception_handler(ElisionError)
    async def _bad_input(request, e):
        code = "unknown_name" if isinstance(e, UnknownName) else "invalid_input"
        return response_for(request.url.path)(400, code, str(e))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e):
        return response_for(request.url.path)(400, "invalid_request", _problems(e.errors()))

    @app.exception_handler(ValidationError)
    async def _invalid_body(request, e):  # a body validated by read_json(request, settings, model)
        return response_for(request.url.path)(400, "invalid_request", _problems(e.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, e):  # FastAPI's own 404 / 405 / ..., in the one shape
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, f"http_{e.status_code}")
        detail = e.detail if isinstance(e.detail, str) else json.dumps(e.detail)
        if e.status_code == 404:
            detail = f"no endpoint {request.url.path}; endpoints: {', '.join(ENDPOINTS)}"
        return response_for(request.url.path)(e.status_code, code, detail, headers=getattr(e, "headers", None))


def _problems(errors) -> str:
    """pydantic's errors as one line: [{"loc": ("body", "rate"), "msg": "..."}] -> 'rate: ...'."""
    out = []
    for err in errors:
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        out.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(out) or "the request body is not valid"
