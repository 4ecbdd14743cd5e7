"""Errors a user can cause, each with a message that says what to do.

Every user mistake raises an ElisionError subclass (a ValueError), so callers can catch
one type; the CLI turns it into a message and exit code 2, the service into a 4xx.
"""

from __future__ import annotations

from collections.abc import Iterable


class ElisionError(ValueError):
    """Base class for errors caused by the caller's input or configuration."""


class InvalidInput(ElisionError):
    """The prompt, the rate or the budget cannot be used (empty text, rate outside (0, 1], ...)."""


class TooLong(InvalidInput):
    """The prompt is over the configured token limit (the service answers 413)."""


class UnknownName(ElisionError):
    """A method, model, target tokenizer or option name that elision does not know."""

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = "") -> None:
        known = sorted(known)
        msg = f"unknown {kind} {name!r}; known: {', '.join(known)}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)
        self.kind, self.name, self.known = kind, name, known


class MissingDependency(ElisionError):
    """An optional package is not installed; the message names the exact install command."""

    def __init__(self, what: str, install: str) -> None:
        super().__init__(f"{what} is not installed; install it with: {install}")
        self.install = install


class Cancelled(Exception):
    """A compression stopped on request (the caller's progress callback raised it between two
    batches, e.g. the service's time limit passed): no result, and not the input's fault."""


class MethodError(RuntimeError):
    """A method's output breaks the protocol (units that do not tile a segment, a bad order):
    a bug in the method, not in the caller's input, so not an ElisionError."""
