"""The memtable: recent events in append order, indexed lazily into sorted runs.

Appends add an immutable table to a tuple (no per-event work). Many small
appends would each keep their own Arrow buffers and Python objects (about
4.5 KB for a one-event table), so runs of small unindexed parts are merged
into one table as they pile up, and the memory counted for each part
includes a per-part overhead: ``memtable_bytes`` then measures what the
process really holds.

The first timeline after some appends sorts the new parts into a
:class:`SortedRun`. Runs are merged like an LSM tree: a run at most twice the
size of the next one is merged with it, so there are O(log n) runs and each
event is re-sorted O(log n) times.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from tidal.model.schema import concat_tables
from tidal.store.run import SortedRun

PART_OVERHEAD_BYTES = 1024
"""Memory a table costs beyond its buffers (objects, schema, allocator slack)."""
COLUMN_OVERHEAD_BYTES = 256
SMALL_PART_ROWS = 64
MERGE_SMALL_PARTS = 32
"""Merge the unindexed tail once it holds this many small parts."""


def part_bytes(table: pa.Table) -> int:
    """The memory one memtable part costs, overheads included."""
    return (table.get_total_buffer_size() + PART_OVERHEAD_BYTES
            + COLUMN_OVERHEAD_BYTES * table.num_columns)


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
    """Mutable holder of the current :class:`MemView`; callers serialise access.

    ``oldest_ns`` is the wall-clock time the oldest event here was written to
    the WAL (kept across a reopen), which ages the memtable.
    """

    entity_field: str
    ts_field: str
    view: MemView = field(default_factory=MemView)
    indexed_parts: int = 0
    oldest_ns: int | None = None
    small_tail: int = 0  # small unindexed parts at the end of view.parts
    positions: dict[str, int] = field(default_factory=dict)  # committed by appends here

    def add(self, table: pa.Table, written_ns: int) -> None:
        """Add one normalized, ``_seq``-stamped table written at ``written_ns``."""
        v = self.view
        parts, nbytes = v.parts + (table,), v.nbytes + part_bytes(table)
        self.small_tail = self.small_tail + 1 if table.num_rows < SMALL_PART_ROWS else 0
        if self.small_tail >= MERGE_SMALL_PARTS and len(parts) - self.small_tail >= (
                self.indexed_parts):
            tail = parts[-self.small_tail:]
            merged = concat_tables(tail).combine_chunks()
            nbytes += part_bytes(merged) - sum(part_bytes(t) for t in tail)
            parts = parts[:-self.small_tail] + (merged,)
            self.small_tail = 1
        self.view = MemView(parts, v.runs, v.rows + table.num_rows, nbytes)
        if self.oldest_ns is None or written_ns < self.oldest_ns:
            self.oldest_ns = written_ns

    def note_position(self, source: str, position: int) -> None:
        """Record that an append here committed ``position`` for ``source``."""
        if position > self.positions.get(source, -1):
            self.positions[source] = position

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
        """Adopt runs built for ``view`` unless the parts changed meanwhile.

        Runs covering ``view.parts`` stay valid while those parts are still the
        first ones (appends only add parts; merging small ones touches only
        unindexed parts, which then no longer match and the runs are dropped).
        """
        current = self.view.parts
        if self.indexed_parts != indexed_parts or len(current) < len(view.parts) or any(
                a is not b for a, b in zip(current, view.parts, strict=False)):
            return
        v = self.view
        self.view = MemView(v.parts, runs, v.rows, v.nbytes)
        self.indexed_parts = len(view.parts)
        self.small_tail = min(self.small_tail, len(v.parts) - self.indexed_parts)

    def indexed(self) -> MemView:
        """The current view with runs covering every part (building them if needed)."""
        pending = self.pending()
        if pending is not None:
            self.install(*pending, self.build_runs(*pending))
        return self.view

    def age_s(self, now_ns: int) -> float:
        """Seconds since the oldest event here was written."""
        return 0.0 if self.oldest_ns is None else max(0.0, (now_ns - self.oldest_ns) / 1e9)
