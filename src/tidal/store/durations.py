"""A histogram of durations, such as the WAL's fsyncs, cheap enough to keep on every call.

Buckets are fixed upper bounds in seconds, as Prometheus histograms have them,
so a server can publish :meth:`Durations.snapshot` as one without re-binning.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# from 50 µs (an fsync on a battery-backed cache) to 5 s (a disk in trouble)
FSYNC_BUCKETS_S = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                   0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True, slots=True)
class DurationsSnapshot:
    """Counts so far: ``buckets`` pairs each upper bound (s) with the count at or below
    it (cumulative; the last bound is ``inf`` and holds ``count``)."""

    count: int
    sum_s: float
    buckets: tuple[tuple[float, int], ...]

    def as_dict(self) -> dict[str, object]:
        """For JSON: the ``inf`` bucket left out (it is ``count``)."""
        return {"count": self.count, "sum_s": round(self.sum_s, 6),
                "buckets": [[bound, n] for bound, n in self.buckets[:-1]]}


class Durations:
    """Thread-safe counts of durations by bucket, their number and their sum."""

    def __init__(self, bounds_s: tuple[float, ...] = FSYNC_BUCKETS_S) -> None:
        self.bounds_s = bounds_s
        self._counts = [0] * (len(bounds_s) + 1)
        self._sum_s = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        """Count one duration of ``seconds``."""
        at = bisect.bisect_left(self.bounds_s, seconds)
        with self._lock:
            self._counts[at] += 1
            self._sum_s += seconds

    def timed(self, call: Callable[[], None]) -> None:
        """Run ``call`` and count how long it took (also when it raises)."""
        started = time.perf_counter()
        try:
            call()
        finally:
            self.observe(time.perf_counter() - started)

    def snapshot(self) -> DurationsSnapshot:
        with self._lock:
            counts, total_s = list(self._counts), self._sum_s
        cumulative, running = [], 0
        for bound, n in zip((*self.bounds_s, float("inf")), counts, strict=True):
            running += n
            cumulative.append((bound, running))
        return DurationsSnapshot(running, total_s, tuple(cumulative))
