"""billing.py: every published caching rule on exact numbers, usage read from real-shaped bodies
and from SSE streams split at every byte, the price table and its errors."""

from __future__ import annotations

import doctest
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import elision.billing
from elision._errors import InvalidInput, UnknownName
from elision.billing import (
    ANTHROPIC,
    OPENAI,
    AnthropicCache,
    Block,
    CacheControlError,
    OpenAIPrefixCache,
    Prices,
    PriceTable,
    StreamUsage,
    Usage,
    anthropic_min_tokens,
    anthropic_request_blocks,
    openai_request_tokens,
    usage_from_anthropic,
    usage_from_openai,
)
from elision.tokenizers import get_target


def test_docstring_examples():
    assert doctest.testmod(elision.billing).failed == 0


def seq(start: int, n: int) -> list[int]:
    """n distinct token ids: two calls with different starts share nothing."""
    return list(range(start, start + n))


# ------------------------------------------------------------------------------- OpenAI rules


def test_openai_request_under_1024_tokens_caches_nothing():
    cache = OpenAIPrefixCache()
    assert cache.request(seq(0, 1023)) == Usage("openai", input_tokens=1023)
    assert cache.request(seq(0, 1023)).cache_read_tokens == 0  # nothing was stored either
    assert cache.request(seq(0, 1024)).cache_read_tokens == 0
    assert cache.request(seq(0, 1024)) == Usage("openai", input_tokens=0, cache_read_tokens=1024)


def test_openai_hits_come_in_steps_of_128_past_1024():
    cache = OpenAIPrefixCache()
    cache.request(seq(0, 1500))
    second = cache.request(seq(0, 1300) + seq(10_000, 200))  # 1,300 shared
    assert (second.cache_read_tokens, second.input_tokens) == (1280, 220)
    assert cache.request(seq(0, 1279) + seq(20_000, 300)).cache_read_tokens == 1152
    assert cache.request(seq(0, 1151) + seq(30_000, 300)).cache_read_tokens == 1024
    assert cache.request(seq(0, 1023) + seq(40_000, 900)).cache_read_tokens == 0
    # the second request stored its own prefixes: a third sharing 1,450 of ITS tokens gets 1,408
    assert cache.request(seq(0, 1300) + seq(10_000, 150) + [-5] * 100).cache_read_tokens == 1408


def test_openai_step_one_caches_the_exact_shared_prefix():
    cache = OpenAIPrefixCache(min_tokens=1024, step=1)
    cache.request(seq(0, 2000))
    assert cache.request(seq(0, 1777) + [-1]).cache_read_tokens == 1777


def test_openai_simulator_rejects_bad_settings():
    with pytest.raises(InvalidInput, match="step must be a positive integer"):
        OpenAIPrefixCache(step=0)


# ---------------------------------------------------------------------------- Anthropic rules


def test_anthropic_moving_breakpoint_reads_the_previous_prefix_and_writes_the_new_part():
    cache = AnthropicCache(min_tokens=1024)
    system, u1, a1, u2 = seq(0, 1500), seq(5000, 100), seq(6000, 50), seq(7000, 80)
    first = cache.request([Block(system), Block(u1, "5m")])
    assert first == Usage("anthropic", cache_write_tokens=1600)
    second = cache.request([Block(system), Block(u1), Block(a1), Block(u2, "5m")])
    assert second == Usage("anthropic", cache_read_tokens=1600, cache_write_tokens=130)
    assert second.billed_input(ANTHROPIC) == pytest.approx(1600 * 0.1 + 130 * 1.25)


def test_anthropic_prefix_under_the_minimum_is_not_written():
    cache = AnthropicCache(min_tokens=1024)
    short = [(seq(0, 900), True), (seq(900, 50), False)]
    assert cache.request(short) == Usage("anthropic", input_tokens=950)
    assert cache.request(short) == Usage("anthropic", input_tokens=950)  # never written, never read
    # an early breakpoint under the minimum is skipped, a later one over it is written
    mixed = [(seq(0, 500), True), (seq(500, 700), True), (seq(2000, 10), False)]
    assert cache.request(mixed) == Usage("anthropic", cache_write_tokens=1200, input_tokens=10)
    assert cache.request(mixed) == Usage("anthropic", cache_read_tokens=1200, input_tokens=10)


def test_anthropic_min_tokens_per_model():
    assert anthropic_min_tokens("claude-opus-4-5-20251101") == 4096
    assert anthropic_min_tokens("claude-opus-4-1-20250805") == 1024
    assert anthropic_min_tokens("claude-3-5-haiku-20241022") == 2048
    assert anthropic_min_tokens("claude-opus-5") == 512
    assert AnthropicCache(model="claude-haiku-4-5").min_tokens == 4096
    cache = AnthropicCache(model="claude-haiku-4-5")
    assert cache.request([(seq(0, 4095), True)]) == Usage("anthropic", "claude-haiku-4-5", input_tokens=4095)
    assert cache.request([(seq(0, 4096), True)]) == Usage("anthropic", "claude-haiku-4-5", cache_write_tokens=4096)


def turns(*counts: int, kinds=None):
    """Conversations of 200-token blocks, the breakpoint on the last one (the docs' example)."""
    out = []
    for n in counts:
        blocks = [Block(seq(1000 * i, 200), kind=(kinds or {}).get(i, "text")) for i in range(n)]
        blocks[-1] = blocks[-1]._replace(ttl="5m")
        out.append(blocks)
    return out


def test_anthropic_lookback_is_20_positions_counting_the_breakpoint():
    # platform.claude.com: turn 1 writes at block 10, turn 2 (15 blocks) hits it and writes at 15
    cache = AnthropicCache(min_tokens=1024)
    t1, t2, t34, t35 = turns(10, 15, 34, 35)
    assert cache.request(t1) == Usage("anthropic", cache_write_tokens=2000)
    assert cache.request(t2) == Usage("anthropic", cache_read_tokens=2000, cache_write_tokens=1000)
    # turn 3 with 35 blocks: positions 35..16 checked, the entry at 15 is one outside: a miss
    missed = AnthropicCache(min_tokens=1024)
    missed.request(t1), missed.request(t2)
    assert missed.request(t35) == Usage("anthropic", cache_write_tokens=7000)
    # with 34 blocks the entry at 15 is the 20th position: a hit
    assert cache.request(t34) == Usage("anthropic", cache_read_tokens=3000, cache_write_tokens=3800)


def test_anthropic_a_run_of_tool_blocks_is_one_lookback_position():
    kinds = {i: "tool_use" if i < 25 else "tool_result" for i in range(15, 35)}
    cache = AnthropicCache(min_tokens=1024)
    t1, t2, t35 = turns(10, 15, 35, kinds=kinds)
    cache.request(t1), cache.request(t2)
    # blocks 16-25 and 26-35 are two positions: block 15's entry is 3 positions back
    assert cache.request(t35) == Usage("anthropic", cache_read_tokens=3000, cache_write_tokens=4000)


def test_anthropic_lookback_finds_only_entries_written_at_breakpoints():
    # the docs' "common mistake": the breakpoint on a block that changes every request
    cache = AnthropicCache(min_tokens=1024)
    static = [Block(seq(0, 1500))]
    assert cache.request(static + [Block(seq(5000, 20), "5m")]).cache_write_tokens == 1520
    again = cache.request(static + [Block(seq(6000, 20), "5m")])
    assert again == Usage("anthropic", cache_write_tokens=1520)  # no read, every time


def test_anthropic_more_than_4_breakpoints_is_refused():
    cache = AnthropicCache(min_tokens=1024)
    five = [(seq(200 * i, 200), True) for i in range(5)]
    with pytest.raises(CacheControlError, match="A maximum of 4 blocks with cache_control may be provided. Found 5."):
        cache.request(five)
    assert cache.request(five[:4]) == Usage("anthropic", input_tokens=800)  # 800 < 1,024: nothing written
    four_and_plain = five[:4] + [(seq(5000, 10), False)]
    with pytest.raises(CacheControlError, match="no slot for the top-level cache_control"):
        cache.request(four_and_plain, auto=True)  # the automatic breakpoint takes a fifth slot
    assert cache.request(five[:4], auto=True) == Usage("anthropic", input_tokens=800)  # last block marked: no-op
    assert isinstance(CacheControlError("x"), InvalidInput)


def test_anthropic_automatic_breakpoint_lands_on_the_last_cacheable_block():
    cache = AnthropicCache(min_tokens=1024)
    system, u1, a1, u2 = seq(0, 1500), seq(5000, 100), seq(6000, 50), seq(7000, 60)
    assert cache.request([Block(system), Block(u1)], auto=True) == Usage("anthropic", cache_write_tokens=1600)
    second = cache.request([Block(system), Block(u1), Block(a1), Block(u2)], auto=True)
    assert second == Usage("anthropic", cache_read_tokens=1600, cache_write_tokens=110)
    # without auto and without breakpoints nothing is cached
    assert cache.request([Block(system), Block(u1)]) == Usage("anthropic", input_tokens=1600)
    # a thinking block last: the breakpoint walks back to the block before it
    thought = cache.request([Block(system), Block(u1), Block(seq(9000, 30), kind="thinking")], auto=True)
    assert thought == Usage("anthropic", cache_read_tokens=1600, input_tokens=30)
    with pytest.raises(CacheControlError, match="differs from the top-level"):
        cache.request([Block(system), Block(u1, "5m")], auto="1h")


def test_anthropic_one_hour_writes_bill_at_2x_and_must_come_first():
    cache = AnthropicCache(min_tokens=1024)
    system, user = seq(0, 2000), seq(5000, 100)
    first = cache.request([Block(system, "1h"), Block(user, "5m")])
    assert first == Usage("anthropic", cache_write_1h_tokens=2000, cache_write_tokens=100)
    assert first.billed_input(ANTHROPIC) == 2000 * 2.0 + 100 * 1.25 == 4125.0
    with pytest.raises(CacheControlError, match="1h cache_control must come before"):
        cache.request([Block(system, "5m"), Block(user, "1h")])
    with pytest.raises(CacheControlError, match="ttl must be one of 5m, 1h"):
        cache.request([Block(system, "10m")])


def test_anthropic_mixed_ttls_bill_at_positions_a_b_c():
    cache = AnthropicCache(min_tokens=1024)
    p, q, r, t = seq(0, 1100), seq(2000, 500), seq(3000, 200), seq(4000, 10)
    cache.request([Block(p, "5m")])  # an entry at 1,100
    usage = cache.request([Block(p, "1h"), Block(q, "1h"), Block(r, "5m"), Block(t)])
    # A = 1,100 (hit), B = 1,600 (last 1h breakpoint), C = 1,800 (last breakpoint)
    assert usage == Usage("anthropic", cache_read_tokens=1100, cache_write_1h_tokens=500,
                          cache_write_tokens=200, input_tokens=10)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 600), st.sampled_from([None, "5m"])), min_size=1, max_size=8),
       st.integers(0, 3))
def test_anthropic_usage_partitions_the_prompt(spec, seed):
    cache = AnthropicCache(min_tokens=1024)
    blocks = [Block(seq(10_000 * (i + seed), n), ttl) for i, (n, ttl) in enumerate(spec)]
    marks = [i for i, b in enumerate(blocks) if b.ttl]
    if len(marks) > 4:
        blocks = [b._replace(ttl=None) if i in marks[:-4] else b for i, b in enumerate(blocks)]
    total = sum(n for n, _ in spec)
    for _ in range(2):
        u = cache.request(blocks)
        assert u.prompt_tokens == total
        assert min(u.input_tokens, u.cache_read_tokens, u.cache_write_tokens) >= 0
    last = max((sum(len(b.tokens) for b in blocks[:i + 1]) for i, b in enumerate(blocks) if b.ttl), default=0)
    assert u.cache_read_tokens == (last if last >= 1024 else 0)  # the repeat reads all it wrote


# ------------------------------------------------------------------------------- usage bodies

OPENAI_CHAT = json.loads("""{
  "id": "chatcmpl-C9xyz", "object": "chat.completion", "created": 1756300000, "model": "gpt-5-2025-08-07",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris.", "refusal": null,
               "annotations": []}, "finish_reason": "stop"}],
  "usage": {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
  "service_tier": "default", "system_fingerprint": null}""")

OPENAI_RESPONSES = json.loads("""{
  "id": "resp_68ab", "object": "response", "created_at": 1756300000, "status": "completed", "model": "gpt-5",
  "output": [], "usage": {"input_tokens": 1300, "input_tokens_details": {"cached_tokens": 1280},
  "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 1350}}""")

ANTHROPIC_MESSAGE = json.loads("""{
  "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
  "content": [{"type": "text", "text": "Hello!"}], "stop_reason": "end_turn", "stop_sequence": null,
  "usage": {"input_tokens": 50, "cache_read_input_tokens": 100000, "cache_creation_input_tokens": 248,
            "cache_creation": {"ephemeral_5m_input_tokens": 148, "ephemeral_1h_input_tokens": 100},
            "output_tokens": 503, "service_tier": "standard"}}""")


def test_usage_from_openai_chat_completion():
    assert usage_from_openai(OPENAI_CHAT) == Usage("openai", "gpt-5-2025-08-07", input_tokens=86,
                                                   cache_read_tokens=1920, output_tokens=300)
    assert usage_from_openai(OPENAI_CHAT).prompt_tokens == 2006


def test_usage_from_openai_responses_api_and_cache_writes():
    assert usage_from_openai(OPENAI_RESPONSES) == Usage("openai", "gpt-5", input_tokens=20, cache_read_tokens=1280,
                                                        output_tokens=50)
    written = usage_from_openai({"model": "gpt-5.6", "usage": {"prompt_tokens": 3000, "completion_tokens": 1,
                                 "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 1500}}})
    assert (written.input_tokens, written.cache_read_tokens, written.cache_write_tokens) == (500, 1000, 1500)
    assert PriceTable().billed_input(written) == pytest.approx(500 + 1000 * 0.1 + 1500 * 1.25)


def test_usage_from_openai_without_usage_or_with_bad_numbers():
    assert usage_from_openai({"choices": [], "usage": None}) is None
    assert usage_from_openai("usage") is None
    assert usage_from_openai({"usage": {"total_tokens": 5}}) is None
    odd = usage_from_openai({"usage": {"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": 500},
                                       "completion_tokens": "7"}})
    assert odd == Usage("openai", input_tokens=0, cache_read_tokens=100, output_tokens=0)
    assert usage_from_openai({"usage": {"prompt_tokens": True, "prompt_tokens_details": []}}) == Usage("openai")


def test_usage_from_anthropic_message_and_events():
    assert usage_from_anthropic(ANTHROPIC_MESSAGE) == Usage(
        "anthropic", "claude-sonnet-4-5", input_tokens=50, cache_read_tokens=100000, cache_write_tokens=148,
        cache_write_1h_tokens=100, output_tokens=503)
    start = {"type": "message_start", "message": {"model": "claude-opus-4-5", "usage": {
        "input_tokens": 20, "cache_creation_input_tokens": 1500, "cache_read_input_tokens": 0, "output_tokens": 1}}}
    assert usage_from_anthropic(start) == Usage("anthropic", "claude-opus-4-5", input_tokens=20,
                                                cache_write_tokens=1500, output_tokens=1)
    assert usage_from_anthropic({"type": "message_delta", "usage": {"output_tokens": 9}}).output_tokens == 9
    assert usage_from_anthropic({"type": "ping"}) is None
    assert usage_from_anthropic({"cache_read_input_tokens": 5}) == Usage("anthropic", cache_read_tokens=5)


# ---------------------------------------------------------------------------------- streams


def sse(events, end=b"\n") -> bytes:
    """Events as a provider sends them; data holding newlines goes out as several data lines."""
    out = b""
    for name, data in events:
        if name:
            out += b"event: " + name.encode() + end
        text = data if isinstance(data, str) else json.dumps(data)
        out += b"".join(b"data: " + line.encode() + end for line in text.split("\n")) + end
    return out


def chunk(usage=None, content="x"):
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-5",
            "choices": [] if usage else [{"index": 0, "delta": {"content": content}}], "usage": usage}


OPENAI_STREAM = [(None, chunk(content="Par")), (None, chunk(content="is ✓")),
                 (None, chunk({"prompt_tokens": 1300, "completion_tokens": 9, "total_tokens": 1309,
                               "prompt_tokens_details": {"cached_tokens": 1280}})), (None, "[DONE]")]
OPENAI_STREAM_USAGE = Usage("openai", "gpt-5", input_tokens=20, cache_read_tokens=1280, output_tokens=9)

ANTHROPIC_STREAM = [
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
        "usage": {"input_tokens": 50, "cache_read_input_tokens": 100000, "cache_creation_input_tokens": 248,
                  "cache_creation": {"ephemeral_5m_input_tokens": 148, "ephemeral_1h_input_tokens": 100},
                  "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hé"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    # one event's JSON over three data lines (SSE joins them with newlines)
    ("message_delta", ('{"type": "message_delta",\n"delta": {"stop_reason": "end_turn", "stop_sequence": null},'
                       '\n"usage": {"output_tokens": 503}}')),
    ("message_stop", {"type": "message_stop"}),
]
ANTHROPIC_STREAM_USAGE = Usage("anthropic", "claude-sonnet-4-5", input_tokens=50, cache_read_tokens=100000,
                               cache_write_tokens=148, cache_write_1h_tokens=100, output_tokens=503)


def read_stream(provider: str, data: bytes, cuts) -> Usage | None:
    s, at = StreamUsage(provider), 0
    for cut in sorted(cuts):
        s.feed(data[at:cut])
        at = cut
    s.feed(data[at:])
    return s.usage


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("provider, events, expected", [("openai", OPENAI_STREAM, OPENAI_STREAM_USAGE),
                                                         ("anthropic", ANTHROPIC_STREAM, ANTHROPIC_STREAM_USAGE)])
def test_stream_usage_split_at_every_byte_offset(provider, events, expected, end):
    data = sse(events, end)
    for cut in range(len(data) + 1):
        assert read_stream(provider, data, [cut]) == expected, cut
    assert read_stream(provider, data, range(len(data))) == expected  # one byte at a time


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, len(sse(ANTHROPIC_STREAM, b"\r\n"))), max_size=12))
def test_stream_usage_any_split(cuts):
    assert read_stream("anthropic", sse(ANTHROPIC_STREAM, b"\r\n"), cuts) == ANTHROPIC_STREAM_USAGE


def test_stream_usage_later_anthropic_events_override_earlier_counts():
    events = ANTHROPIC_STREAM[:1] + [("message_delta", {"type": "message_delta", "delta": {}, "usage": {
        "input_tokens": 50, "cache_read_input_tokens": 100000, "cache_creation_input_tokens": 248,
        "output_tokens": 503, "server_tool_use": None}})]
    assert read_stream("anthropic", sse(events), []) == ANTHROPIC_STREAM_USAGE
    events = ANTHROPIC_STREAM[:1] + [("message_delta", {"type": "message_delta", "delta": {}, "usage": {
        "input_tokens": None, "cache_read_input_tokens": None, "output_tokens": 503}})]  # null: not reported
    assert read_stream("anthropic", sse(events), []) == ANTHROPIC_STREAM_USAGE
    events = ANTHROPIC_STREAM[:1] + [("message_delta", {"type": "message_delta", "usage": {"output_tokens": 7}}),
                                     ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 12}})]
    assert read_stream("anthropic", sse(events), []).output_tokens == 12  # cumulative, not added


def test_stream_usage_responses_api_and_unfinished_event():
    events = [("response.created", {"type": "response.created", "response": {"model": "gpt-5", "usage": None}}),
              ("response.completed", {"type": "response.completed", "response": OPENAI_RESPONSES})]
    assert read_stream("openai", sse(events), []) == usage_from_openai(OPENAI_RESPONSES)
    unfinished = sse(OPENAI_STREAM[:3])[:-1]  # the closing blank line never came
    assert read_stream("openai", unfinished, []) == OPENAI_STREAM_USAGE
    assert StreamUsage("openai").usage is None


def test_stream_usage_survives_garbage():
    garbage = b"\xff\xfe\x00data: {not json\n\n: comment\nretry: x\nid\n\ndata: [1, 2]\n\ndata: \"usage\"\n\n"
    data = garbage + sse(OPENAI_STREAM) + b"data: {\"choices\": []}\n\n"
    assert read_stream("openai", data, range(0, len(data), 7)) == OPENAI_STREAM_USAGE
    s = StreamUsage("anthropic")
    s.feed("data: {\"type\": \"message_delta\", \"usage\": {\"output_tokens\": 3}}\n\n")  # str is accepted
    s.feed(None)
    assert s.usage == Usage("anthropic", output_tokens=3)
    with pytest.raises(UnknownName):
        StreamUsage("gemini")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["openai", "anthropic"]))
def test_stream_usage_never_raises(data, provider):
    s = StreamUsage(provider)
    s.feed(data)
    s.feed(b"data: " + data + b"\n\n")
    s.usage  # noqa: B018 - reading it must not raise either


# ------------------------------------------------------------------------------------- prices


def test_billed_input_arithmetic():
    u = Usage("anthropic", input_tokens=100, cache_read_tokens=1000, cache_write_tokens=200, cache_write_1h_tokens=300)
    assert u.prompt_tokens == 1600
    assert u.billed_input(ANTHROPIC) == pytest.approx(100 + 1000 * 0.1 + 200 * 1.25 + 300 * 2.0)  # 1,050
    assert u.billed_input(OPENAI) == pytest.approx(100 + 100 + 200 + 300)
    assert u.billed_input(Prices()) == 1600


def test_price_table_first_match_wins_and_provider_default_else():
    table = PriceTable.parse('{"gpt-4o-mini*": {"cache_read": 0.4}, "gpt-4o*": {"cache_read": 0.3, "input": 1},'
                             ' "claude-*": {"cache_write": 1.5}}')
    assert table.prices("gpt-4o-mini-2024-07-18", "openai") == Prices(cache_read=0.4)
    assert table.prices("gpt-4o", "openai") == Prices(cache_read=0.3)  # the operator's row before KNOWN_ROWS
    assert table.prices("GPT-5", "openai") == OPENAI
    assert table.prices("gpt-4.1-mini", "openai").cache_read == 0.25  # a known row
    assert table.prices("claude-sonnet-4-5", "anthropic") == Prices(cache_read=0.1, cache_write=1.5,
                                                                    cache_write_1h=2.0)
    assert table.prices("", "anthropic") == ANTHROPIC
    assert PriceTable().prices("gpt-5.6-sol", "openai").cache_write == 1.25
    with pytest.raises(UnknownName, match="unknown provider 'gemini'; known: anthropic, openai"):
        table.prices("gemini-2.5-pro", "gemini")


def test_price_table_compact_form():
    table = PriceTable.parse("ft:gpt-4o:acme:*: cache_read=0.5; claude-haiku-*: cache_read=0.08, cache_write=1.0;")
    assert table.prices("ft:gpt-4o:acme:x1", "openai") == Prices(cache_read=0.5)
    assert table.prices("claude-haiku-4-5", "anthropic") == Prices(cache_read=0.08, cache_write=1.0,
                                                                   cache_write_1h=2.0)
    assert PriceTable.parse("").rows == PriceTable().rows


@pytest.mark.parametrize("text, message", [
    ('{"gpt-4o*": {"cached": 0.5}}', ("unknown key 'cached' for 'gpt-4o\\*'; valid keys: input, cache_read, "
                                      "cache_write, cache_write_1h")),
    ("gpt-4o*: read=0.5", "unknown key 'read'.*valid keys: input, cache_read, cache_write, cache_write_1h"),
    ('{"gpt-4o*": {"cache_read": "half"}}', "cache_read must be a finite number >= 0.*'half'"),
    ('{"gpt-4o*": {"cache_read": -0.1}}', "must be a finite number >= 0"),
    ('{"gpt-4o*": {"cache_read": true}}', "must be a finite number >= 0"),
    ("gpt-4o*: cache_read=nan", "must be a finite number >= 0"),
    ('{"gpt-4o*": 0.5}', "must map patterns to objects"),
    ('{"gpt-4o*": {', "not valid JSON"),
    ("gpt-4o* cache_read=0.5", "must look like 'pattern: key=value, key=value'"),
    ("gpt-4o*: cache_read", "must look like"),
    ('{" ": {"cache_read": 0.5}}', "an empty model pattern"),
])
def test_price_table_errors_name_the_valid_keys(text, message):
    with pytest.raises(InvalidInput, match=message):
        PriceTable.parse(text, name="ELISION_PRICES")


# ------------------------------------------------------------------------- request bodies


@pytest.fixture(scope="module")
def enc():
    return get_target("o200k_base").encode


def test_openai_request_tokens_pieces_in_order(enc):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    body = {"model": "gpt-5", "tools": tools, "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"}]}
    expected = []
    for piece in [json.dumps(tools, separators=(",", ":")), "system", "You are terse.", "user", "Weather in Paris?",
                  "assistant", json.dumps(body["messages"][2]["tool_calls"], separators=(",", ":")),
                  "tool", "18C", "call_1"]:
        expected += enc(piece)
    assert openai_request_tokens(body, enc) == expected


def test_openai_replayed_conversation_is_billed_like_the_api(enc):
    system = {"role": "system", "content": "Answer from the manual. " + "The pump has a valve. " * 300}
    turn1 = {"messages": [system, {"role": "user", "content": "How do I open the valve?"}]}
    turn2 = {"messages": turn1["messages"] + [{"role": "assistant", "content": "Turn it left."},
                                              {"role": "user", "content": "And close it?"}]}
    t1, t2 = openai_request_tokens(turn1, enc), openai_request_tokens(turn2, enc)
    assert t2[:len(t1)] == t1  # a grown conversation extends the earlier tokens
    cache = OpenAIPrefixCache()
    assert cache.request(t1).cache_read_tokens == 0
    second = cache.request(t2)
    assert second.cache_read_tokens == 1024 + (len(t1) - 1024) // 128 * 128
    assert second.prompt_tokens == len(t2)


def test_anthropic_request_blocks_reads_breakpoints_kinds_and_auto(enc):
    body = {
        "model": "claude-sonnet-4-5", "cache_control": {"type": "ephemeral"},
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"},
                   "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          "content": [{"type": "text", "text": "18C"}]},
                                         {"type": "text", "text": "Thanks", "cache_control": {"type": "ephemeral"}}]},
        ]}
    blocks, auto = anthropic_request_blocks(body, enc)
    assert auto == "5m"
    assert [(b.kind, b.ttl) for b in blocks] == [("tool", "1h"), ("system", "5m"), ("text", None),
                                                 ("tool_use", None), ("tool_result", None), ("text", "5m")]
    assert blocks[0].tokens == enc('{"name":"get_weather","input_schema":{"type":"object"}}')
    assert blocks[2].tokens == enc("user") + enc("Weather in Paris?")
    assert blocks[3].tokens == enc("assistant") + enc("get_weather") + enc('{"city":"Paris"}')
    assert blocks[4].tokens == enc("user") + enc("18C")
    assert blocks[5].tokens == enc("Thanks")
    assert anthropic_request_blocks({"system": "Be terse.", "messages": []}, enc) == ([Block(enc("Be terse."),
                                                                                            None, "system")], None)
    with pytest.raises(CacheControlError):
        anthropic_request_blocks({"cache_control": {"type": "ephemeral", "ttl": "2h"}}, enc)


def test_anthropic_replayed_conversation_with_automatic_caching(enc):
    system = "Answer from the manual. " + "The pump has a valve. " * 300
    turn1 = {"cache_control": {"type": "ephemeral"}, "system": system,
             "messages": [{"role": "user", "content": "How do I open the valve?"}]}
    turn2 = {**turn1, "messages": turn1["messages"] + [{"role": "assistant", "content": "Turn it left."},
                                                       {"role": "user", "content": "And close it?"}]}
    cache = AnthropicCache(model="claude-sonnet-4-5")
    first = cache.request(*anthropic_request_blocks(turn1, enc))
    n1 = sum(len(b.tokens) for b in anthropic_request_blocks(turn1, enc).blocks)
    assert n1 >= 1024 and first == Usage("anthropic", "claude-sonnet-4-5", cache_write_tokens=n1)
    second = cache.request(*anthropic_request_blocks(turn2, enc))
    n2 = sum(len(b.tokens) for b in anthropic_request_blocks(turn2, enc).blocks)
    assert second == Usage("anthropic", "claude-sonnet-4-5", cache_read_tokens=n1, cache_write_tokens=n2 - n1)
