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

import functools
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
    # spans where the keep rules (force_digits / names / ids / tokens) do not apply, only protected
    # spans do: a conversation's records repeated verbatim from an earlier message (their values
    # are in the conversation already)
    unforced: tuple[Span, ...] = ()


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


# Literals up to this long go into the trie regex, which tries each of them at every position
# (at most SHORT_LITERAL steps per character); longer ones are found one by one with str.find
# (two-way search: linear) and their periodicity. In the trie, one literal of 30,000 'a's + 'b'
# cost 30,000 steps per position of a 900,000-'a' text (27 s); found one by one, 3 ms.
SHORT_LITERAL = 64


class Protector:
    """Every protect entry as one matcher, so a prompt of many segments and many entries costs
    one pass per segment, not one per (segment, entry): literal strings of up to SHORT_LITERAL
    characters become one trie regex in a lookahead, which finds the longest literal starting at
    each position (overlapping matches included); longer literals are found one by one, every
    occurrence (overlapping ones too) in time linear in the text (`literal_spans`); regexes are
    searched one by one (a caller gives few of those).

        >>> Protector(["12", "123", re.compile(r"x+")]).spans("a 1234 xx")
        ((2, 5), (7, 9))

    Regexes are the caller's: a compiled `re.Pattern` runs on Python's backtracking engine, as
    given (a pattern such as '(a+)+$' can take exponential time); a pattern from outside (the
    CLI's --protect-regex) should be compiled with `protect_regex`, which runs it on RE2, in
    linear time. Not handled: a regex's overlapping matches (its own finditer decides)."""

    def __init__(self, protect: Iterable[str | re.Pattern] | Protector = ()):
        if isinstance(protect, Protector):  # already built (a caller passing its matcher on)
            self.words, self.literals, self.regexes = protect.words, protect.literals, list(protect.regexes)
            self.long, self._periods, self._prefixes = protect.long, protect._periods, protect._prefixes
            return
        if isinstance(protect, str) or is_regex(protect):
            protect = [protect]
        elif not isinstance(protect, Iterable) or isinstance(protect, (bytes, dict)):
            raise InvalidInput(f"protect must be a string, a compiled regex or a list of them, "
                               f"got {type(protect).__name__}")
        literals, self.regexes = set(), []
        for p in protect:
            if is_regex(p):
                self.regexes.append(p)
            elif isinstance(p, str) and p:
                literals.add(p)
            else:
                raise InvalidInput(f"protect entries must be non-empty strings or compiled regexes, got {p!r}")
        self.words, self.literals = sorted(literals), None
        self.long = [w for w in self.words if len(w) > SHORT_LITERAL]
        self._periods: dict[str, int] = {}
        short = tuple(w for w in self.words if len(w) <= SHORT_LITERAL)
        if short:
            self.literals = _literal_matcher(short)
            if self.literals is None:  # past sre's limits: one by one
                self.long += list(short)
        self._prefixes = None  # many long literals: one trie pass over their prefixes picks the few to look for
        if len(self.long) > 8:
            by_prefix: dict[str, list[str]] = {}
            for w in self.long:
                by_prefix.setdefault(w[:SHORT_LITERAL], []).append(w)
            matcher = _literal_matcher(tuple(sorted(by_prefix)))
            if matcher is not None:
                self._prefixes = (matcher, by_prefix)

    def spans(self, text: str) -> tuple[Span, ...]:
        spans = [(m.start(), m.end(1)) for m in self.literals.finditer(text)] if self.literals else []
        long = self.long
        if self._prefixes is not None:  # 4,000 contexts x 4,000 long entries: 2 s one by one
            matcher, by_prefix = self._prefixes
            long = [w for prefix in {m.group(1) for m in matcher.finditer(text)} for w in by_prefix[prefix]]
        for w in long:
            spans += literal_spans(text, w, self._periods)
        return merge_spans(spans + [(m.start(), m.end()) for p in self.regexes for m in p.finditer(text)
                               if m.end() > m.start()])


@functools.lru_cache(maxsize=32)
def _literal_matcher(words: tuple[str, ...]) -> re.Pattern | None:
    """The trie regex of `words` (sorted), built once per set: a caller that builds a Protector
    per piece or per message with the same 256 entries paid ~25 ms of trie building in Python
    each time (2,000 JSON strings: 50 s). None when sre cannot compile it (nesting too deep)."""
    try:
        return re.compile("(?=(" + _trie_regex(words) + "))")
    except (RecursionError, OverflowError, re.error):
        return None


def literal_spans(text: str, word: str, periods: dict[str, int] | None = None) -> list[Span]:
    """The union of every occurrence of `word` in `text`, overlapping ones included, as spans,
    in time linear in len(text) + len(word): 'aa' in 'aaab aa' -> [(0, 3), (5, 7)].

    str.find (two-way: linear) finds an occurrence at i; with p the word's smallest period, the
    next overlapping one can only be at i + p, and is there iff the p characters after the
    occurrence equal the word's last p (checked 1, 2, 4, ... periods at a time). When that chain ends
    at j, no occurrence starts before j + max(p, m - p) + 1 (Fine and Wilf: a closer one would
    make p-steps continue), so the next find starts there: every find call advances at least
    m / 2, so the words' m-character setups add up to O(len(text)). `periods`: a cache."""
    m = len(word)
    spans: list[Span] = []
    i = text.find(word)
    while i >= 0:
        p = periods.get(word) if periods is not None else None
        if p is None:
            p = _period(word)
            if periods is not None:
                periods[word] = p
        j, tail, step = i, word[m - p:], 1
        while True:  # the occurrences p, 2p, ... further on: galloping, each check in C
            if text.startswith(tail * step, j + m):
                j += step * p
                step *= 2
            elif step > 1:
                step //= 2
            else:
                break
        spans.append((i, j + m))
        i = text.find(word, j + max(p, m - p) + 1)
    return spans


def _period(word: str) -> int:
    """The smallest p > 0 with word[p:] == word[:-p] (len(word) if none): 'abab' -> 2, 'aab' -> 3.
    Knuth-Morris-Pratt's failure function, linear in the word."""
    fail, k = [0] * len(word), 0
    for i in range(1, len(word)):
        while k and word[i] != word[k]:
            k = fail[k - 1]
        if word[i] == word[k]:
            k += 1
        fail[i] = k
    return len(word) - (fail[-1] if word else 0)


# ---------------------------------------------------------------- user regexes on RE2

# Python's \s for text (str.isspace), written for RE2; \d and \w as Unicode classes, so a
# pattern keeps Python's meaning on accented and non-Latin text (RE2's own are ASCII only)
_SPACE = (r"\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}"
          r"\x{205f}\x{3000}")
_IN_CLASS = {"d": r"\p{Nd}", "w": r"\p{L}\p{N}_", "s": _SPACE}
_OUTSIDE = {"d": r"\p{Nd}", "D": r"\P{Nd}", "w": r"[\p{L}\p{N}_]", "W": r"[^\p{L}\p{N}_]",
            "s": f"[{_SPACE}]", "S": f"[^{_SPACE}]", "Z": r"\z"}


def protect_regex(pattern: str, what: str = "protect regex"):
    r"""A regular expression from outside (a flag, a file, a request) compiled for protect
    matching on RE2 (google-re2), whose time is linear in the text whatever the pattern:
    '(a+)+$' on 100,000 'a's never finishes on Python's re, and takes a millisecond here.

        >>> Protector([protect_regex(r"\d{4}-\d\d")]).spans("due 2024-05 or ١٢٣٤-٠١")
        ((4, 11), (15, 22))

    Python's syntax and meaning for what both engines have: \d, \w and \s are Unicode (as in
    Python), \Z is the end of the text, \uXXXX a character. Refused, with the reason: what
    needs backtracking (backreferences, lookahead / lookbehind, atomic groups, possessive
    quantifiers) and Python-only syntax RE2 lacks (verbose mode, (?#...) comments). Different:
    \b and \B look at ASCII word characters only; $ (without (?m)) matches only at the very
    end, not also before a final newline; [\W] / [\S] / [\D] inside a bracket are ASCII."""
    if not isinstance(pattern, str) or not pattern:
        raise InvalidInput(f"{what} must be a non-empty string, got {pattern!r}")
    try:
        import re2
    except ImportError:
        from ._errors import MissingDependency

        raise MissingDependency("google-re2 (protect regexes run on RE2, in linear time)",
                                "pip install google-re2") from None
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(_for_re2(pattern), options)
    except re2.error as e:
        reason = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        raise InvalidInput(f"{what} {pattern!r}: {reason}. Protect regexes run on RE2 (time linear in the text), "
                           "which has no backreferences, lookaround, atomic groups, possessive quantifiers or "
                           "verbose mode; rewrite it without them (docs/security.md)") from None


def is_regex(p) -> bool:
    """A compiled pattern protect accepts: Python's re.Pattern, or RE2's (`protect_regex`)."""
    return isinstance(p, re.Pattern) or type(p).__module__.startswith("re2")


def _for_re2(pattern: str) -> str:
    r"""Python's escapes whose meaning differs in RE2 rewritten for it (see protect_regex):
    r'\w+\Z' -> r'[\p{L}\p{N}_]+\z'. One pass; brackets tracked so that an escape inside
    one gets the bracket form ([\w-] -> [\p{L}\p{N}_-])."""
    out: list[str] = []
    i, n, depth = 0, len(pattern), False  # depth: inside [...]
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            if e in "uU":
                width = 4 if e == "u" else 8
                digits = pattern[i + 2:i + 2 + width]
                if len(digits) == width and all(ch in "0123456789abcdefABCDEF" for ch in digits):
                    out.append(f"\\x{{{digits}}}")
                    i += 2 + width
                    continue
            out.append((_IN_CLASS if depth else _OUTSIDE).get(e, pattern[i:i + 2]))
            i += 2
            continue
        if depth:
            if pattern.startswith("[:", i):  # a POSIX class inside a bracket: [[:alpha:]]
                end = pattern.find(":]", i + 2)
                if end > 0:
                    out.append(pattern[i:end + 2])
                    i = end + 2
                    continue
            if c == "]":
                depth = False
        elif c == "[":
            depth = True
            out.append(c)
            i += 1
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < n and pattern[i] == "]":  # a ']' first in a bracket is a literal
                out.append("\\]")
                i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


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
