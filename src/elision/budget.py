"""Budgets in target tokens, and LLMLingua's budget controller (arXiv 2310.05736, Alg. 1).

    >>> make_budget(1000, rate=0.33, target_tokens=None).tokens
    330

The controller is pure arithmetic over token counts (no model), so it is tested directly.
With L = L_ins + L_dems + L_que target tokens and overall rate tau:

    tau_dems = (tau * L - (tau_ins * L_ins + tau_que * L_que)) / L_dems           (Eq. 1)

Demonstrations are taken in descending perplexity until they exceed k * tau_dems * L_dems
(k: granularity; the one that crosses the line is kept, as in Alg. 1, and the token-level
stage then trims the selection to the budget); whatever of the demonstrations' budget the coarse stage leaves unused goes
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
    # target tokens of each segment of the prompt (the pipeline counts them once, for methods
    # that plan per segment: a method never counts target tokens itself)
    segment_tokens: tuple[int, ...] = ()
    # rate="auto": the pipeline sets `tokens` from the method's scores (see Pipeline.auto_tokens);
    # until then `tokens` is the ceiling (target_tokens, or the whole prompt)
    auto: bool = False


AUTO = "auto"  # rate="auto": the smallest prompt that keeps what the scores say matters


def check_rate(rate) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate):
        raise InvalidInput(f"rate must be a number in (0, 1] or \"auto\", got {rate!r}")
    if not 0 < rate <= 1:
        raise InvalidInput(f"rate must be in (0, 1] (the share of tokens to keep), got {rate}")
    return float(rate)


def make_budget(origin_tokens: int, rate: float | str | None, target_tokens: int | None) -> Budget:
    """rate="auto" may come with target_tokens, as a ceiling; a number may not.
    make_budget(1000, "auto", 300) -> Budget(1000, 300, None, 300, auto=True)"""
    auto = isinstance(rate, str) and rate.strip().lower() == AUTO
    if isinstance(rate, str) and not auto:
        raise InvalidInput(f"rate must be a number in (0, 1] or \"auto\", got {rate!r}")
    if rate is not None and not auto and target_tokens is not None:
        raise InvalidInput("give either rate or target_tokens, not both (or rate=\"auto\" with target_tokens "
                           "as its ceiling)")
    if target_tokens is not None:
        if isinstance(target_tokens, bool) or not isinstance(target_tokens, int) or target_tokens <= 0:
            raise InvalidInput(f"target_tokens must be a positive integer, got {target_tokens!r}")
        return Budget(origin_tokens, min(target_tokens, origin_tokens), None, target_tokens, auto=auto)
    if auto:
        return Budget(origin_tokens, max(1, origin_tokens), None, None, auto=True)
    rate = check_rate(0.5 if rate is None else rate)
    return Budget(origin_tokens, max(1, round(rate * origin_tokens)), rate, None)


def parse_rate(text: str) -> float | str:
    """A rate as a user types it (CLI flag, HTTP header): a number, or "auto".
    '0.3' -> 0.3, 'AUTO' -> 'auto'; anything else raises ValueError (range checks come later)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if str(text).strip().lower() == AUTO:
        return AUTO
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ValueError(f"a rate is a number in (0, 1] or \"auto\", got {text!r}") from None


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
    question_rate: float = 1.0,
    granularity: float = 1.0,
) -> Plan:
    """Component rates and coarse selection. `ctx_ppl` may be a function, called only when
    the demonstrations do not all fit anyway (it costs a forward pass over all of them).

    >>> p = plan(10, 10, [100, 100, 100, 100], budget=118, ctx_ppl=[4, 9, 1, 7], question_rate=0.9)
    >>> p.selected, p.instruction_rate, p.question_rate, p.context_rate
    ((1, 3), 0.85, 0.9, 0.5025)

    (B_dems = 118 - 8.5 - 9 = 100.5. Demonstration 1 (ppl 9) brings the set to 100 tokens, not
    yet over 100.5, so demonstration 3 (ppl 7) is added too; the token-level stage then keeps
    100.5 / 200 of them.)

    >>> p = plan(10, 10, [50, 50], budget=118, ctx_ppl=[4, 9], question_rate=0.9)
    >>> p.selected, round(p.instruction_rate, 3), round(p.question_rate, 3), p.context_rate
    ((0, 1), 0.88, 0.92, 1.0)

    (Both demonstrations fit whole; the 0.5 tokens of B_dems they leave go 0.3 to the
    instruction (which still drops 1.5 tokens) and 0.2 to the question (which drops 1.0).)
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
            if used > granularity * b_ctx or b_ctx <= 0:  # Alg. 1: stop once the set is over k*B
                break
            selected.append(i)
            used += ctx_lens[i]
        selected.sort()
    l_sel = sum(ctx_lens[i] for i in selected)
    ctx_rate = min(1.0, b_ctx / l_sel) if l_sel else 0.0
    unused = max(0.0, b_ctx - l_sel)
    room_ins, room_que = ins_len - b_ins, que_len - b_que
    if unused and room_ins + room_que > 0:  # Eq. 2, shared in proportion to what each can still use
        share = unused / (room_ins + room_que)
        if share >= 1 - 1e-9:  # everything fits: exact, not 0.85 + 0.15 in floating point
            b_ins, b_que = float(ins_len), float(que_len)
        else:
            b_ins, b_que = b_ins + share * room_ins, b_que + share * room_que
    return Plan(
        tuple(selected),
        min(1.0, b_ins / ins_len) if ins_len else 1.0,
        min(1.0, b_que / que_len) if que_len else 1.0,
        ctx_rate,
    )
