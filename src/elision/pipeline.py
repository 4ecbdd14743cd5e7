"""The pipeline: the one place that turns a method's scores into a compressed prompt, and so
the one place that owns every guarantee.

    prompt -> budget (target tokens) -> method.score (cached when budget-independent)
           -> checked and enforced (protected / forced / kept roles -> +inf)
           -> fit_to_budget (target tokenizer) -> assemble -> CompressionResult

Every path goes through here: `Compressor.compress`, `Compressor.compress_messages` (which
scores the whole history once, then fits each message to its own budget), the CLI and the
service. A method only scores; whatever priorities it gives, the pipeline

  - keeps every unit that `selection.must_keep` names (protected spans, forced digits, tokens
    and line breaks, roles the options keep whole);
  - refuses output that does not tile each segment's text (so the result is a subsequence of
    each segment) or whose order is not a permutation of the segments, with a MethodError;
  - lands on the budget in the target tokenizer.

Worked example: a method that gives every unit priority 0 on "Call 555 now." with
force_digits=True and a 2-token budget: " 555" becomes +inf and is kept, then the stable
order keeps "Call" first -> "Call 555".

Not handled here: how a method scores (methods/), chat message bookkeeping (messages.py).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from ._errors import MethodError, TooLong
from .budget import Budget, make_budget
from .methods.base import Method, Options, Scored
from .prompt import Prompt, Segment, Span
from .result import CompressionResult, WordImportance
from .selection import Units, assemble, fit_to_budget, forced_mask, must_keep
from .tokenizers import TargetTokenizer

Progress = Callable[[int, int], None]


class ScoreCache:
    """The last `size` budget-independent scorings, keyed by (prompt, options). Thread-safe;
    two threads asking for the same key at once may both compute it (the result is the same)."""

    def __init__(self, size: int = 8):
        self.size = size
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, compute: Callable[[], Scored]) -> Scored:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        value = compute()
        with self._lock:
            self._d[key] = value
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._d)


class Pipeline:
    """One method (loaded), one target tokenizer, default options; see the module docstring."""

    def __init__(self, method: Method, target: TargetTokenizer, options: Options, *, target_name: str,
                 max_input_tokens: int, price_per_million: float | None = None, cache_size: int = 8):
        self.method, self.target, self.options = method, target, options
        self.target_name, self.max_input_tokens, self.price = target_name, max_input_tokens, price_per_million
        self.cache = ScoreCache(cache_size)

    def resolve_options(self, overrides: dict | None) -> Options:
        """The default options with a call's overrides (validated)."""
        return self.options.build(overrides, base=self.options) if overrides else self.options

    def check_length(self, tokens: int, what: str) -> None:
        if tokens > self.max_input_tokens:
            raise TooLong(f"{what} {tokens} tokens, over the limit of {self.max_input_tokens}")

    def budget(self, prompt: Prompt, rate: float | None, target_tokens: int | None,
               origin: int | None = None) -> Budget:
        """The budget in target tokens; per-segment counts only for methods that plan with them."""
        origin = self.target.count(prompt.text) if origin is None else origin
        self.check_length(origin, "prompt has")
        b = make_budget(origin, rate, target_tokens)
        if self.method.budget_aware:
            b = Budget(b.origin_tokens, b.tokens, b.rate, b.target_tokens,
                       tuple(self.target.count(s.text) for s in prompt.segments))
        return b

    def score(self, prompt: Prompt, budget: Budget, options: Options, progress: Progress | None = None) -> Scored:
        """The method's scores, checked, with every must-keep unit at +inf."""
        m = self.method
        if m.budget_aware:
            raw = m.score(prompt, options, budget, progress)
        else:  # the same prompt at several budgets (a sweep, a caller trying rates) is scored once
            raw = self.cache.get((prompt, options), lambda: _as_scored(m.score(prompt, options, None, progress)))
        scored = _as_scored(raw)
        _check(m.name, prompt, scored)
        return Scored(tuple(enforce(seg, u, options) for seg, u in zip(prompt.segments, scored.units)),
                      scored.order)

    def fit(self, prompt: Prompt, scored: Scored, budget_tokens: int) -> tuple[list[tuple[Span, ...]], str]:
        order = list(scored.order) if scored.order is not None else None
        spans = fit_to_budget(prompt, list(scored.units), self.target, budget_tokens, order)
        return spans, assemble(prompt, spans, order)

    def fit_segment(self, segment: Segment, units: Units, budget_tokens: int) -> str:
        """One segment's highest-priority units whose kept text fits `budget_tokens`."""
        one = Prompt((segment,), (0,))
        return self.fit(one, Scored((units,)), budget_tokens)[1]

    def compress(self, prompt: Prompt, *, rate: float | None = None, target_tokens: int | None = None,
                 options: Options | None = None, progress: Progress | None = None,
                 started: float | None = None) -> CompressionResult:
        t0 = time.perf_counter() if started is None else started
        options = options or self.options
        origin = self.target.count(prompt.text)
        budget = self.budget(prompt, rate, target_tokens, origin)
        t1 = time.perf_counter()
        scored = self.score(prompt, budget, options, progress)
        t2 = time.perf_counter()
        spans, text = self.fit(prompt, scored, budget.tokens)
        t3 = time.perf_counter()
        return CompressionResult(
            compressed_prompt=text, origin_tokens=origin, compressed_tokens=self.target.count(text),
            budget_tokens=budget.tokens, requested_rate=budget.rate, method=self.method.name,
            model=self.method.model_name, target=self.target_name, prompt=prompt, spans=tuple(spans),
            seconds=t3 - t0, price_per_million=self.price,
            timings={"prepare": t1 - t0, "score": t2 - t1, "fit": t3 - t2})

    def importance(self, prompt: Prompt, options: Options | None = None) -> WordImportance:
        """Every unit's enforced score at the full budget, with its rank share (see WordImportance)."""
        options = options or self.options
        scored = self.score(prompt, self.budget(prompt, 1.0, None), options)
        spans, scores = [], []
        for off, seg, u in zip(prompt.offsets, prompt.segments, scored.units):
            spans += [(off + s, off + e) for s, e in zip(u.starts.tolist(), u.ends.tolist())]
            scores += u.priority.tolist()
        text = prompt.text
        blank = np.array([not text[s:e].strip() for s, e in spans], bool)
        sc = np.asarray(scores, np.float64)
        order = np.lexsort((np.arange(len(sc)), -np.where(blank, -np.inf, sc)))
        rank = np.empty(len(sc))
        rank[order] = np.arange(len(sc)) / max(int((~blank).sum()), 1)
        rank[blank] = 1.0  # white space is never "important"
        return WordImportance(prompt, tuple(spans), tuple(scores), tuple(rank.tolist()), self.method.name,
                              self.method.model_name)


def enforce(segment: Segment, units: Units, options: Options) -> Units:
    """The method's units with the keep policy applied: must-keep units +inf; with
    drop_consecutive, repeats of one forced token ('....' -> '.') -inf unless protected."""
    forced = must_keep(segment, units.starts, units.ends, options)
    pri = np.where(forced, np.inf, units.priority.astype(np.float64))
    if options.drop_consecutive and options.force_tokens and segment.role not in options.kept_roles():
        protected = forced_mask(units.starts, units.ends, segment.text, segment.protected)
        words = [segment.text[s:e].strip() for s, e in zip(units.starts.tolist(), units.ends.tolist())]
        for k in range(1, len(words)):
            if words[k] in options.force_tokens and words[k] == words[k - 1] and not protected[k]:
                pri[k] = -np.inf
    return Units(units.starts, units.ends, pri)


def _as_scored(raw) -> Scored:
    if isinstance(raw, Scored):
        return raw
    if isinstance(raw, (list, tuple)):
        return Scored(tuple(raw))
    raise MethodError(f"a method's score() must return Scored or a list of Units, got {type(raw).__name__}")


def _check(name: str, prompt: Prompt, scored: Scored) -> None:
    """A method's output must tile each segment (so the output is a subsequence of it)."""
    segs = prompt.segments
    if len(scored.units) != len(segs):
        raise MethodError(f"method {name!r} returned units for {len(scored.units)} segments; the prompt has {len(segs)}")
    for i, (seg, u) in enumerate(zip(segs, scored.units)):
        if not isinstance(u, Units):
            raise MethodError(f"method {name!r}: segment {i} is a {type(u).__name__}, not Units")
        s, e, p = np.asarray(u.starts), np.asarray(u.ends), np.asarray(u.priority)
        if not (len(s) == len(e) == len(p)) or len(s) == 0:
            raise MethodError(f"method {name!r}: segment {i} has {len(s)} starts, {len(e)} ends, {len(p)} priorities")
        if s[0] != 0 or e[-1] != len(seg.text) or (e <= s).any() or (s[1:] != e[:-1]).any():
            raise MethodError(f"method {name!r}: segment {i}'s units do not tile its text "
                              f"(contiguous, non-empty spans from 0 to {len(seg.text)})")
        if np.isnan(p.astype(np.float64)).any():
            raise MethodError(f"method {name!r}: segment {i} has NaN priorities")
    if scored.order is not None and sorted(scored.order) != list(range(len(segs))):
        raise MethodError(f"method {name!r} returned an order that is not a permutation of the {len(segs)} segments")
