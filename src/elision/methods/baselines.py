"""Baselines every method must beat: `random` word deletion and `truncate`.

Both keep the instruction and the question whole (they are short and the papers' baselines
compress the context) and spend the rest of the budget on the contexts:
  random   - words kept uniformly at random (seeded: same input and seed, same output);
  truncate - the contexts' first words, in prompt order, until the budget is spent.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..budget import Budget
from ..prompt import Prompt
from ..selection import Units, forced_mask, word_spans
from ..tokenizers import TargetTokenizer
from .base import Method, Options, register


def _word_units(prompt: Prompt, score_fn) -> list[Units]:
    out = []
    for i, seg in enumerate(prompt.segments):
        starts, ends = word_spans(seg.text)
        forced = forced_mask(starts, ends, seg.text, seg.protected)
        pri = np.full(len(starts), np.inf) if seg.role != "context" else score_fn(i, len(starts))
        out.append(Units(starts, ends, np.where(forced, np.inf, pri)))
    return out


@register
class Random(Method):
    name = "random"

    @dataclasses.dataclass(frozen=True)
    class Options(Options):
        seed: int = 0

    def priorities(self, prompt: Prompt, budget: Budget, target: TargetTokenizer, options, progress=None):
        rng = np.random.default_rng(options.seed)
        return _word_units(prompt, lambda i, n: rng.random(n))


@register
class Truncate(Method):
    name = "truncate"

    def priorities(self, prompt: Prompt, budget: Budget, target: TargetTokenizer, options, progress=None):
        done = 0

        def score(i: int, n: int) -> np.ndarray:  # earlier words first, across all contexts
            nonlocal done
            s = -(done + np.arange(n, dtype=np.float64))
            done += n
            return s

        return _word_units(prompt, score)
