"""Shared fixtures: the real SmolLM2 compressor, loaded once per test session."""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).parent.parent / "examples"


# three short documents, one of them (bread) off the question: the integration, compat and
# batch tests' small prompt
TAY_DOCS = [
    "The Tay Bridge, opened in 1878, carried the North British Railway across the Firth of Tay near Dundee. "
    "Its designer, Thomas Bouch, was knighted after the opening.",
    "Bread rises because yeast ferments sugars and releases carbon dioxide, which the gluten network traps "
    "as the dough proves in a warm kitchen.",
    "Less than two years after it opened, the central girders of the bridge collapsed in a violent storm on "
    "28 December 1879 while a train was crossing, and everyone aboard was killed.",
]
TAY_QUESTION = "Who designed the Tay Bridge?"
# the batch and Ray tests' three: compared with compress() one by one in the default dtype (int8
# on a CPU; in bf16, packing several prompts per row may flip a near-tie word: this text has
# none, TAY_DOCS has one)
BATCH_DOCS = [
    "The Tay Bridge, opened in 1878, carried the North British Railway across the Firth of Tay near Dundee. "
    "Its designer, Thomas Bouch, was knighted after the opening.",
    "Bread rises because yeast ferments the sugars in the dough and releases carbon dioxide, which the "
    "gluten network traps as small bubbles that expand in the oven.",
    "The central girders collapsed in a violent storm on 28 December 1879 while a train was crossing.",
]


# what the `tokenizers`-only tokenizers (models/bert.py, models/llama.py) are checked on against
# transformers': accents, CJK, emoji, white space of every kind, nothing
TOKENIZER_TEXTS = [
    "The Tay Bridge opened in 1878; it fell on 28 December 1879.",
    "Ünïcödé, accents (café, naïve), CJK 東京 and emoji 🚀 — dashes, “quotes”.",
    "  leading spaces,\ttabs\nand\n\nblank lines  ",
    "",
]


class JSONHandler(BaseHTTPRequestHandler):
    """The plumbing of a loopback JSON endpoint (a stand-in OpenAI-compatible server): quiet,
    `read_json()` for the request body, `send_json(body or bytes, code)` for the answer."""

    def log_message(self, *args):
        pass

    def read_json(self):
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def send_json(self, body, code: int = 200) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that gave up (a timeout test) leaves a broken pipe behind


@contextlib.contextmanager
def loopback(handler):
    """A real HTTP server on 127.0.0.1 running `handler`, in a thread; yields its base URL."""
    srv = _LoopbackServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


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
    from elision.models import encoder

    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("elision-cache")
    mp.setattr(encoder, "cache_dir", lambda: folder)
    yield
    mp.undo()
