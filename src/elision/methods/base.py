"""The method protocol, typed options, and the registry of methods by name.

A method is a pure scorer. Given a Prompt (and, only if it declares `budget_aware = True`, the
Budget) it returns, for each segment, Units: character spans tiling the segment's text with a
priority each (higher = kept first; +inf = always kept; -inf = never kept), and optionally an
order of the segments. That is all it does. The pipeline (elision.pipeline) then, for every
method alike, third-party ones included:

  - keeps protected spans, forced digits / tokens / line breaks and the roles the options keep
    whole (the question by default), whatever priorities the method gave them;
  - lands the result on the budget counted in the TARGET tokenizer (selection.fit_to_budget);
  - keeps each segment's text a subsequence of the original;
  - caches the scores of methods that do not look at the budget, keyed by prompt and options.

A minimal method (keeps the longest words first):

    >>> @register
    ... class LongWords(Method):
    ...     name = "long_words"
    ...     def score(self, prompt, options, budget=None, progress=None):
    ...         out = []
    ...         for seg in prompt.segments:
    ...             starts, ends = word_spans(seg.text)
    ...             out.append(Units(starts, ends, (ends - starts).astype(float)))
    ...         return out
    >>> get_method("long_words") is LongWords
    True

Third-party methods register through the entry-point group "elision.methods".
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import typing
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from .._errors import InvalidInput, UnknownName
from ..budget import Budget
from ..prompt import Prompt
from ..parsing import parse_bool
from ..selection import Units, word_spans  # noqa: F401  (word_spans: the docstring's example)

Progress = Callable[[int, int], None]  # (done, total) in the method's own work units


@dataclasses.dataclass(frozen=True)
class Options:
    """Base for per-method options: frozen, keyword-only, unknown keys rejected.

    The fields here are the keep policy every method accepts; the pipeline enforces them, so a
    method never has to. A method may change a default by declaring the field again
    (`keep_instruction: bool = True`)."""

    keep_question: bool = True  # the question is never compressed
    keep_instruction: bool = False  # the instruction is never compressed
    force_digits: bool = False  # every word holding a digit is kept, and a dash between two ('80 - 150')
    # every name is kept: a capitalized word inside a sentence and the capitalized words after it
    # ('visited Kyoto', 'The Infinity Courts'), the capitalized words after a key's colon
    # ('location: Wellness Center') and a short phrase in typographic quotes; facts are mostly
    # names and numbers (selection.fact_spans)
    force_names: bool = False
    # every identifier is kept: e-mail addresses, URLs, file and host names ('notes.txt')
    force_ids: bool = False
    force_tokens: tuple[str, ...] = ()  # these words are always kept, e.g. ".,?"
    keep_newlines: bool = False  # every line break is kept (layout of lists, code, tables)
    drop_consecutive: bool = False  # a run of one forced token ('....') keeps only its first
    # a value written without white space and with punctuation inside ('2024-05-28', '19:00',
    # 'ann.lee@x.com', '3.14', 'e-mail') is kept or dropped whole: never '20240528' or '314'
    whole_values: bool = False

    # Documented range of every numeric option, inclusive: {name: (low, high)}. Checked here,
    # for the library, the CLI and the service alike; the upper bounds cap the memory and time
    # one call can ask for (a batch of 10^9 tokens is one forward pass over every row).
    # A subclass lists its own fields (base ones are not numeric).
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {}

    def __post_init__(self):
        for name, (lo, hi) in self.RANGES.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:  # NaN fails too
                raise InvalidInput(f"option {name} must be in [{lo:g}, {hi:g}], got {v!r}")

    def kept_roles(self) -> frozenset[str]:
        return frozenset(r for r, keep in (("question", self.keep_question),
                                           ("instruction", self.keep_instruction)) if keep)

    @classmethod
    def build(cls, values: dict | None = None, base: Options | None = None) -> Options:
        values = dict(values or {})
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise InvalidInput(
                f"unknown option(s) {', '.join(unknown)} for this method; valid: {', '.join(sorted(names)) or '(none)'}")
        hints = typing.get_type_hints(cls)
        coerced = {k: _coerce(k, hints[k], v) for k, v in values.items()}
        return dataclasses.replace(base, **coerced) if base is not None else cls(**coerced)


def _coerce(name: str, tp, value):
    """Accept CLI strings ("3", "true", "a,b") as well as Python values for a field type."""
    try:
        if tp is bool:
            return parse_bool(value, f"option {name}")
        if tp in (int, float) and isinstance(value, bool):  # True is not a batch size of 1
            raise TypeError
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        if type(None) in typing.get_args(tp):  # X | None: None stays None, else as X
            if value is None or (isinstance(value, str) and value.lower() in ("none", "auto", "")):
                return None
            return _coerce(name, next(a for a in typing.get_args(tp) if a is not type(None)), value)
        if typing.get_origin(tp) is tuple:
            if isinstance(value, str):
                return tuple(v for v in value.split(",") if v)
            if not isinstance(value, (list, tuple)):
                raise TypeError
            # each item as it is: [None] is no token (str(None) made it the word 'None', silently)
            for v in value:
                if not isinstance(v, (str, int)) or isinstance(v, bool) or v == "":
                    raise InvalidInput(f"option {name}: items must be non-empty text, got {v!r} in {value!r}")
            return tuple(str(v) for v in value)
    except InvalidInput:
        raise
    except (TypeError, ValueError):
        raise InvalidInput(f"option {name}: cannot use {value!r} as {getattr(tp, '__name__', tp)}") from None
    return value


@dataclasses.dataclass(frozen=True)
class Answer:
    """What a question-aware method says answers the question: the units of its best sentence
    and the units that make that sentence readable on its own and the evidence around it (its
    document's lead: the title or first words that name the subject; for llmlingua2's default,
    then the rest of the document), all in segment `segment`. The pipeline
    uses it at extreme rates (`Pipeline.answer_first`): when the budget left after the text kept
    whole holds fewer than `first_below` copies of sentence + context, the sentence's units go
    first, then the context's, then everything else by priority; 0 never. Either way a budget
    that cannot hold the kept text plus the sentence is reported (`CompressionResult.shortfall`).
    Answer(2, sentence=[7, 8, 9], context=[0, 1], first_below=2.0): segment 2's units 7-9 answer."""

    segment: int
    sentence: np.ndarray  # unit indices into units[segment], the best sentence's (in text order)
    context: np.ndarray  # unit indices into units[segment], in the order they should be kept
    first_below: float = 0.0


@dataclasses.dataclass(frozen=True)
class Scored:
    """What a method returns: one Units per segment, and optionally the segments' output order
    (a permutation of their indices; None = as given) and the units that answer the question
    (`Answer`, question-aware methods only)."""

    units: tuple[Units, ...]
    order: tuple[int, ...] | None = None
    answer: Answer | None = None


class Method:
    """Subclass, set `name` (and `Options`), implement `score`, and decorate with @register."""

    name: ClassVar[str]
    Options: ClassVar[type[Options]] = Options
    uses_model: ClassVar[bool] = False
    default_model: ClassVar[str | None] = None
    # True: score() is given the Budget (LLMLingua's budget controller, LongLLMLingua's coarse
    # stage); False: it gets budget=None and the pipeline caches its scores across budgets.
    budget_aware: ClassVar[bool] = False
    # True: the scores are keep probabilities a threshold can cut (Options.auto_threshold), so the
    # pipeline can choose the budget itself (rate="auto"); such a method is not budget_aware
    auto_rate: ClassVar[bool] = False

    def __init__(self, *, model: str | None = None, device: str | None = None, dtype: str | None = None,
                 progress: Callable[[str], None] | None = None):
        if model is not None and not self.uses_model:
            raise InvalidInput(f"method {self.name!r} uses no model; do not pass model=")
        self.model_name = model if model is not None else self.default_model
        self.device, self.dtype = device, dtype

    def score(self, prompt: Prompt, options: Options, budget: Budget | None = None,
              progress: Progress | None = None) -> Scored | list[Units]:
        raise NotImplementedError

    def score_batch(self, prompts: list[Prompt], options: Options,
                    progress: Progress | None = None) -> list[Scored | list[Units]]:
        """score() of several prompts at once, for budget-independent methods
        (`Pipeline.compress_batch`). This default scores them one by one; a method whose model
        runs faster on full batches (llmlingua2) overrides it."""
        return [self.score(p, options, None, progress) for p in prompts]

    @property
    def precision(self) -> str | None:
        """What the model runs in ('bfloat16', 'float32', 'int8', ...); None without a model."""
        return None


class CausalMethod(Method):
    """A method guided by a causal LM: loads it (once per process and configuration) as self.lm."""

    uses_model = True
    default_model = "smollm2-135m"

    def __init__(self, *, model=None, device=None, dtype=None, progress=None):
        super().__init__(model=model, device=device, dtype=dtype, progress=progress)
        from ..models.causal import CausalLM

        self.lm = CausalLM.shared(self.model_name, device=device, dtype=dtype, progress=progress)

    @property
    def precision(self) -> str:
        return self.lm.precision


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        for ep in importlib.metadata.entry_points(group="elision.methods"):
            if ep.name == name:
                register(ep.load())
    if name not in METHODS:
        raise UnknownName("method", name, METHODS)
    return METHODS[name]
