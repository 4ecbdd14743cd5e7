"""elision.compat.PromptCompressor as a drop-in for llmlingua's: the reference's arguments and
result dict, LangChain's own LLMLinguaCompressor running on it unchanged, clear errors for
what elision does not support."""

from __future__ import annotations

import ast
import inspect
import re
import sys
from pathlib import Path

import pytest

import elision.compat
from elision import Compressor
from elision._errors import InvalidInput
from elision.compat import _DEFAULT_ONLY, PromptCompressor, parse_context_budget

from .conftest import TAY_DOCS as DOCS
from .conftest import TAY_QUESTION as QUESTION
from .conftest import is_subsequence

KEYS = ["compressed_prompt", "origin_tokens", "compressed_tokens", "ratio", "rate", "saving"]


@pytest.fixture(scope="module")
def pc():
    return PromptCompressor()


@pytest.fixture(scope="module")
def pc2():
    return PromptCompressor(use_llmlingua2=True)


def _check_dict(out: dict, keys=KEYS):
    assert list(out) == keys
    assert re.fullmatch(r"\d+\.\dx", out["ratio"]) and re.fullmatch(r"\d+\.\d%", out["rate"])
    assert isinstance(out["origin_tokens"], int) and isinstance(out["compressed_tokens"], int)
    assert out["saving"].startswith(", Saving ")


def test_compress_prompt_is_elisions_llmlingua(pc):
    out = pc.compress_prompt(DOCS, instruction="Answer briefly.", question=QUESTION, rate=0.5)
    _check_dict(out)
    lib = Compressor("llmlingua").compress(context=DOCS, instruction="Answer briefly.", question=QUESTION,
                                           rate=0.5)
    assert out["compressed_prompt"] == lib.compressed_prompt
    assert out["origin_tokens"] == lib.origin_tokens and out["compressed_tokens"] == lib.compressed_tokens
    assert out["ratio"] == f"{lib.ratio:.1f}x"
    assert pc(DOCS, question=QUESTION, rate=0.5) == pc.compress_prompt(DOCS, question=QUESTION, rate=0.5)


def test_longllmlingua_arguments(pc):
    out = pc.compress_prompt(DOCS, instruction="Answer briefly.", question=QUESTION, target_token=40,
                             rank_method="longllmlingua", condition_in_question="after", condition_compare=True,
                             reorder_context="sort", dynamic_context_compression_ratio=0.4, context_budget="+20",
                             concate_question=False, add_instruction=True)
    _check_dict(out)
    text = out["compressed_prompt"]
    assert text.startswith("Answer briefly.\n\n") and not text.endswith(QUESTION)
    assert "Bouch" in text  # the answer document ranks first and keeps its name
    count = pc.tokenizer.count  # llmlingua's target counts the contexts; elision's the whole prompt
    lib = Compressor("longllmlingua").compress(
        context=DOCS, instruction="Answer briefly.", question=QUESTION,
        target_tokens=40 + count("Answer briefly.") + count(QUESTION), ranker="lm", reorder="sort",
        dynamic_ratio=0.4, contrastive=True, context_budget=20)
    assert lib.compressed_prompt == text + "\n\n" + QUESTION


def test_llmlingua2_paths(pc2):
    out = pc2.compress_prompt_llmlingua2(DOCS, rate=0.5, force_tokens=["\n", "?"], force_reserve_digit=True)
    _check_dict(out, KEYS[:1] + ["compressed_prompt_list"] + KEYS[1:])
    assert len(out["compressed_prompt_list"]) == 3 and "\n\n".join(out["compressed_prompt_list"]) == \
        out["compressed_prompt"]
    assert "1878" in out["compressed_prompt"] and "1879" in out["compressed_prompt"]
    for part, doc in zip(out["compressed_prompt_list"], DOCS):
        assert is_subsequence(part, doc)
    # compress_prompt goes to LLMLingua-2 with use_llmlingua2, as in llmlingua (context alone)
    via = pc2.compress_prompt(DOCS, rate=0.5, use_context_level_filter=False)
    assert via["compressed_prompt"] == pc2.compress_prompt_llmlingua2(DOCS, rate=0.5)["compressed_prompt"]
    filtered = pc2.compress_prompt_llmlingua2(DOCS, rate=0.5, use_context_level_filter=True,
                                              context_level_rate=0.34)
    assert len(filtered["compressed_prompt_list"]) < 3


def test_structured_compress_prompt(pc):
    ctx = ["<llmlingua, compress=False>Thomas Bouch designed it.</llmlingua><llmlingua, rate=0.3> " + DOCS[1]
           + "</llmlingua>", DOCS[2]]
    out = pc.structured_compress_prompt(ctx, question=QUESTION, rate=0.5)
    _check_dict(out)
    assert out["compressed_prompt"].startswith("Thomas Bouch designed it.")
    with pytest.raises(InvalidInput, match="at character 0 is never closed"):
        pc.structured_compress_prompt(["<llmlingua, rate=0.3>open"], question=QUESTION)


def test_recover(pc):
    original = "The Tay Bridge, opened in 1878, carried the North British Railway."
    assert pc.recover(original, "Tay Bridge opened 1878 carried North Railway.",
                      "It carried the North Railway.") == "It carried the North British Railway."


def test_context_budget_is_parsed_never_evaluated():
    assert parse_context_budget("+100", 300) == 100
    assert parse_context_budget(" * 1.5", 300) == 150
    assert parse_context_budget("/2", 300) == -150
    assert parse_context_budget("-20", 300) == -20
    for bad in ["__import__('os').getcwd()", "1+1", "+", "+1e9x", "", "+-3"]:
        with pytest.raises(InvalidInput, match="context_budget must be"):
            parse_context_budget(bad, 300)
    with pytest.raises(InvalidInput, match="divides by zero"):
        parse_context_budget("/0", 300)


@pytest.mark.parametrize("kwargs, match", [
    ({"use_sentence_level_filter": True}, "use_sentence_level_filter=True"),
    ({"force_context_ids": [0]}, "force_context_ids=[0]"),
    ({"return_word_label": True}, "return_word_label=True"),
    ({"keep_first_sentence": 2, "strict_preserve_uncompressed": False},
     "keep_first_sentence=2, strict_preserve_uncompressed=False"),
    ({"rank_method": "openai"}, "rank_method='openai'"),
    ({"rank_method": "llmlingua", "reorder_context": "sort"}, "reorder_context"),
    ({"rank_method": "longllmlingua", "context_budget": "__import__('os')"}, "context_budget must be"),
    ({"condition_in_question": "sideways"}, "condition_in_question must be"),
])
def test_unsupported_arguments_are_named(pc, kwargs, match):
    with pytest.raises(InvalidInput, match=re.escape(match)):
        pc.compress_prompt(DOCS, question=QUESTION, **kwargs)


def test_constructor_errors_and_typos():
    with pytest.raises(InvalidInput, match="open_api_config"):
        PromptCompressor(open_api_config={"api_key": "x"})
    with pytest.raises(InvalidInput, match="model_config keys revision"):
        PromptCompressor(model_config={"revision": "main"})
    with pytest.raises(InvalidInput, match="llmlingua2_config"):
        PromptCompressor(use_llmlingua2=True, llmlingua2_config={"max_batch_size": 50})
    with pytest.raises(TypeError, match="questoin"):
        PromptCompressor().compress_prompt(DOCS, questoin=QUESTION)
    # what LangChain passes when the user set nothing: {} for every field
    p = PromptCompressor(model_name={}, device_map={}, model_config={}, open_api_config={})
    assert p.model_name is None and p.device is None


REFERENCE = Path.home() / ".cache/elision-anchor/venv/lib/python3.11/site-packages/llmlingua/prompt_compressor.py"


@pytest.mark.skipif(not REFERENCE.exists(), reason="llmlingua 0.2.2 reference not installed (../shared/anchor)")
def test_every_reference_argument_is_accepted_or_refused_by_name():
    """Each parameter of llmlingua's methods is a parameter here or in the default-only table, so a
    call written for llmlingua never fails with a TypeError."""
    tree = ast.parse(REFERENCE.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PromptCompressor")
    for fn in cls.body:
        if isinstance(fn, ast.FunctionDef) and fn.name in ("__init__", "compress_prompt", "recover",
                                                            "compress_prompt_llmlingua2",
                                                            "structured_compress_prompt"):
            ref = [a.arg for a in fn.args.args[1:]]
            ours = set(inspect.signature(getattr(PromptCompressor, fn.name)).parameters)
            missing = [a for a in ref if a not in ours and a not in _DEFAULT_ONLY]
            assert not missing, (fn.name, missing)


# --- LangChain's own LLMLinguaCompressor, unchanged, on elision ------------------------------

def test_langchain_llmlingua_compressor_runs_on_elision(pc, monkeypatch):
    pytest.importorskip("langchain_community")
    from langchain_community.document_compressors import LLMLinguaCompressor
    from langchain_core.documents import Document

    # its validator does `from llmlingua import PromptCompressor`: point the name at elision
    monkeypatch.setitem(sys.modules, "llmlingua", elision.compat)
    docs = [Document(page_content=d, metadata={"source": f"doc{i}", "n": i}) for i, d in enumerate(DOCS)]
    comp = LLMLinguaCompressor(lingua=pc, target_token=80)
    out = comp.compress_documents(docs, QUESTION)
    assert out, "every document dropped"
    by_source = {d.metadata["source"]: d for d in out}
    assert all(d.metadata for d in out)  # every compressed document found its metadata again
    assert by_source["doc0"] is out[0]  # reorder_context="sort": the answer document first
    assert "doc0" in by_source and "Bouch" in by_source["doc0"].page_content
    for d in out:
        assert is_subsequence(d.page_content, DOCS[d.metadata["n"]])
    assert sum(len(d.page_content) for d in out) < 0.8 * sum(len(d) for d in DOCS)
    # built by LangChain itself (no lingua given): {} for every unset field reaches our constructor
    built = LLMLinguaCompressor(model_name="smollm2-135m", device_map="cpu")
    assert isinstance(built.lingua, PromptCompressor)
