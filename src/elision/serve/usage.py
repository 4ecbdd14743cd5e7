"""What a proxied request really cost: the upstream's usage (cache reads and writes included),
priced as billed-equivalent input tokens, beside an estimate of the same request sent
uncompressed with caching, per answer and in /metrics. A proxy that raises the bill shows it.

    >>> acc = Accounting("openai", "gpt-5", PriceTable(), saved_tokens=9_000, tail_tokens=700)
    >>> acc.read_body(b'{"usage": {"prompt_tokens": 6000, "prompt_tokens_details": {"cached_tokens": 5120}}}')
    >>> acc.headers()      # 5,120 read at 0.1x + 880 at 1x; uncompressed: 15,000 tokens, 14,208 of them cached
    {'X-Elision-Billed-Input': '1392', 'X-Elision-Billed-Input-Uncompressed': '2213', 'X-Elision-Cached-Tokens': '5120'}

Per answer: JSON answers carry X-Elision-Billed-Input, X-Elision-Billed-Input-Uncompressed and
X-Elision-Cached-Tokens; an event stream (its headers are gone before its usage arrives) ends
with one SSE comment line, `: elision {"billed_input": ..., ...}`, which SSE clients skip (the
OpenAI and Anthropic SDKs do). OpenAI streams carry usage only when the caller asks for it
(`stream_options: {"include_usage": true}`); the proxy never adds it (it would add a chunk the
caller did not ask for). /metrics: elision_upstream_input_tokens_total{provider, kind}
(uncached, cache_read, cache_write), elision_billed_input_tokens_total{provider} and
elision_billed_input_uncompressed_tokens_total{provider}.

The uncompressed estimate (the provider never sees that request, so it is an estimate): the
request's own input tokens plus the tokens compression removed (target tokenizer), of which a
warm cache would hold everything before the conversation's newest assistant message (the
previous request's prompt; `tail_tokens` is what follows it), at the provider's granularity:
OpenAI from 1,024 tokens in 128-token steps; Anthropic only when the request carries a
breakpoint (the caller's, or the one the proxy added), the rest written at the write price.
Not modelled: cache expiry and misses the uncompressed session would also have had.
"""

from __future__ import annotations

import json
import logging

from ..billing import (
    PriceTable,
    StreamUsage,
    Usage,
    anthropic_min_tokens,
    usage_from_anthropic,
    usage_from_openai,
)

log = logging.getLogger("elision.serve")


class Accounting:
    """The usage of one proxied answer. `saved_tokens`: what compression removed (0 when off);
    `tail_tokens`: uncompressed tokens from the newest assistant message on; `breakpoints`:
    whether the request asks Anthropic to cache."""

    def __init__(self, provider: str, model: str, prices: PriceTable, *, saved_tokens: int = 0,
                 tail_tokens: int = 0, breakpoints: bool = True, metrics=None):
        self.provider, self.model, self.table, self.metrics = provider, model, prices, metrics
        self.saved, self.tail, self.breakpoints = max(0, saved_tokens), max(0, tail_tokens), breakpoints
        self.usage: Usage | None = None
        self._stream = StreamUsage(provider)

    # --- reading the answer --------------------------------------------------------------
    def read_body(self, content: bytes) -> None:
        try:
            obj = json.loads(content)
        except ValueError:
            return
        self.usage = usage_from_openai(obj) if self.provider == "openai" else usage_from_anthropic(obj)
        self._count()

    def feed(self, chunk: bytes) -> None:
        self._stream.feed(chunk)

    def end_of_stream(self) -> bytes:
        """After the last chunk: the usage counted, and the SSE comment that reports it (b'' without usage)."""
        self.usage = self._stream.usage
        self._count()
        if self.usage is None:
            return b""
        return b": elision " + json.dumps(self.figures(), separators=(",", ":")).encode() + b"\n\n"

    # --- the figures ---------------------------------------------------------------------
    def billed(self) -> float:
        return self.usage.billed_input(self.table.prices(self.model or self.usage.model, self.provider))

    def uncompressed(self) -> float:
        """Billed-equivalent input of the same request uncompressed with caching (see the module docstring)."""
        u = self.usage
        prices = self.table.prices(self.model or u.model, self.provider)
        total = u.prompt_tokens + self.saved
        prefix = max(0, total - self.tail)
        if self.provider == "openai":
            cached = 0 if prefix < 1024 else 1024 + (prefix - 1024) // 128 * 128
            return cached * prices.cache_read + (total - cached) * prices.input
        if not self.breakpoints or total < anthropic_min_tokens(self.model or u.model):
            return total * prices.input
        return prefix * prices.cache_read + (total - prefix) * prices.cache_write

    def figures(self) -> dict:
        return {"billed_input": round(self.billed(), 1), "billed_input_uncompressed": round(self.uncompressed(), 1),
                "cached_tokens": self.usage.cache_read_tokens, "cache_write_tokens":
                    self.usage.cache_write_tokens + self.usage.cache_write_1h_tokens,
                "input_tokens": self.usage.prompt_tokens}

    def headers(self) -> dict:
        if self.usage is None:
            return {}
        f = self.figures()
        return {"X-Elision-Billed-Input": f"{f['billed_input']:.0f}",
                "X-Elision-Billed-Input-Uncompressed": f"{f['billed_input_uncompressed']:.0f}",
                "X-Elision-Cached-Tokens": str(f["cached_tokens"])}

    def _count(self) -> None:
        if self.usage is None or self.metrics is None:
            return
        u, m, p = self.usage, self.metrics, self.provider
        try:
            m.inc("elision_upstream_input_tokens_total", u.input_tokens, provider=p, kind="uncached")
            m.inc("elision_upstream_input_tokens_total", u.cache_read_tokens, provider=p, kind="cache_read")
            m.inc("elision_upstream_input_tokens_total", u.cache_write_tokens + u.cache_write_1h_tokens, provider=p,
                  kind="cache_write")
            m.inc("elision_billed_input_tokens_total", self.billed(), provider=p)
            m.inc("elision_billed_input_uncompressed_tokens_total", self.uncompressed(), provider=p)
        except ValueError:  # pragma: no cover - a negative count from a broken upstream is not counted
            log.warning("upstream usage not counted: negative counts")


def tail_tokens(per_message, message_of, roles) -> int:
    """Uncompressed tokens from the conversation's newest assistant message on (what a warm
    cache would not hold of the uncompressed request); all of them when there is none.
    `per_message`: MessagesResult.per_message; `message_of[k]`: the request message that chat
    entry k came from (-1: before the messages, e.g. Anthropic's system); `roles`: the request
    messages' roles (an Anthropic turn of tool_use blocks only has no chat entry, but a role).
    per_message [(50, 50), (400, 160), (30, 30)], message_of [0, 1, 2], roles [user, assistant, user] -> 430"""
    newest = max((i for i, r in enumerate(roles) if r == "assistant"), default=0)
    return sum(a for (a, _), m in zip(per_message, message_of) if m >= newest)
