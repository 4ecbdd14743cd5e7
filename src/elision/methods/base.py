"""The method protocol, typed options, and the registry of methods by name.

A method turns a Prompt into per-segment Units with priorities; the Compressor then fits
them to the budget (selection.fit_to_budget) and builds the result. So a method never counts
target tokens itself and can never return more than the budget allows (bar protected text).

    >>> get_method("random")
    <class 'elision.methods.baselines.Random'>

Third-party methods register through the entry-point group "elision.methods".
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import typing
from collections.abc import Callable
from typing import ClassVar

from .._errors import InvalidInput, UnknownName
from ..budget import Budget
from ..prompt import Prompt
from ..selection import Units
from ..tokenizers import TargetTokenizer

Progress = Callable[[int, int], None]  # (done, total) in the method's own work units


@dataclasses.dataclass(frozen=True)
class Options:
    """Base for per-method options: frozen, keyword-only, unknown keys rejected."""

    @classmethod
    def build(cls, values: dict | None = None, base: Options | None = None) -> Options:
        values = dict(values or {})
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise InvalidInput(
                f"unknown option(s) {', '.join(unknown)} for this method; valid: {', '.join(sorted(names)) or '(none)'}")
        hints = typing.get_type_hints(cls)
        coerced = {k: _coerce(k, hints[k], v) for k, v in values.items()}
        return dataclasses.replace(base, **coerced) if base is not None else cls(**coerced)


def _coerce(name: str, tp, value):
    """Accept CLI strings ("3", "true", "a,b") as well as Python values for a field type."""
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        if typing.get_origin(tp) is tuple:
            if isinstance(value, str):
                return tuple(v for v in value.split(",") if v)
            return tuple(str(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidInput(f"option {name}: cannot use {value!r} as {getattr(tp, '__name__', tp)}") from None
    return value


class Method:
    """Subclass, set `name` and `Options`, implement `priorities`, and decorate with @register."""

    name: ClassVar[str]
    Options: ClassVar[type[Options]] = Options
    uses_model: ClassVar[bool] = False
    default_model: ClassVar[str | None] = None

    def __init__(self, *, model: str | None = None, device: str | None = None, dtype: str | None = None,
                 progress: Callable[[str], None] | None = None):
        if model is not None and not self.uses_model:
            raise InvalidInput(f"method {self.name!r} uses no model; do not pass model=")
        self.model_name = model if model is not None else self.default_model
        self._memo: dict = {}  # see _remembered

    def priorities(self, prompt: Prompt, budget: Budget, target: TargetTokenizer, options: Options,
                   progress: Progress | None = None) -> list[Units]:
        raise NotImplementedError

    def _remembered(self, key, compute: Callable[[], object], size: int = 8):
        """compute() once per key, the last `size` keys kept: scores that do not depend on the
        budget (an evaluation sweep, a caller trying budgets) are computed once per prompt."""
        memo = self._memo
        if key not in memo:
            if len(memo) >= size:
                memo.pop(next(iter(memo)))
            memo[key] = compute()
        return memo[key]

    def order(self, prompt: Prompt, options: Options) -> list[int] | None:
        """Segment order of the output, after priorities() ran on this prompt; None = as given.
        Only methods that reorder documents (LongLLMLingua) override it."""
        return None


class CausalMethod(Method):
    """A method guided by a causal LM: loads it (once per process and configuration) as self.lm."""

    uses_model = True
    default_model = "smollm2-135m"

    def __init__(self, *, model=None, device=None, dtype=None, progress=None):
        super().__init__(model=model, device=device, dtype=dtype, progress=progress)
        from ..models.causal import CausalLM

        self.lm = CausalLM.shared(self.model_name, device=device, dtype=dtype, progress=progress)


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        for ep in importlib.metadata.entry_points(group="elision.methods"):
            if ep.name == name:
                register(ep.load())
    if name not in METHODS:
        raise UnknownName("method", name, METHODS)
    return METHODS[name]
