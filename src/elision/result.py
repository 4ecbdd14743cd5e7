"""CompressionResult: numbers and the selection, never formatted strings.

    >>> r = compress("...", rate=0.5)
    >>> r.compressed_prompt, r.origin_tokens, r.compressed_tokens, r.ratio, r.saving_usd
    >>> r.to_llmlingua_dict()["ratio"]        # '2.0x', the reference's string keys
    >>> print(r.marked())                     # the original with dropped text in [- -]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .prompt import Prompt, Span


class TokenCounts:
    """rate, ratio and saved tokens from origin_tokens / compressed_tokens (both results have them)."""

    origin_tokens: int
    compressed_tokens: int

    @property
    def rate(self) -> float:
        """compressed / original tokens (what LLMLingua calls the rate)."""
        return self.compressed_tokens / self.origin_tokens if self.origin_tokens else 1.0

    @property
    def ratio(self) -> float:
        """original / compressed tokens (the 'x times smaller' figure)."""
        return self.origin_tokens / self.compressed_tokens if self.compressed_tokens else float("inf")

    @property
    def saved_tokens(self) -> int:
        return self.origin_tokens - self.compressed_tokens


@dataclass(frozen=True)
class Shortfall:
    """A budget too small for what a question needs, said plainly instead of filled silently.

    kind "question": the question alone is `needed_tokens` target tokens, over the budget (the
    question is kept whole by default, so the result is over budget too); kind "answer": the text
    kept whole (question, instruction, protected spans) plus the one sentence the method found
    to answer the question is `needed_tokens`, over the budget, so what is kept of the answer is
    fragments: its highest-priority words. Budget 60 tokens, question 18 + instruction 24 +
    best sentence 31 -> Shortfall("answer", 73, 60)."""

    kind: str  # "question" | "answer"
    needed_tokens: int
    budget_tokens: int

    def to_dict(self) -> dict:
        return {"kind": self.kind, "needed_tokens": self.needed_tokens, "budget_tokens": self.budget_tokens}

    def message(self) -> str:
        what = ("the question alone" if self.kind == "question"
                else "the question (and the text kept whole) plus one answer sentence")
        return f"the budget of {self.budget_tokens} tokens cannot hold {what}: {self.needed_tokens} tokens"


@dataclass(frozen=True)
class CompressionResult(TokenCounts):
    compressed_prompt: str
    origin_tokens: int  # in the target tokenizer
    compressed_tokens: int  # in the target tokenizer
    budget_tokens: int  # what the budget allowed
    requested_rate: float | None  # as asked (None when target_tokens was given)
    method: str
    model: str | None
    target: str
    prompt: Prompt = field(repr=False)  # the original, as segments
    spans: tuple[tuple[Span, ...], ...] = field(repr=False)  # kept spans per segment
    seconds: float = 0.0
    price_per_million: float | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    auto_rate: float | None = None  # rate="auto": the rate it chose (budget / original tokens)
    # the budget cannot hold the question (plus one answer sentence, for question-aware methods
    # that name one): what was needed (see Shortfall); None when it can
    shortfall: Shortfall | None = None
    # the answer sentence and its context were kept before other words (Pipeline.answer_first)
    answer_first: bool = False

    @property
    def original_prompt(self) -> str:
        return self.prompt.text

    @property
    def saving_usd(self) -> float | None:
        if self.price_per_million is None:
            return None
        return self.saved_tokens * self.price_per_million / 1e6

    def kept_spans(self) -> list[Span]:
        """Kept character spans in original_prompt coordinates."""
        return [(off + s, off + e) for off, sp in zip(self.prompt.offsets, self.spans) for s, e in sp]

    def marked(self, start: str = "[-", end: str = "-]") -> str:
        """The original prompt with every dropped stretch wrapped in start/end markers.
        'The cat sat' keeping 'cat' -> '[-The -]cat[- sat-]'."""
        text, out, pos = self.original_prompt, [], 0
        for s, e in self.kept_spans():
            if s > pos:
                out.append(f"{start}{text[pos:s]}{end}")
            out.append(text[s:e])
            pos = e
        if pos < len(text):
            out.append(f"{start}{text[pos:]}{end}")
        return "".join(out)

    def to_dict(self) -> dict:
        return {
            "compressed_prompt": self.compressed_prompt,
            "origin_tokens": self.origin_tokens,
            "compressed_tokens": self.compressed_tokens,
            "budget_tokens": self.budget_tokens,
            "requested_rate": self.requested_rate,
            "auto_rate": self.auto_rate,
            "rate": self.rate,
            "ratio": self.ratio if self.compressed_tokens else None,
            "saved_tokens": self.saved_tokens,
            "saving_usd": self.saving_usd,
            "method": self.method,
            "model": self.model,
            "target": self.target,
            "seconds": self.seconds,
            "timings": dict(self.timings),
            "kept_spans": self.kept_spans(),
            "shortfall": self.shortfall.to_dict() if self.shortfall is not None else None,
            "answer_first": self.answer_first,
        }

    def to_llmlingua_dict(self) -> dict:
        """The keys and string formats of llmlingua's compress_prompt, for drop-in users.
        Unlike the reference, both counts use this result's target tokenizer."""
        saving = (f", Saving ${self.saving_usd:.1f} in {self.target}." if self.saving_usd is not None
                  else f", Saving {self.saved_tokens} tokens.")
        return {
            "compressed_prompt": self.compressed_prompt,
            "origin_tokens": self.origin_tokens,
            "compressed_tokens": self.compressed_tokens,
            "ratio": f"{self.ratio:.1f}x",
            "rate": f"{self.rate * 100:.1f}%",
            "saving": saving,
        }



@dataclass(frozen=True)
class WordImportance:
    """Per-unit importance of a prompt under one method (`Compressor.importance`): the scores the
    pipeline ranks by, keep policy applied (+inf = must keep). For token-importance grouping in
    the user's own training (SFT-GO, arXiv 2506.15021) or for display.

    `rank[i]` is unit i's place among the prompt's non-blank units, as a share in [0, 1)
    (0 = most important); `important(0.3)` is the top 30 % (must-keep units always included).
    Spans are in `prompt.text` coordinates, so they map onto any tokenizer's offsets."""

    prompt: Prompt = field(repr=False)
    spans: tuple[Span, ...]
    scores: tuple[float, ...]
    rank: tuple[float, ...]
    method: str
    model: str | None

    def important(self, top: float = 0.3) -> list[bool]:
        if not 0 < top <= 1:
            from ._errors import InvalidInput

            raise InvalidInput(f"top must be in (0, 1], got {top}")
        return [r < top or s == float("inf") for r, s in zip(self.rank, self.scores)]

    def to_rows(self, top: float | None = None) -> list[dict]:
        text = self.prompt.text
        flags = self.important(top) if top is not None else [None] * len(self.spans)
        # +-inf is not JSON: must-keep units say so instead, never-kept ones get score None
        return [{"start": s, "end": e, "text": text[s:e], "score": sc if abs(sc) != float("inf") else None,
                 "must_keep": sc == float("inf"), "rank": r, **({"important": f} if top is not None else {})}
                for (s, e), sc, r, f in zip(self.spans, self.scores, self.rank, flags)]
