"""The clock the store's background work reads, injectable so tests are deterministic."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time in ns (event-time comparisons, memtable age, retention)."""

    def now_ns(self) -> int:
        """Nanoseconds since the Unix epoch."""
        ...


class SystemClock:
    """The machine's clock."""

    def now_ns(self) -> int:
        return time.time_ns()


SYSTEM_CLOCK = SystemClock()
