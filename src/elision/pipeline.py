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

import dataclasses
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from ._errors import InvalidInput, MethodError, TooLong
from .budget import Budget, make_budget
from .lru import BytesLRU
from .methods.base import METHODS, Answer, Method, Options, Scored
from .prompt import SEPARATOR, Prompt, Segment, Span
from .result import CompressionResult, Shortfall, WordImportance
from .selection import Units, assemble, fit_to_budget, forced_mask, glued_runs, kept_spans, must_keep
from .tokenizers import TargetTokenizer

Progress = Callable[[int, int], None]
MEMO_BYTES = 32 * 2**20


def _memo_size(value) -> int:
    """What a memo entry weighs: its own `nbytes` when it says, else its first item's size."""
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    return sys.getsizeof(value[0]) + 64 if isinstance(value, tuple) else 32


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
        # texts compressed or counted by content (elision.messages' stable policy: a conversation's
        # earlier messages cost a lookup at every later turn, not a new compression)
        self.memo = BytesLRU(MEMO_BYTES, _memo_size)

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

    def score(self, prompt: Prompt, budget: Budget, options: Options, progress: Progress | None = None,
              raw=None) -> Scored:
        """The method's scores (or `raw`, scores already computed for this prompt), checked,
        with every must-keep unit at +inf."""
        m = self.method
        if raw is None and m.budget_aware:
            raw = m.score(prompt, options, budget, progress)
        elif raw is None:  # the same prompt at several budgets (a sweep, a caller trying rates) is scored once
            raw = self.cache.get((prompt, options), lambda: _as_scored(m.score(prompt, options, None, progress)))
        scored = _as_scored(raw)
        _check(m.name, prompt, scored)
        # a structured prompt's pieces (glued by their own seps) are one text: never reordered
        glued = any(seg.sep != SEPARATOR for seg in prompt.segments[1:])
        return Scored(tuple(_rated(seg, u, options) for seg, u in zip(prompt.segments, scored.units)),
                      None if glued else scored.order, scored.answer)

    def fit(self, prompt: Prompt, scored: Scored, budget_tokens: int) -> tuple[list[tuple[Span, ...]], str]:
        order = list(scored.order) if scored.order is not None else None
        spans = fit_to_budget(prompt, list(scored.units), self.target, budget_tokens, order)
        return spans, assemble(prompt, spans, order)

    def rate_groups(self, prompt: Prompt, budget: Budget) -> list[tuple[list[int], int]]:
        """(segment indices, target tokens) fitted together: each segment with its own rate alone,
        at round(rate x its tokens); the others together at the call's rate (or, with
        target_tokens, at what the rated segments leave). Tagged text 'A <elision rate=0.5>B
        </elision>' at rate=0.2 -> [([1], 0.5 x |B|), ([0], 0.2 x |A|)]."""
        groups, rest = [], []
        for i, seg in enumerate(prompt.segments):
            if seg.rate is None:
                rest.append(i)
            else:
                groups.append(([i], 0 if seg.rate == 0 else max(1, round(seg.rate * self.target.count(seg.text)))))
        if rest:
            n = self.target.count(Prompt.from_segments([prompt.segments[i] for i in rest]).text)
            b = (round(budget.rate * n) if budget.rate is not None
                 else budget.tokens - sum(b for _, b in groups))
            groups.append((rest, max(1, b)))
        return groups

    def fit_groups(self, prompt: Prompt, scored: Scored,
                   groups: list[tuple[list[int], int]]) -> tuple[list[tuple[Span, ...]], str]:
        """fit() with each group landing on its own budget (see rate_groups)."""
        spans: list[tuple[Span, ...]] = [()] * len(prompt.segments)
        for idx, tokens in groups:
            sub = Prompt.from_segments([prompt.segments[i] for i in idx])
            for i, sp in zip(idx, fit_to_budget(sub, [scored.units[i] for i in idx], self.target, tokens)):
                spans[i] = sp
        order = list(scored.order) if scored.order is not None else None
        return spans, assemble(prompt, spans, order)

    def never_empty(self, prompt: Prompt, scored: Scored, spans: list[tuple[Span, ...]],
                    text: str) -> tuple[list[tuple[Span, ...]], str]:
        """A text that holds words never compresses to nothing: when no unit fits the budget (one
        900,000-character word at rate 0.5 is one unit of ~112,000 tokens), the highest-priority
        units that the method allows are kept, the fewest that make the text non-blank, over the
        budget as protected text may be (`compressed_tokens` > `budget_tokens` says so). A
        prompt the method or the caller empties on purpose (every unit -inf: a JSON "drop",
        a threshold) stays empty."""
        pri = np.concatenate([u.priority for u in scored.units])
        allowed = int((pri > -np.inf).sum())
        if not allowed or not prompt.text.strip():
            return spans, text
        order = np.lexsort((np.arange(len(pri)), -pri))  # fit_to_budget's order
        bounds = np.cumsum([0] + [len(u.priority) for u in scored.units])
        seg_of = np.searchsorted(bounds, order[:allowed], side="right") - 1
        n = 0  # the prefix of that order up to the first unit that holds more than white space
        for n, (k, i) in enumerate(zip(order[:allowed].tolist(), seg_of.tolist()), 1):
            u, off = scored.units[i], bounds[i]
            if prompt.segments[i].text[u.starts[k - off]:u.ends[k - off]].strip():
                break
        keep = np.zeros(len(pri), bool)
        keep[order[:n]] = True
        spans = [kept_spans(seg.text, u, keep[bounds[i]:bounds[i + 1]])
                 for i, (seg, u) in enumerate(zip(prompt.segments, scored.units))]
        return spans, assemble(prompt, spans, list(scored.order) if scored.order is not None else None)

    def fit_segment(self, segment: Segment, units: Units, budget_tokens: int) -> str:
        """One segment's highest-priority units whose kept text fits `budget_tokens`."""
        one = Prompt((segment,), (0,))
        return self.fit(one, Scored((units,)), budget_tokens)[1]

    def answer_first(self, prompt: Prompt, scored: Scored, budget_tokens: int,
                     whole: int | None = None) -> tuple[Scored, Shortfall | None, bool]:
        """Extreme rates: the answer before any other word, and a budget too small said plainly.

        Returns (scores to fit, shortfall or None, whether the answer went first). A question
        over the budget is Shortfall("question"). With a method's `Answer` (question-aware
        llmlingua2: its best sentence and that sentence's context), K = `first_below`:
          - kept-whole text (question, instruction, protected) + the sentence over the budget ->
            Shortfall("answer"): what survives of the answer is fragments, and the result says so;
          - budget left after the kept-whole text < K x the tokens of sentence + context -> the
            sentence's units go first, then the context's (in the method's order), then the rest
            by priority: the priorities are lifted in tiers above every other finite one.
        At moderate rates the budget left is many sentences long, so nothing changes. Question 18
        + instruction 24 tokens, budget 85, sentence + context 40, K 2: 43 left < 80 -> answer first.
        `whole`: the tokens of kept-whole text + sentence + context when the caller counted them
        (rate="auto", for its floor); else counted here.
        Not handled: segments with their own rate (structured prompts), fitted per group."""
        segs = prompt.segments
        question = SEPARATOR.join(s.text for s in segs if s.role == "question" and s.text.strip())
        if question:
            q = self.target.count(question)
            if q > budget_tokens:
                return scored, Shortfall("question", q, budget_tokens), False
        a = scored.answer
        if a is None or not len(a.sentence):
            return scored, None, False
        need = self.kept_tokens(prompt, scored, a.sentence)
        shortfall = Shortfall("answer", need, budget_tokens) if need > budget_tokens else None
        if a.first_below <= 0:
            return scored, shortfall, False
        base = self.kept_tokens(prompt, scored, np.zeros(0, np.int64))
        if whole is None:  # rate="auto" has counted it for its floor already
            whole = self.answer_floor(scored, prompt)  # kept-whole text + sentence + context
        if budget_tokens - base >= a.first_below * (whole - base):
            return scored, shortfall, False
        finite = np.concatenate([u.priority[np.isfinite(u.priority)] for u in scored.units])
        if not finite.size:  # everything kept or dropped by rule: nothing to put first
            return scored, shortfall, False
        lo, hi = float(finite.min()), float(finite.max())
        u = scored.units[a.segment]
        pri = u.priority.astype(np.float64).copy()
        # tiers: sentence in [hi + 2, ...) keeping its own order, context in (hi + 0.5, hi + 1]
        # in the order given, everything else as it was (<= hi); +-inf untouched
        s = a.sentence[np.isfinite(pri[a.sentence])]
        pri[s] += 2 * (hi - lo + 1)
        mine = set(a.sentence.tolist())
        c = np.array([k for k in a.context.tolist() if np.isfinite(pri[k]) and k not in mine], np.int64)
        rank = np.arange(len(c), dtype=np.float64)
        if len(c) > 1:  # a value's parts (touching, one priority: whole_values) share their best rank
            run = glued_runs(segs[a.segment].text, u.starts, u.ends, pri)
            best: dict[int, float] = {}
            for i, k in enumerate(c.tolist()):
                best.setdefault(int(run[k]), float(i))
            rank = np.array([best[int(run[k])] for k in c.tolist()])
        pri[c] = hi + 1 - 0.5 * rank / max(len(c), 1)
        # the answer's document keeps its values whole ('owner: john.doe@gmail.com', never
        # 'john.doe@gmail.'): at these budgets a value's last piece is often the one cut
        pri = whole_values(segs[a.segment].text, u.starts, u.ends, pri)
        units = list(scored.units)
        units[a.segment] = Units(u.starts, u.ends, pri)
        return Scored(tuple(units), scored.order, a), shortfall, True

    def kept_tokens(self, prompt: Prompt, scored: Scored, extra: np.ndarray) -> int:
        """Target tokens of the kept-whole units (+inf) plus the units `extra` of the answer's segment."""
        keep = [u.priority == np.inf for u in scored.units]
        keep[scored.answer.segment][extra] = True
        order = list(scored.order) if scored.order is not None else None
        spans = [kept_spans(seg.text, u, k) for seg, u, k in zip(prompt.segments, scored.units, keep)]
        return self.target.count(assemble(prompt, spans, order))

    def answer_floor(self, scored: Scored, prompt: Prompt) -> int:
        """rate="auto" never goes below what answer-first keeps: the kept-whole text, the method's
        best sentence and its context (0 when the method names no answer)."""
        a = scored.answer
        if a is None or not len(a.sentence) or a.first_below <= 0:
            return 0
        return self.kept_tokens(prompt, scored, np.concatenate([a.sentence, a.context]).astype(np.int64))

    def check_auto(self, budget: Budget) -> None:
        if budget.auto and not self.method.auto_rate:
            able = ", ".join(sorted(n for n, m in METHODS.items() if getattr(m, "auto_rate", False)))
            raise InvalidInput(f"rate=\"auto\" needs scores that say how much of the prompt matters (keep "
                               f"probabilities): {able}; method {self.method.name!r} has none, so give it a "
                               f"rate or target_tokens")

    def auto_tokens(self, prompt: Prompt, scored: Scored, threshold: float) -> int:
        """rate="auto": the target tokens of every unit whose priority is at least `threshold` x
        the prompt's highest (must-keep units included): the smallest prompt that holds what the
        scores say matters. Relative, so scores that are unsure everywhere (a vague question:
        every sentence at ~0.25) keep the prompt rather than drop it all.
        Priorities [0.9, 0.2, 0.7] over ' A', ' b', ' C' with threshold 0.5 -> the tokens of 'A C'."""
        finite = [u.priority[np.isfinite(u.priority)] for u in scored.units]
        top = max((float(f.max()) for f in finite if f.size), default=0.0)
        cut = threshold * top if top > 0 else -np.inf
        spans = [kept_spans(seg.text, u, u.priority >= cut) for seg, u in zip(prompt.segments, scored.units)]
        return max(1, self.target.count(assemble(prompt, spans)))

    def compress(self, prompt: Prompt, *, rate: float | str | None = None, target_tokens: int | None = None,
                 options: Options | None = None, progress: Progress | None = None,
                 started: float | None = None, raw=None) -> CompressionResult:
        t0 = time.perf_counter() if started is None else started
        check_progress(progress)
        options = options or self.options
        origin = self.target.count(prompt.text)
        budget = self.budget(prompt, rate, target_tokens, origin)
        scored, floor = None, None
        if budget.auto:  # the method scores first (its scores do not depend on the budget), then the budget
            self.check_auto(budget)
            scored = self.score(prompt, budget, options, progress, raw)
            floor = self.answer_floor(scored, prompt)
            budget = dataclasses.replace(budget, tokens=min(budget.tokens, max(self.auto_tokens(
                prompt, scored, options.auto_threshold), floor)))
        groups = self.rate_groups(prompt, budget) if prompt.has_rates else None
        if groups:  # budget-aware methods plan with the sum of the segments' own budgets
            budget = dataclasses.replace(budget, tokens=sum(b for _, b in groups))
        t1 = time.perf_counter()
        if scored is None:
            scored = self.score(prompt, budget, options, progress, raw)
        t2 = time.perf_counter()
        shortfall, first = None, False
        if not groups:
            scored, shortfall, first = self.answer_first(prompt, scored, budget.tokens, floor)
        spans, text = self.fit_groups(prompt, scored, groups) if groups else self.fit(prompt, scored, budget.tokens)
        if not text.strip():
            spans, text = self.never_empty(prompt, scored, spans, text)
        t3 = time.perf_counter()
        chosen = round(budget.tokens / max(origin, 1), 4) if budget.auto else None  # the rate "auto" chose
        return CompressionResult(
            compressed_prompt=text, origin_tokens=origin, compressed_tokens=self.target.count(text),
            budget_tokens=budget.tokens, requested_rate=chosen if budget.auto else budget.rate, auto_rate=chosen,
            method=self.method.name,
            model=self.method.model_name, target=self.target_name, prompt=prompt, spans=tuple(spans),
            seconds=t3 - t0, price_per_million=self.price, shortfall=shortfall, answer_first=first,
            timings={"prepare": t1 - t0, "score": t2 - t1, "fit": t3 - t2})

    def compress_batch(self, prompts: list[Prompt], *, rate: float | None = None, target_tokens: int | None = None,
                       options: Options | None = None, batch_size: int = 32,
                       progress: Progress | None = None) -> list[CompressionResult]:
        """compress() of each prompt, in order, with the same guarantees. A budget-independent
        method scores up to `batch_size` prompts in one `score_batch` call (llmlingua2 packs
        their chunks into the same encoder batches); budget-aware methods go one by one.
        Every prompt is checked (length) before any is scored, so a bad one fails fast."""
        options = options or self.options
        check_progress(progress)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise InvalidInput(f"batch_size must be a whole number, got {batch_size!r}")
        if batch_size < 1:
            raise InvalidInput(f"batch_size must be at least 1, got {batch_size}")
        origins = [self.target.count(p.text) for p in prompts]
        for k, (p, n) in enumerate(zip(prompts, origins)):
            self.check_length(n, f"prompt {k} has")
            self.check_auto(make_budget(n, rate, target_tokens))  # rate / target checked before any model runs
        out: list[CompressionResult] = []
        for at in range(0, len(prompts), batch_size):
            group = prompts[at:at + batch_size]
            t0 = time.perf_counter()
            if self.method.budget_aware:
                raws = [None] * len(group)
            else:
                raws = self.method.score_batch(list(group), options)
                if len(raws) != len(group):
                    raise MethodError(f"method {self.method.name!r}: score_batch returned {len(raws)} results "
                                      f"for {len(group)} prompts")
            share = (time.perf_counter() - t0) / len(group)  # the batch's scoring time, split evenly
            for p, raw in zip(group, raws):
                out.append(self.compress(p, rate=rate, target_tokens=target_tokens, options=options,
                                         started=time.perf_counter() - share, raw=raw))
            if progress:
                progress(len(out), len(prompts))
        return out

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


def check_progress(progress) -> None:
    """A progress callback is called as progress(done, total) between batches; anything else
    (a string from a config file, a number) is the caller's mistake, named before any work."""
    if progress is not None and not callable(progress):
        raise InvalidInput(f"progress must be a callable progress(done, total) or None, got {type(progress).__name__}")


def enforce(segment: Segment, units: Units, options: Options) -> Units:
    """The method's units with the keep policy applied: must-keep units +inf; with
    drop_consecutive, repeats of one forced token ('....' -> '.') -inf unless protected."""
    forced = must_keep(segment, units.starts, units.ends, options)
    pri = np.where(forced, np.inf, units.priority.astype(np.float64))
    if options.whole_values:
        pri = whole_values(segment.text, units.starts, units.ends, pri)
    if options.drop_consecutive and options.force_tokens and segment.role not in options.kept_roles():
        protected = forced_mask(units.starts, units.ends, segment.text, segment.protected)
        words = [segment.text[s:e].strip() for s, e in zip(units.starts.tolist(), units.ends.tolist())]
        for k in range(1, len(words)):
            if words[k] in options.force_tokens and words[k] == words[k - 1] and not protected[k]:
                pri[k] = -np.inf
    return Units(units.starts, units.ends, pri)


_INNER = re.compile(r"\w[^\w\s]+\w")


def whole_values(text: str, starts: np.ndarray, ends: np.ndarray, pri: np.ndarray) -> np.ndarray:
    """Units that touch without white space and hold punctuation inside ('2024-05-28' as
    ' 2024', '-', '05', '-', '28') share one priority: +inf if any part is forced, else the mean
    of their finite parts. One threshold then keeps the value whole or drops it whole, never
    '20240528'. Priorities [0.9, 0.1, 0.5, 0.1, 0.4] over ' 2024-05-28' -> all 0.4."""
    out = pri.copy()
    n = len(starts)
    k = 0
    while k < n:
        j = k + 1  # the run: units k..j-1, each next one starting right after a non-space character
        while j < n and starts[j] > 0 and not text[starts[j]].isspace() and not text[starts[j] - 1].isspace():
            j += 1
        if j - k > 1 and _INNER.search(text[starts[k]:ends[j - 1]]):
            part = pri[k:j]
            finite = part[np.isfinite(part)]
            if np.isposinf(part).any():
                out[k:j] = np.inf
            elif finite.size:
                out[k:j] = finite.mean()
        k = j
    return out


def _rated(segment: Segment, units: Units, options: Options) -> Units:
    """enforce(), honouring a segment's own rate: at rate 0 nothing is kept (a JSON value under
    "drop"); at any other rate the method's -inf (a context filter, a threshold) becomes the
    lowest finite priority, so the segment still keeps its share, as the caller asked."""
    if segment.rate is None:
        return enforce(segment, units, options)
    if segment.rate == 0:
        return Units(units.starts, units.ends, np.full(len(units.priority), -np.inf))
    pri = units.priority.astype(np.float64)
    finite = pri[np.isfinite(pri)]
    low = finite.min() - 1.0 if finite.size else 0.0
    return enforce(segment, Units(units.starts, units.ends, np.where(pri == -np.inf, low, pri)), options)


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
    a = scored.answer
    if a is not None:
        if not isinstance(a, Answer) or not 0 <= a.segment < len(segs):
            raise MethodError(f"method {name!r}: its answer is not an Answer over one of the {len(segs)} segments")
        n = len(scored.units[a.segment].priority)
        for idx in (a.sentence, a.context):
            idx = np.asarray(idx)
            if idx.size and (idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= n):
                raise MethodError(f"method {name!r}: its answer names units outside segment {a.segment}'s {n}")
    if scored.order is not None and sorted(scored.order) != list(range(len(segs))):
        raise MethodError(f"method {name!r} returned an order that is not a permutation of the {len(segs)} segments")
