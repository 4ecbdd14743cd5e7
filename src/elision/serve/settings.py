"""Service settings: flags of `elision serve`, each also an ELISION_* environment variable,
checked when the service starts (a bad value stops it with a message, never a quiet default).

    >>> Settings.from_env({"ELISION_PORT": "9000", "ELISION_METHODS": "llmlingua2,longllmlingua"}).port
    9000
    >>> Settings(timeout=float("nan"))
    Traceback (most recent call last):
    elision._errors.InvalidInput: timeout must be a finite number of seconds > 0, got nan
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping

from .._errors import InvalidInput
from ..parsing import parse_bool

# Options that size the work of one call (memory, time per forward pass): the operator's values
# hold and a request may not set them, unless the operator lists fewer (ELISION_FIXED_OPTIONS).
FIXED_OPTIONS = ("batch_tokens", "chunk_tokens", "chunk_size", "segment_size", "coarse_tokens", "window", "stride")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclasses.dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    method: str = "llmlingua2"  # the default method; loaded at start-up
    methods: tuple[str, ...] = ()  # further methods a request may name (also loaded at start-up)
    model: str | None = None  # the default method's model (name, HF id or path)
    target: str = "gpt-4o"  # default target tokenizer for budgets and counts
    # further targets a request may name besides the OpenAI models and encodings: local tokenizer
    # paths or HF ids, loaded at start-up; a request can never make the service open a path
    targets: tuple[str, ...] = ()
    rate: float = 0.5  # default rate of the proxy, when the request gives none
    # how the proxies compress a conversation (elision.messages): "stable" (each message once, the
    # same bytes at every later turn: the provider's prompt cache keeps hitting) or "age"
    policy: str = "stable"
    hot_tokens: int = 0  # stable policy: newest messages kept whole until they add up to this many tokens
    # stable policy: up to this many tokens of what compression removed that the latest question
    # needs, verbatim, after everything else (outside the cached prefix); 0: none
    recall_tokens: int = 256
    # /v1/messages: put a cache_control breakpoint on the last block when the caller set none
    # ("auto"), or never add one ("off"); breakpoints the caller set are always kept as they are
    anthropic_breakpoints: str = "off"
    # billed-input multipliers per model for the usage accounting, over the providers' defaults:
    # JSON or "gpt-4o*: cache_read=0.5; claude-*: cache_write=1.25" (elision.billing.PriceTable)
    cache_prices: str = ""
    upstream: str | None = None  # OpenAI-compatible base URL, e.g. https://api.openai.com/v1
    # Anthropic-compatible base URL for /v1/messages, e.g. https://api.anthropic.com/v1; None = upstream
    anthropic_upstream: str | None = None
    api_key: str | None = None  # bearer token for this service; None = open
    workers: int = 1  # compression workers (the CPU is shared: 1 is fastest per request)
    # where compressions run: "process" (worker processes forked after the models load, killed
    # and replaced at the time limit: a hard limit, and /healthz never waits) or "thread"
    # (threads of the service's process, stopped between two batches; no fork needed)
    isolation: str = "process"
    queue: int = 16  # compressions that may wait for a worker; beyond this: 503 + Retry-After
    max_body_bytes: int = 8 * 1024 * 1024  # 413 beyond
    max_prompt_tokens: int = 200_000  # target tokens per request; 413 beyond
    max_contexts: int = 1000  # documents in one request's context list; 413 beyond
    max_protect: int = 256  # protect entries per request; 413 beyond
    max_messages: int = 1000  # chat messages per request; 413 beyond
    max_json_depth: int = 32  # nesting of a request body; 400 beyond
    compressors: int = 16  # (method, target) compressors kept; the least recently used goes first
    fixed_options: tuple[str, ...] = FIXED_OPTIONS  # method options a request may not set
    timeout: float = 60.0  # seconds a compression may take (waiting included); 504 beyond
    upstream_timeout: float = 300.0  # seconds for the upstream's answer; 504 beyond
    log_prompts: bool = False  # log request texts (never by default)
    # Host header values answered (DNS rebinding); () = the loopback names when bound to loopback,
    # anything otherwise; "*" = anything
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()  # origins a browser page may call from; () = no CORS at all

    ENV = {f.upper(): f for f in ("host", "port", "method", "methods", "model", "target", "targets", "rate",
                                  "policy", "hot_tokens", "recall_tokens", "anthropic_breakpoints", "cache_prices",
                                  "upstream", "anthropic_upstream", "api_key", "workers", "isolation", "queue", "max_body_bytes", "max_prompt_tokens",
                                  "max_contexts", "max_protect", "max_messages", "max_json_depth", "compressors",
                                  "fixed_options", "timeout", "upstream_timeout", "log_prompts", "allowed_hosts",
                                  "cors_origins")}

    def __post_init__(self):
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), str(f.type))
        if not 0 < self.port < 65536:
            raise InvalidInput(f"port must be in 1..65535, got {self.port}")
        if not 0 < self.rate <= 1:
            raise InvalidInput(f"rate must be in (0, 1], got {self.rate}")
        for name in ("workers", "max_body_bytes", "max_prompt_tokens", "max_contexts", "max_protect", "max_messages",
                     "max_json_depth", "compressors"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.policy not in ("stable", "age"):
            raise InvalidInput(f"policy must be stable or age, got {self.policy!r}")
        for name in ("hot_tokens", "recall_tokens"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.isolation not in ("process", "thread"):
            raise InvalidInput(f"isolation must be process or thread, got {self.isolation!r}")
        if self.anthropic_breakpoints not in ("off", "auto"):
            raise InvalidInput(f"anthropic_breakpoints must be off or auto, got {self.anthropic_breakpoints!r}")
        _ = self.price_table  # a bad table stops the start, not a request
        if self.queue < 0:
            raise InvalidInput(f"queue must be >= 0, got {self.queue}")
        for name in ("timeout", "upstream_timeout"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise InvalidInput(f"{name} must be a finite number of seconds > 0, got {getattr(self, name)}")
        for name in ("upstream", "anthropic_upstream"):
            url = getattr(self, name)
            if url and not url.startswith(("http://", "https://")):
                raise InvalidInput(f"{name} must be an http(s) URL, got {url!r}")
        # a header arrives as latin-1 bytes: a token outside printable ASCII could never match
        if self.api_key is not None and not (self.api_key and all(33 <= ord(c) < 127 for c in self.api_key)):
            raise InvalidInput("the service token (ELISION_API_KEY) must be printable ASCII without spaces")
        for o in self.cors_origins:
            if o != "*" and not o.startswith(("http://", "https://")):
                raise InvalidInput(f"cors_origins holds {o!r}; give origins such as https://app.example.com")

    @property
    def price_table(self):
        """The billed-input multipliers (elision.billing.PriceTable): cache_prices over the defaults."""
        from ..billing import PriceTable

        return PriceTable.parse(self.cache_prices, "cache_prices (ELISION_CACHE_PRICES)") if self.cache_prices \
            else PriceTable()

    @property
    def all_methods(self) -> tuple[str, ...]:
        return (self.method, *[m for m in self.methods if m != self.method])

    @property
    def host_check(self) -> frozenset[str] | None:
        """Host names a request's Host header may give (port removed); None = any."""
        hosts = self.allowed_hosts or (LOOPBACK if self.host in LOOPBACK else ("*",))
        return None if "*" in hosts else frozenset(h.lower().strip("[]") for h in hosts)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        """ELISION_<NAME> variables, then `overrides` (flags that were given) on top."""
        env = os.environ if env is None else env
        values: dict = {}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, name in cls.ENV.items():
            raw = env.get(f"ELISION_{key}")
            if raw is None or raw == "":
                continue
            values[name] = _parse(name, raw, fields[name].type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name in ("methods", "targets", "fixed_options", "allowed_hosts", "cors_origins"):
            if isinstance(values.get(name), str):
                values[name] = _parse(name, values[name], "tuple")
        return cls(**values)


def _check_type(name: str, value, typ: str) -> None:
    """Settings come from code too (Settings(port=True)): the annotation's type, or InvalidInput."""
    if value is None and "None" in typ:
        return
    base = typ.split(" ")[0].split("[")[0]
    ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "bool": lambda v: isinstance(v, bool),
          "str": lambda v: isinstance(v, str),
          "tuple": lambda v: isinstance(v, tuple) and all(isinstance(x, str) for x in v)}[base](value)
    if not ok:
        want = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string",
                "tuple": "a list of strings"}[base]
        raise InvalidInput(f"setting {name} must be {want}, got {value!r}")


def _parse(name: str, raw: str, typ) -> object:
    typ = str(typ)
    if typ.startswith("bool"):
        return parse_bool(raw, f"ELISION_{name.upper()}")
    try:
        if typ.startswith("int"):
            return int(raw)
        if typ.startswith("float"):
            return float(raw)
        if typ.startswith("tuple"):
            if raw.strip().lower() == "none":  # ELISION_FIXED_OPTIONS=none: requests may set every option
                return ()
            return tuple(x.strip() for x in raw.split(",") if x.strip())
        return raw
    except ValueError:
        raise InvalidInput(f"ELISION_{name.upper()}={raw!r} is not a valid {typ.split(' ')[0]}") from None
