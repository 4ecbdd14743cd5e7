"""Budgets in target tokens, and LLMLingua's budget controller (arXiv 2310.05736, Alg. 1).

    >>> make_budget(1000, rate=0.33, target_tokens=None).tokens
    330

The controller is pure arithmetic over token counts (no model), so it is tested directly.
With L = L_ins + L_dems + L_que target tokens and overall rate tau:

    tau_dems = (tau * L - (tau_ins * L_ins + tau_que * L_que)) / L_dems           (Eq. 1)

Demonstrations are taken in descending perplexity while they fit k * tau_dems * L_dems
(k: granularity); whatever of the demonstrations' budget the coarse stage leaves unused goes
to the instruction and question (Eq. 2). The paper adds the same delta-tau to both rates,
which can push one past 1 and waste budget; here the unused tokens are shared in proportion to
the tokens each still drops, so everything the budget allows is used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._errors import InvalidInput


@dataclass(frozen=True)
class Budget:
    origin_tokens: int
    tokens: int  # the compressed prompt may hold at most this many target tokens
    rate: float | None = None
    target_tokens: int | None = None


def check_rate(rate) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate):
        raise InvalidInput(f"rate must be a number in (0, 1], got {rate!r}")
    if not 0 < rate <= 1:
        raise InvalidInput(f"rate must be in (0, 1] (the share of tokens to keep), got {rate}")
    return float(rate)


def make_budget(origin_tokens: int, rate: float | None, target_tokens: int | None) -> Budget:
    if rate is not None and target_tokens is not None:
        raise InvalidInput("give either rate or target_tokens, not both")
    if target_tokens is not None:
        if isinstance(target_tokens, bool) or not isinstance(target_tokens, int) or target_tokens <= 0:
            raise InvalidInput(f"target_tokens must be a positive integer, got {target_tokens!r}")
        return Budget(origin_tokens, min(target_tokens, origin_tokens), None, target_tokens)
    rate = check_rate(0.5 if rate is None else rate)
    return Budget(origin_tokens, max(1, round(rate * origin_tokens)), rate, None)


@dataclass(frozen=True)
class Plan:
    selected: tuple[int, ...]  # indices of the demonstrations kept by the coarse stage
    instruction_rate: float
    question_rate: float
    context_rate: float  # share of the SELECTED demonstrations' tokens to keep


def plan(
    ins_len: int,
    que_len: int,
    ctx_lens: Sequence[int],
    budget: int,
    ctx_ppl: Sequence[float] | Callable[[], Sequence[float]] | None,
    instruction_rate: float = 0.85,
    question_rate: float = 0.9,
    granularity: float = 2.0,
) -> Plan:
    """Component rates and coarse selection. `ctx_ppl` may be a function, called only when
    the demonstrations do not all fit anyway (it costs a forward pass over all of them).

    >>> p = plan(10, 10, [100, 100, 100, 100], budget=118, ctx_ppl=[4, 9, 1, 7], granularity=1.0)
    >>> p.selected, round(p.instruction_rate, 3), round(p.question_rate, 3), p.context_rate
    ((1,), 0.88, 0.92, 1.0)

    (B_dems = 118 - 8.5 - 9 = 100.5: the highest-perplexity demonstration fits, the next does
    not; the 0.5 tokens it leaves go 0.3 to the instruction (1.5 tokens still dropped there) and
    0.2 to the question (1.0 dropped).)
    """
    b_ins, b_que = instruction_rate * ins_len, question_rate * que_len
    if b_ins + b_que > budget:  # the budget cannot even hold instruction+question at their rates
        f = budget / (b_ins + b_que)
        b_ins, b_que = b_ins * f, b_que * f
    b_ctx = max(0.0, budget - b_ins - b_que)
    n = len(ctx_lens)
    l_ctx = sum(ctx_lens)
    if n == 0:
        selected: list[int] = []
    elif ctx_ppl is None or granularity * b_ctx >= l_ctx:
        selected = list(range(n))
    else:
        if callable(ctx_ppl):  # computed only when the coarse stage has something to decide
            ctx_ppl = ctx_ppl()
        selected, used = [], 0
        for i in sorted(range(n), key=lambda i: -ctx_ppl[i]):
            if used + ctx_lens[i] > granularity * b_ctx:
                break
            selected.append(i)
            used += ctx_lens[i]
        if not selected and b_ctx > 0:
            selected = [max(range(n), key=lambda i: ctx_ppl[i])]
        selected.sort()
    l_sel = sum(ctx_lens[i] for i in selected)
    ctx_rate = min(1.0, b_ctx / l_sel) if l_sel else 0.0
    unused = max(0.0, b_ctx - l_sel)
    room_ins, room_que = ins_len - b_ins, que_len - b_que
    if unused and room_ins + room_que > 0:  # Eq. 2, shared in proportion to what each can still use
        share = min(1.0, unused / (room_ins + room_que))
        b_ins, b_que = b_ins + share * room_ins, b_que + share * room_que
    return Plan(
        tuple(selected),
        min(1.0, b_ins / ins_len) if ins_len else 1.0,
        min(1.0, b_que / que_len) if que_len else 1.0,
        ctx_rate,
    )
