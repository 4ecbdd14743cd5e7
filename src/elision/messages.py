"""Chat conversations: compress the history, keep what frames the next answer, return the same
messages in the same format.

    >>> c = Compressor("longllmlingua")
    >>> r = c.compress_messages(messages, rate=0.4)
    >>> r.messages                    # same roles, same order, same keys; shorter contents
    >>> r.origin_tokens, r.compressed_tokens, r.rate

What is kept verbatim: every system / developer message and the latest user message (the
question the conversation is heading to; question-aware methods condition on it), plus the
`keep_recent` most recent compressible messages. What is compressed: older user and assistant
turns and tool / function outputs (the bulk of agent logs), older ones harder: message j
counted from the newest compressible one keeps about `c * age_decay**j` of its tokens, with c
solved so that the whole conversation lands on the budget. Within each message the method
decides which words go (one scoring pass over the whole history, so longllmlingua can also
drop irrelevant turns outright). Everything but the text of `content` passes through
untouched: names, tool_call_ids, tool_calls, image parts; an assistant message whose content
is None stays None. Token counts are of message texts in the target tokenizer (the per-message
framing a chat API adds is not counted).

Not handled: compressing inside JSON tool arguments (tool_calls stay as they are), and
multimodal parts other than text (passed through).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ._errors import InvalidInput
from .budget import make_budget
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

    def to_dict(self) -> dict:
        return {"messages": self.messages, "origin_tokens": self.origin_tokens,
                "compressed_tokens": self.compressed_tokens, "budget_tokens": self.budget_tokens,
                "requested_rate": self.requested_rate, "rate": self.rate, "saved_tokens": self.saved_tokens,
                "method": self.method, "model": self.model, "target": self.target,
                "compressed_messages": list(self.compressed), "seconds": self.seconds}


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


def compress_messages(pipeline, messages: Sequence[Mapping], *, rate: float | None = None,
                      target_tokens: int | None = None, age_decay: float = 0.75, keep_recent: int = 0,
                      protect: Iterable = (), progress=None, **options) -> MessagesResult:
    """Compressor.compress_messages: see the module docstring. `pipeline` is the compressor's
    elision.pipeline.Pipeline: the history is scored once through it (so every keep guarantee
    holds), then each message is fitted to its own budget."""
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
    out = copy.deepcopy([dict(m) for m in messages])
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
    new_count = []
    for p, c in zip(pieces, count):
        text = new_text[id(p)]
        new_count.append(c if text == p.text else target.count(text))
        if p.part is None:
            out[p.message]["content"] = text
        else:
            out[p.message]["content"][p.part]["text"] = text
    per = {}
    for p, c, n in zip(pieces, count, new_count):
        a, b = per.get(p.message, (0, 0))
        per[p.message] = (a + c, b + n)
    return MessagesResult(
        messages=out, origin_tokens=origin, compressed_tokens=sum(new_count), budget_tokens=budget.tokens,
        requested_rate=budget.rate, method=pipeline.method.name, model=pipeline.method.model_name,
        target=pipeline.target_name, compressed=sq_msgs,
        per_message=tuple(per.get(i, (0, 0)) for i in range(len(messages))),
        seconds=time.perf_counter() - t0)
