"""Baselines every method must beat: `random` word deletion and `truncate`.

Both keep the instruction and the question whole by default (they are short and the papers'
baselines compress the context) and spend the rest of the budget on the contexts:
  random   - words kept uniformly at random (seeded: same input and seed, same output);
  truncate - the contexts' first words, in prompt order, until the budget is spent.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..prompt import Prompt
from ..selection import Units, word_spans
from .base import Method, Options, register


def _word_units(prompt: Prompt, score_fn) -> list[Units]:
    out = []
    for seg in prompt.segments:
        starts, ends = word_spans(seg.text)
        out.append(Units(starts, ends, score_fn(len(starts))))
    return out


@register
class Random(Method):
    """Words kept uniformly at random (seeded)."""

    name = "random"

    @dataclasses.dataclass(frozen=True)
    class Options(Options):
        keep_instruction: bool = True
        seed: int = 0
        RANGES = {"seed": (0, 2**32 - 1)}  # numpy's seeds are non-negative

    def score(self, prompt: Prompt, options, budget=None, progress=None):
        rng = np.random.default_rng(options.seed)
        return _word_units(prompt, rng.random)


@register
class Truncate(Method):
    """The first words, in prompt order, until the budget is spent."""

    name = "truncate"

    @dataclasses.dataclass(frozen=True)
    class Options(Options):
        keep_instruction: bool = True

    def score(self, prompt: Prompt, options, budget=None, progress=None):
        done = 0

        def score(n: int) -> np.ndarray:  # earlier words first, across all segments
            nonlocal done
            s = -(done + np.arange(n, dtype=np.float64))
            done += n
            return s

        return _word_units(prompt, score)
