"""The memtable: recent events in append order, indexed lazily into sorted runs.

Appends only add an immutable table to a tuple (no per-event work). The first
timeline after some appends sorts the new parts into a :class:`SortedRun`.
Runs are merged like an LSM tree: a run at most twice the size of the next one
is merged with it, so there are O(log n) runs and each event is re-sorted
O(log n) times.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pyarrow as pa

from tidal.model.schema import concat_tables
from tidal.store.run import SortedRun


@dataclass(frozen=True)
class MemView:
    """An immutable snapshot of the memtable."""

    parts: tuple[pa.Table, ...] = ()
    runs: tuple[SortedRun, ...] = ()
    rows: int = 0
    nbytes: int = 0

    def table(self) -> pa.Table:
        """All events in ``_seq`` order, schemas unified."""
        return concat_tables(self.parts)


@dataclass
class Memtable:
    """Mutable holder of the current :class:`MemView`; callers serialise access."""

    entity_field: str
    ts_field: str
    view: MemView = field(default_factory=MemView)
    indexed_parts: int = 0
    oldest_monotonic: float | None = None

    def add(self, table: pa.Table) -> None:
        """Add one normalized, ``_seq``-stamped table."""
        v = self.view
        self.view = MemView(v.parts + (table,), v.runs, v.rows + table.num_rows,
                            v.nbytes + table.nbytes)
        if self.oldest_monotonic is None:
            self.oldest_monotonic = time.monotonic()

    def pending(self) -> tuple[MemView, int] | None:
        """The view and how many of its parts are indexed, if some are not."""
        v = self.view
        return None if self.indexed_parts == len(v.parts) else (v, self.indexed_parts)

    def build_runs(self, view: MemView, indexed_parts: int) -> tuple[SortedRun, ...]:
        """Runs covering every part of ``view`` (pure: safe outside any lock)."""
        fresh = concat_tables(view.parts[indexed_parts:])
        runs = list(view.runs) + [SortedRun.build(fresh, self.entity_field, self.ts_field)]
        while len(runs) >= 2 and runs[-2].rows <= 2 * runs[-1].rows:
            merged = concat_tables([runs[-2].table, runs[-1].table])
            runs[-2:] = [SortedRun.build(merged, self.entity_field, self.ts_field)]
        return tuple(runs)

    def install(self, view: MemView, indexed_parts: int, runs: tuple[SortedRun, ...]) -> None:
        """Adopt runs built for ``view`` unless another builder got there first.

        Parts only ever get added, so runs covering ``view.parts`` stay valid for
        the current view, which then has ``len(view.parts)`` parts indexed.
        """
        current = self.view.parts
        if self.indexed_parts != indexed_parts or len(current) < len(view.parts) or any(
                a is not b for a, b in zip(current, view.parts, strict=False)):
            return
        v = self.view
        self.view = MemView(v.parts, runs, v.rows, v.nbytes)
        self.indexed_parts = len(view.parts)

    def indexed(self) -> MemView:
        """The current view with runs covering every part (building them if needed)."""
        pending = self.pending()
        if pending is not None:
            self.install(*pending, self.build_runs(*pending))
        return self.view

    def age_s(self) -> float:
        """Seconds since the oldest event still here arrived."""
        return 0.0 if self.oldest_monotonic is None else time.monotonic() - self.oldest_monotonic

    def clear(self) -> None:
        """Forget everything (after a flush made it durable elsewhere)."""
        self.view = MemView()
        self.indexed_parts = 0
        self.oldest_monotonic = None
