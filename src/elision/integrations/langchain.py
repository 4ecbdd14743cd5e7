"""A LangChain document compressor backed by elision (`pip install 'elision[langchain]'`).

    >>> from elision.integrations.langchain import ElisionCompressor
    >>> from langchain_classic.retrievers import ContextualCompressionRetriever
    >>> retriever = ContextualCompressionRetriever(
    ...     base_compressor=ElisionCompressor(method="llmlingua2", rate=0.4), base_retriever=my_retriever)
    >>> retriever.invoke("Who designed the Tay Bridge?")    # the same documents, shorter

Each document keeps its metadata; a document the method drops entirely (LongLLMLingua's
coarse stage does that to irrelevant ones) is left out, as LangChain's compressors do. The
documents are compressed in one call, so the budget goes where the query needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._errors import MissingDependency

try:
    from langchain_core.callbacks import Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
except ImportError:  # pragma: no cover - exercised by the missing-extra test
    raise MissingDependency("the LangChain integration (langchain-core)", "pip install 'elision[langchain]'") from None

from pydantic import ConfigDict, Field, PrivateAttr

from ..compressor import Compressor
from .shared import compress_texts, compressor_of


class ElisionCompressor(BaseDocumentCompressor):
    """Compress retrieved documents against the query. `compressor` may be given ready-made
    (one loaded model shared with the rest of your code); otherwise one is built from
    method / model / target / device on first use."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    method: str = "llmlingua2"
    model: str | None = None
    target: str = "gpt-4o"
    device: str | None = None
    rate: float | None = 0.5  # share of the documents' target tokens to keep
    target_tokens: int | None = None  # or a token budget for all the documents together
    options: dict[str, Any] = Field(default_factory=dict)  # method options (`elision methods`)
    compressor: Any = None
    _built: Compressor | None = PrivateAttr(default=None)

    def _compressor(self) -> Compressor:
        return compressor_of(self)

    def compress_documents(self, documents: Sequence[Document], query: str,
                           callbacks: Callbacks | None = None) -> Sequence[Document]:
        if not documents:
            return []
        kept = compress_texts(self._compressor(), [d.page_content for d in documents], query, rate=self.rate,
                              target_tokens=self.target_tokens, options=self.options)
        return [Document(page_content=text, metadata=dict(d.metadata), id=d.id)
                for d, text in zip(documents, kept) if text is not None]

    async def acompress_documents(self, documents: Sequence[Document], query: str,
                                  callbacks: Callbacks | None = None) -> Sequence[Document]:
        import asyncio

        # the model runs in a worker thread, so the event loop keeps serving while it works
        return await asyncio.to_thread(self.compress_documents, documents, query, callbacks)
