"""elision: compress LLM prompts by deleting what the target model needs least.

    >>> from elision import Compressor
    >>> r = Compressor("llmlingua").compress(context=docs, question=q, rate=0.33)
    >>> r.compressed_prompt, r.origin_tokens, r.compressed_tokens
    >>> compress_messages(messages, rate=0.4).messages          # chats, same format back
"""

from ._errors import ElisionError, InvalidInput, MissingDependency, TooLong, UnknownName
from .compressor import Compressor, compress, compress_messages
from .methods import METHODS, get_method
from .models import KNOWN_MODELS
from .messages import MessagesResult
from .prompt import Prompt, Segment
from .recover import recover
from .result import CompressionResult

__version__ = "0.1.0"

__all__ = [
    "Compressor",
    "compress",
    "compress_messages",
    "recover",
    "CompressionResult",
    "MessagesResult",
    "Prompt",
    "Segment",
    "ElisionError",
    "InvalidInput",
    "TooLong",
    "UnknownName",
    "MissingDependency",
    "METHODS",
    "KNOWN_MODELS",
    "get_method",
    "__version__",
]
