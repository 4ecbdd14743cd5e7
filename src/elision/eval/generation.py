"""Optional generation metrics against any OpenAI-compatible chat endpoint.

    >>> g = Generator("https://api.openai.com/v1", api_key="sk-...", model="gpt-4o-mini")
    >>> answer = g.answer(compressed_prompt)
    >>> exact_match(answer, golds), f1(answer, golds), rouge_l(answer, golds)

Only for users who have an endpoint: without one, the runner skips these metrics and says so.
Scores use SQuAD normalization (lower case, no punctuation or articles).
"""

from __future__ import annotations

import json
import urllib.error
from collections import Counter

from .._io import post_json
from .datasets import normalize


def exact_match(pred: str, golds: list[str]) -> float:
    return float(any(normalize(pred) == normalize(g) for g in golds))


def f1(pred: str, golds: list[str]) -> float:
    """Token-overlap F1, best over the gold answers. 'the big cat' vs 'big dog' -> 0.5."""
    best = 0.0
    p = normalize(pred).split()
    for g in golds:
        t = normalize(g).split()
        common = sum((Counter(p) & Counter(t)).values())
        if common:
            prec, rec = common / len(p), common / len(t)
            best = max(best, 2 * prec * rec / (prec + rec))
    return best


def rouge_l(pred: str, golds: list[str]) -> float:
    """ROUGE-L F-measure (longest common subsequence of words), best over the golds."""
    best = 0.0
    p = normalize(pred).split()
    for g in golds:
        t = normalize(g).split()
        if not p or not t:
            continue
        prev = [0] * (len(t) + 1)
        for a in p:
            cur = [0]
            for j, b in enumerate(t):
                cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
            prev = cur
        lcs = prev[-1]
        if lcs:
            prec, rec = lcs / len(p), lcs / len(t)
            best = max(best, 2 * prec * rec / (prec + rec))
    return best


class Generator:
    def __init__(self, base_url: str, api_key: str | None = None, model: str = "gpt-4o-mini",
                 max_tokens: int = 64, timeout: float = 60.0):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key, self.model, self.max_tokens, self.timeout = api_key, model, max_tokens, timeout

    def answer(self, prompt: str) -> str:
        payload = {"model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
                   "messages": [{"role": "user", "content": prompt}]}
        try:
            data = json.loads(post_json(self.url, payload, self.api_key, self.timeout))
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as e:
            raise RuntimeError(f"generation endpoint {self.url} failed: {e}") from e
        return data["choices"][0]["message"]["content"].strip()
