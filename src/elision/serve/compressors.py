"""The compressors a request may use, checked against what the operator allowed and cached.

    >>> compressors = Compressors(Settings(method="truncate", methods=("truncate",)))
    >>> compressors.check(None, "cl100k_base")        # the default method; a target on the allow-list
    ('truncate', 'cl100k_base')
    >>> compressor = compressors.get("truncate", "cl100k_base")      # made once, then shared

Not handled: loading another method at run time (only those loaded at start-up serve), and a
target off the allow-list (400, whether or not such a path exists).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from .errors import ServiceError
from .settings import Settings


class Compressors:
    """The compressors a request may use: one per (method, target), shared by the workers (a
    compressor keeps no per-call state: the pipeline's caches are thread-safe), at most
    `settings.compressors` of them (least recently used first out; the start-up ones stay).
    A target must be on the allow-list: OpenAI models and encodings, the default target and the
    operator's `targets` (loaded at start-up). A request never makes the service open a path or
    ask the hub."""

    def __init__(self, settings: Settings, preloaded: dict | None = None):
        from ..compressor import Compressor
        from ..tokenizers import get_target, known_targets, normalize_target

        self._make, self._normalize = Compressor, normalize_target
        self.settings = settings
        self.default_target = normalize_target(settings.target)
        extra = [normalize_target(t) for t in (settings.target, *settings.targets)]
        self.allowed = dict.fromkeys([*known_targets(), *extra])  # ordered, for the error message
        for t in extra:
            get_target(t)  # a bad operator target stops the start, not a request
        self._items: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._pinned: set[tuple[str, str]] = set()
        self._guard = threading.Lock()
        for m in settings.all_methods:
            c = (preloaded or {}).get(m)
            if c is None:
                c = Compressor(m, model=settings.model if m == settings.method else None, target=settings.target,
                               max_input_tokens=settings.max_prompt_tokens)
            c.max_input_tokens = settings.max_prompt_tokens
            self._items[(m, self.default_target)] = c
            self._pinned.add((m, self.default_target))

    @property
    def methods(self) -> tuple[str, ...]:
        return self.settings.all_methods

    def __len__(self) -> int:
        return len(self._items)

    def check(self, method: str | None, target: str | None) -> tuple[str, str]:
        """(method, target) as the cache knows them, or a 400 naming what is allowed."""
        method = self.settings.method if method is None else method  # "" is a name, not "the default"
        if method not in self.methods:
            raise ServiceError(400, "unknown_method", f"method {method!r} is not loaded by this service; "
                               f"loaded: {', '.join(self.methods)} (start it with --methods to add more)")
        if target is None:
            return method, self.default_target
        key = self._normalize(target) if isinstance(target, str) else target
        if key not in self.allowed:  # the same answer whether or not such a path exists
            raise ServiceError(400, "unknown_target", f"target {str(target)[:200]!r} is not allowed here; allowed: "
                               f"{', '.join(self.allowed)} (the operator adds more with --targets / ELISION_TARGETS)")
        return method, key

    def get(self, method: str, target: str):
        """The compressor for a checked (method, target); a new target reuses the loaded model
        (runs in a worker thread)."""
        key = (method, target)
        with self._guard:
            c = self._items.get(key)
            if c is not None:
                self._items.move_to_end(key)
                return c
        # the model as configured (a method's reported model_name may name a pair, as
        # llmlingua2's default does); the loaded weights are shared, not loaded again
        model = self.settings.model if method == self.settings.method else None
        c = self._make(method, model=model, target=target, max_input_tokens=self.settings.max_prompt_tokens)
        with self._guard:
            c = self._items.setdefault(key, c)
            self._items.move_to_end(key)
            for k in [k for k in self._items if k not in self._pinned]:
                if len(self._items) <= max(self.settings.compressors, len(self._pinned)):
                    break
                del self._items[k]
        return c
