"""compress_messages: roles, order and format kept; system and latest user verbatim; older
turns compressed harder; bad input gets a clear error."""

import copy

import pytest

from elision import Compressor, InvalidInput
from elision.messages import age_rates

from .conftest import is_subsequence

QUESTION = "Which bridge collapsed in a storm, and who designed it?"


@pytest.fixture(scope="module")
def fast():
    return Compressor("llmlingua2", target="cl100k_base")


@pytest.fixture(scope="module")
def long(llmlingua):
    return Compressor("longllmlingua", target="cl100k_base")


@pytest.fixture
def chat(docs):
    d = docs["docs"]
    return [
        {"role": "system", "content": "You are a helpful history tutor. Answer in one sentence."},
        {"role": "user", "content": "Tell me about this. " + d[5]},
        {"role": "assistant", "content": d[2], "name": "tutor"},
        {"role": "user", "content": "And something about physics prizes? " + d[1]},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{\"q\": \"Tay\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": d[0] + "\n\n" + d[3]},
        {"role": "user", "content": [{"type": "text", "text": QUESTION},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
    ]


def _text(m):
    c = m["content"]
    return c if isinstance(c, str) or c is None else c[0]["text"]


@pytest.mark.parametrize("which", ["fast", "long"])
def test_roles_order_and_format_kept(which, request, chat):
    c = request.getfixturevalue(which)
    before = copy.deepcopy(chat)
    r = c.compress_messages(chat, rate=0.4)
    assert chat == before  # the caller's list is not touched
    assert [m["role"] for m in r.messages] == [m["role"] for m in chat]
    for old, new in zip(chat, r.messages):
        assert set(old) == set(new)  # same keys: name, tool_calls, tool_call_id pass through
        assert {k: v for k, v in old.items() if k != "content"} == {k: v for k, v in new.items() if k != "content"}
        if old["content"] is not None and isinstance(old["content"], str):
            assert is_subsequence(new["content"], old["content"])
    assert r.messages[0] == chat[0]  # system verbatim
    assert r.messages[-1] == chat[-1]  # latest user turn verbatim, image part included
    assert r.messages[4]["content"] is None
    assert r.compressed_tokens <= r.budget_tokens and r.rate < 0.45
    assert r.compressed == (1, 2, 3, 5)
    assert r.per_message[0] == (r.per_message[0][0],) * 2


def test_older_turns_compressed_harder(fast, docs):
    d = docs["docs"]
    turns = [{"role": "user" if k % 2 == 0 else "assistant", "content": d[k]} for k in range(6)]
    turns.append({"role": "user", "content": QUESTION})
    r = fast.compress_messages(turns, rate=0.5)
    kept = [b / a for a, b in r.per_message[:6]]
    assert kept[0] < kept[2] < kept[5]
    assert kept[5] > 0.5 > kept[0]
    assert abs(r.compressed_tokens - r.budget_tokens) <= 0.05 * r.budget_tokens
    flat = fast.compress_messages(turns, rate=0.5, age_decay=1.0)  # no ageing: similar rates
    rates = [b / a for a, b in flat.per_message[:6]]
    assert max(rates) - min(rates) < 0.2


def test_keep_recent_and_tool_outputs(fast, chat):
    r = fast.compress_messages(chat, rate=0.5, keep_recent=1)
    assert r.messages[5] == chat[5]  # the newest compressible message, kept
    r = fast.compress_messages(chat, rate=0.5)
    assert len(r.messages[5]["content"]) < len(chat[5]["content"])  # tool output compressed


def test_question_aware_method_uses_the_latest_user_turn(long, chat):
    r = long.compress_messages(chat, rate=0.35)
    assert "Tay" in r.messages[5]["content"]  # the tool output that answers the question survives
    assert len(_text(r.messages[2]) or "") < len(chat[2]["content"])


def test_budget_already_met_keeps_everything(fast, chat):
    r = fast.compress_messages(chat, rate=1.0)
    assert r.messages == chat and r.rate == 1.0


@pytest.mark.parametrize("bad, match", [
    ([], "empty"),
    ("hello", "list"),
    ([{"content": "x"}], "role"),
    (["just text"], "object"),
    ([{"role": "user", "content": 3}], "string, a list of parts"),
    ([{"role": "user", "content": [{"text": "no type"}]}], "type"),
    ([{"role": "user"}], "no 'content'"),
])
def test_bad_messages(fast, bad, match):
    with pytest.raises(InvalidInput, match=match):
        fast.compress_messages(bad, rate=0.5)


def test_bad_options(fast, chat):
    with pytest.raises(InvalidInput, match="age_decay"):
        fast.compress_messages(chat, age_decay=0)
    with pytest.raises(InvalidInput, match="rate"):
        fast.compress_messages(chat, rate=2)


def test_question_aware_method_needs_a_user_turn(long):
    with pytest.raises(InvalidInput, match="user message"):
        long.compress_messages([{"role": "system", "content": "Be brief."},
                                {"role": "assistant", "content": "The Tay Bridge fell in 1879."}], rate=0.5)


def test_age_rates():
    assert list(age_rates([100, 100], [1, 0], 150, 0.5)) == pytest.approx([0.5, 1.0])
    assert list(age_rates([100, 100], [1, 0], 500, 0.5)) == [1.0, 1.0]
    assert list(age_rates([100, 100], [1, 0], 0, 0.5)) == [0.0, 0.0]
    r = age_rates([50, 80, 120], [2, 1, 0], 100, 0.7)
    assert (r * [50, 80, 120]).sum() == pytest.approx(100, abs=0.01) and r[0] < r[1] < r[2]
