"""What both retrieval integrations do: compress a list of retrieved texts against a query in
one call, and give back each text's kept part (None where the method dropped it all).

    >>> compress_texts(Compressor("random"), ["one two three four", "five six"], "", rate=0.5)
    ['one two', 'five']      # e.g.; each kept part is a subsequence of its text

The query is the prompt's question: question-aware methods (longllmlingua, llmlingua2 with its
task-aware model) rank and cut by it, and it is kept whole, so the rate applies to the texts
alone: the budget is rate x the texts' tokens plus the query's own.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..budget import check_rate
from ..compressor import Compressor
from ..prompt import Prompt


def compressor_of(owner) -> Compressor:
    """An integration's compressor: the one it was given (`owner.compressor`), else one built
    from its method / model / target / device on first use and kept in `owner._built`."""
    if owner.compressor is not None:
        return owner.compressor
    if owner._built is None:
        owner._built = Compressor(owner.method, model=owner.model, target=owner.target, device=owner.device)
    return owner._built


def compress_texts(compressor: Compressor, texts: Sequence[str], query: str, *, rate: float | None = 0.5,
                   target_tokens: int | None = None, options: dict | None = None) -> list[str | None]:
    keep = [i for i, t in enumerate(texts) if t.strip()]
    out: list[str | None] = [None] * len(texts)
    if not keep:
        return out
    prompt = Prompt.build([texts[i] for i in keep], "", query or "")
    count = compressor.target.count
    query_tokens = count(query) if (query or "").strip() else 0
    if target_tokens is None:
        docs = count(Prompt.build([texts[i] for i in keep]).text)
        target_tokens = max(1, round(check_rate(0.5 if rate is None else rate) * docs))
    r = compressor.compress(prompt, target_tokens=target_tokens + query_tokens, **(options or {}))
    ctx = r.prompt.role_segments("context")
    for i, k in zip(keep, ctx):
        seg = r.prompt.segments[k]
        kept = "".join(seg.text[s:e] for s, e in r.spans[k])
        out[i] = kept or None
    return out
