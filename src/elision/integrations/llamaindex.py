"""A LlamaIndex node postprocessor backed by elision (`pip install 'elision[llamaindex]'`).

    >>> from elision.integrations.llamaindex import ElisionPostprocessor
    >>> engine = index.as_query_engine(node_postprocessors=[ElisionPostprocessor(rate=0.4)])
    >>> ElisionPostprocessor(method="llmlingua2").postprocess_nodes(nodes, query_str="Who?")

Each node keeps its id, metadata, relationships and score; only its text is shortened. A node
the method drops entirely is left out. The nodes are compressed in one call against the
query (QueryBundle.query_str), so the budget goes where the query needs it.
"""

from __future__ import annotations

from typing import Any

from .._errors import MissingDependency

try:
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
except ImportError:  # pragma: no cover - exercised by the missing-extra test
    raise MissingDependency("the LlamaIndex integration (llama-index-core)",
                            "pip install 'elision[llamaindex]'") from None

from ..compressor import Compressor
from .shared import compress_texts, compressor_of


class ElisionPostprocessor(BaseNodePostprocessor):
    """Compress retrieved nodes against the query. `compressor` may be given ready-made;
    otherwise one is built from method / model / target / device on first use."""

    method: str = "llmlingua2"
    model: str | None = None
    target: str = "gpt-4o"
    device: str | None = None
    rate: float | None = 0.5
    target_tokens: int | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    compressor: Any = Field(default=None, exclude=True)
    _built: Any = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "ElisionPostprocessor"

    def _compressor(self) -> Compressor:
        return compressor_of(self)

    def _postprocess_nodes(self, nodes: list[NodeWithScore],
                           query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        if not nodes:
            return []
        query = query_bundle.query_str if query_bundle is not None else ""
        texts = [n.node.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]
        kept = compress_texts(self._compressor(), texts, query, rate=self.rate, target_tokens=self.target_tokens,
                              options=self.options)
        out = []
        for n, text in zip(nodes, kept):
            if text is None:
                continue
            node = n.node.model_copy(deep=True)  # id, metadata and relationships stay; the text changes
            node.set_content(text)
            out.append(NodeWithScore(node=node, score=n.score))
        return out
