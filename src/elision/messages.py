"""Chat conversations: compress the history, keep what frames the next answer, return the same
messages in the same format.

    >>> c = Compressor("llmlingua2")
    >>> r = c.compress_messages(messages, rate=0.4)          # policy="stable": cache-friendly
    >>> r.messages                    # same roles, same order, same keys; shorter contents
    >>> r.origin_tokens, r.compressed_tokens, r.rate

Two policies.

`policy="stable"` (the default; what the proxy uses): append-only and deterministic, so a
provider's prompt cache keeps hitting. Each tool / function output and each assistant message
of at least `min_tokens` target tokens is compressed to `rate` of its own tokens, as a pure
function of its own text, the text of the latest user message before it (the question
question-aware methods condition on; `condition="none"`: no question) and the settings: never of
later messages, of the conversation's length or of the process. So turn N+1's request starts
with the exact bytes of turn N's, on any replica, and a message compressed once is looked up in
the pipeline's bounded memo at the next turn (each turn costs time in proportion to its new
text). `hot_tokens` > 0 keeps the newest compressible messages verbatim until they add up to
that many tokens, then compresses the whole block at once (the cache breaks once per block
instead of never; the current turn's text stays whole meanwhile). System / developer and user
messages stay verbatim (add "user" to `roles` to compress long user messages too). A record (YAML
list item, blank-line block) that an earlier message holds verbatim is compressed without the
keep rules (`repeats`, default on: its values are in the conversation already). Each message
is scored alone, so the bytes do not depend on what it was batched with; see
docs/cache.md for what else they depend on (the model, its precision, the CPU's instruction set)
and the measurements behind the defaults.

`policy="age"` (single-shot use: one request, no cache to keep): every system / developer
message and the latest user message (the question) kept verbatim, plus the `keep_recent` most
recent compressible messages; older user and assistant turns and tool outputs compressed, older
ones harder: message j counted from the newest compressible one keeps about `c * age_decay**j`
of its tokens, with c solved so that the whole conversation lands on the budget (`rate` or
`target_tokens`). Within each message the method decides which words go (one scoring pass over
the whole history, conditioned on the latest question, so longllmlingua can also drop
irrelevant turns outright). Every message changes when the conversation grows: a prefix cache
never hits.

Both: everything but the text of `content` passes through untouched: names, tool_call_ids,
tool_calls, image parts; an assistant message whose content is None stays None. Token counts
are of message texts in the target tokenizer (the per-message framing a chat API adds is not
counted).

Not handled: compressing inside JSON tool arguments (tool_calls stay as they are), and
multimodal parts other than text (passed through).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ._errors import InvalidInput
from .budget import AUTO, make_budget
from .methods.base import Scored
from .prompt import SEPARATOR, Prompt
from .result import TokenCounts

COMPRESSIBLE_ROLES = ("user", "assistant", "tool", "function")


@dataclass(frozen=True)
class MessagesResult(TokenCounts):
    messages: list[dict]  # the conversation, compressed, in the caller's format
    origin_tokens: int  # all message texts, target tokenizer
    compressed_tokens: int
    budget_tokens: int
    requested_rate: float | None
    method: str
    model: str | None
    target: str
    compressed: tuple[int, ...] = ()  # indices of the messages that were compressible
    per_message: tuple[tuple[int, int], ...] = field(default=(), repr=False)  # (origin, compressed) tokens
    seconds: float = 0.0
    policy: str = "stable"
    recall: str = ""  # stable policy with recall_tokens: the excerpts appended as a last user message
    reused: int = 0  # stable policy: messages whose compression came from the memo (earlier turns)
    auto: bool = False  # rate="auto": each compressed message kept what its own scores keep

    def to_dict(self) -> dict:
        return {"messages": self.messages, "origin_tokens": self.origin_tokens,
                "compressed_tokens": self.compressed_tokens, "budget_tokens": self.budget_tokens,
                "requested_rate": self.requested_rate, "rate": self.rate, "saved_tokens": self.saved_tokens,
                "method": self.method, "model": self.model, "target": self.target,
                "compressed_messages": list(self.compressed), "seconds": self.seconds, "policy": self.policy,
                "reused_messages": self.reused, "recall": self.recall, "auto": self.auto}


@dataclass
class _Piece:  # one text of one message: its content, or one text part of a list content
    message: int
    part: int | None  # None: content is a string
    text: str


def _pieces(messages: Sequence[Mapping]) -> list[_Piece]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InvalidInput(f"messages must be a list of {{'role': ..., 'content': ...}} objects, "
                           f"got {type(messages).__name__}")
    if not messages:
        raise InvalidInput("messages is empty: nothing to compress")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise InvalidInput(f"messages[{i}] must be an object with 'role' and 'content', got {type(m).__name__}")
        role = m.get("role")
        if not isinstance(role, str) or not role:
            raise InvalidInput(f"messages[{i}] has no 'role'")
        content = m.get("content")
        if content is None:
            if role != "assistant" and role != "function" and "tool_calls" not in m:
                raise InvalidInput(f"messages[{i}] ({role}) has no 'content'")
        elif isinstance(content, str):
            out.append(_Piece(i, None, content))
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                    raise InvalidInput(f"messages[{i}].content[{j}] must be an object with a 'type'")
                if part["type"] == "text":
                    if not isinstance(part.get("text"), str):
                        raise InvalidInput(f"messages[{i}].content[{j}] is a text part without a 'text' string")
                    out.append(_Piece(i, j, part["text"]))
        else:
            raise InvalidInput(f"messages[{i}].content must be a string, a list of parts or null, "
                               f"got {type(content).__name__}")
    return out


def age_rates(tokens: Sequence[int], ages: Sequence[int], budget: float, decay: float) -> np.ndarray:
    """Per-piece keep rates min(1, c * decay**age), c solved so sum(rate * tokens) = budget.
    tokens [100, 100], ages [1, 0], budget 150, decay 0.5 -> [0.5, 1.0]"""
    t = np.asarray(tokens, float)
    w = decay ** np.asarray(ages, float)
    if budget >= t.sum():
        return np.ones(len(t))
    if budget <= 0 or not len(t):
        return np.zeros(len(t))
    lo, hi = 0.0, 1.0 / max(w.min(), 1e-12)
    for _ in range(60):
        mid = (lo + hi) / 2
        if (np.minimum(1.0, mid * w) * t).sum() > budget:
            hi = mid
        else:
            lo = mid
    return np.minimum(1.0, lo * w)


POLICIES = ("stable", "age")
_UNSET = object()  # an argument not given (None is a value, and a wrong one)
STABLE_ROLES = ("assistant", "tool", "function")
CONDITIONS = ("question", "none")
# the stable policy's keep policy, unless a call sets it: what later questions ask of a tool
# output is mostly its values, numbers and names (benchmarks/bench_cache.py: facts kept 0.77 ->
# 0.905 with whole values and digits, -> 0.916 with names too, at rate 0.4)
STABLE_OPTIONS = {"whole_values": True, "force_digits": True, "force_names": True, "force_ids": True}


def compress_messages(pipeline, messages: Sequence[Mapping], *, policy: str = "stable", rate: float | None = None,
                      target_tokens: int | None = None, age_decay=_UNSET, keep_recent=_UNSET,
                      hot_tokens: int = 0, min_tokens: int = 64, roles: Sequence[str] = STABLE_ROLES,
                      condition: str = "none", recall_tokens: int = 256, repeats: bool = True, protect: Iterable = (),
                      progress=None, **options) -> MessagesResult:
    """Compressor.compress_messages: see the module docstring. `pipeline` is the compressor's
    elision.pipeline.Pipeline, so every keep guarantee holds. policy="stable" takes `rate`,
    `hot_tokens`, `min_tokens`, `roles`, `condition`, `recall_tokens` and `repeats`; policy="age"
    takes `rate` or `target_tokens`, `age_decay` (0.75) and `keep_recent` (0)."""
    if not isinstance(repeats, bool):
        raise InvalidInput(f"repeats must be true or false, got {repeats!r}")
    if policy not in POLICIES:
        raise InvalidInput(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if policy == "age":
        for name, value in (("hot_tokens", hot_tokens != 0), ("min_tokens", min_tokens != 64),
                            ("roles", tuple(roles) != STABLE_ROLES), ("condition", condition != "none"),
                            ("recall_tokens", recall_tokens != 256), ("repeats", not repeats)):
            if value:
                raise InvalidInput(f"{name} belongs to policy='stable'; policy='age' takes age_decay and keep_recent")
        return _compress_age(pipeline, messages, rate=rate, target_tokens=target_tokens,
                             age_decay=0.75 if age_decay is _UNSET else age_decay,
                             keep_recent=0 if keep_recent is _UNSET else keep_recent, protect=protect,
                             progress=progress, **options)
    if age_decay is not _UNSET or keep_recent is not _UNSET:
        raise InvalidInput("age_decay and keep_recent belong to policy='age' (one request, no prompt cache to keep); "
                           "policy='stable' keeps the newest text whole with hot_tokens")
    if target_tokens is not None:
        raise InvalidInput("policy='stable' compresses each message to `rate` of its own tokens, so that earlier "
                           "messages never change; a whole-conversation target_tokens needs policy='age'")
    return _compress_stable(pipeline, messages, rate=rate, hot_tokens=hot_tokens, min_tokens=min_tokens,
                            roles=roles, condition=condition, recall_tokens=recall_tokens, repeats=repeats,
                            protect=protect, progress=progress, **options)


def _compress_age(pipeline, messages: Sequence[Mapping], *, rate: float | None, target_tokens: int | None,
                  age_decay: float, keep_recent: int, protect: Iterable, progress, **options) -> MessagesResult:
    if isinstance(age_decay, bool) or not isinstance(age_decay, (int, float)) or not 0 < age_decay <= 1:
        raise InvalidInput(f"age_decay must be a number in (0, 1], got {age_decay!r}")
    if isinstance(keep_recent, bool) or not isinstance(keep_recent, int) or keep_recent < 0:
        raise InvalidInput(f"keep_recent must be a whole number >= 0, got {keep_recent!r}")
    t0 = time.perf_counter()
    opts = pipeline.resolve_options(options)
    pieces = _pieces(messages)
    roles = [m["role"] for m in messages]
    users = [i for i, r in enumerate(roles) if r == "user"]
    last_user = users[-1] if users else None
    squeezable = [p for p in pieces if roles[p.message] in COMPRESSIBLE_ROLES and p.message != last_user
                  and p.text.strip()]
    recent = sorted({p.message for p in squeezable}, reverse=True)[:keep_recent]
    squeezable = [p for p in squeezable if p.message not in recent]
    sq_msgs = tuple(sorted({p.message for p in squeezable}))
    question = SEPARATOR.join(p.text for p in pieces if p.message == last_user and p.text.strip())
    target = pipeline.target
    count = [target.count(p.text) for p in pieces]
    origin = sum(count)
    pipeline.check_length(origin, "messages hold")
    budget = make_budget(max(origin, 1), rate, target_tokens)
    if budget.auto:
        raise InvalidInput('rate="auto" works with policy="stable" (each message keeps what its own scores '
                           'keep); policy="age" fits the whole history to a number: give a rate or target_tokens')
    new_text = {id(p): p.text for p in pieces}
    if squeezable:
        sq_ids = {id(p) for p in squeezable}
        fixed = sum(c for p, c in zip(pieces, count) if id(p) not in sq_ids)
        sq_count = [c for p, c in zip(pieces, count) if id(p) in sq_ids]
        # one scoring pass over the whole history; the latest user turn is the question
        prompt = Prompt.build([p.text for p in squeezable], "", question, protect)
        ctx = prompt.role_segments("context")  # one per squeezable piece (all are non-empty)
        seg_budget = pipeline.budget(prompt, None, max(1, budget.tokens - fixed + target.count(question)))
        try:
            scored = pipeline.score(prompt, seg_budget, opts, progress)  # progress may cancel (the service)
        except InvalidInput as e:
            if question:
                raise
            raise InvalidInput(f"{pipeline.method.name} compresses a conversation toward its latest user "
                               f"message, and these messages have none ({e})") from e
        units = scored.units
        age = {m: k for k, m in enumerate(reversed(sq_msgs))}  # 0 = newest compressible message
        allowed = [bool((units[i].priority > -np.inf).any()) for i in ctx]
        toks = [c if a else 0 for c, a in zip(sq_count, allowed)]  # whole-dropped pieces take no budget
        rates = age_rates(toks, [age[p.message] for p in squeezable], budget.tokens - fixed, age_decay)
        for p, i, r, c in zip(squeezable, ctx, rates, sq_count):
            new_text[id(p)] = pipeline.fit_segment(prompt.segments[i], units[i], int(r * c))
    texts = [new_text[id(p)] for p in pieces]
    new_count = [c if t == p.text else target.count(t) for p, c, t in zip(pieces, count, texts)]
    return MessagesResult(
        messages=_rebuild(messages, pieces, texts), origin_tokens=origin, compressed_tokens=sum(new_count),
        budget_tokens=budget.tokens, requested_rate=budget.rate, method=pipeline.method.name,
        model=pipeline.method.model_name, target=pipeline.target_name, compressed=sq_msgs,
        per_message=_per_message(len(messages), pieces, count, new_count),
        seconds=time.perf_counter() - t0, policy="age")


def _rebuild(messages: Sequence[Mapping], pieces: list[_Piece], texts: Sequence[str]) -> list[dict]:
    """A copy of the caller's messages with each piece's text replaced (every other key as it was)."""
    out = copy.deepcopy([dict(m) for m in messages])
    for p, text in zip(pieces, texts):
        if p.part is None:
            out[p.message]["content"] = text
        else:
            out[p.message]["content"][p.part]["text"] = text
    return out


def _per_message(n: int, pieces: list[_Piece], before: Sequence[int], after: Sequence[int]) -> tuple:
    """(origin, compressed) tokens of each of the n messages, summed over its pieces."""
    per = [(0, 0)] * n
    for p, a, b in zip(pieces, before, after):
        per[p.message] = (per[p.message][0] + a, per[p.message][1] + b)
    return tuple(per)


def _whole_number(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInput(f"{name} must be a whole number >= {low}, got {value!r}")
    return value


def _compress_stable(pipeline, messages: Sequence[Mapping], *, rate: float | None, hot_tokens: int,
                     min_tokens: int, roles: Sequence[str], condition: str, recall_tokens: int, protect: Iterable,
                     repeats: bool, progress, **options) -> MessagesResult:
    """policy='stable': see the module docstring. Worked example, rate 0.4, hot_tokens 0:
    [system S, user Q1, assistant A1 (30 tokens), tool T1 (600)] -> T1 compressed to ~240
    tokens toward Q1, A1 under min_tokens kept; appending [user Q2, tool T2] later gives the
    same bytes for S..T1 and T2 compressed toward Q2."""
    _whole_number(hot_tokens, "hot_tokens", 0)
    _whole_number(min_tokens, "min_tokens", 1)
    _whole_number(recall_tokens, "recall_tokens", 0)
    if isinstance(roles, str) or not all(isinstance(r, str) for r in roles):
        raise InvalidInput(f"roles must be a list of role names such as {list(STABLE_ROLES)}, got {roles!r}")
    if condition not in CONDITIONS:
        raise InvalidInput(f"condition must be one of {', '.join(CONDITIONS)}, got {condition!r}")
    # the rate's own checks, (0, 1] or "auto"; 0.5 when not given. "auto": each message keeps what
    # its own scores say matters (a pure function of the message: cache-stable as a number is)
    asked = make_budget(100, rate, None)
    pipeline.check_auto(asked)  # a method that cannot choose a rate refuses "auto"
    auto = asked.auto
    rate = AUTO if auto else asked.rate
    t0 = time.perf_counter()
    # tool outputs are records of values: numbers, dates and names kept, and never glued
    # ('2024-05-28' -> '20240528'); see STABLE_OPTIONS
    opts = pipeline.resolve_options({**STABLE_OPTIONS, **options})
    pieces = _pieces(messages)
    target = pipeline.target
    memo = pipeline.memo
    protect = tuple(protect)
    settings_key = repr((pipeline.method.name, pipeline.method.model_name, pipeline.target_name, opts, rate,
                         condition, tuple(_pattern_key(x) for x in protect)))
    count = [_count(memo, target, p.text) for p in pieces]
    origin = sum(count)
    pipeline.check_length(origin, "messages hold")
    roles = tuple(roles)
    # which pieces are compressed: candidates in order, closed in blocks of hot_tokens (0: each on arrival)
    candidates = [k for k, p in enumerate(pieces) if messages[p.message]["role"] in roles and p.text.strip()
                  and count[k] >= min_tokens]
    frozen, tail, tail_tokens = [], [], 0
    for k in candidates:
        tail.append(k)
        tail_tokens += count[k]
        if tail_tokens >= hot_tokens:
            frozen += tail
            tail, tail_tokens = [], 0
    question_of = _preceding_questions(messages, pieces) if condition == "question" else {}
    # records an earlier message holds verbatim lose the keep rules (their values are there already)
    repeated = _repeats(memo, [p.text for p in pieces]) if repeats else [()] * len(pieces)
    new_text = [p.text for p in pieces]
    new_count = list(count)
    reused = 0
    for n, k in enumerate(frozen):
        p = pieces[k]
        question = question_of.get(p.message, "")
        key = hashlib.sha256("\x00".join((settings_key, question, repr(repeated[k]), p.text))
                             .encode("utf-8", "surrogatepass")).digest()
        reused += ("stable", key) in memo

        def compute(p=p, k=k, question=question):
            try:
                text = _compress_one(pipeline, p.text, question, protect, rate, count[k], opts, repeated[k])
            except InvalidInput as e:
                raise InvalidInput(f"messages[{p.message}]: {e}") from e
            return text, target.count(text)

        new_text[k], new_count[k] = memo.get(("stable", key), compute)
        if progress:
            progress(n + 1, len(frozen))  # the service's time limit can stop between two messages
    out = _rebuild(messages, pieces, new_text)
    users = [p.text for p in pieces if messages[p.message]["role"] == "user" and p.text.strip()]
    recall = ""
    if recall_tokens and users and frozen and messages[-1]["role"] in ("user", "tool", "function"):
        # never more than half of what compression removed: a request never grows
        budget = min(recall_tokens, (sum(count) - sum(new_count)) // 2)
        recall = recall_excerpts(users[-1], [(pieces[k].text, new_text[k], repeated[k]) for k in frozen], budget,
                                 target, memo)
        if recall:
            out.append({"role": "user", "content": recall})
    return MessagesResult(
        messages=out, origin_tokens=origin, compressed_tokens=sum(new_count) + target.count(recall), recall=recall,
        budget_tokens=origin - sum(count[k] for k in frozen) + sum(
            new_count[k] if auto else max(1, round(rate * count[k])) for k in frozen),
        requested_rate=None if auto else rate, auto=auto, method=pipeline.method.name,
        model=pipeline.method.model_name,
        target=pipeline.target_name, compressed=tuple(sorted({pieces[k].message for k in frozen})),
        per_message=_per_message(len(messages), pieces, count, new_count),
        seconds=time.perf_counter() - t0, policy="stable", reused=reused)


def _compress_one(pipeline, text: str, question: str, protect: tuple, rate: float | str, tokens: int, opts,
                  unforced: tuple = ()) -> str:
    """One message alone (its scores never depend on what else is in the request), toward
    `question`, fitted to round(rate x its tokens), or with rate="auto" to what its scores keep.
    `unforced`: spans of it where the keep rules do not apply (records repeated from earlier)."""
    prompt = Prompt.build([text], "", question, protect)
    (ctx,) = prompt.role_segments("context")
    if unforced:
        segs = list(prompt.segments)
        segs[ctx] = dataclasses.replace(segs[ctx], unforced=tuple(unforced))
        prompt = Prompt(tuple(segs), prompt.offsets)
    origin = pipeline.target.count(prompt.text)  # the text and its question, counted once
    if rate == AUTO:
        scored = pipeline.score(prompt, pipeline.budget(prompt, AUTO, None, origin), opts)
        one = Prompt((prompt.segments[ctx],), (0,))
        keep = min(tokens, pipeline.auto_tokens(one, Scored((scored.units[ctx],)), opts.auto_threshold))
    else:
        keep = max(1, round(rate * tokens))
        scored = pipeline.score(prompt, pipeline.budget(prompt, None, origin - tokens + keep, origin), opts)
    return pipeline.fit_segment(prompt.segments[ctx], scored.units[ctx], keep)


def _preceding_questions(messages: Sequence[Mapping], pieces: list[_Piece]) -> dict[int, str]:
    """message index -> the text of the latest user message before it ('' before the first)."""
    texts: dict[int, list[str]] = {}
    for p in pieces:
        if messages[p.message]["role"] == "user" and p.text.strip():
            texts.setdefault(p.message, []).append(p.text)
    out, last = {}, ""
    for i, m in enumerate(messages):
        out[i] = last
        if i in texts:
            last = SEPARATOR.join(texts[i])
    return out


def _pattern_key(x) -> str:
    return f"re:{x.pattern}:{x.flags}" if hasattr(x, "pattern") else f"s:{x}"


def _count(memo, target, text: str) -> int:
    """Target tokens of `text`, memoized by content (a long history is counted once, not per turn)."""
    if len(text) < 256:
        return target.count(text)
    key = ("count", hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    return memo.get(key, lambda: target.count(text))


def _record_spans(text: str, most: int = 3000) -> list[tuple[int, int]]:
    """(start, end) of each record of `text`: a YAML list item or a blank-line separated block
    (so a date stays with the subject that names it), at most `most` characters, its white-space
    lines left out. 'a\n\n- b\n  c' -> [(0, 1), (3, 10)]"""
    out: list[tuple[int, int]] = []
    start, end, size, at = None, 0, 0, 0
    for raw in text.splitlines(keepends=True):
        line = raw.splitlines()[0]
        here, at = at, at + len(raw)
        if not line.strip() or line.startswith("- ") or size + len(line) > most:
            if start is not None:
                out.append((start, end))
            start, size = None, 0
        if not line.strip():
            continue
        if start is None:
            start = here
        end, size = here + len(line), size + len(line)
    if start is not None:
        out.append((start, end))
    return out


def _record_pieces(record: str) -> list[str]:
    """One record's pieces (what recall excerpts): its lines, long lines cut at sentence ends.
    '- subject: A\n  date: 1 May' -> ['- subject: A', '  date: 1 May']"""
    block: list[str] = []
    for line in record.splitlines():
        block += [x for x in _SENTENCE_END.split(line) if x.strip()] if len(line) > 300 else [line]
    return block


# a record at least this long (characters) that an earlier message (or an earlier record of the
# same message) holds verbatim is compressed without the keep rules: its values are in the
# conversation already. An agent re-lists the same e-mails, files and events: 27-31% of the
# AgentDojo workspace sessions' tool text is such repeats (benchmarks.md, "Repeated records")
REPEAT_MIN_CHARS = 80


def _repeats(memo, texts: Sequence[str]) -> list[tuple[tuple[int, int], ...]]:
    """For each text in conversation order, the spans of its records (REPEAT_MIN_CHARS or longer)
    that an earlier text, or an earlier record of its own, holds verbatim (exact record text).
    A pure function of the text and what precedes it: append-only holds. Each text's records
    are found once (memoized by content)."""
    seen: set[bytes] = set()
    out = []
    for text in texts:
        mine = []
        if len(text) >= REPEAT_MIN_CHARS:
            key = ("records", hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
            found = memo.get(key, lambda text=text: _Records(text))
            for span, digest in zip(found.spans, found.keys):
                if digest in seen:
                    mine.append(span)
                seen.add(digest)
        out.append(tuple(mine))
    return out


class _Records:
    """A text's records of REPEAT_MIN_CHARS or more: spans and digests of their text."""

    __slots__ = ("spans", "keys", "nbytes")

    def __init__(self, text: str):
        self.spans = [(s, e) for s, e in _record_spans(text) if e - s >= REPEAT_MIN_CHARS]
        self.keys = [hashlib.sha256(text[s:e].encode("utf-8", "surrogatepass")).digest() for s, e in self.spans]
        self.nbytes = 200 + 160 * len(self.spans)


# recall keeps a piece only if it scores at least this share of its lane's best (own BM25 +
# its record's, each relative to the best; chosen on bench_cache.py's sessions of seed 0 among
# 0 / 0.6 / 0.75 / 0.85 / 0.95 with pieces ranked by score alone, confirmed on seed 1: docs/cache.md)
RECALL_CUT = 0.75
RECALL_HEADER = "[Verbatim excerpts of the shortened messages above]"  # 10 o200k tokens (was 19: billed per request)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_QUESTION_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


class _Removed:
    """What recall needs of one compressed message, read once: its records' word postings and,
    for the pieces compression removed, their text, record, word postings and target tokens.
    Memoized by content (original + compressed), so a request re-reads only its new messages
    and recall's time follows the new text, not the history."""

    __slots__ = ("n_records", "rec_post", "rec_len", "pieces", "piece_rec", "piece_post", "piece_len", "sizes",
                 "nbytes")

    def __init__(self, original: str, compressed: str, target, repeated: tuple = ()):
        from .rankers import postings

        spans = _record_spans(original)
        records = [_record_pieces(original[s:e]) for s, e in spans]
        pieces, owner = [], []
        for r, (span, rec) in enumerate(zip(spans, records)):
            if span in repeated:  # an earlier message holds this record: its pieces are indexed there
                continue
            for x in rec:
                if len(x.strip()) > 3 and x.strip() not in compressed:
                    pieces.append(x)
                    owner.append(r)
        self.n_records = len(records)
        self.rec_post, self.rec_len = postings(["\n".join(rec) for rec in records])
        self.pieces = pieces
        self.piece_rec = np.array(owner, np.int64)
        self.piece_post, self.piece_len = postings(pieces)
        self.sizes = np.array([target.count(x) + 1 for x in pieces], np.int64)
        self.nbytes = 4 * len(original) + 64 * (len(self.rec_post) + len(self.piece_post)) + 256


def recall_excerpts(question: str, texts: Sequence[tuple], budget: int, target, memo=None) -> str:
    """What the current question needs of the text compression removed, verbatim: pieces (lines,
    long ones cut at sentence ends) of the compressed messages' ORIGINAL texts that are not
    already in their compressed text, ranked by BM25 against `question`, each piece's own score
    plus its record's (so the date line of the one email the question names ranks high although
    it shares no word with the question), best first up to `budget` target tokens, then put
    back in conversation order. It goes after everything else (a last user message), so the
    next turn's request, which no longer holds it, still starts with this one's cached prefix:
    it costs its own tokens once, at the uncached price. `memo` (a BytesLRU) keeps each
    message's index between requests. `texts`: (original, compressed) or (original, compressed,
    spans of its records repeated from an earlier text: their pieces are that text's candidates).
    'When was the email "Rent" sent?' over [('- subject: Rent\n  date: 4 May', '- subject: Rent')]
    -> RECALL_HEADER + '\n' + '  date: 4 May'"""
    from .rankers import bm25_scores, terms_of

    def index(original: str, compressed: str, repeated: tuple = ()) -> _Removed:
        if memo is None:
            return _Removed(original, compressed, target, repeated)
        key = ("recall", hashlib.sha256("\x00".join((original, compressed, repr(repeated)))
                                        .encode("utf-8", "surrogatepass")).digest())
        return memo.get(key, lambda: _Removed(original, compressed, target, repeated))

    parts = [index(*t) for t in texts]
    # one lane per sentence of the question that has words of its own: a message that asks two
    # things ('Remind me of the delivery thread. And what event did I host?') gets excerpts for
    # both, in turn, instead of the one whose words outnumber the other's
    lanes = []
    for sentence in _QUESTION_SPLIT.split(question):
        terms = terms_of(sentence)
        if terms and terms not in lanes:
            lanes.append(terms)
    if not lanes or not any(len(p.pieces) for p in parts):
        return ""
    rec_at = np.cumsum([0] + [p.n_records for p in parts])
    piece_at = np.cumsum([0] + [len(p.pieces) for p in parts])
    rec_parts = [(int(o), p.rec_post) for o, p in zip(rec_at, parts)]
    piece_parts = [(int(o), p.piece_post) for o, p in zip(piece_at, parts)]
    rec_len = np.concatenate([p.rec_len for p in parts])
    piece_len = np.concatenate([p.piece_len for p in parts])
    owner = np.concatenate([p.piece_rec + o for o, p in zip(rec_at, parts)])
    pieces = [x for p in parts for x in p.pieces]
    sizes = np.concatenate([p.sizes for p in parts])
    orders = []
    for terms in lanes:
        whole = bm25_scores(terms, rec_parts, rec_len)
        if whole.max() <= 0:
            continue
        own = bm25_scores(terms, piece_parts, piece_len)
        scores = own / max(own.max(), 1e-9) + whole[owner] / whole.max()
        # best first, and only pieces within RECALL_CUT of the lane's best: a question that
        # matches one record strongly pays for that record, not for the budget's worth of weak
        # matches after it
        order = np.argsort(-scores, kind="stable")
        orders.append(order[scores[order] >= RECALL_CUT * scores.max()].tolist())
    chosen, used, taken = [], target.count(RECALL_HEADER), set()
    at = [0] * len(orders)
    while any(a < len(o) for a, o in zip(at, orders)):
        for j, order in enumerate(orders):  # each lane's next best piece that fits, in turn
            while at[j] < len(order):
                i = order[at[j]]
                at[j] += 1
                if i not in taken and used + int(sizes[i]) <= budget:
                    chosen.append(i)
                    taken.add(i)
                    used += int(sizes[i])
                    break
    if not chosen:
        return ""
    seen, lines = set(), []
    for i in sorted(chosen):
        if pieces[i] not in seen:
            seen.add(pieces[i])
            lines.append(pieces[i])
    return RECALL_HEADER + "\n" + "\n".join(lines)
