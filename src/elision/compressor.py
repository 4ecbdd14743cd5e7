"""Compressor: one method with its model loaded once, and the checks every call passes.

    >>> c = Compressor()                                  # llmlingua2 (DEFAULT_METHOD), target gpt-4o
    >>> r = c.compress(context=docs, question=q, rate=0.33)  # the task-aware classifier, with a question
    >>> Compressor("llmlingua")                           # any other method is one argument away
    >>> r.compressed_prompt, r.origin_tokens, r.compressed_tokens, r.ratio, r.saving_usd

`compress()` at module level keeps a few compressors alive between calls, so a script that
calls it in a loop loads the model once.
"""

from __future__ import annotations

import functools
import inspect
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from ._errors import InvalidInput
from .methods import get_method
from .pipeline import Pipeline
from .prompt import Prompt
from .result import CompressionResult, WordImportance
from .structured import Format, as_format, build_prompt
from .tokenizers import get_target
from .tokenizers import price_per_million as _list_price

DEFAULT_MAX_INPUT_TOKENS = 1_000_000


# The method a caller gets without naming one (library, CLI, service, proxy, batch, integrations):
# the one the measurements say is best. On held-out 10-document QA (~1.8k tokens) llmlingua2 with
# the question keeps the answer in ~92% / 83% of prompts at 3x / 10x at 5-13k tokens/s, where
# llmlingua keeps it in ~37% at 3x at ~800 tokens/s (docs/benchmarks.md, issues 12 and 14).
# elision.compat.PromptCompressor keeps llmlingua's own defaults (it is a drop-in).
DEFAULT_METHOD = "llmlingua2"


class Compressor:
    """A method with its model loaded once, the target tokenizer and default options, over the
    one Pipeline every compression goes through (see elision.pipeline)."""

    def __init__(
        self,
        method: str = DEFAULT_METHOD,
        *,
        model: str | None = None,
        target: str = "gpt-4o",
        device: str | None = None,
        dtype: str | None = None,
        price_per_million: float | None = None,
        max_input_tokens: int = DEFAULT_MAX_INPUT_TOKENS,
        progress: Callable[[str], None] | None = None,
        options: Mapping | None = None,
        **kwargs,
    ):
        if not isinstance(method, str):
            raise InvalidInput(f"method must be a method's name, got {type(method).__name__}")
        if progress is not None and not callable(progress):
            raise InvalidInput(f"progress must be a callable progress(message) or None, got {type(progress).__name__}")
        cls = get_method(method)
        opts = cls.Options.build(method_options(options, kwargs, Compressor.__init__))  # before loading anything
        tokenizer = get_target(target)
        t0 = time.perf_counter()
        loaded = cls(model=model, device=device, dtype=dtype, progress=progress)
        self.load_seconds = time.perf_counter() - t0
        self.pipeline = Pipeline(loaded, tokenizer, opts, target_name=target, max_input_tokens=max_input_tokens,
                                 price_per_million=price_per_million if price_per_million is not None
                                 else _list_price(target))

    method = property(lambda self: self.pipeline.method)
    target = property(lambda self: self.pipeline.target)
    target_name = property(lambda self: self.pipeline.target_name)
    options = property(lambda self: self.pipeline.options)
    price = property(lambda self: self.pipeline.price)

    @property
    def max_input_tokens(self) -> int:
        return self.pipeline.max_input_tokens

    @max_input_tokens.setter
    def max_input_tokens(self, value: int) -> None:
        self.pipeline.max_input_tokens = value

    @property
    def method_name(self) -> str:
        return self.method.name

    @property
    def model_name(self) -> str | None:
        return self.method.model_name

    def compress(
        self,
        prompt: str | Sequence[str] | Prompt | None = None,
        *,
        context: str | Sequence[str] | None = None,
        instruction: str = "",
        question: str = "",
        rate: float | None = None,
        target_tokens: int | None = None,
        protect: Iterable[str | re.Pattern] = (),
        progress: Callable[[int, int], None] | None = None,
        format: str | Format | None = None,
        format_options: Mapping | None = None,
        options: Mapping | None = None,
        **kwargs,
    ) -> CompressionResult:
        """Compress; `prompt` is a shorthand for `context`, or an already built `Prompt` (then
        instruction, question and protect come from it). Options override the compressor's.
        `format` reads the text as "tagged" (`<elision rate=0.5>...</elision>`), "json" (a
        document or parsed value; `format_options={"policy": {"id": "keep"}}`) or "markdown"
        (structure kept); see elision.structured. Method options go as keywords
        (`force_digits=True`) or as one mapping (`options={"force_digits": True}`: what a caller
        passing options read from a request or a file should use, since a name such as 'self' or
        'rate' there is then refused by name instead of clashing with this signature)."""
        t0 = time.perf_counter()
        fmt = as_format(format, format_options)
        if fmt is None:
            p = _as_prompt(prompt, context, instruction, question, protect)
        elif isinstance(prompt, Prompt) or (prompt is not None and context is not None):
            raise InvalidInput(f"format {fmt.name!r} reads the text given as prompt or context=, "
                               "not a built Prompt or both")
        else:
            p = build_prompt(fmt, context if context is not None else prompt, instruction=instruction,
                             question=question, protect=protect)
        opts = self.pipeline.resolve_options(method_options(options, kwargs, Compressor.compress))
        return self.pipeline.compress(p, rate=rate, target_tokens=target_tokens, options=opts, progress=progress,
                                      started=t0)

    def compress_batch(self, prompts: Sequence, *, rate: float | None = None, target_tokens: int | None = None,
                       batch_size: int = 32, progress: Callable[[int, int], None] | None = None,
                       options: Mapping | None = None, **kwargs) -> list[CompressionResult]:
        """Compress many prompts; results in order. Each item is a str, a list of contexts, a
        built Prompt, or a dict of compress()'s keywords (`context`, `instruction`,
        `question`, `protect`). llmlingua2 scores `batch_size` prompts per pass over the encoder
        (their chunks share batches), much faster than a loop; other methods go one by one.

            >>> rs = Compressor("llmlingua2").compress_batch(
            ...     [{"context": docs, "question": q} for docs, q in pairs], rate=0.33)
        """
        if isinstance(prompts, (str, Prompt)) or not isinstance(prompts, Sequence):
            raise InvalidInput("compress_batch takes a list of prompts (str, list of contexts, Prompt or dict)")
        built = []
        for k, item in enumerate(prompts):
            try:
                if isinstance(item, dict):
                    unknown = set(item) - {"context", "prompt", "instruction", "question", "protect"}
                    if unknown:
                        raise InvalidInput(f"unknown keys {sorted(unknown)}; use context, instruction, question, "
                                           "protect")
                    built.append(_as_prompt(item.get("prompt"), item.get("context"), item.get("instruction", ""),
                                            item.get("question", ""), item.get("protect", ())))
                else:
                    built.append(_as_prompt(item, None, "", "", ()))
            except InvalidInput as e:
                raise InvalidInput(f"prompt {k}: {e}") from None
        return self.pipeline.compress_batch(built, rate=rate, target_tokens=target_tokens,
                                            options=self.pipeline.resolve_options(
                                                method_options(options, kwargs, Compressor.compress_batch)),
                                            batch_size=batch_size,
                                            progress=progress)

    def importance(self, prompt: str | Sequence[str] | Prompt | None = None, *, context=None, instruction: str = "",
                   question: str = "", protect: Iterable[str | re.Pattern] = (), options: Mapping | None = None,
                   **kwargs) -> WordImportance:
        """The score of every unit (word, for most methods) of the prompt: what compression ranks
        by, with the keep policy applied. Budget-aware methods score at the full budget.

            >>> imp = Compressor("llmlingua2").importance("The Tay Bridge fell in 1879.")
            >>> [r["text"] for r in imp.to_rows(top=0.3) if r["important"]]   # e.g. [' Bridge', ' 1879']
        """
        p = _as_prompt(prompt, context, instruction, question, protect)
        return self.pipeline.importance(p, self.pipeline.resolve_options(
            method_options(options, kwargs, Compressor.importance)))

    def resolve_options(self, options: dict):
        """The compressor's options with a call's overrides (validated)."""
        return self.pipeline.resolve_options(options)

    def compress_messages(self, messages, *, policy: str = "stable", rate: float | None = None,
                          target_tokens: int | None = None, progress: Callable[[int, int], None] | None = None,
                          options: Mapping | None = None, **kwargs):
        """Compress a chat conversation (OpenAI-style messages) and return it in the same format.
        policy="stable" (default): each tool output / assistant message compressed once, the
        same way at every later turn, so the provider's prompt cache keeps hitting (`rate`,
        `hot_tokens`, `min_tokens`, `roles`, `condition`, `recall_tokens`, `repeats`);
        policy="age": one request, the whole history fitted to the budget, older turns harder
        (`age_decay`, `keep_recent`). See elision.messages."""
        from .messages import compress_messages
        from .pipeline import check_progress

        check_progress(progress)
        if options is not None:  # method options only: checked here, passed on as keywords
            self.pipeline.resolve_options(method_options(options, {}, Compressor.compress_messages))
            kwargs = method_options(options, kwargs, Compressor.compress_messages)  # refuses a key given twice
        return compress_messages(self.pipeline, messages, policy=policy, rate=rate, target_tokens=target_tokens,
                                 progress=progress, **kwargs)


def method_options(options: Mapping | None, kwargs: dict, call) -> dict:
    """A call's method options: the `options` mapping and the keywords, merged. A key of the
    mapping that is not text, that names one of `call`'s own arguments ('self', 'rate',
    'protect') or that is also given as a keyword is InvalidInput naming it, so options read
    from a request never reach a signature (in the service they were a 500: TypeError).

        >>> method_options({"force_digits": True}, {}, Compressor.compress)
        {'force_digits': True}
    """
    if options is None:
        return kwargs
    if not isinstance(options, Mapping):
        raise InvalidInput(f"options must be an object of option name -> value, got {type(options).__name__}")
    for k in options:
        if not isinstance(k, str):
            raise InvalidInput(f"option names must be text, got {k!r}")
    params = sorted(set(options) & (set(inspect.signature(call).parameters) | {"self", "options"}))
    if params:
        name = "Compressor" if call.__name__ == "__init__" else call.__name__
        raise InvalidInput(f"{', '.join(map(repr, params))} in options "
                           f"{'is an argument' if len(params) == 1 else 'are arguments'} of {name}(), "
                           f"not {'a method option' if len(params) == 1 else 'method options'}")
    twice = sorted(set(options) & set(kwargs))
    if twice:
        raise InvalidInput(f"option(s) {', '.join(twice)} given twice: in options and as keywords")
    return {**options, **kwargs}


def _as_prompt(prompt, context, instruction: str, question: str, protect) -> Prompt:
    """The Prompt of a call: `prompt` is a shorthand for `context`, or an already built Prompt
    (which carries its own instruction, question and protected text)."""
    if prompt is not None and context is not None:
        raise InvalidInput("give the text as prompt or as context=, not both")
    if isinstance(prompt, Prompt):
        if instruction or question or protect:
            raise InvalidInput("a built Prompt carries its instruction, question and protected text")
        return prompt
    return Prompt.build(context if context is not None else prompt, instruction, question, protect)


@functools.lru_cache(maxsize=4)
def _cached(method: str, model: str | None, target: str, device: str | None, dtype: str | None) -> Compressor:
    return Compressor(method, model=model, target=target, device=device, dtype=dtype)


def compress(
    prompt: str | Sequence[str] | None = None,
    *,
    method: str = DEFAULT_METHOD,
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
