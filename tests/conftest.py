"""Shared fixtures: the real SmolLM2 compressor, loaded once per test session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(scope="session")
def docs() -> dict:
    return json.loads((DATA / "docs.json").read_text())


@pytest.fixture(scope="session")
def gsm8k() -> dict:
    return json.loads((EXAMPLES / "gsm8k_cot.json").read_text())


@pytest.fixture(scope="session")
def llmlingua():
    from elision import Compressor

    return Compressor("llmlingua")  # smollm2-135m, converted once into the cache


def is_subsequence(small: str, big: str) -> bool:
    it = iter(big)
    return all(ch in it for ch in small)


@pytest.fixture(autouse=True, scope="session")
def _int8_graphs_in_a_temporary_cache(tmp_path_factory):
    """int8 graphs exported during the tests go to a temporary folder, not the user's cache
    (tests load classifiers from temporary paths, each of which would leave a 22 MB graph)."""
    import elision.models.encoder as encoder

    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("elision-cache")
    mp.setattr(encoder, "cache_dir", lambda: folder)
    yield
    mp.undo()
