"""A byte-bounded LRU cache, shared by the threads that read segments."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class ByteCache(Generic[V]):
    """Keeps recently used values in memory, up to ``capacity_bytes`` by ``size(value)``.

    Readers :meth:`find` a value and, on a miss, load it themselves (outside the
    lock, so two threads missing the same key may both load it) and :meth:`put`
    it; a value larger than the whole budget is not kept.
    """

    def __init__(self, capacity_bytes: int, size: Callable[[V], int]) -> None:
        self.capacity_bytes = capacity_bytes
        self._size = size
        self._values: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def find(self, key: Hashable) -> V | None:
        """The value for ``key`` if it is kept, else None."""
        with self._lock:
            found = self._values.get(key)
            if found is None:
                return None
            self._values.move_to_end(key)
            return found[0]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._values

    def put(self, key: Hashable, value: V) -> None:
        """Keep ``value`` under ``key`` (unless it is larger than the whole budget),
        forgetting the least recently used values past the budget."""
        size = self._size(value)
        if size > self.capacity_bytes:
            return
        with self._lock:
            if key not in self._values:
                self._values[key] = (value, size)
                self._bytes += size
            while self._bytes > self.capacity_bytes and self._values:
                _, (_, old) = self._values.popitem(last=False)
                self._bytes -= old

    def discard(self, match: Callable[[Hashable], bool]) -> None:
        """Forget the values whose keys ``match`` (say, of a deleted segment)."""
        with self._lock:
            for key in [k for k in self._values if match(k)]:
                self._bytes -= self._values.pop(key)[1]

    @property
    def nbytes(self) -> int:
        return self._bytes
