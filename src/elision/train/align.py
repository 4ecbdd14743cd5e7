"""Align a teacher's compressed text back to the original words (LLMLingua-2, arXiv 2403.12968, §3.2).

The teacher only deletes words, so each compressed word should match one original word, in
order. For every compressed word, in order, the original is searched forward from just after
the last match, at most `window` words ahead, for an equal word: case-sensitive first, then
case-insensitive. A match labels that original word 1 (kept); every other original word is 0.

Worked example (words are `\\w+` runs and single punctuation marks):

    original   "The cat sat on the mat."   -> The cat sat on the mat .
    compressed "cat sat mat."              -> cat sat mat .
    labels     [0, 1, 1, 0, 0, 1, 1]; variation 0.0, hitting 1.0, matching 1.0, gap 0.0

    compressed "cat sits mat"  -> 'sits' is not in the original: labels [0, 1, 0, 0, 0, 1, 0],
                                  variation 1/3, hitting 2/3, matching 2/3, gap 0.0

The paper's quality figures, all shares of the compressed words:
  variation_rate  not found anywhere in the original (the teacher reworded or invented them),
  hitting_rate    found somewhere in the original (= 1 - variation_rate),
  matching_rate   matched by the alignment (a hit can be missed: out of window, out of order),
  alignment_gap   hitting_rate - matching_rate (>= 0; high means the labels are unreliable).
Words are compared case-insensitively for hits, as for the fallback match, so matching <= hitting.

One addition to the paper: deleting the punctuation between two words that have no white space
between them glues them ('Dundee. At 3,264' with 'Dundee' and '264' kept -> 'Dundee264';
'content-addressed' without '-' -> 'contentaddressed'). A compressed word that is otherwise
unmatched is split back into in-order original words within the window, each piece after the
first starting right after a non-space character in the original (so a reworded 'into' is not
explained by 'in ... to'). Such a word counts as one hit and one match.

Not handled: reordering (a word the teacher moved is matched only if it lies ahead within the
window, which pulls the search position past the words in between); an empty compressed text
has no words, so all its figures are vacuous (variation 0, hitting and matching 1).

Cost: O(m log n) in practice (positions of each word kept in sorted lists, found by bisection);
the glue check is O(window) for each otherwise-unmatched word, so O(m * window) at worst.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass

import numpy as np

WORD = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")


def word_spans(text: str) -> np.ndarray:
    """(n, 2) int64 char spans of the words. 'Hi, you' -> [[0, 2], [2, 3], [4, 7]]."""
    ms = list(WORD.finditer(text))
    out = np.empty((len(ms), 2), np.int64)
    for i, m in enumerate(ms):
        out[i] = m.span()
    return out


@dataclass(frozen=True, eq=False)
class Alignment:
    words: np.ndarray  # (n, 2) int64 char spans of the original's words
    labels: np.ndarray  # (n,) uint8, 1 = kept by the teacher
    compressed_words: int
    variation_rate: float
    hitting_rate: float
    matching_rate: float

    @property
    def alignment_gap(self) -> float:
        return self.hitting_rate - self.matching_rate

    def kept(self, original: str) -> list[str]:
        """The original words labelled 1, in order."""
        return [original[s:e] for (s, e), k in zip(self.words.tolist(), self.labels.tolist()) if k]


def _positions(words: list[str]) -> dict[str, list[int]]:
    pos: dict[str, list[int]] = {}
    for i, w in enumerate(words):
        pos.setdefault(w, []).append(i)
    return pos


def _first_at_or_after(positions: list[int] | None, lo: int, hi: int) -> int:
    """Smallest position p in [lo, hi) from a sorted list, or -1."""
    if not positions:
        return -1
    j = bisect_left(positions, lo)
    return positions[j] if j < len(positions) and positions[j] < hi else -1


def align(original: str, compressed: str, window: int = 150) -> Alignment:
    """Label each original word 1 if the compressed text kept it (see the module docstring)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    spans = word_spans(original)
    orig = [original[s:e] for s, e in spans.tolist()]
    low = [w.lower() for w in orig]
    # glue_ok[i]: original word i starts right after a non-space character, so deleting what
    # lies between it and an earlier kept word can glue the two into one compressed word
    glue_ok = [s > 0 and not original[s - 1].isspace() for s, _ in spans.tolist()]
    exact, folded, vocab = _positions(orig), _positions(low), set(low)
    labels = np.zeros(len(orig), np.uint8)
    comp = WORD.findall(compressed)
    n, pos, hits, matched = len(orig), 0, 0, 0
    for w in comp:
        lw = w.lower()
        hi = min(pos + window, n)
        i = _first_at_or_after(exact.get(w), pos, hi)
        if i < 0:
            i = _first_at_or_after(folded.get(lw), pos, hi)
        if i >= 0:
            labels[i], pos = 1, i + 1
            hits, matched = hits + 1, matched + 1
            continue
        pieces = _unglue(lw, low, glue_ok, pos, hi) if lw[:1].isalnum() or lw[:1] == "_" else None
        if pieces:
            labels[pieces] = 1
            pos = pieces[-1] + 1
            hits, matched = hits + 1, matched + 1
        elif lw in vocab:
            hits += 1  # in the original, but not where the alignment could take it
    m = len(comp)
    if m == 0:
        return Alignment(spans, labels, 0, 0.0, 1.0, 1.0)
    return Alignment(spans, labels, m, (m - hits) / m, hits / m, matched / m)


def _unglue(lw: str, low: list[str], glue_ok: list[bool], lo: int, hi: int) -> list[int] | None:
    """In-order original positions in [lo, hi) whose words concatenate to `lw` (at least two),
    the first earliest-possible; 'dundee264' with 'dundee' at 3 and '264' at 8 -> [3, 8].
    At most 4 first words are tried, so this stays O(window)."""
    tries = 0
    for first in range(lo, hi):
        if lw.startswith(low[first]) and len(low[first]) < len(lw) and tries < 4:
            tries += 1
            rest, out, k = lw[len(low[first]):], [first], first + 1
            while rest and k < hi:  # greedy: the next glue-able word that is a prefix of the rest
                if glue_ok[k] and rest.startswith(low[k]):
                    out.append(k)
                    rest = rest[len(low[k]):]
                k += 1
            if not rest:
                return out
    return None
