"""Doors into other stacks, each behind its own extra (imported only when used):

- `elision.integrations.langchain.ElisionCompressor`: a LangChain document compressor
  (`pip install 'elision[langchain]'`);
- `elision.integrations.llamaindex.ElisionPostprocessor`: a LlamaIndex node postprocessor
  (`pip install 'elision[llamaindex]'`).

Both compress retrieved texts against the query through one `Compressor` call (shared.py).
"""
