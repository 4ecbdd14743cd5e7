"""What a request really costs under the providers' prompt caching: usage read from responses,
usage turned into billed-equivalent input tokens, and simulators of the published caching rules
so a benchmark (or a loopback upstream in a test) can bill replayed sessions like the real APIs.

Billed-equivalent input tokens are input tokens weighted by their price relative to the model's
base input price: a cache read of 2,000 tokens on Claude (0.1x) plus 80 uncached tokens bills as
280 tokens. Compressing a conversation can raise the bill if it rewrites a prefix that was
cached, which is why the proxy is judged on this number and not on tokens sent.

    >>> cache = AnthropicCache(min_tokens=1024)
    >>> system, question = Block([7] * 2000, ttl="5m"), Block([1] * 50)
    >>> first = cache.request([system, question])             # writes the 2,000-token prefix
    >>> first.cache_write_tokens, first.input_tokens
    (2000, 50)
    >>> second = cache.request([system, Block([2] * 80)])     # reads it back
    >>> second.cache_read_tokens, second.input_tokens, second.billed_input(ANTHROPIC)
    (2000, 80, 280.0)

Rules modelled, with where they were read (2026 versions of these pages):

- OpenAI (developers.openai.com/api/docs/guides/prompt-caching; cookbook "Prompt Caching 201"):
  automatic, exact-prefix; only prompts of 1,024 tokens or more; hits in increments of 128
  tokens; reported in `usage.prompt_tokens_details.cached_tokens` (Responses API:
  `input_tokens_details.cached_tokens`), which `prompt_tokens` INCLUDES. Writes cost nothing
  extra before the GPT-5.6 family and 1.25x from it on (reported as `cache_write_tokens`).
- Anthropic (platform.claude.com/docs/en/build-with-claude/prompt-caching): prefixes in the
  order tools, system, messages; a write happens only at a `cache_control` breakpoint (one
  entry: the hash of the prefix ending at that block) and only if the prefix reaches the
  model's minimum (`anthropic_min_tokens`; shorter ones are processed uncached, no error);
  a read walks back from each breakpoint over at most 20 positions, "counting the breakpoint
  itself as the first", where a run of consecutive `tool_use` (or `tool_result`) blocks is one
  position, and takes the longest prefix an earlier request wrote; at most 4 breakpoints (the
  top-level automatic `cache_control` takes one slot and lands on the last cacheable block);
  1-hour entries must come before 5-minute ones; billing positions A (highest hit), B (highest
  1-hour breakpoint after A), C (last breakpoint): read A, 1h write B - A, 5m write C - B, the
  rest uncached input. Prices: write 1.25x (5 min), 2x (1 h), read 0.1x (the page lists 0.025x for
  Claude Fable 5.1 and Mythos 5.1: a PriceTable row). Usage:
  `input_tokens` excludes reads and writes; `cache_creation.ephemeral_{5m,1h}_input_tokens`
  split the writes; streaming `message_delta` usage is cumulative (SDK `MessageDeltaUsage`).

NOT modelled: expiry (every entry stays warm: no TTL, no eviction, no refresh); OpenAI's routing
(the hash of the first ~256 tokens, `prompt_cache_key`, the overflow to other machines past about
15 requests a minute per prefix and key), so its simulator is the best case; GPT-5.6's managed
breakpoints and explicit `prompt_cache_breakpoint` (no 128-token rounding there: `step=1` comes
close); caches shared across models or workspaces (one simulator per model and account); images,
documents and chat-format overhead, whose tokens the helpers only approximate; Claude's tokenizer:
the helpers count with the encoder you pass in, so Anthropic numbers are approximations.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import numpy as np

from ._errors import InvalidInput, UnknownName

PROVIDERS = ("openai", "anthropic")


# ---------------------------------------------------------------------------------- prices


@dataclass(frozen=True, kw_only=True)
class Prices:
    """Multipliers of the model's base input price. The defaults bill every token as plain input."""

    input: float = 1.0
    cache_read: float = 1.0
    cache_write: float = 1.0  # 5-minute writes on Anthropic; OpenAI's writes (GPT-5.6 and later)
    cache_write_1h: float = 1.0


OPENAI = Prices(cache_read=0.1)  # gpt-5 family: cached input 0.1x, writes free
ANTHROPIC = Prices(cache_read=0.1, cache_write=1.25, cache_write_1h=2.0)
PROVIDER_PRICES = {"openai": OPENAI, "anthropic": ANTHROPIC}
PRICE_KEYS = tuple(f.name for f in fields(Prices))

# Known exceptions to the provider defaults, tried after an operator's rows. OpenAI's pricing page:
# gpt-4o $2.50 with $1.25 cached, gpt-4.1 $2.00 with $0.50 cached; the prompt-caching guide: cache
# writes cost 1.25x from the GPT-5.6 family on.
KNOWN_ROWS: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = (
    ("gpt-4o*", (("cache_read", 0.5),)),
    ("gpt-4.1*", (("cache_read", 0.25),)),
    ("gpt-5.[6-9]*", (("cache_write", 1.25),)),
    ("gpt-[6-9]*", (("cache_write", 1.25),)),
)


def _provider(provider: str) -> str:
    if provider not in PROVIDERS:
        raise UnknownName("provider", provider, PROVIDERS)
    return provider


@dataclass(frozen=True)
class PriceTable:
    """Model-name glob patterns -> overrides of the provider's default Prices; first match wins.

    >>> table = PriceTable.parse('{"claude-haiku-*": {"cache_read": 0.08}}')
    >>> table.prices("claude-haiku-4-5", "anthropic").cache_read, table.prices("gpt-4o-mini", "openai").cache_read
    (0.08, 0.5)
    """

    rows: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = KNOWN_ROWS

    def prices(self, model: str, provider: str) -> Prices:
        base = PROVIDER_PRICES[_provider(provider)]
        name = (model or "").lower()
        for pattern, overrides in self.rows:
            if fnmatch.fnmatchcase(name, pattern.lower()):
                return replace(base, **dict(overrides))
        return base

    def billed_input(self, usage: Usage) -> float:
        return usage.billed_input(self.prices(usage.model, usage.provider))

    @classmethod
    def parse(cls, text: str, name: str = "price table") -> PriceTable:
        """JSON ('{"gpt-4o*": {"cache_read": 0.5}}') or the compact form an environment variable
        holds ('gpt-4o*: cache_read=0.5; claude-*: cache_write=1.25, cache_write_1h=2'); the rows
        come before KNOWN_ROWS. Unknown keys and bad numbers raise InvalidInput naming the keys."""
        if not isinstance(text, str):
            raise InvalidInput(f"{name} must be a string, got {type(text).__name__}")
        text = text.strip()
        if text.startswith("{"):
            try:
                table = json.loads(text)
            except ValueError as e:
                raise InvalidInput(f"{name} is not valid JSON: {e}") from None
            if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
                raise InvalidInput(f'{name} must map patterns to objects, e.g. {{"gpt-4o*": {{"cache_read": 0.5}}}}')
        else:
            table = {}
            for row in filter(None, (r.strip() for r in text.split(";"))):
                pattern, sep, body = row.rpartition(":")  # the pattern may hold ':' itself
                if not sep:
                    raise InvalidInput(f"{name}: row {row!r} must look like 'pattern: key=value, key=value'")
                pairs = [p.partition("=") for p in body.split(",") if p.strip()]
                if not pairs or any(not eq for _, eq, _ in pairs):
                    raise InvalidInput(f"{name}: row {row!r} must look like 'pattern: key=value, key=value'")
                table[pattern.strip()] = {k.strip(): v.strip() for k, _, v in pairs}
        rows = tuple((pattern, _overrides(pattern, values, name)) for pattern, values in table.items())
        return cls(rows + KNOWN_ROWS)


def _overrides(pattern: str, values: Mapping, name: str) -> tuple[tuple[str, float], ...]:
    if not pattern.strip():
        raise InvalidInput(f"{name}: an empty model pattern")
    out = []
    for key, value in values.items():
        if key not in PRICE_KEYS:
            raise InvalidInput(f"{name}: unknown key {key!r} for {pattern!r}; valid keys: {', '.join(PRICE_KEYS)}")
        try:
            number = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None or not math.isfinite(number) or number < 0:
            raise InvalidInput(f"{name}: {pattern!r} {key} must be a finite number >= 0 (a multiplier of "
                               f"the base input price), got {value!r}")
        out.append((key, number))
    return tuple(out)


# ----------------------------------------------------------------------------------- usage


@dataclass(frozen=True)
class Usage:
    """One response's input split by how it is billed. `input_tokens` are the uncached ones (1x)."""

    provider: str
    model: str = ""
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # 5-minute writes (Anthropic), writes (OpenAI, GPT-5.6 and later)
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens + self.cache_write_1h_tokens

    def billed_input(self, prices: Prices) -> float:
        return (self.input_tokens * prices.input + self.cache_read_tokens * prices.cache_read
                + self.cache_write_tokens * prices.cache_write + self.cache_write_1h_tokens * prices.cache_write_1h)


def _count(value) -> int:
    """A token count from provider JSON; anything that is not a non-negative whole number is 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    if isinstance(value, float) and not value.is_integer():  # also NaN and infinities
        return 0
    return max(int(value), 0)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _model(obj: dict) -> str:
    return obj["model"] if isinstance(obj.get("model"), str) else ""


def usage_from_openai(obj) -> Usage | None:
    """A chat.completion body, its final stream chunk (`stream_options.include_usage`), a
    Responses API body or `response.completed` event, or a bare usage object; None if it holds
    no usage. `prompt_tokens` includes the cached tokens: input = prompt - cached - written.

    >>> usage_from_openai({"model": "gpt-5", "usage": {"prompt_tokens": 2006, "completion_tokens": 300,
    ...                    "prompt_tokens_details": {"cached_tokens": 1920}}}).input_tokens
    86
    """
    if not isinstance(obj, dict):
        return None
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        if isinstance(obj.get("response"), dict):  # Responses API stream: response.completed
            return usage_from_openai(obj["response"])
        if "prompt_tokens" not in obj and "input_tokens" not in obj:
            return None
        usage = obj
    if "prompt_tokens" in usage:  # Chat Completions
        total, details, output = usage["prompt_tokens"], usage.get("prompt_tokens_details"), usage.get("completion_tokens")
    elif "input_tokens" in usage:  # Responses API
        total, details, output = usage["input_tokens"], usage.get("input_tokens_details"), usage.get("output_tokens")
    else:
        return None
    total, details = _count(total), _dict(details)
    cached = min(_count(details.get("cached_tokens")), total)
    written = min(_count(details.get("cache_write_tokens")), total - cached)
    return Usage("openai", _model(obj), input_tokens=total - cached - written, cache_read_tokens=cached,
                 cache_write_tokens=written, output_tokens=_count(output))


def _anthropic_usage(usage: dict, model: str) -> Usage:
    created = usage.get("cache_creation_input_tokens")
    split = _dict(usage.get("cache_creation"))
    one_hour = _count(split.get("ephemeral_1h_input_tokens"))
    created = _count(created) if created is not None else _count(split.get("ephemeral_5m_input_tokens")) + one_hour
    one_hour = min(one_hour, created)
    return Usage("anthropic", model, input_tokens=_count(usage.get("input_tokens")),
                 cache_read_tokens=_count(usage.get("cache_read_input_tokens")),
                 cache_write_tokens=created - one_hour, cache_write_1h_tokens=one_hour,
                 output_tokens=_count(usage.get("output_tokens")))


def usage_from_anthropic(obj) -> Usage | None:
    """A Messages body, a `message_start` or `message_delta` event, or a bare usage object; None if
    it holds no usage. `input_tokens` already excludes cache reads and writes.

    >>> u = usage_from_anthropic({"type": "message", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 50,
    ...     "cache_read_input_tokens": 100000, "cache_creation_input_tokens": 248, "output_tokens": 503,
    ...     "cache_creation": {"ephemeral_5m_input_tokens": 148, "ephemeral_1h_input_tokens": 100}}})
    >>> u.cache_write_tokens, u.cache_write_1h_tokens, u.prompt_tokens
    (148, 100, 100298)
    """
    if not isinstance(obj, dict):
        return None
    if obj.get("type") == "message_start":
        return usage_from_anthropic(obj.get("message"))
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        if not {"input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"} & obj.keys():
            return None
        usage = obj
    return _anthropic_usage(usage, _model(obj))


# Usage from a stream: state is (merged usage fields, model, last OpenAI usage), stepped by one event.
_State = tuple[dict, str, "Usage | None"]


def _step(provider: str, state: _State, payload) -> _State:
    fields_, model, last = state
    if not isinstance(payload, dict):
        return state
    if provider == "openai":
        found = usage_from_openai(payload)
        return (fields_, model, found) if found is not None else state
    kind = payload.get("type")
    if kind == "message_start":
        message = _dict(payload.get("message"))
        model, usage = _model(message) or model, _dict(message.get("usage"))
    elif kind == "message_delta":
        usage = _dict(payload.get("usage"))
    else:
        return state
    # counts in later events are cumulative: each field present overrides the earlier value
    return {**fields_, **{k: v for k, v in usage.items() if v is not None}}, model, last


class StreamUsage:
    """Usage from a server-sent event stream fed in pieces split anywhere (events across pieces,
    `\\r\\n`, `\\n` or `\\r` line ends). Never raises on bad data: what cannot be read is skipped.

    >>> s = StreamUsage("openai")
    >>> s.feed(b'data: {"model": "gpt-5", "choices": [], "usage": {"prompt_tokens": 1300, "comp')
    >>> s.feed(b'letion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 1280}}}\\r\\n\\r\\ndata: [DONE]\\r\\n\\r\\n')
    >>> s.usage.cache_read_tokens, s.usage.input_tokens
    (1280, 20)
    """

    MAX_PENDING = 16 << 20  # bytes of one unfinished line or event kept at most; past it, dropped

    _LINE_END = re.compile(rb"\r\n|\r|\n")

    def __init__(self, provider: str) -> None:
        self.provider = _provider(provider)
        self._buffer = b""
        self._after_cr = False  # the last piece ended in "\r": a "\n" starting the next one is its pair
        self._data: list[str] = []
        self._state: _State = ({}, "", None)

    def feed(self, chunk: bytes | bytearray | str) -> None:
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8", "replace")
        if not isinstance(chunk, (bytes, bytearray)) or not chunk:
            return
        chunk = bytes(chunk)
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        # the kept buffer holds no line end, so only the new bytes need scanning
        buffer, start = self._buffer + chunk, 0
        for end in self._LINE_END.finditer(buffer, len(self._buffer)):
            self._line(buffer[start:end.start()].decode("utf-8", "replace"))
            start = end.end()
        self._buffer = buffer[start:]
        self._after_cr = buffer.endswith(b"\r")
        if len(self._buffer) > self.MAX_PENDING:
            self._buffer = b""

    def _line(self, line: str) -> None:
        if not line:
            data, self._data = "\n".join(self._data), []
            self._state = self._dispatch(self._state, data)
        elif not line.startswith(":"):  # ":" starts a comment
            field, _, value = line.partition(":")
            if field == "data" and sum(map(len, self._data)) < self.MAX_PENDING:
                self._data.append(value.removeprefix(" "))

    def _dispatch(self, state: _State, data: str) -> _State:
        if not data or data == "[DONE]":
            return state
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):
            return state
        return _step(self.provider, state, payload)

    @property
    def usage(self) -> Usage | None:
        """The usage read so far (an event whose closing blank line has not come yet included)."""
        fields_, model, last = self._dispatch(self._state, "\n".join(self._data)) if self._data else self._state
        if self.provider == "openai":
            return last
        return _anthropic_usage(fields_, model) if fields_ else None


# ------------------------------------------------------------------------------ simulators


class CacheControlError(InvalidInput):
    """A request the real API refuses with 400 (too many breakpoints, TTLs out of order, ...)."""


def _ids(tokens: Iterable[int]) -> np.ndarray:
    return np.asarray(tokens if isinstance(tokens, (list, tuple, np.ndarray)) else list(tokens), dtype=np.int64)


class OpenAIPrefixCache:
    """OpenAI's automatic prefix cache, warm and on one machine: a request of n tokens gets the
    longest prefix of length min_tokens + k * step <= n that an earlier request also had.

    >>> cache = OpenAIPrefixCache()
    >>> cache.request(list(range(1500))).cache_read_tokens
    0
    >>> cache.request(list(range(1300)) + [-1] * 200).cache_read_tokens   # 1,300 shared -> 1,024 + 2 * 128
    1280
    """

    def __init__(self, min_tokens: int = 1024, step: int = 128, model: str = "") -> None:
        for label, value in (("min_tokens", min_tokens), ("step", step)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(f"{label} must be a positive integer, got {value!r}")
        self.min_tokens, self.step, self.model = min_tokens, step, model
        self._seen: set[bytes] = set()

    def request(self, tokens: Iterable[int]) -> Usage:
        ids = _ids(tokens)
        digests, h, at = [], hashlib.blake2b(digest_size=16), 0
        for length in range(self.min_tokens, len(ids) + 1, self.step):  # none under min_tokens
            h.update(ids[at:length].tobytes())
            digests.append((length, h.digest()))  # digest() leaves h open for the next stretch
            at = length
        cached = next((length for length, d in reversed(digests) if d in self._seen), 0)
        self._seen.update(d for _, d in digests)
        return Usage("openai", self.model, input_tokens=len(ids) - cached, cache_read_tokens=cached)


class Block(NamedTuple):
    """One cacheable block: its tokens, its breakpoint (None, "5m" or "1h") and its kind (runs of
    "tool_use" or of "tool_result" blocks are one lookback position; "thinking" blocks cannot take
    the automatic breakpoint)."""

    tokens: Sequence[int]
    ttl: str | None = None
    kind: str = "text"


class CacheInput(NamedTuple):
    blocks: list[Block]
    auto: str | None = None


TTLS = ("5m", "1h")
_NOT_AUTO = ("thinking", "redacted_thinking")


def _ttl(mark) -> str | None:
    if mark is None or mark is False:
        return None
    if mark is True:
        return "5m"
    if mark in TTLS:
        return mark
    raise CacheControlError(f"cache_control ttl must be one of {', '.join(TTLS)}, got {mark!r}")


def _block(b) -> Block:
    if isinstance(b, Block):
        return b._replace(ttl=_ttl(b.ttl))
    tokens, *rest = b  # (tokens,), (tokens, True/False/"5m"/"1h"), (tokens, mark, kind)
    return Block(tokens, _ttl(rest[0] if rest else None), *rest[1:2])


# Minimum cacheable prefix per model (platform.claude.com prompt-caching "Cache limitations");
# first match wins, 1,024 for the rest.
ANTHROPIC_MIN_TOKENS = (
    ("claude-opus-5*", 512), ("claude-fable-5*", 512), ("claude-mythos-5*", 512),
    ("claude-mythos-preview*", 2048), ("claude-opus-4-7*", 2048),
    ("claude-opus-4-6*", 4096), ("claude-opus-4-5*", 4096), ("claude-haiku-4-5*", 4096),
    ("claude-3-5-haiku*", 2048), ("claude-haiku-3-5*", 2048),
)


def anthropic_min_tokens(model: str) -> int:
    """The minimum prefix a model caches (1,024 where the table does not say).

    >>> anthropic_min_tokens("claude-haiku-4-5-20251001"), anthropic_min_tokens("claude-sonnet-4-5")
    (4096, 1024)
    """
    name = (model or "").lower()
    return next((n for pattern, n in ANTHROPIC_MIN_TOKENS if fnmatch.fnmatchcase(name, pattern)), 1024)


class AnthropicCache:
    """Anthropic's prompt cache, warm: explicit breakpoints, the automatic one, the lookback,
    the minimum length, the 4-breakpoint limit and the three billing positions (module docstring).

    `request(blocks, auto=None)`: blocks in prompt order (tools, system, messages), each a Block
    or a tuple (tokens, breakpoint: bool / "5m" / "1h"); auto is the top-level `cache_control`
    (True, "5m" or "1h"). Raises CacheControlError where the API answers 400.
    """

    def __init__(self, min_tokens: int | None = None, lookback: int = 20, max_breakpoints: int = 4,
                 model: str = "") -> None:
        min_tokens = anthropic_min_tokens(model) if min_tokens is None else min_tokens
        for label, value in (("min_tokens", min_tokens), ("lookback", lookback), ("max_breakpoints", max_breakpoints)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(f"{label} must be a positive integer, got {value!r}")
        self.min_tokens, self.lookback, self.max_breakpoints, self.model = min_tokens, lookback, max_breakpoints, model
        self._written: set[bytes] = set()

    def _breakpoints(self, blocks: list[Block], auto) -> list[Block]:
        auto = _ttl(auto)
        explicit = sum(b.ttl is not None for b in blocks)
        if auto is not None:
            # the last cacheable block (not thinking, not empty); none: caching is skipped
            at = next((i for i in range(len(blocks) - 1, -1, -1)
                       if blocks[i].kind not in _NOT_AUTO and len(blocks[i].tokens)), None)
            if at is not None and blocks[at].ttl not in (None, auto):
                raise CacheControlError(f"the last block's cache_control ttl {blocks[at].ttl!r} differs from the "
                                        f"top-level cache_control ttl {auto!r}")
            if at is not None and blocks[at].ttl is None:
                if explicit >= self.max_breakpoints:
                    raise CacheControlError(f"{explicit} blocks with cache_control leave no slot for the "
                                            f"top-level cache_control (a maximum of {self.max_breakpoints})")
                blocks = blocks[:at] + [blocks[at]._replace(ttl=auto)] + blocks[at + 1:]
        found = sum(b.ttl is not None for b in blocks)
        if found > self.max_breakpoints:
            raise CacheControlError(f"A maximum of {self.max_breakpoints} blocks with cache_control may be "
                                    f"provided. Found {found}.")
        ttls = [b.ttl for b in blocks if b.ttl is not None]
        if "1h" in ttls and "5m" in ttls[:len(ttls) - ttls[::-1].index("1h")]:
            raise CacheControlError("a 1h cache_control must come before every 5m cache_control")
        return blocks

    def request(self, blocks: Iterable, auto=None) -> Usage:
        blocks = self._breakpoints([_block(b) for b in blocks], auto)
        ends, hashes, positions = [], [], []
        h, total, position = hashlib.blake2b(digest_size=16), 0, 0
        for i, b in enumerate(blocks):
            ids = _ids(b.tokens)
            h.update(len(ids).to_bytes(8, "little"))  # block boundaries are part of the prefix's identity
            h.update(ids.tobytes())
            total += len(ids)
            # a run of tool_use (or tool_result) blocks is one lookback position
            position += not (i and b.kind in ("tool_use", "tool_result") and blocks[i - 1].kind == b.kind)
            ends.append(total)
            hashes.append(h.digest())
            positions.append(position)
        marks = [i for i, b in enumerate(blocks) if b.ttl is not None]

        hit = 0  # A: the longest prefix found walking back at most `lookback` positions from a breakpoint
        for i in marks:
            j = i
            while j >= 0 and positions[i] - positions[j] < self.lookback:
                if hashes[j] in self._written:
                    hit = max(hit, ends[j])
                    break
                j -= 1
        writes = [i for i in marks if ends[i] >= self.min_tokens]  # shorter prefixes: processed uncached
        # the docs' billing positions: A = hit, B = the last 1h write past A, C = the last write
        one_hour = max([hit] + [ends[i] for i in writes if blocks[i].ttl == "1h"])
        last = max([hit] + [ends[i] for i in writes])
        self._written.update(hashes[i] for i in writes)
        return Usage("anthropic", self.model, input_tokens=total - last, cache_read_tokens=hit,
                     cache_write_tokens=last - one_hour, cache_write_1h_tokens=one_hour - hit)


# -------------------------------------------------------------------- request bodies -> input


def _json(value) -> str:
    # the body's own key order is kept: the real caches miss when it changes, and so should this
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _encode_all(pieces: Iterable[str], encode: Callable[[str], Sequence[int]]) -> list[int]:
    # every piece encoded on its own, so a piece's tokens never depend on what follows it and an
    # unchanged prefix of the conversation gives an unchanged prefix of tokens
    out: list[int] = []
    for piece in pieces:
        if piece:
            out.extend(encode(piece))
    return out


def openai_request_tokens(body: Mapping, encode: Callable[[str], Sequence[int]]) -> list[int]:
    """Token ids of a Chat Completions request for OpenAIPrefixCache: the tools' JSON, then each
    message's role, text parts (other parts as their JSON), tool_calls JSON and tool_call_id."""
    pieces = [_json(body["tools"])] if body.get("tools") else []
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        pieces.append(str(message.get("role", "")))
        content = message.get("content")
        if isinstance(content, str):
            pieces.append(content)
        elif isinstance(content, list):
            pieces += [p["text"] if isinstance(p, dict) and isinstance(p.get("text"), str) else _json(p) for p in content]
        if message.get("tool_calls"):
            pieces.append(_json(message["tool_calls"]))
        if message.get("tool_call_id"):
            pieces.append(str(message["tool_call_id"]))
    return _encode_all(pieces, encode)


def _cache_ttl(obj: Mapping) -> str | None:
    control = obj.get("cache_control")
    if not isinstance(control, dict):
        return None
    return _ttl(control.get("ttl", "5m"))


def _block_text(block) -> list[str]:
    if isinstance(block, str):
        return [block]
    if not isinstance(block, dict):
        return [_json(block)]
    kind = block.get("type")
    if kind == "text":
        return [str(block.get("text", ""))]
    if kind == "tool_use":
        return [str(block.get("name", "")), _json(block.get("input", {}))]
    if kind == "tool_result":
        content = block.get("content", "")
        parts = content if isinstance(content, list) else [content]
        return [t for part in parts for t in _block_text(part)]
    if kind == "thinking":
        return [str(block.get("thinking", ""))]
    return [_json({k: v for k, v in block.items() if k != "cache_control"})]  # images, documents, ...


def anthropic_request_blocks(body: Mapping, encode: Callable[[str], Sequence[int]]) -> CacheInput:
    """A Messages request as AnthropicCache input: each tool, each system block (a string system
    is one block) and each message content block, with its `cache_control` breakpoint and TTL;
    the top-level `cache_control` as `auto`. A message's role is counted with its first block.

        cache.request(*anthropic_request_blocks(body, get_target("o200k_base").encode))
    """
    blocks = []
    for tool in body.get("tools") or ():
        if isinstance(tool, dict):
            spec = {k: v for k, v in tool.items() if k != "cache_control"}
            blocks.append(Block(_encode_all([_json(spec)], encode), _cache_ttl(tool), "tool"))
    system = body.get("system")
    for block in ([system] if isinstance(system, str) else system or ()):
        ttl = _cache_ttl(block) if isinstance(block, dict) else None
        blocks.append(Block(_encode_all(_block_text(block), encode), ttl, "system"))
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        for n, block in enumerate([content] if isinstance(content, str) else content or ()):
            pieces = ([str(message.get("role", ""))] if n == 0 else []) + _block_text(block)
            ttl = _cache_ttl(block) if isinstance(block, dict) else None
            kind = block.get("type", "text") if isinstance(block, dict) else "text"
            blocks.append(Block(_encode_all(pieces, encode), ttl, kind))
    top = body.get("cache_control")
    return CacheInput(blocks, _ttl(top.get("ttl", "5m")) if isinstance(top, dict) else None)
