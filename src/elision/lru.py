"""A least-recently-used map bounded in bytes, not entries: one 200k-token prompt's tokens weigh
as much as thousands of short ones, so an entry count bounds nothing.

    >>> cache = BytesLRU(max_bytes=100, size_of=len)
    >>> cache.get("a", lambda: "x" * 60), cache.get("b", lambda: "y" * 60)   # 'a' is evicted
    ('xxx...', 'yyy...')
    >>> "a" in cache, cache.nbytes
    (False, 60 + size of the key 'b')

A value bigger than the whole bound is computed and returned but not kept. Thread-safe; two
threads asking for one missing key at once may both compute it (the value is the same).
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class BytesLRU:
    def __init__(self, max_bytes: int, size_of: Callable[[Any], int]):
        self.max_bytes, self.size_of = max_bytes, size_of
        self._d: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0  # what the entries weigh now, keys included

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._lock:
            hit = self._d.get(key)
            if hit is not None:
                self._d.move_to_end(key)
                return hit[0]
        value = compute()
        size = self.size_of(value) + sys.getsizeof(key)
        if size > self.max_bytes:
            return value
        with self._lock:
            if key not in self._d:
                self._d[key] = (value, size)
                self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, (_, s) = self._d.popitem(last=False)
                self.nbytes -= s
        return value

    def __contains__(self, key: Hashable) -> bool:
        return key in self._d

    def __len__(self) -> int:
        return len(self._d)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self.nbytes = 0
