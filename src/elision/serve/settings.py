"""Service settings: flags of `elision serve`, each also an ELISION_* environment variable.

    >>> Settings.from_env({"ELISION_PORT": "9000", "ELISION_METHODS": "llmlingua2,longllmlingua"}).port
    9000
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from .._errors import InvalidInput
from ..parsing import parse_bool


@dataclasses.dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    method: str = "llmlingua2"  # the default method; loaded at start-up
    methods: tuple[str, ...] = ()  # further methods a request may name (also loaded at start-up)
    model: str | None = None  # the default method's model (name, HF id or path)
    target: str = "gpt-4o"  # default target tokenizer for budgets and counts
    rate: float = 0.5  # default rate of the proxy, when the request gives none
    upstream: str | None = None  # OpenAI-compatible base URL, e.g. https://api.openai.com/v1
    api_key: str | None = None  # bearer token for this service; None = open
    workers: int = 1  # compression threads (the CPU is shared: 1 is fastest per request)
    queue: int = 16  # compressions that may wait for a worker; beyond this: 503 + Retry-After
    max_body_bytes: int = 8 * 1024 * 1024  # 413 beyond
    max_prompt_tokens: int = 200_000  # target tokens per request; 413 beyond
    timeout: float = 60.0  # seconds a compression may take (waiting included); 504 beyond
    upstream_timeout: float = 300.0  # seconds for the upstream's answer; 504 beyond
    log_prompts: bool = False  # log request texts (never by default)

    ENV = {f.upper(): f for f in ("host", "port", "method", "methods", "model", "target", "rate", "upstream",
                                  "api_key", "workers", "queue", "max_body_bytes", "max_prompt_tokens",
                                  "timeout", "upstream_timeout", "log_prompts")}

    def __post_init__(self):
        if not 0 < self.port < 65536:
            raise InvalidInput(f"port must be in 1..65535, got {self.port}")
        if not 0 < self.rate <= 1:
            raise InvalidInput(f"rate must be in (0, 1], got {self.rate}")
        for name in ("workers", "max_body_bytes", "max_prompt_tokens"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.queue < 0:
            raise InvalidInput(f"queue must be >= 0, got {self.queue}")
        if self.timeout <= 0 or self.upstream_timeout <= 0:
            raise InvalidInput("timeouts must be positive seconds")
        if self.upstream and not self.upstream.startswith(("http://", "https://")):
            raise InvalidInput(f"upstream must be an http(s) URL, got {self.upstream!r}")

    @property
    def all_methods(self) -> tuple[str, ...]:
        return (self.method, *[m for m in self.methods if m != self.method])

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
        if isinstance(values.get("methods"), str):
            values["methods"] = _parse("methods", values["methods"], "tuple")
        return cls(**values)


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
            return tuple(x.strip() for x in raw.split(",") if x.strip())
        return raw
    except ValueError:
        raise InvalidInput(f"ELISION_{name.upper()}={raw!r} is not a valid {typ.split(' ')[0]}") from None
