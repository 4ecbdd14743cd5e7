"""One chunker for LLMLingua-2-style encoders, shared by inference (methods/llmlingua2.py) and
training (train/classifier.py), so the classifier is trained on windows cut exactly as the
windows it later sees.

    >>> import numpy as np
    >>> text = "Aa b. Cc d."
    >>> offsets = np.array([[0, 2], [3, 4], [4, 5], [6, 8], [9, 10], [10, 11]])
    >>> word_of = np.array([0, 1, 2, 3, 4, 5])
    >>> chunk_bounds(text, offsets, word_of, 4)
    [(0, 3), (3, 6)]

Not handled: chunks that overlap (each token belongs to exactly one chunk).
"""

from __future__ import annotations

import numpy as np

SENTENCE_END = frozenset(".!?;。！？")


def chunk_bounds(text: str, offsets: np.ndarray, word_of: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """Token ranges of at most `limit` tokens, cut before a word that starts a sentence (after
    . ! ? ; or a line break) when one lies in the second half of the window, else before the
    last word that fits, else (one word longer than the window) anywhere."""
    n = len(word_of)
    if n <= limit:
        return [(0, n)] if n else []
    starts = np.flatnonzero(np.concatenate([[True], word_of[1:] != word_of[:-1]]))
    prev_end = offsets[starts[1:] - 1, 1]
    sentence = np.array([False] + [
        (e > 0 and text[e - 1] in SENTENCE_END) or "\n" in text[e:s]
        for e, s in zip(prev_end.tolist(), offsets[starts[1:], 0].tolist())])
    sent_starts = starts[sentence]
    out, a = [], 0
    while n - a > limit:
        hi = a + limit
        k = np.searchsorted(sent_starts, hi, side="right") - 1
        if k >= 0 and sent_starts[k] > a + limit // 2:
            b = int(sent_starts[k])
        else:
            k = np.searchsorted(starts, hi, side="right") - 1
            b = int(starts[k]) if k >= 0 and starts[k] > a else hi
        out.append((a, b))
        a = b
    out.append((a, n))
    return out
