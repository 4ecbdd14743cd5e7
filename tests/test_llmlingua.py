"""LLMLingua on the real SmolLM2-135M (loaded once per session by the `llmlingua` fixture)."""

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elision import Compressor, InvalidInput, UnknownName

from .conftest import is_subsequence

SLOW_SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))


def _kw(gsm8k):
    return dict(context=gsm8k["context"], instruction=gsm8k["instruction"], question=gsm8k["question"])


@pytest.mark.parametrize("rate", [0.5, 0.33, 0.2])
def test_rate_is_met_in_the_target_tokenizer(llmlingua, gsm8k, rate):
    r = llmlingua.compress(**_kw(gsm8k), rate=rate)
    assert r.origin_tokens >= 500
    assert abs(r.rate - rate) / rate <= 0.10
    assert r.compressed_tokens == llmlingua.target.count(r.compressed_prompt)
    assert is_subsequence(r.compressed_prompt, r.original_prompt)


def test_target_tokens_budget(llmlingua, docs):
    r = llmlingua.compress(context=docs["docs"], question=docs["question"], target_tokens=200)
    assert 180 <= r.compressed_tokens <= 200
    assert r.requested_rate is None and r.budget_tokens == 200


@SLOW_SETTINGS
@given(n_docs=st.integers(1, 10), rates=st.lists(st.sampled_from([0.15, 0.25, 0.4, 0.6, 0.8]), min_size=2,
                                                  max_size=2, unique=True), with_q=st.booleans())
def test_lower_rate_never_longer_and_subsequence(llmlingua, docs, n_docs, rates, with_q):
    kw = dict(context=docs["docs"][:n_docs], question=docs["question"] if with_q else "")
    lo, hi = sorted(rates)
    a = llmlingua.compress(**kw, rate=lo)
    b = llmlingua.compress(**kw, rate=hi)
    assert a.compressed_tokens <= b.compressed_tokens
    for r in (a, b):
        assert is_subsequence(r.compressed_prompt, r.original_prompt)
        if r.compressed_tokens > r.budget_tokens:  # only where the kept question alone is over it,
            # which fit_to_budget keeps and reports (one 90-token document at rate 0.15: 14 tokens
            # of budget, a 16-token question); then nothing else may be kept
            assert with_q and r.compressed_prompt == docs["question"]
            assert llmlingua.target.count(docs["question"]) > r.budget_tokens


def test_same_input_same_output(llmlingua, docs):
    kw = dict(context=docs["docs"], question=docs["question"], rate=0.3)
    assert llmlingua.compress(**kw).compressed_prompt == llmlingua.compress(**kw).compressed_prompt


def test_protected_spans_survive(llmlingua, docs):
    keep = ["Thomas Bouch", "67P/Churyumov-Gerasimenko", "370 leagues"]
    r = llmlingua.compress(context=docs["docs"], rate=0.2, protect=[*keep, re.compile(r"\b1[89]\d\d\b")])
    for k in keep:
        assert k in r.compressed_prompt
    for year in re.findall(r"\b1[89]\d\d\b", r.original_prompt):
        assert year in r.compressed_prompt
    assert is_subsequence(r.compressed_prompt, r.original_prompt)


def test_force_digits_and_newlines(llmlingua, gsm8k):
    r = llmlingua.compress(**_kw(gsm8k), rate=0.5, force_digits=True)
    assert re.findall(r"\d+", r.original_prompt) == re.findall(r"\d+", r.compressed_prompt)


def test_token_units_and_no_coarse_stage(llmlingua, docs):
    r = llmlingua.compress(context=docs["docs"], rate=0.4, unit="token", context_level=False)
    assert abs(r.rate - 0.4) / 0.4 <= 0.10
    assert is_subsequence(r.compressed_prompt, r.original_prompt)


def test_coarse_stage_drops_whole_documents(llmlingua, docs):
    r = llmlingua.compress(context=docs["docs"], rate=0.15, granularity=1.0)
    kept = [sum(e - s for s, e in spans) / len(seg.text) for seg, spans in zip(r.prompt.segments, r.spans)]
    survivors = [k for k in kept if k > 0]
    assert len(survivors) in (1, 2, 3)  # ~15% of ten similar paragraphs: one or two, plus the one crossing k*B
    assert min(survivors) > 0.4  # the kept ones are only trimmed, not shredded


def test_longer_than_the_model_window(llmlingua, docs):
    """Inputs longer than the small model's context are still compressed (the cache is rebuilt)."""
    lm = llmlingua.method.lm
    saved = lm.max_context
    lm.max_context = 160  # pretend the model only sees 160 tokens at once
    try:
        text = "\n\n".join(docs["docs"])  # ~700 model tokens, one context
        r = llmlingua.compress(text, rate=0.3)
    finally:
        lm.max_context = saved
    assert abs(r.rate - 0.3) / 0.3 <= 0.10
    assert is_subsequence(r.compressed_prompt, r.original_prompt)


def test_stream_window_bounds_the_cache_and_leaves_short_prompts_alone(llmlingua, docs):
    """Long inputs (issue 14): the cache never holds more than the stream's window (each new
    token attends to at most that many: time linear in length), a rebuild re-encodes only the
    last `tail` kept tokens; a prefix that stays under the window scores exactly as without one."""
    lm = llmlingua.method.lm
    ids = np.concatenate([lm.tokenize(d)[0] for d in docs["docs"]])  # ~700 model tokens
    small, big = lm.stream(window=96, tail=24), lm.stream(window=4096, tail=1024)
    lengths, rebuilt = [], 0
    for a in range(0, len(ids), 40):
        chunk = ids[a:a + 40]
        before = small.cache.get_seq_length()
        small.score(chunk)
        rebuilt += small.cache.get_seq_length() < before + len(chunk)
        keep = np.arange(len(chunk)) % 3 == 0
        small.keep(keep)
        lengths.append(small.cache.get_seq_length())
        big.score(chunk)
        big.keep(keep)
    assert max(lengths) <= 96 and rebuilt >= 3
    assert big.cache.get_seq_length() > 96  # the big window never rebuilt
    first = ids[:40]
    a, b = lm.stream(window=96, tail=24).score(first), lm.stream().score(first)
    assert np.allclose(a, b)


def test_stream_matches_one_pass(llmlingua, docs):
    """Scoring in chunks through the KV cache equals scoring in one pass (up to bf16 noise)."""
    lm = llmlingua.method.lm
    ids, _ = lm.tokenize(docs["docs"][0])
    one = lm.stream().score(ids)
    s = lm.stream()
    a = s.score(ids[:20])
    s.keep(np.ones(20, bool))
    b = s.score(ids[20:])
    assert np.corrcoef(one, np.concatenate([a, b]))[0, 1] > 0.99
    assert abs(lm.perplexities([ids])[0] - one.mean()) < 0.1


def test_bad_input_is_rejected(llmlingua):
    for kwargs, msg in [
        (dict(context=""), "empty prompt"),
        (dict(context="text", rate=0), "rate"),
        (dict(context="text", rate=1.2), "rate"),
        (dict(context="text", target_tokens=0), "target_tokens"),
        (dict(context="text", segment_sizes=3), "unknown option"),
        (dict(context="text", unit="char"), "unit"),
    ]:
        with pytest.raises(InvalidInput, match=msg):
            llmlingua.compress(**kwargs)
    with pytest.raises(InvalidInput, match="not both"):
        llmlingua.compress("a", context="b")


def test_unknown_names_list_what_exists():
    with pytest.raises(UnknownName, match="known: .*llmlingua.*random.*truncate"):
        Compressor("llmlinguaa")
    with pytest.raises(UnknownName, match="smollm2-135m"):
        Compressor("llmlingua", model="tiny-llama")
    with pytest.raises(UnknownName, match="cl100k_base"):
        Compressor("random", target="gpt-5-turbo-ultra")
    with pytest.raises(InvalidInput, match="uses no model"):
        Compressor("random", model="smollm2-135m")


def test_llmlingua_dict_and_result_numbers(llmlingua, docs):
    r = llmlingua.compress(context=docs["docs"][:4], rate=0.5)
    d = r.to_llmlingua_dict()
    assert set(d) == {"compressed_prompt", "origin_tokens", "compressed_tokens", "ratio", "rate", "saving"}
    assert d["ratio"] == f"{r.ratio:.1f}x" and d["rate"].endswith("%")
    assert r.saving_usd == pytest.approx((r.origin_tokens - r.compressed_tokens) * 2.5 / 1e6)
    marked = r.marked()
    assert marked.replace("[-", "").replace("-]", "") == r.original_prompt


def test_question_kept_whole_by_default(llmlingua, docs):
    q = "Question: " + docs["question"] + "\nAnswer:"
    r = llmlingua.compress(context=docs["docs"], question=q, rate=0.25)
    assert r.compressed_prompt.endswith(q)  # the 'Answer:' cue survives (see docs/benchmarks.md)
    r = llmlingua.compress(context=docs["docs"], question=q, rate=0.25, question_rate=0.5, keep_question=False)
    assert not r.compressed_prompt.endswith(q)
    with pytest.raises(InvalidInput, match="keep_question"):  # compressing a kept question is a contradiction
        llmlingua.compress(context=docs["docs"], question=q, rate=0.25, question_rate=0.5)
