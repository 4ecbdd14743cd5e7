"""What a request asks for, read strictly before anything is compressed (docs/security.md):

    read_json(request, settings)         the body: application/json only (a web page cannot send it
                                         without a CORS preflight), strict UTF-8, no NaN / Infinity,
                                         nesting within max_json_depth, no lone surrogates
    check_counts(settings, messages=m)   contexts, protect entries and messages within their caps (413)
    check_options(settings, options)     no call argument inside "options", none the operator fixed
    proxy_control(body, headers)         a proxied request's own settings: body field "elision" (removed
                                         before forwarding), then X-Elision-Rate / -Method / -Off

Every refusal is a ServiceError (or the library's InvalidInput) in the one error shape. The
bytes of the body are bounded earlier, by the gate (gate.py).
"""

from __future__ import annotations

import functools
import json
import logging

from .._errors import InvalidInput
from ..budget import AUTO, parse_rate
from ..parsing import parse_bool
from .errors import ServiceError
from .settings import Settings

log = logging.getLogger("elision.serve")

PROXY_CONTROL = ("rate", "target_tokens", "method", "off", "policy", "hot_tokens", "condition", "recall_tokens",
                 "repeats", "age_decay", "keep_recent")
# compress() / compress_messages() arguments (and `self`): given as top-level fields, never inside
# "options" (where {"self": 1} would collide with the call itself); the signatures' own names
# are added when check_options first runs, so a new argument is covered without a change here
CALL_ARGUMENTS = ("self", "prompt", "context", "instruction", "question", "messages", "rate", "target_tokens",
                  "protect", "progress", "format", "format_options", "policy")


async def read_json(request, settings: Settings, model=None):
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


def check_counts(settings: Settings, contexts=None, protect=None, messages=None) -> None:
    """A 413 naming the cap when a list is longer than the operator allows."""
    for what, items, limit, setting in (("contexts", contexts, settings.max_contexts, "MAX_CONTEXTS"),
                                        ("protect entries", protect, settings.max_protect, "MAX_PROTECT"),
                                        ("messages", messages, settings.max_messages, "MAX_MESSAGES")):
        if isinstance(items, list) and len(items) > limit:
            raise ServiceError(413, f"too_many_{what.split()[0]}", f"{len(items)} {what}, over the limit of "
                               f"{limit} (ELISION_{setting})", limit=limit)


def check_options(settings: Settings, options: dict) -> None:
    """A 400 for a call argument given inside "options" or an option the operator fixed."""
    for k in options:
        if k in CALL_ARGUMENTS or k in _signature_names():
            raise ServiceError(400, "invalid_option", f"options.{k}: {k!r} is not a method option"
                               + (" (give it as a top-level field)" if k != "self" else "")
                               + "; `elision methods` lists the options", field=f"options.{k}")
        if k in settings.fixed_options:
            raise ServiceError(400, "option_not_allowed", f"options.{k} is fixed by this service's operator "
                               f"(ELISION_FIXED_OPTIONS: {', '.join(settings.fixed_options)})")


@functools.cache
def _signature_names() -> frozenset[str]:
    """Named parameters of Compressor.compress / compress_messages (not their **kwargs)."""
    import inspect

    from ..compressor import Compressor

    names = set()
    for f in (Compressor.compress, Compressor.compress_messages):
        names |= {n for n, p in inspect.signature(f).parameters.items() if p.kind != p.VAR_KEYWORD}
    return frozenset(names)


async def read_proxy_request(request, settings, what: str) -> tuple[dict, dict]:
    """A proxied request's body (a JSON object, logged only with log_prompts) and its
    compression settings (proxy_control: the "elision" field removed from the body)."""
    body = await read_json(request, settings)
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    if settings.log_prompts:
        log.info("%s request: %s", what, json.dumps(body, ensure_ascii=False))
    return body, proxy_control(body, request.headers)


def proxy_control(body: dict, headers) -> dict:
    """The request's compression settings: body field "elision" (removed), then X-Elision-*.

    {"elision": {"rate": 0.3}} with X-Elision-Method: truncate -> {"rate": 0.3, "method": "truncate"}
    """
    control = body.pop("elision", None) or {}
    if not isinstance(control, dict):
        raise InvalidInput('"elision" must be an object such as {"rate": 0.5} or {"off": true}')
    unknown = set(control) - set(PROXY_CONTROL)
    if unknown:
        raise InvalidInput(f"unknown elision setting(s) {', '.join(sorted(unknown))}; known: {', '.join(PROXY_CONTROL)}")
    for k in ("rate", "age_decay"):
        if k in control and not (k == "rate" and control[k] == AUTO):
            _number(control[k], f"elision.{k}")
    for k in ("target_tokens", "keep_recent", "hot_tokens", "recall_tokens"):
        if control.get(k) is not None:
            _number(control[k], f"elision.{k}", integer=True)
    if "repeats" in control and not isinstance(control["repeats"], bool):
        raise InvalidInput(f"elision.repeats must be true or false, got {control['repeats']!r}")
    if control.get("method") is not None and not isinstance(control["method"], str):
        raise InvalidInput(f"elision.method must be a method name, got {control['method']!r}")
    for k, allowed in (("policy", ("stable", "age")), ("condition", ("question", "none"))):
        if k in control and control[k] not in allowed:
            raise InvalidInput(f"elision.{k} must be one of {', '.join(allowed)}, got {control[k]!r}")
    if "x-elision-policy" in headers:
        if headers["x-elision-policy"] not in ("stable", "age"):
            raise InvalidInput(f"X-Elision-Policy must be stable or age, got {headers['x-elision-policy']!r}")
        control["policy"] = headers["x-elision-policy"]
    if "x-elision-rate" in headers:
        try:
            control["rate"] = parse_rate(headers["x-elision-rate"])
        except ValueError:
            raise InvalidInput(f"X-Elision-Rate must be a number or auto, got {headers['x-elision-rate']!r}") from None
    if "x-elision-method" in headers:
        control["method"] = headers["x-elision-method"]
    if "x-elision-off" in headers:
        control["off"] = parse_bool(headers["x-elision-off"], "X-Elision-Off")
    elif control.get("off") is not None:  # null: not given
        control["off"] = parse_bool(control["off"], '"off"')
    return control


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


def _number(value, name: str, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise InvalidInput(f"{name} must be {'a whole number' if integer else 'a number'}, got {value!r}")
    return value
