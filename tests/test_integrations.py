"""LangChain and LlamaIndex doors, tested against the real packages: a document compressor in a
ContextualCompressionRetriever, a node postprocessor in a query engine; metadata kept, texts
shortened as subsequences, bad input refused, a clear install hint when the extra is missing."""

from __future__ import annotations

import asyncio
import importlib
import sys

import pytest

from elision import Compressor
from elision._errors import InvalidInput, MissingDependency

from .conftest import TAY_DOCS as DOCS
from .conftest import TAY_QUESTION as QUERY
from .conftest import is_subsequence


@pytest.fixture(scope="module")
def l2():
    return Compressor("llmlingua2")


# --- LangChain -------------------------------------------------------------------------------

lc = pytest.importorskip("langchain_core")


def _lc_docs():
    from langchain_core.documents import Document

    return [Document(page_content=d, metadata={"source": f"doc{i}", "page": i}, id=f"id{i}")
            for i, d in enumerate(DOCS)]


def test_langchain_compressor_keeps_metadata(l2):
    from elision.integrations.langchain import ElisionCompressor

    comp = ElisionCompressor(compressor=l2, rate=0.4)
    docs = _lc_docs()
    out = comp.compress_documents(docs, QUERY)
    # the question-aware classifier may drop the bread document whole; the rest keep their metadata
    assert out[0].metadata == docs[0].metadata and out[0].id == "id0" and "Bouch" in out[0].page_content
    for d in out:
        k = d.metadata["page"]
        assert d.metadata == docs[k].metadata and d.id == f"id{k}"
        assert is_subsequence(d.page_content, DOCS[k])
    assert [d.metadata["page"] for d in out] == sorted(d.metadata["page"] for d in out)
    total = sum(l2.target.count(d.page_content) for d in out)
    assert total <= round(0.4 * l2.target.count("\n\n".join(DOCS))) + 2
    again = asyncio.run(comp.acompress_documents(docs, QUERY))
    assert [d.page_content for d in again] == [d.page_content for d in out]
    assert docs[0].page_content == DOCS[0]  # the caller's documents are not touched


def test_langchain_dropped_documents_are_left_out(l2):
    from elision.integrations.langchain import ElisionCompressor

    out = ElisionCompressor(compressor=l2, rate=0.9, options={"context_rate": 0.34}).compress_documents(
        _lc_docs(), QUERY)
    # context_rate 0.34 of 3 documents keeps ceil(1.02) = 2: the bread one, off the question, goes
    assert sorted(d.metadata["page"] for d in out) == [0, 2]
    assert all(d.metadata["source"] == f"doc{d.metadata['page']}" for d in out)


def test_langchain_contextual_compression_retriever(l2):
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    try:
        from langchain_classic.retrievers import ContextualCompressionRetriever
    except ImportError:  # langchain < 1.0
        from langchain.retrievers import ContextualCompressionRetriever

    from elision.integrations.langchain import ElisionCompressor

    class Keyword(BaseRetriever):  # a real retriever: documents sharing a word with the query
        docs: list[Document]

        def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun):
            words = {w.strip("?.,").lower() for w in query.split()}
            return [d for d in self.docs if words & {w.strip("?.,").lower() for w in d.page_content.split()}
                    - {"the", "a", "who"}]

    base = Keyword(docs=_lc_docs())
    assert [d.metadata["source"] for d in base.invoke(QUERY)] == ["doc0", "doc2"]  # 'Tay', 'Bridge' / 'bridge'
    retriever = ContextualCompressionRetriever(base_compressor=ElisionCompressor(compressor=l2, rate=0.5),
                                               base_retriever=base)
    out = retriever.invoke(QUERY)
    assert out and out[0].metadata["source"] == "doc0" and "Bouch" in out[0].page_content
    assert {d.metadata["source"] for d in out} <= {"doc0", "doc2"}
    for d in out:
        assert is_subsequence(d.page_content, DOCS[d.metadata["page"]])
    assert sum(len(d.page_content) for d in out) < len(DOCS[0]) + len(DOCS[2])
    assert [d.page_content for d in asyncio.run(retriever.ainvoke(QUERY))] == [d.page_content for d in out]


def test_langchain_bad_input(l2):
    from elision.integrations.langchain import ElisionCompressor

    with pytest.raises(InvalidInput, match="rate"):
        ElisionCompressor(compressor=l2, rate=2.0).compress_documents(_lc_docs(), QUERY)
    with pytest.raises(InvalidInput, match="unknown option"):
        ElisionCompressor(compressor=l2, options={"bogus": 1}).compress_documents(_lc_docs(), QUERY)
    assert ElisionCompressor(compressor=l2).compress_documents([], QUERY) == []


@pytest.mark.parametrize("module, blocked, hint", [
    ("elision.integrations.langchain", "langchain_core.documents", "pip install 'elision[langchain]'"),
    ("elision.integrations.llamaindex", "llama_index.core.postprocessor.types", "pip install 'elision[llamaindex]'"),
])
def test_missing_extra_names_the_install(monkeypatch, module, blocked, hint):
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setitem(sys.modules, blocked, None)  # as if the package were not installed
    with pytest.raises(MissingDependency, match=hint.replace("[", r"\[").replace("]", r"\]")):
        importlib.import_module(module)


# --- LlamaIndex ------------------------------------------------------------------------------

def _nodes():
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import NodeWithScore, TextNode

    return [NodeWithScore(node=TextNode(text=d, id_=f"n{i}", metadata={"source": f"doc{i}"}), score=1.0 - i / 10)
            for i, d in enumerate(DOCS)]


def test_llamaindex_postprocessor(l2):
    nodes = _nodes()
    from llama_index.core.schema import QueryBundle

    from elision.integrations.llamaindex import ElisionPostprocessor

    pp = ElisionPostprocessor(compressor=l2, rate=0.4)
    out = pp.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    assert out[0].node.node_id == "n0" and "Bouch" in out[0].node.get_content()
    for n in out:  # a node dropped whole (the bread one, by the question-aware classifier) is left out
        k = int(n.node.node_id[1:])
        assert n.score == 1.0 - k / 10 and n.node.metadata == {"source": f"doc{k}"}
        assert is_subsequence(n.node.get_content(), DOCS[k])
    assert sum(len(n.node.get_content()) for n in out) < 0.6 * sum(len(d) for d in DOCS)
    everything = pp.postprocess_nodes(nodes)  # no query: every node shortened, none dropped
    assert [n.node.node_id for n in everything] == ["n0", "n1", "n2"]
    assert nodes[0].node.get_content() == DOCS[0]  # the caller's nodes are not touched
    same = asyncio.run(pp.apostprocess_nodes(nodes, query_str=QUERY))
    assert [n.node.get_content() for n in same] == [n.node.get_content() for n in out]
    with pytest.raises(InvalidInput, match="rate"):
        ElisionPostprocessor(compressor=l2, rate=0).postprocess_nodes(nodes, query_str=QUERY)


def test_llamaindex_query_engine(l2):
    nodes = _nodes()
    from llama_index.core import SummaryIndex
    from llama_index.core.llms import MockLLM

    from elision.integrations.llamaindex import ElisionPostprocessor

    index = SummaryIndex([n.node for n in nodes])
    # LlamaIndex's own MockLLM answers with the prompt it was given: what the LLM saw
    engine = index.as_query_engine(llm=MockLLM(), node_postprocessors=[ElisionPostprocessor(compressor=l2, rate=0.4)],
                                   response_mode="compact")
    res = engine.query(QUERY)
    got = {n.node.node_id: n.node.get_content() for n in res.source_nodes}
    assert "n0" in got and "Bouch" in got["n0"]
    for node_id, text in got.items():
        assert is_subsequence(text, DOCS[int(node_id[1:])]) and text in str(res)
    assert sum(map(len, got.values())) < 0.6 * sum(len(d) for d in DOCS)
    assert DOCS[1] not in str(res)  # the LLM saw the compressed nodes, not the originals
