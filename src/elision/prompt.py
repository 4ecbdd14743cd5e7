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
            check_text(text, role)
            if text.strip():
                parts.append((role, text))
        if not parts:
            raise InvalidInput("empty prompt: give a non-empty context, instruction or question")
        protector = Protector(protect)  # every entry in one matcher, built once for all segments
        segments, offsets, pos = [], [], 0
        for role, text in parts:
            segments.append(Segment(role, text, protector.spans(text)))
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


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(text: str, role: str) -> None:
    """InvalidInput for text that is not text: binary data, lone surrogates. `role` names it."""
    # NUL and other C0 controls (but tab/newline/CR) almost always mean binary input.
    bad = sum(1 for ch in text[:4096] if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    if "\x00" in text or bad > 8:
        raise InvalidInput(f"{role} looks like binary data (control characters); give text")
    # a lone UTF-16 half (JSON's "\ud800") is no character: no tokenizer, encoder or upstream takes it
    m = _SURROGATE.search(text)
    if m:
        raise InvalidInput(f"{role} holds a lone surrogate (U+{ord(m.group()):04X}) at character {m.start()}, "
                           "which is not text; fix the encoding of the input")


_check_text = check_text  # the old private name (elision.structured still imports it)


class Protector:
    """Every protect entry as one matcher, so a prompt of many segments and many entries costs
    one pass per segment, not one per (segment, entry): literal strings become one trie regex in
    a lookahead, which finds the longest literal starting at each position (overlapping matches
    included), and regexes are searched one by one (a caller gives few of those).

        >>> Protector(["12", "123", re.compile(r"x+")]).spans("a 1234 xx")
        ((2, 5), (7, 9))

    Not handled: a regex's overlapping matches (its own finditer decides, as before)."""

    def __init__(self, protect: Iterable[str | re.Pattern] | Protector = ()):
        if isinstance(protect, Protector):  # already built (a caller passing its matcher on)
            self.words, self.literals, self.regexes = protect.words, protect.literals, list(protect.regexes)
            return
        if isinstance(protect, (str, re.Pattern)):
            protect = [protect]
        elif not isinstance(protect, Iterable) or isinstance(protect, (bytes, dict)):
            raise InvalidInput(f"protect must be a string, a compiled regex or a list of them, "
                               f"got {type(protect).__name__}")
        literals, self.regexes = set(), []
        for p in protect:
            if isinstance(p, re.Pattern):
                self.regexes.append(p)
            elif isinstance(p, str) and p:
                literals.add(p)
            else:
                raise InvalidInput(f"protect entries must be non-empty strings or compiled regexes, got {p!r}")
        self.words, self.literals = sorted(literals), None
        if literals:
            try:
                self.literals = re.compile("(?=(" + _trie_regex(literals) + "))")
            except (RecursionError, OverflowError, re.error):  # nesting past sre's depth: one by one
                self.regexes += [re.compile(re.escape(w)) for w in self.words]

    def spans(self, text: str) -> tuple[Span, ...]:
        spans = [(m.start(), m.end(1)) for m in self.literals.finditer(text)] if self.literals else []
        return merge_spans(spans + [(m.start(), m.end()) for p in self.regexes for m in p.finditer(text)
                               if m.end() > m.start()])


def _trie_regex(words: Iterable[str]) -> str:
    """One regex matching the longest of `words` at a position: a trie written out, shared
    prefixes once, so matching costs the length of the match, not the number of words.
    ['ab', 'abc', 'b'] -> '(?:ab(?:c)?|b)' (built without recursion: a word may be long)."""
    trie: dict = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}  # end of a word
    regex: dict[int, str] = {}
    stack = [(trie, False)]
    while stack:  # post-order: children first
        node, ready = stack.pop()
        if not ready:
            stack.append((node, True))
            stack.extend((child, False) for ch, child in node.items() if ch)
            continue
        alts = [re.escape(ch) + regex.pop(id(child)) for ch, child in sorted(node.items()) if ch]
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")" if alts else ""
        regex[id(node)] = f"(?:{body})?" if "" in node and body else body  # greedy: the longer word first
    return regex[id(trie)]


def _compile_protect(protect: Iterable[str | re.Pattern]) -> Protector:
    """The entries validated into one matcher (kept for callers of the old name; use Protector)."""
    return Protector(protect)


def protected_spans(text: str, patterns: Sequence[re.Pattern] | Protector) -> tuple[Span, ...]:
    """Sorted, merged character spans of every match. 'a 12 b 12' with r'\\d+' -> ((2, 4), (7, 9))."""
    if isinstance(patterns, Protector):
        return patterns.spans(text)
    return merge_spans([(m.start(), m.end()) for p in patterns for m in p.finditer(text) if m.end() > m.start()])


def merge_spans(spans: list[Span]) -> tuple[Span, ...]:
    """Sorted, overlapping or touching spans joined: [(5, 9), (0, 3), (2, 4)] -> ((0, 4), (5, 9))."""
    spans = sorted(spans)
    merged: list[list[int]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return tuple((s, e) for s, e in merged)
