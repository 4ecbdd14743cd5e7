"""compress_messages: roles, order and format kept; system and latest user verbatim; older
turns compressed harder; bad input gets a clear error."""

import copy

import pytest

from elision import Compressor, InvalidInput
from elision.messages import RECALL_HEADER, age_rates

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
    r = c.compress_messages(chat, rate=0.4, policy="age")
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
    r = fast.compress_messages(turns, rate=0.5, policy="age")
    kept = [b / a for a, b in r.per_message[:6]]
    assert kept[0] < kept[2] < kept[5]
    assert kept[5] > 0.5 > kept[0]
    assert abs(r.compressed_tokens - r.budget_tokens) <= 0.05 * r.budget_tokens
    flat = fast.compress_messages(turns, rate=0.5, age_decay=1.0, policy="age")  # no ageing: similar rates
    rates = [b / a for a, b in flat.per_message[:6]]
    assert max(rates) - min(rates) < 0.2


def test_keep_recent_and_tool_outputs(fast, chat):
    r = fast.compress_messages(chat, rate=0.5, keep_recent=1, policy="age")
    assert r.messages[5] == chat[5]  # the newest compressible message, kept
    r = fast.compress_messages(chat, rate=0.5, policy="age")
    assert len(r.messages[5]["content"]) < len(chat[5]["content"])  # tool output compressed


def test_question_aware_method_uses_the_latest_user_turn(long, chat):
    r = long.compress_messages(chat, rate=0.35, policy="age")
    assert "Tay" in r.messages[5]["content"]  # the tool output that answers the question survives
    assert len(_text(r.messages[2]) or "") < len(chat[2]["content"])


def test_budget_already_met_keeps_everything(fast, chat):
    r = fast.compress_messages(chat, rate=1.0, policy="age")
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
        fast.compress_messages(chat, age_decay=0, policy="age")
    with pytest.raises(InvalidInput, match="rate"):
        fast.compress_messages(chat, rate=2)


def test_question_aware_method_needs_a_user_turn(long):
    with pytest.raises(InvalidInput, match="user message"):
        long.compress_messages([{"role": "system", "content": "Be brief."},
                                {"role": "assistant", "content": "The Tay Bridge fell in 1879."}], rate=0.5,
                               policy="age")


def test_age_rates():
    assert list(age_rates([100, 100], [1, 0], 150, 0.5)) == pytest.approx([0.5, 1.0])
    assert list(age_rates([100, 100], [1, 0], 500, 0.5)) == [1.0, 1.0]
    assert list(age_rates([100, 100], [1, 0], 0, 0.5)) == [0.0, 0.0]
    r = age_rates([50, 80, 120], [2, 1, 0], 100, 0.7)
    assert (r * [50, 80, 120]).sum() == pytest.approx(100, abs=0.01) and r[0] < r[1] < r[2]


# --- policy="stable": append-only, deterministic (issue 23) ---------------------------------

def _session(docs, turns: int) -> list[dict]:
    """An agent session: per turn a question, a tool call, a tool output of two documents."""
    d = docs["docs"]
    out = [{"role": "system", "content": "You are a research agent. Use the search tool, then answer briefly."}]
    for t in range(turns):
        out += [{"role": "user", "content": f"Turn {t}: what happened in the story of document {t % len(d)}?"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": f"c{t}", "type": "function", "function": {
                    "name": "search", "arguments": f'{{"q": "doc {t}"}}'}}]},
                {"role": "tool", "tool_call_id": f"c{t}", "content": d[t % len(d)] + "\n\n" + d[(t + 3) % len(d)]},
                {"role": "assistant", "content": f"Document {t % len(d)} says what the search found."}]
    return out


def _bytes(messages) -> list[str]:
    import json

    return [json.dumps(m, sort_keys=True, ensure_ascii=False) for m in messages]


@pytest.mark.parametrize("hot", [0, 400])
def test_stable_turns_share_the_earlier_prefix_byte_for_byte(fast, docs, hot):
    history = _session(docs, 6)
    before = copy.deepcopy(history)
    prev, prev_frozen, breaks = None, set(), 0
    for n in range(2, len(history) + 1, 4):  # each turn re-sends the whole history plus its new messages
        r = fast.compress_messages(history[:n + 1], rate=0.4, hot_tokens=hot, recall_tokens=0)
        assert history == before
        now = _bytes(r.messages)
        if prev is not None:
            # hot_tokens=0: every earlier message is unchanged; > 0: all before the block that closed now
            assert set(r.compressed) >= prev_frozen
            closed = set(r.compressed) - prev_frozen
            same = min([len(prev), *[i for i in closed if i < len(prev)]])
            assert now[:same] == prev[:same]
            breaks += same < len(prev)
        prev, prev_frozen = now, set(r.compressed)
    assert (breaks == 0) == (hot == 0) and breaks < 4  # blocks break the prefix now and then, not every turn
    assert r.policy == "stable" and r.compressed_tokens < (0.6 if hot == 0 else 0.9) * r.origin_tokens


def test_stable_what_it_keeps_and_compresses(fast, docs):
    history = _session(docs, 3)
    r = fast.compress_messages(history, rate=0.4, recall_tokens=0)
    tools = [i for i, m in enumerate(history) if m["role"] == "tool"]
    assert r.compressed == tuple(tools)  # short assistant texts and user turns stay whole
    for old, new in zip(history, r.messages):
        assert {k: v for k, v in old.items() if k != "content"} == {k: v for k, v in new.items() if k != "content"}
        if old["role"] == "tool":
            assert is_subsequence(new["content"], old["content"])
            a, b = r.per_message[history.index(old)]
            assert abs(b - 0.4 * a) <= 0.05 * a  # each message lands on the rate of its own tokens
        else:
            assert new == old
    long_assistant = history + [{"role": "assistant", "content": docs["docs"][4]}]
    assert fast.compress_messages(long_assistant, rate=0.4, recall_tokens=0).compressed[-1] == len(history)
    with_users = fast.compress_messages(long_assistant + [{"role": "user", "content": docs["docs"][5]}], rate=0.4,
                                        roles=("user", "tool"), recall_tokens=0)
    assert len(with_users.messages[-1]["content"]) < len(docs["docs"][5])
    assert with_users.messages[-2] == long_assistant[-1]


def test_stable_message_does_not_depend_on_later_or_neighbouring_messages(fast, docs):
    """A message's bytes are a function of itself, the question before it and the settings:
    not of the latest question, of the messages after it, or of what else is in the request."""
    d = docs["docs"]
    q = {"role": "user", "content": "Which bridge collapsed in a storm?"}
    tool = {"role": "tool", "tool_call_id": "x", "content": d[0] + "\n\n" + d[3]}
    alone = fast.compress_messages([q, tool], rate=0.3, condition="question", recall_tokens=0).messages[1]
    later = fast.compress_messages([q, tool, {"role": "user", "content": "And who won a physics prize?"}],
                                   rate=0.3, condition="question", recall_tokens=0).messages[1]
    crowded = fast.compress_messages([{"role": "user", "content": "Earlier."},
                                      {"role": "tool", "tool_call_id": "y", "content": d[1] + " " + d[2]}, q, tool,
                                      {"role": "tool", "tool_call_id": "z", "content": d[4]}], rate=0.3, condition="question", recall_tokens=0).messages[3]
    assert alone == later == crowded
    fast.pipeline.memo.clear()  # computed again, not looked up: still the same bytes
    assert fast.compress_messages([q, tool], rate=0.3, condition="question", recall_tokens=0).messages[1] == alone
    other_q = fast.compress_messages([{"role": "user", "content": "Who won a physics prize?"}, tool], rate=0.3, condition="question", recall_tokens=0)
    assert other_q.messages[1] != alone  # the question before it matters (task-aware classifier)
    agnostic = fast.compress_messages([q, tool], rate=0.3).messages[1]  # the default: no question
    assert agnostic == fast.compress_messages([{"role": "user", "content": "Anything."}, tool],
                                              rate=0.3).messages[1]


def test_stable_memo_makes_earlier_messages_a_lookup(fast, docs):
    fast.pipeline.memo.clear()
    history = _session(docs, 5)
    first = fast.compress_messages(history[:-4], rate=0.35, recall_tokens=0)
    assert first.reused == 0
    second = fast.compress_messages(history, rate=0.35, recall_tokens=0)
    assert second.reused == len(first.compressed) and len(second.compressed) == len(first.compressed) + 1


def test_stable_recall_reads_each_message_once(fast, docs):
    """Recall's index of a message's removed pieces is memoized by content: a later request
    indexes only its new messages (time follows the new text), and gives what an index built
    from scratch gives."""
    from elision.messages import recall_excerpts

    fast.pipeline.memo.clear()
    history = _session(docs, 5)
    question = [{"role": "user", "content": "Who designed the Tay Bridge, and when did it collapse?"}]

    def indexed():
        return sum(1 for k in fast.pipeline.memo._d if k[0] == "recall")

    first = fast.compress_messages(history[:-4] + question, rate=0.2, recall_tokens=200)
    n = indexed()
    assert n == len(first.compressed) and first.recall
    second = fast.compress_messages(history + question, rate=0.2, recall_tokens=200)
    assert indexed() == n + 1 == len(second.compressed)
    texts = [(history[i]["content"], second.messages[i]["content"]) for i in second.compressed]
    budget = min(200, (second.origin_tokens - sum(fast.pipeline.target.count(m["content"] or "")
                                                   for m in second.messages[:-1])) // 2)
    assert second.recall == recall_excerpts(question[0]["content"], texts, budget, fast.pipeline.target)


STABLE_SCRIPT = """
import json, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from elision import Compressor
msgs = json.load(sys.stdin)
r = Compressor("llmlingua2", target="cl100k_base").compress_messages(msgs, rate=0.4, condition="question")
print(json.dumps(r.messages))
"""


def test_stable_identical_across_processes_and_thread_counts(docs):
    import json
    import subprocess
    import sys

    history = json.dumps(_session(docs, 4))
    outs = [subprocess.run([sys.executable, "-c", STABLE_SCRIPT, str(t)], input=history, capture_output=True,
                           text=True, check=True, timeout=300).stdout for t in (1, 2)]
    assert outs[0] == outs[1] and json.loads(outs[0]) != json.loads(history)


def test_stable_bad_settings(fast, chat):
    for kwargs, match in (({"target_tokens": 100}, "target_tokens needs policy='age'"),
                          ({"rate": 0.5, "age_decay": 0.5}, "belong to policy='age'"),
                          ({"rate": 0.5, "keep_recent": 1}, "belong to policy='age'"),
                          ({"rate": 0.5, "policy": "fifo"}, "policy must be one of stable, age"),
                          ({"rate": 0.5, "hot_tokens": -1}, "hot_tokens must be a whole number"),
                          ({"rate": 0.5, "min_tokens": 0}, "min_tokens must be"),
                          ({"rate": 0.5, "roles": "tool"}, "roles must be a list"),
                          ({"rate": 0.5, "condition": "latest"}, "condition must be one of"),
                          ({"rate": 1.5}, "rate"),
                          ({"rate": 0.5, "recall_tokens": -5}, "recall_tokens must be"),
                          ({"rate": 0.5, "policy": "age", "hot_tokens": 10}, "hot_tokens belongs to policy='stable'"),
                          ({"rate": 0.5, "policy": "age", "recall_tokens": 10}, "recall_tokens belongs")):
        with pytest.raises(InvalidInput, match=match):
            fast.compress_messages(chat, **kwargs)


def test_stable_recall_brings_back_what_the_question_needs_after_the_prefix(fast, docs):
    """The excerpts of compressed text the latest question needs come last, verbatim, within
    their budget; the messages before them are the same bytes as without recall (the cached
    prefix), and the next turn, without this turn's excerpts, still starts with them."""
    d = docs["docs"]
    history = [{"role": "system", "content": "You are a research agent."},
               {"role": "user", "content": "Search the archive."},
               {"role": "tool", "tool_call_id": "a", "content": "\n\n".join(d)},
               {"role": "assistant", "content": "Done."},
               {"role": "user", "content": "Who designed the Tay Bridge, and when did it collapse?"}]
    plain = fast.compress_messages(history, rate=0.2, recall_tokens=0)
    r = fast.compress_messages(history, rate=0.2, recall_tokens=120)
    assert r.messages[:-1] == plain.messages and r.messages[-1]["role"] == "user"
    excerpt = r.messages[-1]["content"]
    assert r.recall == excerpt and excerpt.startswith(RECALL_HEADER) and "Tay" in excerpt
    body = excerpt.split("\n", 1)[1]
    for line in body.split("\n"):
        assert line in history[2]["content"] and line not in plain.messages[2]["content"]  # lost text, verbatim
    assert fast.pipeline.target.count(excerpt) <= 120
    nxt = fast.compress_messages(history + [{"role": "assistant", "content": "Thomas Bouch; 1879."},
                                            {"role": "user", "content": "Thanks."}], rate=0.2, recall_tokens=120)
    assert nxt.messages[:len(plain.messages)] == plain.messages
    # an assistant prefill last: no excerpts after it
    assert not fast.compress_messages(history + [{"role": "assistant", "content": "The"}], rate=0.2).recall


def test_stable_keeps_values_whole_and_numbers_by_default(fast):
    """Tool outputs are records of values: the stable policy keeps every number and never glues
    a value's pieces ('2024-05-28' -> '20240528'), unless the call says otherwise."""
    records = "\n".join(f"- subject: Invoice {i} from the paper supplier\n  timestamp: 2024-05-{10 + i} 1{i}:30:00\n"
                        f"  sender: billing.{i}@paper.example\n  amount: {i}99.50" for i in range(8))
    chat = [{"role": "user", "content": "List my invoices."}, {"role": "tool", "tool_call_id": "t", "content": records}]
    out = fast.compress_messages(chat, rate=0.4, recall_tokens=0).messages[1]["content"]
    for i in range(8):
        assert f"2024-05-{10 + i}" in out and f"1{i}:30:00" in out and f"{i}99.50" in out
    assert len(out) < len(records)
    glued = fast.compress_messages(chat, rate=0.4, recall_tokens=0, whole_values=False,
                                   force_digits=False).messages[1]["content"]
    assert glued != out  # a call's own keep policy wins over the stable policy's


def test_stable_keeps_names_by_default(fast):
    """Later questions ask a narrative tool output for its names ('which city did we visit
    first?'): the stable policy keeps every name even at rate 0.15, unless the call says otherwise."""
    names = ["Kyoto", "Tony", "Engi-House", "Portland", "Carla", "Maine", "London", "Bayswater"]
    story = " ".join(f"Last spring my roommate and I finally took the long trip we kept talking about to {n}, and "
                     f"honestly the food, the people and the slow mornings there were the best part of the year "
                     f"for both of us, even with the rain." for n in names)
    chat = [{"role": "user", "content": "What do you remember about me?"},
            {"role": "tool", "tool_call_id": "t", "content": story}]
    out = fast.compress_messages(chat, rate=0.15, recall_tokens=0).messages[1]["content"]
    assert all(n in out for n in names), out
    assert len(out) < len(story) / 2
    plain = fast.compress_messages(chat, rate=0.15, recall_tokens=0, force_names=False).messages[1]["content"]
    assert not all(n in plain for n in names)  # without the rule, names go at this rate


def test_stable_records_repeated_from_earlier_lose_the_keep_rules(fast):
    """An agent re-lists the same e-mails: a record an earlier message holds verbatim is compressed
    without the keep rules (its values are in the conversation already), the new records keep
    theirs, the earlier message is unchanged, and repeats=False keeps today's bytes."""
    def rec(i):
        return (f"- subject: Invoice {i} from the paper supplier\n  timestamp: 2024-05-{10 + i} 1{i}:30:00\n"
                f"  sender: billing.{i}@paper.example\n  amount: {i}99.50")
    first = "\n".join(rec(i) for i in range(4))
    second = "\n".join(rec(i) for i in (2, 3, 4, 5))  # 2 and 3 seen before
    chat = [{"role": "user", "content": "List my invoices."}, {"role": "tool", "tool_call_id": "a", "content": first},
            {"role": "user", "content": "And the newer ones?"},
            {"role": "tool", "tool_call_id": "b", "content": second}]
    r = fast.compress_messages(chat, rate=0.2, recall_tokens=0)
    out = r.messages[3]["content"]
    for i in (4, 5):
        assert f"2024-05-{10 + i}" in out and f"billing.{i}@paper.example" in out and f"{i}99.50" in out
    for i in (2, 3):
        assert f"billing.{i}@paper.example" not in out and f"{i}99.50" not in out
        assert f"billing.{i}@paper.example" in r.messages[1]["content"]  # the first listing keeps them
    alone = fast.compress_messages(chat[:2], rate=0.2, recall_tokens=0)
    assert alone.messages[1] == r.messages[1]  # the earlier message does not depend on later ones
    full = fast.compress_messages(chat, rate=0.2, recall_tokens=0, repeats=False).messages[3]["content"]
    assert all(f"{i}99.50" in full for i in (2, 3, 4, 5)) and len(full) > len(out)
    # a record repeated inside one message: its second copy is the repeat
    twice = fast.compress_messages([chat[0], {"role": "tool", "tool_call_id": "c", "content": rec(7) + "\n" + rec(7)}],
                                   rate=0.2, recall_tokens=0).messages[1]["content"]
    assert twice.count("799.50") == 1


def test_recall_serves_each_sentence_of_the_question():
    """A user message that asks two things gets excerpts for both, in turn: the second ask's one
    matching line is not crowded out by the first ask's many (the same words in one sentence
    are ranked together, and the first ask's lines fill the budget)."""
    from elision.messages import recall_excerpts
    from elision.tokenizers import get_target

    target = get_target("cl100k_base")
    lines = ["The delivery of my order was delayed again.", "The delivery courier lost my order on the way.",
             "The order delivery is now expected next week.", "Delivery updates about my order delay come by email.",
             "The delivery delay of the order annoys me.", "I asked why the order delivery was delayed."]
    original = ("- subject: Delivery delay\n" + "\n".join("  note: " + x for x in lines)
                + "\n\n- subject: Weekend\n  body: I hosted an impromptu karaoke contest last spring.")
    budget = target.count(RECALL_HEADER) + 40
    two = recall_excerpts("Remind me what we discussed about the order delivery delay. And what impromptu contest "
                          "did I host?", [(original, "")], budget, target)
    one = recall_excerpts("Remind me what we discussed about the order delivery delay and what impromptu contest "
                          "did I host?", [(original, "")], budget, target)
    assert "karaoke" in two and "delivery" in two.lower()
    assert "karaoke" not in one  # one sentence: one ranking, the delivery lines win
    assert target.count(two) <= budget and target.count(one) <= budget


def test_recall_leaves_weak_matches_out():
    """Recall spends its budget only on pieces within RECALL_CUT of the best match: a question
    that one line answers gets that line, not the budget's worth of lines sharing a word."""
    from elision.messages import RECALL_CUT, recall_excerpts
    from elision.tokenizers import get_target

    target = get_target("cl100k_base")
    filler = "\n".join(f"- note {i}: the weekly team meeting moved again" for i in range(40))
    original = filler + "\n- note 99: the plumber fixed the kitchen sink on Friday"
    got = recall_excerpts("When did the plumber fix the kitchen sink?", [(original, "")], 400, target)
    assert "plumber" in got
    assert got.count("\n") <= 3, got  # header + the answer line (+ at most a near tie)
    assert 0 < RECALL_CUT < 1
