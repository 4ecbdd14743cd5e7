"""models/bert.py (issue 14, load time): elision's BERT classifiers run without transformers,
with transformers' logits and tokens; the cached int8 graph runs without torch at all."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from elision.models import bert
from elision.models.registry import prepare

from .conftest import TOKENIZER_TEXTS


@pytest.fixture(scope="module")
def path():
    return prepare("llmlingua2-qa-minilm")


def test_the_shipped_classifiers_are_supported_and_a_causal_lm_is_not(path):
    assert bert.supported(path) and bert.supported(prepare("llmlingua2-minilm"))
    assert not bert.supported(prepare("smollm2-135m")) and not bert.supported("org/hub-id")


def test_tokens_offsets_and_word_ids_match_transformers(path, docs):
    import transformers as tf

    hf = tf.AutoTokenizer.from_pretrained(str(path))
    lite = bert.Tokenizer(path)
    long = " ".join(docs["docs"]) * 3  # past the 128 tokens tokenizer.json stores as its truncation
    for text in [*TOKENIZER_TEXTS, long]:
        enc = hf(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        ids, offsets, words = lite.encode_words(text)
        assert ids == enc["input_ids"] and words == enc.word_ids()
        assert [tuple(o) for o in offsets] == [tuple(o) for o in enc["offset_mapping"]]
    assert len(lite.encode_words(long)[0]) > 512
    assert (lite.cls_token_id, lite.sep_token_id, lite.pad_token_id) == (hf.cls_token_id, hf.sep_token_id,
                                                                          hf.pad_token_id)


@pytest.mark.parametrize("packed", [False, True])
def test_logits_match_transformers_bert(path, packed):
    import torch
    import transformers as tf

    hf = tf.AutoModelForTokenClassification.from_pretrained(str(path), attn_implementation="eager").eval()
    lite, _ = bert.load(path, torch.float32)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (3, 40), generator=g)
    types = torch.zeros_like(ids)
    types[:, 12:] = 1
    if packed:  # two inputs per row, block-diagonal additive mask, positions from 0 in each
        block = (torch.arange(40) >= 25).long()[None].expand(3, 40)
        allowed = block[:, :, None] == block[:, None, :]
        mask = torch.zeros(allowed.shape).masked_fill_(~allowed, torch.finfo(torch.float32).min)[:, None]
        kw = {"attention_mask": mask, "position_ids": torch.cat([torch.arange(25), torch.arange(15)]).expand(3, 40)}
    else:  # padding mask: the last 7 tokens of row 1 are padding
        mask = torch.ones_like(ids)
        mask[1, -7:] = 0
        kw = {"attention_mask": mask}
    with torch.inference_mode():
        a = hf(input_ids=ids, token_type_ids=types, **kw).logits
        b = lite(input_ids=ids, token_type_ids=types, **kw).logits
    real = kw["attention_mask"].bool() if not packed else torch.ones(3, 40, dtype=torch.bool)
    assert (a - b).abs()[real].max().item() < 1e-4


def test_transformers_path_stays_available_and_agrees(path, monkeypatch, docs):
    from elision.models import encoder

    chunks = None
    probs = {}
    for which in ("lite", "transformers"):
        monkeypatch.setenv("ELISION_ENCODER", "" if which == "lite" else "transformers")
        clf = encoder.TokenClassifier.load(str(path), dtype="float32")
        assert (type(clf.model).__module__.startswith("elision")) == (which == "lite")
        chunks = chunks or [clf.tokenize(d).ids[:100] for d in docs["docs"]]
        probs[which] = np.concatenate(clf.keep_probs(chunks, clf.tokenize(docs["question"]).ids))
    assert np.abs(probs["lite"] - probs["transformers"]).max() < 1e-4


def _fresh_python(code: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


LOAD = """
    import json, sys, time
    t = time.perf_counter()
    from elision import Compressor
    c = Compressor("llmlingua2", target="cl100k_base", dtype="DTYPE")
    r = c.compress(context=["The cat sat on the mat. It was warm."], question="Where did the cat sit?", rate=0.5)
    print(json.dumps({"torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules,
                      "precision": c.method.precision, "out": r.compressed_prompt,
                      "seconds": time.perf_counter() - t}))
"""


def test_default_llmlingua2_loads_without_transformers():
    got = _fresh_python(LOAD.replace("DTYPE", "bfloat16"), {})
    assert not got["transformers"] and got["torch"] and got["precision"] == "bfloat16" and got["out"].strip()


@pytest.mark.skipif(not __import__("elision.models.onnx", fromlist=["x"]).available(), reason="needs onnxruntime")
def test_cached_int8_graph_loads_without_torch(tmp_path):
    env = {"ELISION_CACHE_DIR": str(tmp_path)}
    # the merged classifiers are cached per cache dir: link the real ones so only the graph is new
    models = prepare("llmlingua2-qa-minilm").parent
    (tmp_path / "models").mkdir()
    for p in models.glob("llmlingua2-*"):
        (tmp_path / "models" / p.name).symlink_to(p)
    first = _fresh_python(LOAD.replace("DTYPE", "int8"), env)  # exports the graph (torch needed)
    again = _fresh_python(LOAD.replace("DTYPE", "int8"), env)  # reads it back
    assert first["torch"] and not again["torch"] and not again["transformers"]
    assert first["out"] == again["out"] and again["precision"] == "int8"
    assert len(list(tmp_path.glob("onnx/*/model.int8.onnx"))) == 1  # the task-aware one only (lazy)


def test_the_onnx_cache_key_follows_the_weights(tmp_path):
    import shutil

    from elision.models.encoder import _onnx_dir

    src = prepare("llmlingua2-minilm")
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / f, tmp_path / f)
    before = _onnx_dir(tmp_path)
    assert _onnx_dir(tmp_path) == before
    with open(tmp_path / "model.safetensors", "ab") as fh:  # retrained in place
        fh.write(b"\0")
    assert _onnx_dir(tmp_path) != before
