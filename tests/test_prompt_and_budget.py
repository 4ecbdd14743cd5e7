import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from elision import InvalidInput, Prompt
from elision.budget import make_budget, plan
from elision.prompt import SEPARATOR, protected_spans


def test_prompt_layout_and_offsets():
    p = Prompt.build(context=["Doc one.", "", "Doc two."], instruction="Answer.", question="Which?")
    assert [s.role for s in p.segments] == ["instruction", "context", "context", "question"]
    assert p.text == SEPARATOR.join(["Answer.", "Doc one.", "Doc two.", "Which?"])
    for seg, off in zip(p.segments, p.offsets):
        assert p.text[off:off + len(seg.text)] == seg.text


@pytest.mark.parametrize("kwargs, msg", [
    ({"context": ""}, "empty prompt"),
    ({"context": ["  ", "\n"]}, "empty prompt"),
    ({}, "empty prompt"),
    ({"context": [1, 2]}, r"context\[0\] must be a string"),
    ({"context": 3}, "context must be a string or a list"),
    ({"context": "a\x00b"}, "binary"),
    ({"context": "x", "question": 5}, "question must be a string"),
])
def test_prompt_rejects_bad_input(kwargs, msg):
    with pytest.raises(InvalidInput, match=msg):
        Prompt.build(**kwargs)


def test_protected_spans_merge_literals_and_regexes():
    spans = protected_spans("pay 12 now, 12 later", [re.compile(r"\d+"), re.compile(re.escape("12 now"))])
    assert spans == ((4, 10), (12, 14))


@pytest.mark.parametrize("rate", [0, -0.1, 1.5, float("nan"), float("inf"), "0.5", True])
def test_bad_rates(rate):
    with pytest.raises(InvalidInput, match="rate"):
        make_budget(100, rate, None)


@pytest.mark.parametrize("tt", [0, -5, 2.5, "10"])
def test_bad_target_tokens(tt):
    with pytest.raises(InvalidInput, match="target_tokens"):
        make_budget(100, None, tt)


def test_budget_arithmetic():
    assert make_budget(1000, 0.33, None).tokens == 330
    assert make_budget(1000, None, 250).tokens == 250
    assert make_budget(100, None, 500).tokens == 100  # never more than the original
    assert make_budget(1000, None, None).tokens == 500  # default rate 0.5
    with pytest.raises(InvalidInput, match="not both"):
        make_budget(1000, 0.5, 100)


@settings(max_examples=200, deadline=None)
@given(
    ins=st.integers(0, 200), que=st.integers(0, 100),
    ctx=st.lists(st.integers(1, 400), min_size=0, max_size=12),
    rate=st.floats(0.01, 1.0), k=st.floats(1.0, 3.0),
    seed=st.integers(0, 1000),
)
def test_plan_invariants(ins, que, ctx, rate, k, seed):
    import random

    total = ins + que + sum(ctx)
    if total == 0:
        return
    budget = max(1, round(rate * total))
    ppl = [random.Random(seed + i).random() for i in range(len(ctx))]
    p = plan(ins, que, ctx, budget, ppl, granularity=k)
    assert 0 <= p.instruction_rate <= 1 and 0 <= p.question_rate <= 1 and 0 <= p.context_rate <= 1
    assert list(p.selected) == sorted(set(p.selected))
    kept = p.instruction_rate * ins + p.question_rate * que + p.context_rate * sum(ctx[i] for i in p.selected)
    assert kept <= budget + 1e-6  # the plan never spends more than the budget
    # the coarse stage keeps the highest-perplexity demonstrations
    dropped = [ppl[i] for i in range(len(ctx)) if i not in p.selected]
    if p.selected and dropped:
        assert min(ppl[i] for i in p.selected) >= max(dropped)
    if budget >= total:
        assert p.instruction_rate == p.question_rate == 1 and len(p.selected) == len(ctx)
