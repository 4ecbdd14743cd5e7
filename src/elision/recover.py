"""Response recovery (LongLLMLingua, arXiv 2310.06839, §4.4): the target LLM answers from the
COMPRESSED prompt, so a name it copies may come out with words missing ("North Railway"
for "North British Railway"). `recover` finds the runs of the response copied from the
compressed prompt and puts back the original text those runs were cut from.

    >>> original = "The Tay Bridge, opened in 1878, carried the North British Railway."
    >>> compressed = "Tay Bridge opened 1878 carried North Railway."
    >>> recover(original, compressed, "It carried the North Railway.")
    'It carried the North British Railway.'

How: words (\\w+ or one punctuation mark) of the compressed prompt are matched in order to
words of the original (the compressed prompt of an extractive method is a subsequence of
it); every run of at least `min_words` consecutive compressed words that the response repeats
is replaced by the original's text from the run's first word to its last, which restores
what was dropped in between. Runs copied from nowhere, or whose words cannot be matched to the
original, are left as the model wrote them. Not handled: paraphrased copies.
"""

from __future__ import annotations

import re

from ._errors import InvalidInput

_WORD = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")


def _words(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def recover(original: str, compressed: str, response: str, *, min_words: int = 2) -> str:
    for name, v in (("original", original), ("compressed", compressed), ("response", response)):
        if not isinstance(v, str):
            raise InvalidInput(f"recover: {name} must be a string, got {type(v).__name__}")
    if min_words < 1:
        raise InvalidInput("recover: min_words must be at least 1")
    ow, cw, rw = _words(original), _words(compressed), _words(response)
    # compressed word j -> original word m[j] (greedy, in order; -1 when not found)
    m, at = [], 0
    by_text: dict[str, list[int]] = {}
    for i, (w, _, _) in enumerate(ow):
        by_text.setdefault(w, []).append(i)
    for w, _, _ in cw:
        nxt = next((i for i in by_text.get(w, ()) if i >= at), -1)
        m.append(nxt)
        if nxt >= 0:
            at = nxt + 1
    starts: dict[str, list[int]] = {}
    for j, (w, _, _) in enumerate(cw):
        starts.setdefault(w, []).append(j)
    out, p, last = [], 0, 0
    while p < len(rw):
        best_j, best_len = -1, 0
        for j in starts.get(rw[p][0], ()):  # the longest run of the response copied from here
            n = 0
            while p + n < len(rw) and j + n < len(cw) and rw[p + n][0] == cw[j + n][0]:
                n += 1
            if n > best_len:
                best_j, best_len = j, n
        if best_len >= min_words:
            a, b = m[best_j], m[best_j + best_len - 1]
            run = m[best_j:best_j + best_len]
            if a >= 0 and all(x >= 0 for x in run) and all(x < y for x, y in zip(run, run[1:])) and b - a + 1 > best_len:
                out.append(response[last:rw[p][1]])
                out.append(original[ow[a][1]:ow[b][2]])
                last = rw[p + best_len - 1][2]
            p += best_len
        else:
            p += 1
    out.append(response[last:])
    return "".join(out)
