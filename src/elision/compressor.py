"""Compressor: one method with its model loaded once, and the checks every call passes.

    >>> c = Compressor("llmlingua")                       # smollm2-135m, target gpt-4o
    >>> r = c.compress(context=demos, instruction=inst, question=q, rate=0.33)
    >>> r.compressed_prompt, r.origin_tokens, r.compressed_tokens, r.ratio, r.saving_usd

`compress()` at module level keeps a few compressors alive between calls, so a script that
calls it in a loop loads the model once.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable, Sequence

from ._errors import InvalidInput, TooLong
from .budget import make_budget
from .methods import get_method
from .prompt import Prompt
from .result import CompressionResult
from .selection import assemble, fit_to_budget
from .tokenizers import get_target
from .tokenizers import price_per_million as _list_price

DEFAULT_MAX_INPUT_TOKENS = 1_000_000


class Compressor:
    def __init__(
        self,
        method: str = "llmlingua",
        *,
        model: str | None = None,
        target: str = "gpt-4o",
        device: str | None = None,
        dtype: str | None = None,
        price_per_million: float | None = None,
        max_input_tokens: int = DEFAULT_MAX_INPUT_TOKENS,
        progress: Callable[[str], None] | None = None,
        **options,
    ):
        cls = get_method(method)
        self.options = cls.Options.build(options)  # validate before loading anything
        self.target_name = target
        self.target = get_target(target)
        self.price = price_per_million if price_per_million is not None else _list_price(target)
        self.max_input_tokens = max_input_tokens
        t0 = time.perf_counter()
        self.method = cls(model=model, device=device, dtype=dtype, progress=progress)
        self.load_seconds = time.perf_counter() - t0

    @property
    def method_name(self) -> str:
        return self.method.name

    @property
    def model_name(self) -> str | None:
        return self.method.model_name

    def compress(
        self,
        prompt: str | Sequence[str] | None = None,
        *,
        context: str | Sequence[str] | None = None,
        instruction: str = "",
        question: str = "",
        rate: float | None = None,
        target_tokens: int | None = None,
        protect: Iterable[str | re.Pattern] = (),
        progress: Callable[[int, int], None] | None = None,
        **options,
    ) -> CompressionResult:
        """Compress; `prompt` is a shorthand for `context`. Options override the compressor's."""
        if prompt is not None and context is not None:
            raise InvalidInput("give the text as prompt or as context=, not both")
        opts = self.resolve_options(options)
        t0 = time.perf_counter()
        p = Prompt.build(context if context is not None else prompt, instruction, question, protect)
        origin = self.target.count(p.text)
        self.check_length(origin, "prompt has")
        budget = make_budget(origin, rate, target_tokens)
        t1 = time.perf_counter()
        units = self.method.priorities(p, budget, self.target, opts, progress)
        t2 = time.perf_counter()
        order = self.method.order(p, opts)
        spans = fit_to_budget(p, units, self.target, budget.tokens, order)
        text = assemble(p, spans, order)
        t3 = time.perf_counter()
        return CompressionResult(
            compressed_prompt=text,
            origin_tokens=origin,
            compressed_tokens=self.target.count(text),
            budget_tokens=budget.tokens,
            requested_rate=budget.rate,
            method=self.method.name,
            model=self.method.model_name,
            target=self.target_name,
            prompt=p,
            spans=tuple(spans),
            seconds=t3 - t0,
            price_per_million=self.price,
            timings={"prepare": t1 - t0, "score": t2 - t1, "fit": t3 - t2},
        )

    def resolve_options(self, options: dict):
        """The compressor's options with a call's overrides (validated)."""
        return self.options.build(options, base=self.options) if options else self.options

    def check_length(self, tokens: int, what: str) -> None:
        if tokens > self.max_input_tokens:
            raise TooLong(f"{what} {tokens} tokens, over the limit of {self.max_input_tokens}")

    def compress_messages(self, messages, *, rate: float | None = None, target_tokens: int | None = None,
                          age_decay: float = 0.75, keep_recent: int = 0, protect=(), **options):
        """Compress a chat conversation (OpenAI-style messages) and return it in the same format:
        system messages and the latest user turn kept (the latter as the question), older turns
        and tool outputs compressed, older ones harder. See elision.messages."""
        from .messages import compress_messages

        return compress_messages(self, messages, rate=rate, target_tokens=target_tokens, age_decay=age_decay,
                                 keep_recent=keep_recent, protect=protect, **options)


@functools.lru_cache(maxsize=4)
def _cached(method: str, model: str | None, target: str, device: str | None, dtype: str | None) -> Compressor:
    return Compressor(method, model=model, target=target, device=device, dtype=dtype)


def compress(
    prompt: str | Sequence[str] | None = None,
    *,
    method: str = "llmlingua",
    model: str | None = None,
    target: str = "gpt-4o",
    device: str | None = None,
    dtype: str | None = None,
    **kwargs,
) -> CompressionResult:
    """One-call API: `compress(text, rate=0.33)`. Compressors are cached per configuration."""
    return _cached(method, model, target, device, dtype).compress(prompt, **kwargs)


def compress_messages(messages, *, method: str = "longllmlingua", model: str | None = None, target: str = "gpt-4o",
                      device: str | None = None, dtype: str | None = None, **kwargs):
    """One-call API for chat messages: `compress_messages(messages, rate=0.5)`."""
    return _cached(method, model, target, device, dtype).compress_messages(messages, **kwargs)
