"""Compressor.compress_batch: the same results as compressing one by one, batched scoring for
llmlingua2 (chunks of several prompts, each with its own question, in the same encoder
batches), every prompt checked before any model runs."""

import numpy as np
import pytest

from elision import Compressor, InvalidInput, TooLong
from elision.models.encoder import TokenClassifier


@pytest.fixture(scope="module")
def ll2_32():
    # float32: batch composition cannot change a single logit beyond rounding, so the kept text
    # must match exactly
    return Compressor("llmlingua2", target="cl100k_base", dtype="float32")


def _prompts(docs):
    d, q = docs["docs"], docs["question"]
    return [
        {"context": d, "question": q},
        {"context": d[::-1], "question": "Who designed the bridge?"},  # another question, another prefix
        d[1:],  # no question: the task-agnostic classifier
        {"context": d[:2], "instruction": "Answer briefly.", "question": q, "protect": ["Dundee"]},
    ]


def test_llmlingua2_batch_equals_one_by_one(ll2_32, docs, monkeypatch):
    prompts = _prompts(docs)
    one = [ll2_32.compress(**p, rate=0.33) if isinstance(p, dict) else ll2_32.compress(p, rate=0.33)
           for p in prompts]
    calls = []
    real = TokenClassifier.keep_probs

    def spy(self, chunks, *a, **k):
        calls.append(len(chunks))
        return real(self, chunks, *a, **k)

    monkeypatch.setattr(TokenClassifier, "keep_probs", spy)
    ll2_32.pipeline.cache = type(ll2_32.pipeline.cache)(8)  # nothing cached from the loop above
    batch = ll2_32.compress_batch(prompts, rate=0.33)
    assert [r.compressed_prompt for r in batch] == [r.compressed_prompt for r in one]
    assert [r.compressed_tokens for r in batch] == [r.compressed_tokens for r in one]
    assert "Dundee" in batch[3].compressed_prompt and batch[3].compressed_prompt.startswith("Answer briefly.")
    # one keep_probs call per classifier (task-aware and task-agnostic), not one per prompt
    assert len(calls) == 2


def test_int8_batch_equals_one_by_one_exactly(docs):
    """int8 quantizes a forward's activations with one scale for its whole input: prompts are
    scored on their own, so a prompt's result never depends on the prompts batched with it."""
    from elision.models import onnx

    if not onnx.available():
        pytest.skip("onnxruntime not installed")
    c = Compressor("llmlingua2", target="cl100k_base", dtype="int8")
    prompts = _prompts(docs)
    one = [c.compress(**p, rate=0.33) if isinstance(p, dict) else c.compress(p, rate=0.33) for p in prompts]
    c.pipeline.cache = type(c.pipeline.cache)(8)
    assert [r.compressed_prompt for r in c.compress_batch(prompts, rate=0.33)] == [r.compressed_prompt for r in one]


def test_per_chunk_prefixes_match_separate_calls(ll2_32, docs):
    clf = TokenClassifier.shared("llmlingua2-qa-minilm", dtype="float32")
    chunks = [clf.tokenize(t).ids[:50] for t in docs["docs"]]
    qs = [clf.tokenize(docs["question"]).ids, None, clf.tokenize("Who designed it?").ids] * len(chunks)
    qs = qs[:len(chunks)]
    mixed = clf.keep_probs(chunks, qs, row_tokens=128)
    alone = [clf.keep_probs([c], q)[0] for c, q in zip(chunks, qs)]
    assert max(float(np.abs(a - b).max()) for a, b in zip(mixed, alone)) < 1e-4
    with pytest.raises(ValueError, match="prefixes"):
        clf.keep_probs(chunks, qs[:1])


def test_default_score_batch_and_budget_aware_path(docs):
    # a method without its own score_batch (selective_context has no model-free twin, so use
    # the model-free baselines): same results as the loop
    c = Compressor("random", target="cl100k_base", seed=3)
    prompts = [docs["docs"], docs["docs"][:2]]
    assert [r.compressed_prompt for r in c.compress_batch(prompts, rate=0.5)] == \
           [c.compress(p, rate=0.5).compressed_prompt for p in prompts]


def test_bad_batches_fail_before_any_scoring(docs):
    c = Compressor("random", target="cl100k_base", max_input_tokens=200)
    with pytest.raises(InvalidInput, match="list of prompts"):
        c.compress_batch("one string", rate=0.5)
    with pytest.raises(InvalidInput, match="prompt 1: .*unknown keys"):
        c.compress_batch([docs["docs"], {"contexts": docs["docs"]}], rate=0.5)
    with pytest.raises(TooLong, match="prompt 1 has"):
        c.compress_batch(["short text here", " ".join(docs["docs"] * 3)], rate=0.5)
    with pytest.raises(InvalidInput, match="batch_size"):
        c.compress_batch(["a b c"], rate=0.5, batch_size=0)
    with pytest.raises(InvalidInput):
        c.compress_batch(["a b c", ""], rate=0.5)  # an empty prompt, named like compress() names it


def test_batches_are_only_as_wide_as_their_fullest_rows(ll2_32, docs, monkeypatch):
    """Rows go through the encoder in batches of one width bucket (fullest row rounded up to
    ROW_BUCKET), not all padded to the 128 of the widest: question-aware chunks of ~100 tokens
    left a quarter of every batch as padding (issue 14). The probabilities stay those of one
    chunk at a time."""
    from elision.models import encoder

    clf = TokenClassifier.shared("llmlingua2-qa-minilm", dtype="float32")
    q = clf.tokenize(docs["question"]).ids
    ids = clf.tokenize(" ".join(docs["docs"]) * 4).ids
    lengths = [100, 95, 70, 40, 30, 100, 12, 60] * 3
    starts = np.cumsum([0, *lengths[:-1]])
    assert starts[-1] + lengths[-1] <= len(ids)
    chunks = [ids[a:a + n] for a, n in zip(starts, lengths)]
    widths = []
    real = clf.model.forward
    monkeypatch.setattr(clf.model, "forward", lambda *a, **k: widths.append(k["input_ids"].shape[1]) or real(*a, **k))
    got = clf.keep_probs(chunks, q, row_tokens=128)
    assert all(w % encoder.ROW_BUCKET == 0 and w <= 128 for w in widths) and min(widths) < 128, widths
    alone = [clf.keep_probs([c], q)[0] for c in chunks]
    assert max(float(np.abs(a - b).max()) for a, b in zip(got, alone)) < 1e-4
