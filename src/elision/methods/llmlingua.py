"""LLMLingua (Jiang et al., 2023, arXiv 2310.05736): budget controller + iterative token-level
prompt compression (ITPC) with a small causal LM.

1. Budget controller (budget.plan): instruction and question get their own, high rates;
   demonstrations get tau_dems (Eq. 1); whole demonstrations are ranked by the small LM's
   perplexity and kept while they fit granularity * tau_dems * L_dems; unused budget goes to
   instruction and question (Eq. 2).
2. ITPC: the kept segments are cut into chunks of about `segment_size` model tokens. Each
   chunk is scored conditioned on the ALREADY COMPRESSED prefix (KV cache, dropped tokens cut
   out, never re-encoded); inside the chunk the units with the highest surprisal are kept up to
   the chunk's component rate (the per-chunk threshold gamma_j), and only those enter the prefix.
3. The chunk-level ranks become priorities, and selection.fit_to_budget lands the result on
   the budget counted in the TARGET tokenizer (one global shift of every chunk's threshold).

Coarse-stage cost: the paper ranks demonstrations by the small LM's perplexity over the whole
demonstration, a forward pass over every token before ITPC even starts (more than half the
time on 10-document prompts). By default the perplexity is estimated from each
demonstration's first `coarse_tokens=96` model tokens: on SQuAD paragraphs that ranking agrees
with whole-paragraph perplexity at Spearman 0.82 (0.89 at 128 tokens, 0.50 at 32), for about
half the coarse cost. `coarse_tokens=0` scores whole demonstrations, exactly as the paper does.

Units: `unit="token"` drops model tokens as the paper does; the default `unit="word"` keeps or
drops whole words (their tokens' surprisal aggregated by `word_score`), which keeps names and
numbers readable for a target model with another tokenizer. Not handled here: question-aware
scoring (that is LongLLMLingua) and distribution alignment of the small model.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._errors import InvalidInput
from ..budget import Budget, check_rate, plan
from ..prompt import SEPARATOR, Prompt
from ..selection import Units, aggregate, must_keep, rank_priorities, token_spans, unit_token_index, word_spans
from .base import CausalMethod, Options, register


@register
class LLMLingua(CausalMethod):
    """Budget controller + iterative token-level compression with a small causal LM."""

    name = "llmlingua"
    budget_aware = True  # the budget controller splits the budget between roles and demonstrations

    @dataclasses.dataclass(frozen=True)
    class Options(Options):
        segment_size: int = 200  # model tokens scored per ITPC step
        granularity: float = 1.0  # k: coarse stage keeps demonstrations until over k * tau_dems * L_dems
        coarse_tokens: int = 96  # perplexity of a demonstration from its first N model tokens (0: all)
        instruction_rate: float = 0.85
        question_rate: float = 1.0  # the paper's 0.9 drops the 'Answer:' cue; see docs/benchmarks.md
        context_level: bool = True  # the coarse (demonstration-level) stage
        unit: str = "word"  # "word" | "token"
        word_score: str = "max"  # how a word's token surprisals combine: mean | max | sum | first
        RANGES = {"segment_size": (8, 8192), "granularity": (1, 100), "coarse_tokens": (0, 8192),
                  "instruction_rate": (0, 1), "question_rate": (0, 1)}

        def __post_init__(self):
            super().__post_init__()
            check_rate(self.instruction_rate)
            check_rate(self.question_rate)
            if self.question_rate < 1 and self.keep_question:
                raise InvalidInput(f"question_rate={self.question_rate} compresses the question, but keep_question "
                                   "is on: pass keep_question=False too")
            if self.unit not in ("word", "token"):
                raise InvalidInput(f"unit must be 'word' or 'token', got {self.unit!r}")
            if self.word_score not in ("mean", "max", "sum", "first"):
                raise InvalidInput(f"word_score must be mean, max, sum or first, got {self.word_score!r}")

    def score(self, prompt: Prompt, options, budget: Budget | None = None, progress=None):
        lm, segs = self.lm, prompt.segments
        toks = [lm.tokenize(s.text) for s in segs]
        tlen = budget.segment_tokens  # counted once by the pipeline, in the target tokenizer
        kept = options.kept_roles()
        role_len = {r: sum(tlen[i] for i in prompt.role_segments(r)) for r in ("instruction", "question")}
        ctx = prompt.role_segments("context")

        def ppl():
            n = options.coarse_tokens or None
            return lm.perplexities([toks[i][0][:n] for i in ctx])

        p = plan(role_len["instruction"], role_len["question"], [tlen[i] for i in ctx], budget.tokens,
                 ppl if options.context_level and len(ctx) > 1 else None,
                 1.0 if "instruction" in kept else options.instruction_rate,
                 1.0 if "question" in kept else options.question_rate, options.granularity)
        selected = {ctx[j] for j in p.selected}
        rate = {"instruction": p.instruction_rate, "question": p.question_rate, "context": p.context_rate}
        # One token stream over the kept segments (joined by the separator, always kept), cut
        # into chunks of ~segment_size tokens that may span short segments; inside a chunk each
        # segment's units are ranked against that segment's component rate.
        sep_ids = lm.tokenize(SEPARATOR)[0]
        out: list[Units] = []
        ids_parts, seg_parts, unit_parts = [], [], []
        for i, seg in enumerate(segs):
            ids, offsets = toks[i]
            if options.unit == "word":
                starts, ends = word_spans(seg.text)
            else:
                starts, ends = token_spans(offsets, len(seg.text))
            forced = must_keep(seg, starts, ends, options)  # the pipeline keeps these; ITPC counts them as kept
            if seg.role == "context" and i not in selected:  # dropped by the coarse stage: ranked
                # after every unit of the kept ones (rank_priorities gives >= -1), so it only
                # fills a budget that the kept demonstrations cannot
                out.append(Units(starts, ends, np.where(forced, np.inf, -2.0)))
                continue
            out.append(Units(starts, ends, np.where(forced, np.inf, 0.0)))
            if ids_parts:
                ids_parts.append(sep_ids)
                seg_parts.append(np.full(len(sep_ids), -1))
                unit_parts.append(np.full(len(sep_ids), -1))
            ids_parts.append(ids)
            seg_parts.append(np.full(len(ids), i))
            unit_parts.append(unit_token_index(starts, offsets[:, 0]) if len(ids) else np.zeros(0, np.int64))
        if not ids_parts:
            return out
        ids, seg_of, unit_of = (np.concatenate(x).astype(np.int64) for x in (ids_parts, seg_parts, unit_parts))
        stream = lm.stream()
        for a, b in _chunks(seg_of * (1 << 32) + unit_of, options.segment_size):
            nll = stream.score(ids[a:b])
            keep = np.ones(b - a, bool)  # separators stay
            for i in np.unique(seg_of[a:b]):
                if i < 0:
                    continue
                at = np.flatnonzero(seg_of[a:b] == i)
                units = unit_of[a:b][at]
                u0, u1 = units[0], units[-1] + 1
                local = units - u0
                scores = aggregate(nll[at], local, u1 - u0, options.word_score)
                weights = np.bincount(local, minlength=u1 - u0)
                u = out[i]
                pr = rank_priorities(scores, weights, rate[segs[i].role], np.isinf(u.priority[u0:u1]))
                u.priority[u0:u1] = pr
                keep[at] = (pr > 0)[local]
            stream.keep(keep)
            if progress:
                progress(b, len(ids))
        return out


def _chunks(owner: np.ndarray, size: int):
    """[a, b) token ranges of about `size` tokens that never split a unit.
    owner [0,0,1,1,1,2] with size 3 -> (0, 5), (5, 6)."""
    n, a = len(owner), 0
    while a < n:
        b = min(a + size, n)
        while b < n and owner[b] == owner[b - 1]:
            b += 1
        yield a, b
        a = b
