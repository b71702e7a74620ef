"""A byte-bounded LRU of segments decoded into sorted runs."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from tidal.store.run import SortedRun


class RunCache:
    """Keeps recently used segment runs in memory, up to ``capacity_bytes``.

    A run larger than the whole budget is returned but not kept.
    """

    def __init__(self, capacity_bytes: int, on_evict: Callable[[], None] | None = None) -> None:
        self.capacity_bytes = capacity_bytes
        self._on_evict = on_evict
        self._runs: OrderedDict[int, SortedRun] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: int, load: Callable[[], SortedRun]) -> SortedRun:
        """The run for ``key``, loading it with ``load()`` on a miss."""
        with self._lock:
            run = self._runs.get(key)
            if run is not None:
                self._runs.move_to_end(key)
                return run
        run = load()
        size = run.table.nbytes
        if size > self.capacity_bytes:
            return run
        with self._lock:
            if key not in self._runs:
                self._runs[key] = run
                self._bytes += size
            evicted = False
            while self._bytes > self.capacity_bytes and self._runs:
                _, old = self._runs.popitem(last=False)
                self._bytes -= old.table.nbytes
                evicted = True
        if evicted and self._on_evict is not None:
            self._on_evict()
        return run

    def holds(self, key: int) -> bool:
        """Whether the run for ``key`` is kept (runs larger than the budget are not)."""
        return key in self._runs

    def discard(self, key: int) -> None:
        """Forget a run whose segment is gone."""
        with self._lock:
            run = self._runs.pop(key, None)
            if run is not None:
                self._bytes -= run.table.nbytes

    @property
    def nbytes(self) -> int:
        return self._bytes
