import pytest

import elision
from elision import Compressor, compress

from .conftest import is_subsequence


def test_public_surface_is_pinned():
    assert sorted(elision.__all__) == sorted([
        "Compressor", "compress", "CompressionResult", "Prompt", "Segment", "ElisionError", "InvalidInput",
        "UnknownName", "MissingDependency", "METHODS", "KNOWN_MODELS", "get_method", "__version__",
        "compress_messages", "recover", "MessagesResult", "TooLong"])
    for name in elision.__all__:
        assert hasattr(elision, name)


@pytest.mark.parametrize("method", ["random", "truncate"])
def test_baselines_meet_budget_and_keep_question(method, docs):
    c = Compressor(method, target="cl100k_base")
    r = c.compress(context=docs["docs"], question=docs["question"], rate=0.3)
    assert abs(r.rate - 0.3) / 0.3 <= 0.10
    assert r.compressed_prompt.endswith(docs["question"])
    assert is_subsequence(r.compressed_prompt, r.original_prompt)


def test_random_is_seeded(docs):
    a = compress(docs["docs"], method="random", rate=0.4)
    b = compress(docs["docs"], method="random", rate=0.4)
    c = compress(docs["docs"], method="random", rate=0.4, seed=7)
    assert a.compressed_prompt == b.compressed_prompt != c.compressed_prompt


def test_truncate_keeps_the_head(docs):
    r = compress(docs["docs"], method="truncate", rate=0.3)
    assert r.original_prompt.startswith(r.compressed_prompt.rsplit(" ", 1)[0])


def test_target_tokenizers_count_like_tiktoken():
    from elision.tokenizers import get_target

    # token ids as tiktoken gives them (cl100k_base / o200k_base)
    assert get_target("gpt-4").encode("hello world") == [15339, 1917]
    assert get_target("cl100k_base").count("hello world") == 2
    assert get_target("gpt-4o").name == "gpt-4o"
    assert get_target("gpt-4o").count("<|endoftext|>") > 1  # special tokens are plain text here
