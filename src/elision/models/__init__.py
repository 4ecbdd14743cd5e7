"""Small models that guide compression: a registry of names, a conversion cache, scorers."""

from .registry import KNOWN_MODELS, cache_dir, prepare, resolve_device, resolve_dtype

__all__ = ["KNOWN_MODELS", "cache_dir", "prepare", "resolve_device", "resolve_dtype"]
