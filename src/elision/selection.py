"""Selections: which character spans of each segment survive, and fitting them to a budget.

Every extractive method ends here. A method splits each segment into *units* (words or
model tokens: contiguous, non-overlapping character spans that cover the text) and gives
each unit a *priority*; `fit_to_budget` then keeps the highest-priority units such that the
assembled prompt, counted with the TARGET tokenizer, is as long as possible without
exceeding the budget. Units with priority +inf (protected text, forced tokens) are always
kept, even when that overshoots the budget; units with priority -inf are never kept (a
probability threshold, a context filter), even when that leaves the budget unspent.

Worked example: text "The cat sat." with word units ["The", " cat", " sat", "."] and
priorities [0.2, 0.9, 0.1, inf]; a budget of 2 target tokens keeps " cat" and "." and the
segment becomes "cat." (leading/trailing white space of a segment is trimmed).

Within a segment a selection is always a subsequence of the original; a method may also give
the order of the segments (LongLLMLingua puts the most relevant documents first).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ._errors import InvalidInput
from .prompt import Prompt, Span
from .tokenizers import TargetTokenizer

# A word with the white space before it, or one punctuation character with its white space;
# a trailing run of white space is a unit of its own. Together they cover every character.
_WORD = re.compile(r"\s*(?:\w+(?:['’]\w+)*|[^\w\s])|\s+")


def word_spans(text: str) -> tuple[np.ndarray, np.ndarray]:
    """'Hi, you' -> starts [0, 2, 3], ends [2, 3, 7]  ('Hi', ',', ' you')."""
    ms = list(_WORD.finditer(text))
    return (np.fromiter((m.start() for m in ms), np.int64, len(ms)),
            np.fromiter((m.end() for m in ms), np.int64, len(ms)))


def token_spans(offsets: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Units from a tokenizer's (start, end) offsets: one unit per token, widened so units tile
    the text. Byte-level BPE can give two tokens the same span (one multi-byte character); those
    merge into one unit. [(0,3),(3,7),(3,7),(7,9)] -> starts [0,3,7], ends [3,7,9]."""
    starts = np.unique(np.asarray(offsets, np.int64).reshape(-1, 2)[:, 0]) if len(offsets) else np.zeros(0, np.int64)
    starts = starts[starts < length]
    if len(starts) == 0 or starts[0] != 0:
        starts = np.concatenate([[0], starts])
    ends = np.concatenate([starts[1:], [length]])
    return starts, ends


def unit_token_index(unit_starts: np.ndarray, tok_starts: np.ndarray) -> np.ndarray:
    """For each token, the unit holding its first character."""
    return np.clip(np.searchsorted(unit_starts, tok_starts, side="right") - 1, 0, len(unit_starts) - 1)


def aggregate(values: np.ndarray, owner: np.ndarray, n_units: int, how: str) -> np.ndarray:
    """Per-unit aggregate of per-token values; units owning no token get the value of the token
    covering their start (nearest earlier token). how: 'mean' | 'max' | 'sum' | 'first'."""
    out = np.full(n_units, np.nan)
    if len(values) == 0:
        return np.zeros(n_units)
    if how == "max":
        np.fmax.at(out, owner, values)
    elif how == "first":
        first = np.unique(owner, return_index=True)
        out[first[0]] = values[first[1]]
    else:
        s = np.bincount(owner, weights=values, minlength=n_units)
        c = np.bincount(owner, minlength=n_units)
        out = np.where(c > 0, s / np.maximum(c, 1) if how == "mean" else s, np.nan)
    # fill units with no token from the previous unit (or the next one, at the start)
    idx = np.where(~np.isnan(out), np.arange(n_units), 0)
    np.maximum.accumulate(idx, out=idx)
    filled = out[idx]
    if np.isnan(filled).any():
        filled = np.where(np.isnan(filled), np.nanmax(out) if not np.isnan(out).all() else 0.0, filled)
    return filled


def rank_priorities(scores: np.ndarray, weights: np.ndarray, ratio: float, forced: np.ndarray) -> np.ndarray:
    """Priorities from scores for one segment that should keep `ratio` of its weight.

    Units are ranked by score (higher = keep first); a unit's priority is `ratio` minus the
    share of (unforced) weight ranked above it, so priority > 0 exactly for the units a
    per-segment threshold at `ratio` keeps, and shifting one global threshold keeps every
    segment's share moving together. Forced units get +inf.
    scores [3, 1, 2], weights [1, 1, 1], ratio 0.5 -> [0.5, -0.1667, 0.1667]
    """
    pr = np.full(len(scores), np.inf)
    free = ~forced
    if free.any():
        w = weights[free].astype(np.float64)
        order = np.argsort(-scores[free], kind="stable")
        before = np.empty_like(w)
        before[order] = np.concatenate([[0.0], np.cumsum(w[order])[:-1]]) / max(w.sum(), 1e-9)
        pr[free] = ratio - before
    return pr


# A name: a capitalized word inside a sentence (after a lowercase letter, a comma or a semicolon
# and spaces, maybe an opening quote), with the capitalized words that follow it ('visited
# Kyoto', 'is "The Infinity Courts"', 'at Engi-House'). A sentence's first word is not one, nor
# 'I' or "I'm". Every repetition starts with a space, so matching is linear in the text.
_NAME = re.compile(r"[a-z,;] +[\"\'\u201c\u2018(]?([A-Z][\w-][\w'-]*(?: [A-Z][\w'-]*)*)")


def name_spans(text: str) -> tuple[Span, ...]:
    """Character spans of the names in `text` (see _NAME).
    'we visited Kyoto and Nara. Then home' -> ((11, 16), (21, 25))"""
    return tuple(m.span(1) for m in _NAME.finditer(text))


# A labelled name: the capitalized words right after a key and its colon, as records write
# them ('location: Wellness Center', '"title": "Annual Conference"'). Linear like _NAME: a
# match can only start at a colon.
_LABELLED = re.compile(r": +[\"\'\u201c\u2018(]?([A-Z][\w-][\w'-]*(?: [A-Z][\w'-]*)*)")
# Identifiers, looked for inside one white-space-delimited chunk of at most 200 characters (so
# each chunk costs one anchored match, and the whole text stays linear): an e-mail address, a
# URL, a file or host name with an extension ('vacation-plans.docx', 'example.com').
_CHUNK = re.compile(r"\S+")
_CHUNK_EDGE = "\"'()[]{}<>,;:.!?*`"
_IDENTIFIER = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|(?:https?://|www\.)\S+|[\w-]+(?:\.[\w-]+)*\.[A-Za-z][A-Za-z0-9]{1,4}")


def identifier_spans(text: str) -> tuple[Span, ...]:
    """Character spans of the e-mail addresses, URLs and file / host names in `text`, without
    the quotes or punctuation around them.
    'mail ann.lee@x.com: see notes.txt, e.g. here' -> ((5, 17), (23, 32))"""
    out = []
    for m in _CHUNK.finditer(text):
        a, b = m.span()
        if b - a > 200 or not any(c in text[a:b] for c in "@./"):
            continue
        while a < b and text[a] in _CHUNK_EDGE:
            a += 1
        while b > a and text[b - 1] in _CHUNK_EDGE:
            b -= 1
        if b > a and _IDENTIFIER.fullmatch(text, a, b):
            out.append((a, b))
    return tuple(out)


# A short phrase in typographic quotes is a title or a term ('a “Tech for Good” day'); at most
# 60 characters are read after each opening quote, so the search stays linear.
_QUOTED = re.compile("[\u201c\u2018]([^\u201c\u201d\u2018\u2019\n]{1,60})[\u201d\u2019]")


def fact_spans(text: str) -> tuple[Span, ...]:
    """What force_names keeps: names inside sentences, labelled names after a key's colon and
    short phrases in typographic quotes.
    'location: Wellness Center, the “Tech for Good” day' -> ((10, 25), (31, 44))"""
    return tuple(sorted(name_spans(text) + tuple(m.span(1) for m in _LABELLED.finditer(text))
                        + tuple(m.span(1) for m in _QUOTED.finditer(text))))


_DASHES = frozenset("-\u2013\u2014")


def forced_mask(starts: np.ndarray, ends: np.ndarray, text: str, spans: tuple[Span, ...],
                digits: bool = False, newlines: bool = False, tokens: tuple[str, ...] = (),
                names: bool = False, ids: bool = False) -> np.ndarray:
    """Units that overlap a protected span (or, with names=True, a name: fact_spans; with
    ids=True, an identifier: identifier_spans), or contain a digit (with the dash of a range
    between two) / a newline / a forced token. Linear in the text: one prefix sum over protected characters, one
    pass over the units.
    'a 12 b' with units 'a', ' 12', ' b' and digits=True -> [False, True, False]"""
    m = np.zeros(len(starts), bool)
    if names:
        spans = tuple(spans) + fact_spans(text)
    if ids:
        spans = tuple(spans) + identifier_spans(text)
    if spans:
        mark = np.zeros(len(text) + 1, np.int64)
        for s, e in spans:
            mark[s] += 1
            mark[e] -= 1
        covered = np.concatenate([[0], np.cumsum(np.cumsum(mark)[:-1] > 0)])  # protected chars before i
        m |= covered[ends] > covered[starts]
    if digits or newlines or tokens:
        token_set = frozenset(tokens)
        digit = np.zeros(len(starts), bool)
        for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
            u = text[s:e]
            digit[i] = digits and any(ch.isdigit() for ch in u)
            if digit[i] or (newlines and "\n" in u) or (token_set and u.strip() in token_set):
                m[i] = True
        if digits and len(starts) > 2:
            # a dash between two numbers is a range ('80.0 - 150.0'), kept with them
            for i in np.flatnonzero(digit[:-2] & digit[2:]).tolist():
                if text[starts[i + 1]:ends[i + 1]].strip() in _DASHES:
                    m[i + 1] = True
    return m


def must_keep(segment, starts: np.ndarray, ends: np.ndarray, policy) -> np.ndarray:
    """The units of `segment` that the keep policy (a method's Options: protected spans, kept
    roles, force_digits / force_names / force_tokens / keep_newlines) says must survive. The pipeline enforces
    exactly this; a method may call it too, to spend its budget on the rest."""
    if segment.role in policy.kept_roles():
        return np.ones(len(starts), bool)
    forced = forced_mask(starts, ends, segment.text, segment.protected, policy.force_digits,
                         policy.keep_newlines, policy.force_tokens, policy.force_names, policy.force_ids)
    if segment.unforced:  # the keep rules stop at these spans; protected spans still hold
        inside = forced_mask(starts, ends, segment.text, segment.unforced)
        forced &= ~inside | forced_mask(starts, ends, segment.text, segment.protected)
    return forced


REORDERS = ("sort", "two_ends", "none")  # how question-aware methods may order the contexts


def check_reorder(how) -> None:
    """A method's `reorder` option must be one of REORDERS."""
    if how not in REORDERS:
        raise InvalidInput(f"reorder must be {', '.join(REORDERS)}, got {how!r}")


def reorder_contexts(n: int, ctx: list[int], ranked: list[int], how: str) -> list[int] | None:
    """Segment order with the context slots refilled by relevance (`ranked`: most relevant
    first); None keeps the prompt's order. Other segments (instruction, question) stay put.
    ctx [1, 2, 3, 4], ranked [3, 1, 4, 2]: sort -> contexts 3, 1, 4, 2; two_ends -> 3, 4, 2, 1
    (the best at both ends, the weakest in the middle, where readers look least)."""
    if how == "none":
        return None
    if how == "two_ends":
        front, back = ranked[0::2], ranked[1::2]
        ranked = front + back[::-1]
    slots, is_ctx = iter(ranked), set(ctx)
    return [next(slots) if i in is_ctx else i for i in range(n)]


@dataclass(frozen=True)
class Units:
    """One segment's units and their priorities (higher = kept first; +inf = always kept;
    -inf = never kept)."""

    starts: np.ndarray
    ends: np.ndarray
    priority: np.ndarray


def kept_spans(text: str, units: Units, keep: np.ndarray) -> tuple[Span, ...]:
    """Merged character spans of the kept units, trimmed of white space at the segment's ends."""
    spans: list[list[int]] = []
    for s, e in zip(units.starts[keep].tolist(), units.ends[keep].tolist()):
        if spans and spans[-1][1] == s:
            spans[-1][1] = e
        else:
            spans.append([s, e])
    while spans:  # trim leading white space
        s, e = spans[0]
        s2 = s + len(text[s:e]) - len(text[s:e].lstrip())
        if s2 < e:
            spans[0][0] = s2
            break
        spans.pop(0)
    while spans:  # trim trailing white space
        s, e = spans[-1]
        e2 = s + len(text[s:e].rstrip())
        if e2 > s:
            spans[-1][1] = e2
            break
        spans.pop()
    return tuple(_separated(text, spans))


def _separated(text: str, spans: list[list[int]]) -> list[tuple[int, int]]:
    """`spans` with one white-space character of the original between two kept spans that the
    dropped text between them separated by white space but that would otherwise touch:
    'sender: a@x.com\\n  body: \\'Hi Katie' keeping 'a@x.com' and 'Hi Katie' gives 'a@x.com Hi
    Katie', not 'a@x.comHi Katie' (the quote, which held the space, was dropped). A space when
    the gap has one (it joins the next word's token, so it usually costs nothing), else the gap's
    first white-space character. Gaps inside a word (a token-level method dropping a sub-word)
    hold no white space and stay joined. The character is the original's, so the compressed text
    is still the original's kept spans, joined."""
    out: list[tuple[int, int]] = []
    for s, e in spans:
        if out:
            b = out[-1][1]
            if s > b and not text[b - 1].isspace() and not text[s].isspace():
                gap = text[b:s]
                w = gap.rfind(" ")
                if w < 0:
                    w = next((i for i, c in enumerate(gap) if c.isspace()), -1)
                if w >= 0:
                    out.append((b + w, b + w + 1))
        out.append((s, e))
    return out


def assemble(prompt: Prompt, spans: list[tuple[Span, ...]], order: list[int] | None = None) -> str:
    """The kept text of each segment, joined by the separator, in prompt order or in `order`
    (segment indices; a method that reorders documents, such as LongLLMLingua, gives one)."""
    parts = ["".join(seg.text[s:e] for s, e in sp) for seg, sp in zip(prompt.segments, spans)]
    out: list[str] = []
    for i in order if order is not None else range(len(parts)):
        if parts[i]:  # a segment's own sep joins it to the kept text before it ("\n\n" by default)
            out += [prompt.segments[i].sep, parts[i]] if out else [parts[i]]
    return "".join(out)


def fit_to_budget(prompt: Prompt, units: list[Units], target: TargetTokenizer, budget: int,
                  segment_order: list[int] | None = None) -> list[tuple[Span, ...]]:
    """Keep the longest prefix of units (by priority) whose assembled text fits `budget` target
    tokens. The count of an assembled subsequence grows (almost) monotonically with the number
    of units kept, so a binary search over that number finds it in ~log2(n) tokenizations."""
    pri = np.concatenate([u.priority for u in units]) if units else np.zeros(0)
    # stable: equal priorities keep earlier text first, so results are deterministic
    order = np.lexsort((np.arange(len(pri)), -pri))
    n_forced = int((pri == np.inf).sum())
    n_allowed = int((pri > -np.inf).sum())  # -inf sorts last: prefixes up to here never hold one
    bounds = np.cumsum([0] + [len(u.priority) for u in units])

    def spans_for(k: int) -> list[tuple[Span, ...]]:
        keep = np.zeros(len(pri), bool)
        keep[order[:k]] = True
        return [kept_spans(seg.text, u, keep[bounds[i]:bounds[i + 1]])
                for i, (seg, u) in enumerate(zip(prompt.segments, units))]

    def fits(k: int) -> bool:
        return target.count(assemble(prompt, spans_for(k), segment_order)) <= budget

    lo, hi = n_forced, n_allowed
    if fits(hi):
        return spans_for(hi)
    if not fits(lo):
        return spans_for(lo)  # protected text alone is over budget: keep it, report the overshoot
    # cut only between values: never inside a run of units that touch without white space and
    # share one priority (a value under whole_values, '2024-05-12 19:00:00' -> ' 2024', '-', ...),
    # so the budget's end keeps the value whole or drops it, never '202405'
    cuts = _cut_points(prompt, units, pri, order, bounds, lo, hi)
    a, b = 0, len(cuts) - 1  # invariant: fits(cuts[a]) and not fits(cuts[b])
    while b - a > 1:
        mid = (a + b) // 2
        if fits(int(cuts[mid])):
            a = mid
        else:
            b = mid
    return spans_for(int(cuts[a]))


def _cut_points(prompt: Prompt, units: list[Units], pri: np.ndarray, order: np.ndarray, bounds: np.ndarray,
                lo: int, hi: int) -> np.ndarray:
    """The prefix lengths k in [lo, hi] that do not split a value: unit order[k] is not the next
    unit of order[k - 1] in the same glued run (glued_runs). lo and hi are always cut points."""
    ks = np.arange(lo + 1, hi)
    if not len(ks):
        return np.array([lo, hi], np.int64)
    prev, nxt = order[ks - 1], order[ks]
    maybe = nxt == prev + 1
    if maybe.any():
        # run ids per segment, offset so that two segments never share one
        run, at = np.zeros(len(pri), np.int64), 0
        for seg, u, b in zip(prompt.segments, units, bounds[:-1].tolist()):
            r = glued_runs(seg.text, u.starts, u.ends, pri[b:b + len(u.priority)])
            run[b:b + len(r)] = r + at
            at += int(r[-1]) + 1 if len(r) else 0
        maybe &= run[nxt] == run[prev]
    return np.concatenate([[lo], ks[~maybe], [hi]]).astype(np.int64)


def glued_runs(text: str, starts: np.ndarray, ends: np.ndarray, pri: np.ndarray) -> np.ndarray:
    """A run id per unit: consecutive units that touch without white space on either side of the
    join and share one priority (a value's parts under whole_values) share an id.
    ' 2024', '-', '05' at 0.4, ' x' -> [0, 0, 0, 1]"""
    n = len(starts)
    if n < 2:
        return np.zeros(n, np.int64)
    s = np.asarray(starts, np.int64)
    glued = (np.asarray(ends, np.int64)[:-1] == s[1:]) & (pri[1:] == pri[:-1]) & (s[1:] < len(text)) & (s[1:] > 0)
    for j in np.flatnonzero(glued).tolist():  # only real joins: look at the characters
        c = int(s[j + 1])
        glued[j] = not text[c].isspace() and not text[c - 1].isspace()
    return np.concatenate([[0], np.cumsum(~glued)]).astype(np.int64)
