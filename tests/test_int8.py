"""dtype='int8' (issue 14): ONNX Runtime int8 for the LLMLingua-2 encoder (torch dynamic int8
where onnxruntime is missing); close to float32 where it matters (the words kept), every
pipeline guarantee unchanged. Causal LMs refuse int8 (measured: their surprisal drifts)."""

import numpy as np
import pytest

from elision import Compressor, InvalidInput
from elision.models import onnx
from elision.models.encoder import TokenClassifier

from .conftest import is_subsequence

pytestmark = pytest.mark.skipif(not onnx.available(), reason="onnxruntime/onnx not installed (elision[models])")


def test_llmlingua2_int8_runs_in_onnxruntime_and_keeps_what_float32_keeps(docs, tmp_path, monkeypatch):
    monkeypatch.setattr("elision.models.encoder.cache_dir", lambda: tmp_path)  # a fresh export, reused after
    monkeypatch.setattr("elision.models.encoder._SHARED", {})
    q = Compressor("llmlingua2", target="cl100k_base", dtype="int8")
    assert q.method.precision == "int8" and q.method.qa_clf.ort is not None
    graphs = list(tmp_path.glob("onnx/*/model.int8.onnx"))
    assert len(graphs) == 1  # the task-aware classifier; the task-agnostic one loads when first needed
    assert q.compress(context=docs["docs"], rate=0.5).compressed_tokens > 0  # no question: the other one
    assert len(list(tmp_path.glob("onnx/*/model.int8.onnx"))) == 2
    f = Compressor("llmlingua2", target="cl100k_base", dtype="float32")
    for rate in (0.5, 0.33):
        a = q.compress(context=docs["docs"], question=docs["question"], rate=rate, protect=["Thomas Bouch"])
        b = f.compress(context=docs["docs"], question=docs["question"], rate=rate, protect=["Thomas Bouch"])
        assert is_subsequence(a.compressed_prompt, a.prompt.text)
        assert a.compressed_tokens <= a.budget_tokens and "Thomas Bouch" in a.compressed_prompt
        wa, wb = set(a.compressed_prompt.split()), set(b.compressed_prompt.split())
        assert len(wa & wb) / len(wa | wb) > 0.75, (rate, len(wa & wb) / len(wa | wb))
    # per-token probabilities: close to float32 on average
    clf_q, clf_f = q.method.qa_clf, f.method.qa_clf
    chunks = [clf_f.tokenize(d).ids[:100] for d in docs["docs"]]
    pq = np.concatenate(clf_q.keep_probs(chunks, clf_f.tokenize(docs["question"]).ids))
    pf = np.concatenate(clf_f.keep_probs(chunks, clf_f.tokenize(docs["question"]).ids))
    assert np.abs(pq - pf).mean() < 0.05 and np.corrcoef(pq, pf)[0, 1] > 0.95
    # a second load reuses the exported graph (no new files)
    monkeypatch.setattr("elision.models.encoder._SHARED", {})
    before = {p: p.stat().st_mtime for p in tmp_path.glob("onnx/*/*")}
    TokenClassifier.shared("llmlingua2-minilm", dtype="int8")
    assert {p: p.stat().st_mtime for p in tmp_path.glob("onnx/*/*")} == before


@pytest.mark.parametrize("ort", [True, False])
def test_int8_other_encoder_family_and_the_torch_fallback(tmp_path, docs, monkeypatch, ort):
    """DistilBERT through ONNX Runtime, and through torch's dynamic int8 where onnxruntime is
    not installed: both close to float32."""
    import torch
    import transformers as tf

    from elision.models.registry import prepare

    tok = tf.AutoTokenizer.from_pretrained(str(prepare("minilm-l6")))
    cfg = tf.DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64, vocab_size=len(tok),
                              max_position_embeddings=130, num_labels=2, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    tf.DistilBertForTokenClassification(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    if not ort:
        monkeypatch.setattr(onnx, "available", lambda: False)
    monkeypatch.setattr("elision.models.encoder.cache_dir", lambda: tmp_path / "cache")
    clf = TokenClassifier.load(str(tmp_path), dtype="int8")
    assert (clf.precision, clf.ort is not None) == (("int8", True) if ort else ("int8 (torch)", False))
    f32 = TokenClassifier.load(str(tmp_path), dtype="float32")
    chunks = [clf.tokenize(d).ids[:30] for d in docs["docs"][:3]]
    pq, pf = (np.concatenate(c.keep_probs(chunks)) for c in (clf, f32))
    assert np.abs(pq - pf).mean() < 0.05


def test_causal_lms_refuse_int8_and_auto_picks_int8_for_the_encoder_where_onnxruntime_is(monkeypatch):
    from elision.models import onnx
    from elision.models.causal import CausalLM
    from elision.models.encoder import _int8_auto
    from elision.models.registry import resolve_dtype_name

    with pytest.raises(InvalidInput, match="causal LMs run in bfloat16 or float32"):
        CausalLM.load("smollm2-135m", dtype="int8")
    for fast_bf16, causal in (("0", "float32"), ("1", "bfloat16")):  # an AVX2-only CPU, an AVX-512 BF16 one
        monkeypatch.setenv("ELISION_CPU_BF16", fast_bf16)
        assert _int8_auto() == onnx.available()
        assert resolve_dtype_name("auto", "cpu", int8_on_cpu=True) == "int8"  # the encoder
        assert resolve_dtype_name("auto", "cpu") == causal  # causal LMs: never int8
    monkeypatch.setattr(onnx, "available", lambda: False)  # without onnxruntime: bf16 / float32 as before
    assert not _int8_auto()


def test_int8_is_a_cpu_path():
    from elision.models.registry import resolve_dtype

    with pytest.raises(InvalidInput, match="CPU only"):
        resolve_dtype("int8", "cuda")
