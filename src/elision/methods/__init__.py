"""Compression methods, one module each, registered by name."""

from . import baselines, llmlingua, llmlingua2, longllmlingua, pis, selective_context  # noqa: F401  (registration)
from .base import METHODS, Method, Options, get_method, register

__all__ = ["METHODS", "Method", "Options", "get_method", "register"]
