"""elision: compress LLM prompts by deleting what the target model needs least.

    >>> from elision import Compressor
    >>> r = Compressor("llmlingua").compress(context=docs, question=q, rate=0.33)
    >>> r.compressed_prompt, r.origin_tokens, r.compressed_tokens
"""

from ._errors import ElisionError, InvalidInput, MissingDependency, UnknownName
from .compressor import Compressor, compress
from .methods import METHODS, get_method
from .models import KNOWN_MODELS
from .prompt import Prompt, Segment
from .result import CompressionResult

__version__ = "0.1.0"

__all__ = [
    "Compressor",
    "compress",
    "CompressionResult",
    "Prompt",
    "Segment",
    "ElisionError",
    "InvalidInput",
    "UnknownName",
    "MissingDependency",
    "METHODS",
    "KNOWN_MODELS",
    "get_method",
    "__version__",
]
