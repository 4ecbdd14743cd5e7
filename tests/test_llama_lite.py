"""models/llama.py (issue 14, load time and memory): SmolLM2 runs without transformers, with
transformers' tokens and exactly its hidden states, in float32 and bf16, batched and streamed
over a cache that has tokens cut out."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from elision import InvalidInput
from elision.models import llama
from elision.models.causal import CausalLM, cut_cache
from elision.models.registry import bf16_copy, prepare

from .conftest import TOKENIZER_TEXTS

SPECIAL = "<|im_start|> special-token text stays text <|endoftext|>"
TEXTS = [*TOKENIZER_TEXTS, SPECIAL]


@pytest.fixture(scope="module")
def path():
    return prepare("smollm2-135m")


def test_smollm2_is_supported_and_other_checkpoints_are_not(path, tmp_path):
    assert llama.supported(path) and llama.supported(bf16_copy(path))
    assert not llama.supported(prepare("minilm-l6")) and not llama.supported("HuggingFaceTB/SmolLM2-135M")
    cfg = json.loads((path / "config.json").read_text())
    for change in ({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e5}},
                   {"attention_bias": True}, {"model_type": "mistral"}, {"hidden_act": "gelu"}):
        d = tmp_path / str(len(list(tmp_path.iterdir())))
        d.mkdir()
        (d / "config.json").write_text(json.dumps({**cfg, **change}))
        for f in ("tokenizer.json", "model.safetensors"):
            (d / f).symlink_to(path / f)
        assert not llama.supported(d), change


def test_tokens_offsets_and_special_ids_match_transformers(path, docs):
    import transformers as tf

    hf = tf.AutoTokenizer.from_pretrained(str(path))
    lite = llama.Tokenizer(path)
    for text in [*TEXTS, " ".join(docs["docs"]) * 3]:
        a = lite(text, add_special_tokens=False, return_offsets_mapping=True)
        b = hf(text, add_special_tokens=False, return_offsets_mapping=True)
        assert a["input_ids"] == b["input_ids"]
        assert [tuple(o) for o in a["offset_mapping"]] == [tuple(o) for o in b["offset_mapping"]]
    assert (lite.bos_token_id, lite.eos_token_id, lite.pad_token_id) == (hf.bos_token_id, hf.eos_token_id,
                                                                          hf.pad_token_id)
    ids = hf(TEXTS[1] + SPECIAL, add_special_tokens=False)["input_ids"] + [hf.eos_token_id]
    for skip in (False, True):
        assert lite.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_hidden_states_equal_transformers_batched_and_streamed(path, dtype):
    import torch
    import transformers as tf

    dt = getattr(torch, dtype)
    src = bf16_copy(path) if dt is torch.bfloat16 else path
    hf = tf.AutoModelForCausalLM.from_pretrained(str(src), dtype=dt).eval()
    lite, _ = llama.load(src, dt)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 40000, (2, 90), generator=g)
    ids[:, 0] = 1
    with torch.inference_mode():
        a = lite.get_decoder()(input_ids=ids).last_hidden_state
        b = hf.get_decoder()(input_ids=ids).last_hidden_state
        assert torch.equal(a, b)
        assert torch.equal(lite.get_output_embeddings()(a[0, :4]), hf.get_output_embeddings()(b[0, :4]))
        ca, cb = llama.Cache(), tf.DynamicCache()
        rng = np.random.default_rng(0)
        for s, e in ((0, 30), (30, 31), (31, 60), (60, 90)):  # a chunk, one token, chunks after cuts
            step = ids[:1, s:e]
            x = lite.get_decoder()(input_ids=step, use_cache=True, cache=ca).last_hidden_state
            y = hf.get_decoder()(input_ids=step, use_cache=True, cache=cb).last_hidden_state
            assert torch.equal(x, y), (s, e)
            keep = rng.random(e - s) < 0.5
            keep[0] = True
            cut_cache(ca, e - s, keep)  # what Stream.keep does
            cut_cache(cb, e - s, keep)
            assert ca.get_seq_length() == cb.get_seq_length()


def test_causal_lm_runs_on_elision_by_default_and_on_transformers_when_asked(path, monkeypatch):
    lite = CausalLM.load("smollm2-135m", dtype="float32")
    full = CausalLM.load("smollm2-135m", dtype="float32", backend="transformers")
    assert (lite.runs_on, full.runs_on) == ("elision", "transformers")
    ids, offsets = lite.tokenize(TEXTS[0])
    assert np.array_equal(ids, full.tokenize(TEXTS[0])[0]) and np.array_equal(offsets, full.tokenize(TEXTS[0])[1])
    row = np.r_[lite.bos_id, ids]
    assert np.array_equal(lite.token_nll([row])[0], full.token_nll([row])[0])
    sa, sb = lite.stream(), full.stream()
    for chunk in (ids[:8], ids[8:]):
        na, nb = sa.score(chunk), sb.score(chunk)
        assert np.array_equal(na, nb)
        sa.keep(na > np.median(na))
        sb.keep(nb > np.median(nb))
    monkeypatch.setenv("ELISION_CAUSAL", "transformers")
    assert CausalLM.load("smollm2-135m", dtype="float32").runs_on == "transformers"
    with pytest.raises(InvalidInput, match="backend"):
        CausalLM.load("smollm2-135m", backend="onnx")


def test_other_architectures_still_load_through_transformers(path, tmp_path):
    """A Qwen2 checkpoint (tiny, random weights, SmolLM2's tokenizer) is not llama.supported():
    it loads through transformers and scores as before."""
    import transformers as tf

    cfg = tf.Qwen2Config(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    tf.Qwen2ForCausalLM(cfg).save_pretrained(tmp_path)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(path / f, tmp_path / f)
    assert not llama.supported(tmp_path)
    lm = CausalLM.load(str(tmp_path), dtype="float32")
    assert lm.runs_on == "transformers"
    ids, _ = lm.tokenize(TEXTS[0])
    nll = lm.token_nll([np.r_[lm.bos_id, ids]])[0]
    assert nll.shape == (len(ids),) and np.isfinite(nll).all()
    s = lm.stream()
    assert np.isfinite(s.score(ids)).all()  # transformers' DynamicCache under the same Stream


def test_a_checkpoint_without_tokenizer_json_falls_back(path, tmp_path):
    d = tmp_path / "no-tokenizer-json"
    shutil.copytree(path, d, ignore=shutil.ignore_patterns("model.safetensors"))
    (d / "model.safetensors").symlink_to(path / "model.safetensors")
    assert llama.supported(d)
    (d / "tokenizer.json").unlink()
    assert not llama.supported(d)


def test_loading_the_default_scorer_needs_no_transformers(path):
    """What `elision compress` loads by default: SmolLM2 for llmlingua. Neither transformers nor
    the bpe_openai package is imported on the way (their imports cost ~3 s and ~25 MB)."""
    code = textwrap.dedent("""
        import sys
        from elision import Compressor
        r = Compressor("llmlingua", dtype="float32").compress("The Tay Bridge fell in 1879. " * 20, rate=0.5)
        assert r.compressed_tokens < r.origin_tokens
        print(sorted(m for m in ("transformers", "bpe_openai") if m in sys.modules))
    """)
    env = {k: v for k, v in os.environ.items() if k != "ELISION_CAUSAL"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
