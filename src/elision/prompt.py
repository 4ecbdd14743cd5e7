"""Prompt: the user's text as ordered segments with roles, never losing a character.

    >>> p = Prompt.build(context=["Doc one.", "Doc two."], instruction="Answer briefly.",
    ...                  question="Which doc?")
    >>> [s.role for s in p.segments]
    ['instruction', 'context', 'context', 'question']
    >>> p.text
    'Answer briefly.\\n\\nDoc one.\\n\\nDoc two.\\n\\nWhich doc?'

The original prompt is the non-empty segments joined by SEPARATOR (the layout the reference
uses), or by each segment's own `sep` (structured prompts glue the pieces of one text back
together: elision.structured); every extractive method keeps a subsequence of it. A segment may
carry its own keep `rate` (tagged text, JSON policies): the pipeline fits it to that rate
instead of the call's. Protected spans are character
ranges inside a segment that no method may drop: literal strings or regular expressions
given by the caller. Not handled here: chat messages (a later layer maps them to segments).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ._errors import InvalidInput

SEPARATOR = "\n\n"
ROLES = ("instruction", "context", "question")

Span = tuple[int, int]


@dataclass(frozen=True)
class Segment:
    role: str
    text: str
    protected: tuple[Span, ...] = ()
    # None: the call's rate; a number in [0, 1]: this segment keeps about that share of its target
    # tokens, whatever the rest does (0 drops it, e.g. a JSON value under the "drop" policy)
    rate: float | None = None
    sep: str = SEPARATOR  # what joins it to the segment before it (ignored for the first)


@dataclass(frozen=True)
class Prompt:
    segments: tuple[Segment, ...]
    offsets: tuple[int, ...] = field(default=(), compare=False)  # start of each segment in .text

    @property
    def text(self) -> str:
        return "".join((s.sep if i else "") + s.text for i, s in enumerate(self.segments))

    @property
    def has_rates(self) -> bool:
        return any(s.rate is not None for s in self.segments)

    @classmethod
    def from_segments(cls, segments: Sequence[Segment]) -> Prompt:
        """A prompt of ready-made segments (their seps and rates included), offsets computed.
        Segments must be non-empty; that is the caller's check."""
        offsets, pos = [], 0
        for i, s in enumerate(segments):
            pos += len(s.sep) if i else 0
            offsets.append(pos)
            pos += len(s.text)
        return cls(tuple(segments), tuple(offsets))

    def role_segments(self, role: str) -> list[int]:
        return [i for i, s in enumerate(self.segments) if s.role == role]

    @classmethod
    def build(
        cls,
        context: str | Sequence[str] | None = None,
        instruction: str | None = "",
        question: str | None = "",
        protect: Iterable[str | re.Pattern] = (),
    ) -> Prompt:
        """Validate and assemble. Empty contexts are skipped; an all-empty prompt is an error."""
        contexts = _as_contexts(context)
        if isinstance(question, str) and question and not question.strip():
            raise InvalidInput("question is blank (only white space): give a question or leave it out")
        parts = []
        for role, text in [("instruction", instruction or "")] + [("context", c) for c in contexts] + [
            ("question", question or "")
        ]:
            if not isinstance(text, str):
                raise InvalidInput(f"{role} must be a string, got {type(text).__name__}")
            _check_text(text, role)
            if text.strip():
                parts.append((role, text))
        if not parts:
            raise InvalidInput("empty prompt: give a non-empty context, instruction or question")
        patterns = _compile_protect(protect)
        segments, offsets, pos = [], [], 0
        for role, text in parts:
            segments.append(Segment(role, text, protected_spans(text, patterns)))
            offsets.append(pos)
            pos += len(text) + len(SEPARATOR)
        return cls(tuple(segments), tuple(offsets))


def _as_contexts(context) -> list[str]:
    if context is None:
        return []
    if isinstance(context, str):
        return [context]
    if isinstance(context, (list, tuple)):
        for i, c in enumerate(context):
            if not isinstance(c, str):
                raise InvalidInput(f"context[{i}] must be a string, got {type(c).__name__}")
        return list(context)
    raise InvalidInput(f"context must be a string or a list of strings, got {type(context).__name__}")


def _check_text(text: str, role: str) -> None:
    # NUL and other C0 controls (but tab/newline/CR) almost always mean binary input.
    bad = sum(1 for ch in text[:4096] if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    if "\x00" in text or bad > 8:
        raise InvalidInput(f"{role} looks like binary data (control characters); give text")


def _compile_protect(protect: Iterable[str | re.Pattern]) -> list[re.Pattern]:
    if isinstance(protect, (str, re.Pattern)):
        protect = [protect]
    out = []
    for p in protect:
        if isinstance(p, re.Pattern):
            out.append(p)
        elif isinstance(p, str) and p:
            out.append(re.compile(re.escape(p)))
        else:
            raise InvalidInput(f"protect entries must be non-empty strings or compiled regexes, got {p!r}")
    return out


def protected_spans(text: str, patterns: Sequence[re.Pattern]) -> tuple[Span, ...]:
    """Sorted, merged character spans of every match. 'a 12 b 12' with r'\\d+' -> ((2, 4), (7, 9))."""
    spans = sorted((m.start(), m.end()) for p in patterns for m in p.finditer(text) if m.end() > m.start())
    merged: list[list[int]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return tuple((s, e) for s, e in merged)
