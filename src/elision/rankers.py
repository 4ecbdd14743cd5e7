"""Rankers: how relevant is each context to a question? One small class per idea, chosen by name.

    >>> get_ranker("bm25").scores("Which bridge collapsed?", docs)      # higher = more relevant
    array([7.1, 0.0, 1.3, ...])

- `lm` (LongLLMLingua, arXiv 2310.06839): -log p(question + restatement | context) per token
  under a small causal LM ("We can get the answer to this question in the given documents."
  follows the question, as in the paper); the context that best explains the question wins.
- `bm25`: Okapi BM25 over lower-cased word tokens (k1 1.5, b 0.75), no model at all.
- `embedding`: cosine similarity of mean-pooled sentence embeddings from the offline
  all-MiniLM-L6-v2 (`minilm-l6`), the sentence-transformers recipe.

Not handled: cross-encoders and rankers that need the network (add one by registering a class
with a `scores(question, contexts)` method).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import ClassVar, Protocol

import numpy as np

from ._errors import InvalidInput, UnknownName

RESTATEMENT = "We can get the answer to this question in the given documents."
_WORD = re.compile(r"\w+")
# English function words: what a question shares with every text, not with its answer
STOP_WORDS = frozenset("""a an the of to in on at by for with from and or but if then than that this these those is are
was were be been being it its as into not no so such can could may might must shall should will would do does did
has have had which who whom whose what when where why how there their them they he she his her we our you your i
me my also any all each more most other some only own same very just about over under up down out off again""".split())


def content_words(text: str) -> set[str]:
    """The lower-cased words of `text` of 3+ characters that are not STOP_WORDS, split at
    underscores and punctuation: 'When does start_time begin?' -> {'start', 'time', 'begin'}."""
    return {w for w in re.findall(r"[a-z][a-z0-9]+", text.lower()) if w not in STOP_WORDS and len(w) > 2}


class Ranker(Protocol):
    """Constructed as cls(device=..., dtype=..., **settings); a ranker without a model ignores
    device and dtype."""

    name: ClassVar[str]

    def scores(self, question: str, contexts: Sequence[str]) -> np.ndarray:
        """One score per context; higher = more relevant to the question."""


RANKERS: dict[str, type] = {}


def register(cls: type) -> type:
    RANKERS[cls.name] = cls
    return cls


def get_ranker(name: str, *, device: str | None = None, dtype: str | None = None, **kwargs) -> Ranker:
    """The ranker registered as `name`, its model (if any) on `device` in `dtype` (None: the
    automatic choice, as everywhere in elision). `kwargs` are the ranker's own settings.

    get_ranker("lm", device="cpu", dtype="float32").lm is CausalLM.shared("smollm2-135m",
    device="cpu", dtype="float32"): a method on the same model and device shares the weights."""
    if name not in RANKERS:
        raise UnknownName("ranker", name, RANKERS)
    return RANKERS[name](device=device, dtype=dtype, **kwargs)


def _check(question: str, contexts: Sequence[str]) -> list[str]:
    if not isinstance(question, str) or not question.strip():
        raise InvalidInput("ranking needs a non-empty question")
    if isinstance(contexts, str) or not all(isinstance(c, str) for c in contexts):
        raise InvalidInput("contexts must be a list of strings")
    if not contexts:
        raise InvalidInput("a question without contexts: nothing to rank")
    return list(contexts)


@register
class BM25:
    """Okapi BM25. 'bridge collapsed' vs ['The bridge collapsed.', 'Bread rises.'] -> [>0, 0]."""

    name = "bm25"

    def __init__(self, k1: float = 1.5, b: float = 0.75, device: str | None = None, dtype: str | None = None):
        self.k1, self.b = k1, b  # device, dtype: no model to place

    def scores(self, question, contexts):
        contexts = _check(question, contexts)
        post, lengths = postings(contexts)
        return bm25_scores(terms_of(question), [(0, post)], lengths, self.k1, self.b)


def terms_of(text: str) -> list[str]:
    """A query's distinct words, lower-cased, sorted (a fixed order: the same sums in every process)."""
    return sorted(set(_WORD.findall(text.lower())))


def postings(texts: Sequence[str]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """An inverted index of `texts`: word -> (indices of the texts holding it, its count in each),
    and each text's length in words. ['a b a', 'b'] -> ({'a': ([0], [2.]), 'b': ([0, 1], [1., 1.])}, [3., 1.])"""
    idx: dict[str, list[int]] = {}
    tf: dict[str, list[float]] = {}
    lengths = np.zeros(len(texts))
    for i, t in enumerate(texts):
        words = Counter(_WORD.findall(t.lower()))
        lengths[i] = sum(words.values())
        for w, c in words.items():
            idx.setdefault(w, []).append(i)
            tf.setdefault(w, []).append(float(c))
    return {w: (np.array(idx[w], np.int64), np.array(tf[w])) for w in idx}, lengths


def bm25_scores(terms: Sequence[str], parts: Sequence[tuple[int, dict]], lengths: np.ndarray,
                k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    """Okapi BM25 of `terms` over documents whose postings come in parts, each (offset of its
    first document, postings as from postings()); `lengths` of all documents. Parts let a caller
    keep one index per message and score a whole conversation without re-reading it."""
    n = len(lengths)
    avg = max(lengths.mean(), 1e-9) if n else 1.0
    out = np.zeros(n)
    for term in terms:
        hits = [(off + p[term][0], p[term][1]) for off, p in parts if term in p]
        if not hits:
            continue
        at = np.concatenate([h[0] for h in hits])
        tf = np.concatenate([h[1] for h in hits])
        idf = math.log(1 + (n - len(at) + 0.5) / (len(at) + 0.5))
        out[at] += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * lengths[at] / avg))
    return out


@register
class Embedding:
    """Cosine similarity of mean-pooled, normalised MiniLM sentence embeddings."""

    name = "embedding"

    def __init__(self, model: str = "minilm-l6", device: str | None = None, dtype: str | None = None,
                 batch_size: int = 32):
        from .models.hf import require_transformers
        from .models.registry import prepare, resolve_device, resolve_dtype

        tf = require_transformers()
        path = prepare(model)
        self.device = resolve_device(device)
        self.tokenizer = tf.AutoTokenizer.from_pretrained(str(path))
        self.model = tf.AutoModel.from_pretrained(str(path), dtype=resolve_dtype(dtype, self.device))
        self.model.to(self.device).eval()
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(list(texts[i:i + self.batch_size]), padding=True, truncation=True,
                                     max_length=256, return_tensors="pt").to(self.device)
                h = self.model(**enc).last_hidden_state.float()  # pool in float32 whatever the dtype
                m = enc["attention_mask"][..., None].to(h.dtype)
                v = (h * m).sum(1) / m.sum(1).clamp(min=1)
                out.append(torch.nn.functional.normalize(v, dim=-1).float().cpu().numpy())
        return np.concatenate(out)

    def scores(self, question, contexts):
        contexts = _check(question, contexts)
        e = self.embed([question, *contexts])
        return e[1:] @ e[0]


@register
class LMLikelihood:
    """LongLLMLingua's ranking: minus the mean surprisal of question + restatement after each
    context under a small causal LM (the shared instance: loaded once per process)."""

    name = "lm"

    def __init__(self, model: str = "smollm2-135m", device: str | None = None, dtype: str | None = None,
                 restatement: str = RESTATEMENT, max_context_tokens: int = 1024, lm=None):
        from .models.causal import CausalLM

        # lm: an already loaded CausalLM (a method passes its own, whatever dtype it resolved to)
        self.lm = lm if lm is not None else CausalLM.shared(model, device=device, dtype=dtype)
        self.restatement, self.max_context_tokens = restatement, max_context_tokens

    def scores(self, question, contexts):
        return self.scores_and_surprisal(question, contexts)[0]

    def scores_and_surprisal(self, question, contexts):
        """The scores, and what the same forward pass gives almost for free: a function k ->
        context k's own token surprisal given BOS + the context before it (None where the
        context was cut to `max_context_tokens`). The LM head runs on those positions only when
        asked, so a caller pays it for the contexts it keeps; LongLLMLingua's fine stage uses it
        as its unconditioned pass."""
        contexts = _check(question, contexts)
        lm = self.lm
        suffix = lm.tokenize("\n\n" + question + (" " + self.restatement if self.restatement else ""))[0]
        prefixes = [lm.tokenize(c)[0] for c in contexts]
        rows = [np.concatenate([[lm.bos_id], p[-self.max_context_tokens:], suffix]) for p in prefixes]
        hidden = lm.hidden_states(rows)
        n = len(suffix)
        scores = np.array([-lm.nll_from_hidden(h, r, len(r) - n).mean() for h, r in zip(hidden, rows)])

        def surprisal(k: int) -> np.ndarray | None:
            if len(prefixes[k]) > self.max_context_tokens:
                return None
            return lm.nll_from_hidden(hidden[k], rows[k], 1, len(rows[k]) - n)

        return scores, surprisal
