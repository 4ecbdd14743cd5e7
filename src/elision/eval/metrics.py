"""Fidelity metrics: how much of what the prompt told the target LM survives compression.

The LLMLingua objective is to keep the target LM's output distribution. Offline we measure it
with a local target LM (default gemma3-270m: another family and tokenizer than the SmolLM2
compressor, as in real use) on the reference answer (or summary) y:

    NLL(y | prompt) per answer token, for the full prompt, the compressed one, and no context
    retained = (NLL_none - NLL_comp) / (NLL_none - NLL_full)   (1 = nothing lost, 0 = as if
               the context were gone); None when the context does not help (gap < 0.05 nats)
    KL       = mean over answer positions of KL(p_full || p_comp) over the next-token vocabulary

    >>> t = TargetLM("gemma3-270m")
    >>> full = t.score("Paris is the capital of France. Q: capital of France? A:", "Paris")
    >>> full.nll, full.logp.shape             # mean nats/token, [answer tokens, vocab]

Not handled here: generation-based metrics (exact match / F1 against an API endpoint).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_GAP = 0.05  # nats/token: below this the context does not help and `retained` is undefined


@dataclass
class AnswerScore:
    nll: float  # mean negative log-likelihood per answer token (nats)
    logp: object  # torch tensor [answer tokens, vocab], log-probabilities (for KL)


class TargetLM:
    def __init__(self, model: str = "gemma3-270m", device: str | None = None, dtype: str | None = None,
                 max_prompt_tokens: int = 3072):
        from ..models.causal import CausalLM

        self.lm = CausalLM.shared(model, device=device, dtype=dtype)
        self.name = model
        self.max_prompt_tokens = max_prompt_tokens

    def score(self, prompt: str, answer: str) -> AnswerScore:
        torch = self.lm.torch
        lm = self.lm
        p_ids = lm.tokenize(prompt)[0] if prompt else np.zeros(0, np.int64)
        a_ids = lm.tokenize(" " + answer.strip())[0]
        p_ids = p_ids[-self.max_prompt_tokens:]  # keep the end: the question sits there
        row = np.concatenate([[lm.bos_id], p_ids, a_ids]).astype(np.int64)
        h = lm.hidden_states([row])[0]
        answer = torch.from_numpy(row[len(p_ids) + 1:]).to(lm.device)
        with torch.inference_mode():
            hp = h[len(p_ids):len(p_ids) + len(a_ids)]  # the states that predict each answer token
            logp = torch.log_softmax(lm.logits(hp), -1)
            nll = -logp.gather(-1, answer[:, None])[:, 0]
        return AnswerScore(float(nll.mean()), logp)


def kl(full: AnswerScore, comp: AnswerScore) -> float:
    p = full.logp.exp()
    return float((p * (full.logp - comp.logp)).sum(-1).mean())


def retained(nll_none: float, nll_full: float, nll_comp: float) -> float | None:
    """(none - comp) / (none - full); None when the context does not help."""
    gap = nll_none - nll_full
    if gap < MIN_GAP:
        return None
    return (nll_none - nll_comp) / gap
