"""LongLLMLingua (Jiang et al., 2023, arXiv 2310.06839): question-aware compression for RAG and
long documents: keep what answers the question, not what is merely surprising.

1. Coarse: rank the contexts by relevance to the question (`ranker`: `lm` = LongLLMLingua's
   -log p(question + restatement | context) under the small LM, or `bm25`, or `embedding`;
   see elision.rankers) and keep them in rank order until they hold the budget plus
   `context_budget` target tokens; the rest are dropped whole (protected text survives).
2. Dynamic ratio: the kept contexts share the remaining budget unevenly: the best-ranked keeps
   `(1 + dynamic_ratio)` times the average rate, the worst `(1 - dynamic_ratio)` times, linear
   in rank between.
3. Fine: contrastive perplexity: each token's surprisal without the question minus its
   surprisal when the question comes first; words the question makes predictable are kept
   first, within each context's rate; one global threshold across contexts then lands exactly
   on the budget (selection.fit_to_budget). Pure contrast (`surprisal_weight=0`, the paper's)
   drops what the question cannot predict, such as the very name it asks for ("who designed
   it?" lost "Thomas Bouch" in tests/test_longllmlingua.py), and a difference of two bf16
   passes flips on noise; the default adds half the plain surprisal back.
   Each context is scored on its own (BOS + context, and BOS + question + context), so both
   passes are single padded batches, and the plain pass is the lm ranker's own forward pass
   (its hidden states over the context), paid again only as the LM head on kept contexts.

    >>> c = Compressor("longllmlingua")
    >>> c.compress(context=docs, question="Which bridge collapsed in 1879?", rate=0.25)

Reordering (`reorder`): the contexts go out most relevant first (`sort`, the paper's default),
or alternately at the front and the back so the best sit at both ends (`two_ends`), or as given
(`none`); the instruction stays first and the question last. Not handled: the iterative
(compressed-prefix) variant of the fine stage; contexts longer than `chunk_size` model tokens
are scored in windows of that size.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._errors import InvalidInput
from ..prompt import SEPARATOR, Prompt
from ..rankers import RANKERS, get_ranker
from ..budget import Budget
from ..selection import (Units, aggregate, check_reorder, must_keep, rank_priorities, reorder_contexts,
                         unit_token_index, word_spans)
from .base import CausalMethod, Options, Scored, register


@register
class LongLLMLingua(CausalMethod):
    """Question-aware: rank contexts by the question, keep the words it makes predictable."""

    name = "longllmlingua"

    @dataclasses.dataclass(frozen=True)
    class Options(Options):
        ranker: str = "lm"  # lm | bm25 | embedding
        reorder: str = "sort"  # sort: most relevant first | two_ends: best at both ends | none
        context_budget: int = 100  # the coarse stage keeps contexts up to the budget + this many tokens
        dynamic_ratio: float = 0.3  # best-ranked context keeps (1 + r) x the average rate, the worst (1 - r) x
        contrastive: bool = True  # False: plain surprisal (question-agnostic fine stage)
        surprisal_weight: float = 0.5  # score = (plain - conditioned) + w * plain; 0 = the paper's
        chunk_size: int = 512  # model tokens per forward pass
        word_score: str = "sum"  # how a word's token scores combine: sum | mean | max
        keep_instruction: bool = True
        RANGES = {"context_budget": (0, 1_000_000), "dynamic_ratio": (0, 1), "surprisal_weight": (0, 100),
                  "chunk_size": (8, 8192)}

        def __post_init__(self):
            super().__post_init__()
            if self.ranker not in RANKERS:
                raise InvalidInput(f"unknown ranker {self.ranker!r}; known: {', '.join(sorted(RANKERS))}")
            check_reorder(self.reorder)
            if self.context_budget < 0:
                raise InvalidInput("context_budget must be >= 0 target tokens")
            if not 0 <= self.dynamic_ratio < 1:
                raise InvalidInput(f"dynamic_ratio must be in [0, 1), got {self.dynamic_ratio}")
            if not self.surprisal_weight >= 0:
                raise InvalidInput(f"surprisal_weight must be >= 0, got {self.surprisal_weight}")
            if self.word_score not in ("sum", "mean", "max"):
                raise InvalidInput(f"word_score must be sum, mean or max, got {self.word_score!r}")

    budget_aware = True  # the coarse stage keeps contexts until the budget is held

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._rankers: dict = {}  # loaded models by ranker name (no per-call state)

    def _ranker(self, name: str):
        if name not in self._rankers:
            kw = {"model": self.model_name, "lm": self.lm} if name == "lm" else {}
            self._rankers[name] = get_ranker(name, device=self.device, dtype=self.dtype, **kw)
        return self._rankers[name]

    def score(self, prompt: Prompt, options, budget: Budget | None = None, progress=None) -> Scored:
        segs = prompt.segments
        ctx = prompt.role_segments("context")
        question = " ".join(segs[i].text for i in prompt.role_segments("question"))
        if not question.strip():
            raise InvalidInput("longllmlingua needs a question (question=...); without one use llmlingua")
        if not ctx:
            raise InvalidInput("longllmlingua needs contexts to compress (context=[...])")
        tlen = budget.segment_tokens  # counted once by the pipeline, in the target tokenizer
        fixed = sum(tlen[i] for i, s in enumerate(segs) if s.role != "context")
        avail = max(budget.tokens - fixed, 1)

        # 1. coarse: contexts in order of relevance until the budget (+ context_budget) is held
        ranker = self._ranker(options.ranker)
        texts = [segs[i].text for i in ctx]
        surprisal = None  # k -> context k's plain surprisal, when the ranker's pass gives it
        if hasattr(ranker, "scores_and_surprisal"):
            scores, surprisal = ranker.scores_and_surprisal(question, texts)
        else:
            scores = ranker.scores(question, texts)
        ranked = [ctx[k] for k in np.argsort(-scores, kind="stable")]
        order = reorder_contexts(len(segs), ctx, ranked, options.reorder)
        selected, total = [], 0
        for i in ranked:
            if selected and total >= avail + options.context_budget:
                break
            selected.append(i)
            total += tlen[i]
        # 2. dynamic ratio: linear in rank, best first
        base = min(1.0, avail / max(total, 1))
        k = len(selected)
        rate = {i: float(np.clip(base * (1 + options.dynamic_ratio * (1 - 2 * r / (k - 1) if k > 1 else 0)), 0.01, 1))
                for r, i in enumerate(selected)}

        # 3. fine: contrastive surprisal over the selected contexts, in prompt order
        free = {}  # segment -> plain surprisal from the ranker's pass (contexts of one window)
        if surprisal is not None:
            for k, i in enumerate(ctx):
                if i in rate and len(self.lm.tokenize(segs[i].text)[0]) <= options.chunk_size:
                    got = surprisal(k)
                    if got is not None:
                        free[i] = got
        info = self._surprisal(prompt, [i for i in ctx if i in rate], question, options, free, progress)
        out = []
        for i, seg in enumerate(segs):
            starts, ends = word_spans(seg.text)
            if seg.role != "context":  # kept whole unless the options say otherwise: then by position
                out.append(Units(starts, ends, -np.arange(len(starts), dtype=np.float64) / max(len(starts), 1)))
            elif i not in rate:  # dropped by the coarse stage: only what the keep policy forces survives
                out.append(Units(starts, ends, np.full(len(starts), -np.inf)))
            else:
                forced = must_keep(seg, starts, ends, options)  # kept by the pipeline; not spent from the rate
                ids, offsets = self.lm.tokenize(seg.text)
                owner = unit_token_index(starts, offsets[:, 0]) if len(ids) else np.zeros(0, np.int64)
                score = aggregate(info[i], owner, len(starts), options.word_score) if len(ids) else np.zeros(len(starts))
                weights = np.maximum(np.bincount(owner, minlength=len(starts)), 1)
                out.append(Units(starts, ends, rank_priorities(score, weights, rate[i], forced)))
        return Scored(tuple(out), tuple(order) if order is not None else None)

    def _surprisal(self, prompt, order, question, options, free, progress=None) -> dict[int, np.ndarray]:
        """Per model token of each selected context: surprisal given BOS + the context so far
        (windows of `chunk_size`), minus, when contrastive, the same given the question first.
        Each context is scored on its own, so every pass is one padded batch; the plain pass
        comes from the lm ranker's pass where it scored the whole context (`free`)."""
        lm, win = self.lm, options.chunk_size
        q_ids = lm.tokenize(question + SEPARATOR)[0][-win:]
        plain_rows, cond_rows, where = [], [], []  # where: (segment, offset in its ids)
        for i in order:
            ids = lm.tokenize(prompt.segments[i].text)[0]
            for a in range(0, len(ids), win):
                part = ids[a:a + win]
                where.append((i, a, len(part)))
                plain_rows.append(None if i in free else np.concatenate([[lm.bos_id], part]))
                cond_rows.append(np.concatenate([[lm.bos_id], q_ids, part]))
        todo = [k for k, r in enumerate(plain_rows) if r is not None]
        plain = dict(zip(todo, lm.token_nll([plain_rows[k] for k in todo])))
        if progress:  # between the two passes: a caller may stop here (the service's time limit)
            progress(1, 2)
        cond = {}
        if options.contrastive:
            cond = dict(enumerate(lm.token_nll(cond_rows, [len(q_ids) + 1] * len(cond_rows))))
        out = {i: np.zeros(len(lm.tokenize(prompt.segments[i].text)[0])) for i in order}
        for k, (i, a, n) in enumerate(where):
            nll = plain[k] if k in plain else free[i]
            # how much the question helps predict a token, plus (w) how surprising it is anyway
            out[i][a:a + n] = nll - cond[k] + options.surprisal_weight * nll if options.contrastive else nll
        if progress:
            total = sum(len(v) for v in out.values())
            progress(total, total)
        return out

