"""Generated bodies against the running service (issue 24): POST /v1/compress, /v1/chat/completions
and /v1/messages on a real loopback server with worker processes, the proxies forwarding to
loopback upstreams (tests/upstream.py's OpenAI echo, tests/test_anthropic.py's fake Anthropic).
Whatever the body, the answer is never a 500, never shows a traceback, an error is in the
route's shape, and it comes within a bound (the service's own time limit is 10 s here).

Bounded in CI time: `truncate` and `random` (no model: the model is not the point), a fixed
number of examples per endpoint, derandomized (the same bodies every run; a failure reproduces).
Texts are built from the characters the format readers give meaning to (Markdown links, fences,
tables, tags, JSON), so each reader sees its own syntax, broken in every way.
"""

from __future__ import annotations

import time

import pytest

pytest.importorskip("fastapi")
hypothesis = pytest.importorskip("hypothesis")
import httpx  # noqa: E402
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from elision import Compressor  # noqa: E402
from elision.serve import Settings, create_app  # noqa: E402

from .test_anthropic import make_fake_anthropic  # noqa: E402
from .upstream import LoopbackServer, make_upstream  # noqa: E402

EXAMPLES = 100
BOUND_S = 15.0  # per request: the service's time limit (10 s) plus slack
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])

# pieces with meaning to some reader: Markdown, tags, JSON, protect patterns, white space, odd text
PIECES = ["# ", "## ", "[", "]", "(", ")", "](", "![", "```", "`", "~~~", "|", "|---|", ":--", "* ", "- ", "1. ",
          "> ", "<elision rate=0.5>", "<elision keep>", "</elision>", "<elision rate=\"0.5>", "<llmlingua, rate=0.3>",
          "</llmlingua>", "<", ">", "{", "}", "\"", "\":", ",", "[1,", "null", "true", "1e999", "0" * 50, "\\",
          "\\u0000", "\n", "\n\n", "\t", " ", "word", "The Tay Bridge fell in 1879.", "é", "東京", "🚀", "\u200b",
          "\x00", "a" * 40]
TEXT = st.one_of(st.lists(st.sampled_from(PIECES), max_size=40).map("".join), st.text(max_size=200))
LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False,
                                                                              allow_infinity=False), TEXT)
JSON = st.recursive(LEAF, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                  st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                    max_leaves=16)


def some(plausible):
    """Mostly a plausible value, sometimes any JSON value at all."""
    return st.one_of(plausible, plausible, plausible, JSON)


MESSAGE = st.fixed_dictionaries({"role": some(st.sampled_from(["system", "user", "assistant", "tool", "developer"])),
                                 "content": some(st.one_of(TEXT, st.lists(st.fixed_dictionaries(
                                     {"type": some(st.sampled_from(["text", "image_url"])), "text": some(TEXT)}),
                                     max_size=3)))},
                                optional={"name": TEXT, "tool_call_id": TEXT, "x": JSON})
ELISION = st.fixed_dictionaries({}, optional={
    "rate": some(st.floats(0, 1.5)), "target_tokens": some(st.integers(-5, 500)),
    "method": some(st.sampled_from(["truncate", "random", "", "nope"])), "off": some(st.booleans()),
    "policy": some(st.sampled_from(["stable", "age", "x"])), "hot_tokens": some(st.integers(-5, 500)),
    "condition": some(st.sampled_from(["question", "none"])), "recall_tokens": some(st.integers(-5, 500)),
    "age_decay": some(st.floats(-1, 2)), "keep_recent": some(st.integers(-2, 5)), "junk": JSON})
COMPRESS = st.fixed_dictionaries({}, optional={
    "context": some(st.one_of(TEXT, st.lists(TEXT, max_size=4))), "prompt": some(TEXT),
    "messages": some(st.lists(MESSAGE, max_size=5)), "instruction": some(TEXT), "question": some(TEXT),
    "rate": some(st.floats(0, 1.5)), "target_tokens": some(st.integers(-5, 500)),
    "method": some(st.sampled_from(["truncate", "random", ""])),
    "target": some(st.sampled_from(["gpt-4o", "cl100k_base", "/etc", "../x", ""])),
    "protect": some(st.lists(TEXT, max_size=4)),
    "options": some(st.dictionaries(st.sampled_from(["force_tokens", "force_digits", "keep_newlines", "seed",
                                                     "self", "progress", "whole_values", "bogus"]), JSON,
                                    max_size=3)),
    "format": some(st.sampled_from(["text", "tagged", "json", "markdown", "xml"])),
    "format_options": some(st.fixed_dictionaries({}, optional={"policy": JSON, "default": JSON, "indent": JSON,
                                                               "keep_structure": JSON})),
    "policy": some(st.sampled_from(["stable", "age"])), "return_original": some(st.booleans()), "junk": JSON})
CHAT = st.fixed_dictionaries({"model": some(st.sampled_from(["gpt-4o", "m"])), "messages": some(st.lists(MESSAGE,
                                                                                                         max_size=5))},
                             optional={"elision": some(ELISION), "stream": some(st.booleans()), "tools": JSON,
                                       "temperature": JSON})
BLOCK = st.fixed_dictionaries({"type": some(st.sampled_from(["text", "tool_result", "image", "tool_use", "thinking"]))},
                              optional={"text": some(TEXT), "content": some(st.one_of(TEXT, st.lists(
                                  st.fixed_dictionaries({"type": st.just("text"), "text": some(TEXT)}), max_size=2))),
                                  "cache_control": some(st.just({"type": "ephemeral"})), "tool_use_id": TEXT})
ANTHROPIC = st.fixed_dictionaries(
    {"model": st.just("claude-test"), "max_tokens": some(st.integers(1, 64)),
     "messages": some(st.lists(st.fixed_dictionaries({"role": some(st.sampled_from(["user", "assistant", "tool"])),
                                                      "content": some(st.one_of(TEXT, st.lists(BLOCK, max_size=3)))}),
                               max_size=4))},
    optional={"system": some(st.one_of(TEXT, st.lists(BLOCK, max_size=2))), "elision": some(ELISION),
              "stream": some(st.booleans()), "cache_control": some(st.just({"type": "ephemeral"}))})
# well-formed bodies with generated texts and settings: these get past validation into the
# readers, the keep policy, the chat policies and the proxies (the chaos above mostly meets 400s)
WORDS = TEXT.filter(lambda t: t.strip() != "")
RATE = st.floats(0.05, 1.0)
OK_MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "tool"]),
                                    "content": st.one_of(WORDS, st.lists(st.fixed_dictionaries(
                                        {"type": st.just("text"), "text": WORDS}), min_size=1, max_size=2))})
OK_CHAT = st.lists(OK_MESSAGE, min_size=1, max_size=5).map(lambda m: [*m, {"role": "user", "content": "Why?"}])
OK_ELISION = st.fixed_dictionaries({}, optional={"rate": RATE, "method": st.sampled_from(["truncate", "random"]),
                                                 "policy": st.sampled_from(["stable", "age"])})
COMPRESS_OK = st.one_of(
    st.fixed_dictionaries({"context": st.one_of(WORDS, st.lists(WORDS, min_size=1, max_size=3))}, optional={
        "question": TEXT, "instruction": TEXT, "rate": RATE, "method": st.sampled_from(["truncate", "random"]),
        "format": st.sampled_from(["text", "tagged", "json", "markdown"]), "protect": st.lists(WORDS, max_size=3),
        "options": st.fixed_dictionaries({}, optional={"force_digits": st.booleans(), "keep_newlines": st.booleans(),
                                                       "force_tokens": st.lists(WORDS, max_size=2)})}),
    st.fixed_dictionaries({"messages": OK_CHAT}, optional={"rate": RATE, "policy": st.sampled_from(["stable", "age"]),
                                                           "method": st.sampled_from(["truncate", "random"])}))
CHAT_OK = st.fixed_dictionaries({"model": st.just("gpt-4o"), "messages": OK_CHAT},
                                optional={"elision": OK_ELISION, "stream": st.booleans()})
OK_BLOCK = st.one_of(st.fixed_dictionaries({"type": st.just("text"), "text": WORDS}),
                     st.fixed_dictionaries({"type": st.just("tool_result"), "tool_use_id": st.just("t"),
                                            "content": st.one_of(WORDS, st.lists(st.fixed_dictionaries(
                                                {"type": st.just("text"), "text": WORDS}), max_size=2))}))
ANTHROPIC_OK = st.fixed_dictionaries(
    {"model": st.just("claude-test"), "max_tokens": st.just(16),
     "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]),
                                                 "content": st.one_of(WORDS, st.lists(OK_BLOCK, min_size=1,
                                                                                      max_size=3))}),
                          min_size=1, max_size=4)},
    optional={"system": WORDS, "elision": OK_ELISION, "stream": st.booleans()})
HEADERS = st.fixed_dictionaries({}, optional={
    "X-Elision-Rate": st.sampled_from(["0.5", "2", "x", "nan", ""]), "X-Elision-Method": st.sampled_from(
        ["truncate", "random", "", "nope"]), "X-Elision-Off": st.sampled_from(["1", "no", "maybe"]),
    "X-Elision-Policy": st.sampled_from(["stable", "age", "x"])})


@pytest.fixture(scope="module")
def servers():
    openai_up = LoopbackServer(make_upstream()).start()
    anthropic_up = LoopbackServer(make_fake_anthropic()).start()
    app = create_app(Settings(method="truncate", methods=("random",), upstream=openai_up.url + "/v1",
                              anthropic_upstream=anthropic_up.url + "/v1", timeout=10, max_body_bytes=256 * 1024),
                     preloaded={"truncate": Compressor("truncate"), "random": Compressor("random")})
    service = LoopbackServer(app).start()
    with httpx.Client(base_url=service.url, timeout=60) as client:
        yield client
    service.stop()
    openai_up.stop()
    anthropic_up.stop()


def check(r: httpx.Response, took: float, anthropic: bool = False) -> None:
    event(f"HTTP {r.status_code}")  # pytest --hypothesis-show-statistics: how many got how far
    assert r.status_code < 500, (r.status_code, r.text[:500])
    assert "Traceback" not in r.text and 'File "/' not in r.text, r.text[:500]
    assert took < BOUND_S, f"{took:.1f} s"
    if r.status_code >= 400 and r.headers.get("content-type", "").startswith("application/json"):
        body = r.json()
        if anthropic:  # ours, or the fake upstream's own 4xx passed through: Anthropic's shape either way
            assert body.get("type") == "error" and isinstance(body["error"]["message"], str), body
        else:
            assert isinstance(body["error"]["message"], str), body


def send(client, path: str, body, headers=None) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    if isinstance(body, bytes):
        r = client.post(path, content=body, headers={"content-type": "application/json", **(headers or {})})
    else:
        r = client.post(path, json=body, headers=headers)
    return r, time.monotonic() - t0


@FUZZ
@given(body=st.one_of(COMPRESS_OK, COMPRESS_OK, COMPRESS, JSON, st.binary(max_size=64)))
def test_fuzz_compress(servers, body):
    r, took = send(servers, "/v1/compress", body)
    check(r, took)


@FUZZ
@given(body=st.one_of(CHAT_OK, CHAT_OK, CHAT, JSON), headers=st.one_of(st.just({}), HEADERS))
def test_fuzz_chat_completions(servers, body, headers):
    r, took = send(servers, "/v1/chat/completions", body, {"Authorization": "Bearer k", **headers})
    check(r, took)


@FUZZ
@given(body=st.one_of(ANTHROPIC_OK, ANTHROPIC_OK, ANTHROPIC, JSON), headers=st.one_of(st.just({}), HEADERS))
def test_fuzz_messages(servers, body, headers):
    r, took = send(servers, "/v1/messages", body, {"x-api-key": "good-key", "anthropic-version": "2023-06-01",
                                                   **headers})
    check(r, took, anthropic=True)

