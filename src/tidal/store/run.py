"""A sorted run: events ordered by (entity, timestamp, ``_seq``) with an entity index.

Both flushed segments and the indexed part of the memtable are sorted runs, so
a timeline is the same few steps everywhere: one dict lookup for the entity's
row range, two binary searches for the time window, one zero-copy slice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np
import pyarrow as pa

from tidal.model.paths import get_path
from tidal.store import _kernels

SEQ = "_seq"
SEGMENT = "_segment"
"""A scan's column of each row's segment id (-1: the memtable), when asked for."""
ROW = "_row"
"""A scan's column of each row's position in its segment (-1: the memtable)."""
INDEX_SCHEMA = pa.schema([("entity", pa.string()), ("start", pa.int64()), ("stop", pa.int64())])


def time_array(table: pa.Table, ts_field: str) -> np.ndarray:
    """The event times of ``table`` as int64 ns (normalized tables have no nulls)."""
    col = get_path(table, ts_field)
    if col is None or table.num_rows == 0:
        return np.zeros(table.num_rows, dtype=np.int64)
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return np.asarray(arr.view(pa.int64()).fill_null(0), dtype=np.int64)


def seq_array(table: pa.Table) -> np.ndarray:
    """The ``_seq`` column as int64."""
    return int_column(table, SEQ)


def int_column(table: pa.Table, name: str) -> np.ndarray:
    """Column ``name`` of ``table`` as one int64 array."""
    return np.asarray(table.column(name).combine_chunks(), dtype=np.int64)


@dataclass(frozen=True)
class SortedRun:
    """Immutable events sorted by (entity, timestamp, ``_seq``), indexed by entity."""

    table: pa.Table
    ts: np.ndarray
    index: dict[str, tuple[int, int]]

    @property
    def rows(self) -> int:
        return self.table.num_rows

    @classmethod
    def build(cls, table: pa.Table, entity_field: str, ts_field: str) -> SortedRun:
        """Sort ``table`` and index it by entity."""
        return sort_plan(table, entity_field, ts_field)[0]()

    @classmethod
    def load(cls, table: pa.Table, index_table: pa.Table, ts_field: str) -> SortedRun:
        """Rebuild a run from a segment and its stored index."""
        index = dict(zip(index_table.column("entity").to_pylist(),
                         zip(index_table.column("start").to_pylist(),
                             index_table.column("stop").to_pylist(), strict=True), strict=True))
        table = table.combine_chunks()
        return cls(table, time_array(table, ts_field), index)

    def index_table(self) -> pa.Table:
        """The entity index as a table, for the segment's sidecar file."""
        keys = list(self.index)
        bounds = np.array(list(self.index.values()), dtype=np.int64).reshape(-1, 2)
        return pa.table([pa.array(keys, pa.string()), pa.array(bounds[:, 0]),
                         pa.array(bounds[:, 1])], schema=INDEX_SCHEMA)

    @functools.cached_property
    def time_range(self) -> tuple[int, int]:
        """The earliest and latest timestamp (0, -1 when empty)."""
        return (int(self.ts.min()), int(self.ts.max())) if len(self.ts) else (0, -1)

    def holds(self, entity: str) -> bool:
        """Whether the run has any event of ``entity``."""
        return entity in self.index

    def cached(self, entity: str) -> bool:
        return True  # in memory

    def entity_slice(self, entity: str, start: int | None, end: int | None) -> Slice | None:
        """``entity``'s events within ``[start, end)`` in (timestamp, ``_seq``) order."""
        bounds = self.index.get(entity)
        if bounds is None:
            return None
        lo, hi = bounds
        if start is not None or end is not None:  # (the hot path of a whole timeline skips this)
            lo, hi = _kernels.time_window(self.ts, lo, hi, start, end)
            if hi <= lo:
                return None
        return Slice(self.table.slice(lo, hi - lo), self.ts[lo:hi])


class SliceSource(Protocol):
    """Something holding entities' events in (timestamp, ``_seq``) order: a sorted run
    in memory, or a segment file read by row group."""

    @property
    def time_range(self) -> tuple[int, int]:
        """The earliest and latest timestamp it may hold."""
        ...

    def holds(self, entity: str) -> bool:
        """Whether it has any event of ``entity`` (one lookup, no data read)."""
        ...

    def cached(self, entity: str) -> bool:
        """Whether ``entity_slice`` can answer without reading a file."""
        ...

    def entity_slice(self, entity: str, start: int | None, end: int | None) -> Slice | None:
        """``entity``'s events within ``[start, end)``, or None when there are none."""
        ...


class SourceSet:
    """The slice sources of one version of the store, with their time ranges as
    arrays: picking those that meet a window is one vectorized step, however
    many segments there are."""

    def __init__(self, sources: Sequence[SliceSource]) -> None:
        self.sources = tuple(sources)
        ranges = np.array([s.time_range for s in self.sources], dtype=np.int64).reshape(-1, 2)
        self._low, self._high = ranges[:, 0], ranges[:, 1]
        self._nonempty = [s for s, lo, hi in zip(self.sources, self._low, self._high,
                                                  strict=True) if lo <= hi]

    def meeting(self, start: int | None, end: int | None) -> list[SliceSource]:
        """The sources that may hold events in ``[start, end)``, in stored order."""
        if start is None and end is None:
            return self._nonempty  # read, never changed, by the caller
        mask = self._low <= self._high
        if start is not None:
            mask &= self._high >= start
        if end is not None:
            mask &= self._low < end
        return [self.sources[i] for i in np.flatnonzero(mask)]


class Slice(NamedTuple):
    """One entity's events from one run, in (timestamp, ``_seq``) order, with their times.

    (A named tuple: made on every timeline, it costs a third of a frozen dataclass.)
    """

    table: pa.Table
    ts: np.ndarray

    def part(self, lo: int, hi: int) -> Slice:
        """Rows ``lo:hi`` (no copy)."""
        return Slice(self.table.slice(lo, hi - lo), self.ts[lo:hi])

    def within(self, start: int | None, end: int | None) -> Slice | None:
        """The rows with ``start <= ts < end``; None when there are none."""
        ts = self.ts
        if (start is None or start <= ts[0]) and (end is None or ts[-1] < end):
            return self  # the common case inside a window: nothing to cut
        lo, hi = _kernels.time_window(ts, 0, len(ts), start, end)
        return self.part(lo, hi) if hi > lo else None


def time_cuts(ts_sorted: np.ndarray, max_rows: int, span_ns: int | None) -> np.ndarray:
    """Timestamps at which to cut sorted times into chunks of at most ``max_rows`` rows
    and ``span_ns`` of time; equal timestamps are never cut apart (a chunk may then
    exceed ``max_rows``). Row ``i`` belongs to chunk ``searchsorted(cuts, ts[i], "right")``.
    """
    n = len(ts_sorted)
    if n == 0 or (n <= max_rows and (span_ns is None
                                     or int(ts_sorted[-1]) - int(ts_sorted[0]) < span_ns)):
        return np.zeros(0, dtype=np.int64)
    cuts = []
    i = 0
    while True:
        j = min(n, i + max_rows)
        if span_ns is not None:
            j = min(j, int(np.searchsorted(ts_sorted, int(ts_sorted[i]) + span_ns, "left")))
        if j >= n:
            break
        cut = int(ts_sorted[j])
        if cut == int(ts_sorted[i]):  # one timestamp fills the chunk: keep its ties together
            j = int(np.searchsorted(ts_sorted, cut, "right"))
            if j >= n:
                break
            cut = int(ts_sorted[j])
        cuts.append(cut)
        i = int(np.searchsorted(ts_sorted, cut, "left"))
    return np.array(cuts, dtype=np.int64)


def sort_plan(table: pa.Table, entity_field: str, ts_field: str, *,
              max_rows: int | None = None, span_ns: int | None = None, pieces: int = 1
              ) -> list[Callable[[], SortedRun]]:
    """Cut ``table`` into time chunks, each sorted by (entity, timestamp, ``_seq``).

    Chunks are consecutive in time, hold at most ``max_rows`` rows and cover
    less than ``span_ns`` (see :func:`time_cuts`); a table within both limits
    is one chunk, cut further into ``pieces`` runs on entity boundaries (so that
    they can be gathered in parallel). Returns one callable per run that
    gathers its rows (the costly part); they release the GIL inside pyarrow and
    may run on separate threads.
    """
    table = table.combine_chunks()  # take() on one chunk is several times faster
    ts = time_array(table, ts_field)
    entities = get_path(table, entity_field)
    n = table.num_rows
    cuts = time_cuts(np.sort(ts), max_rows or max(n, 1), span_ns)
    chunk = (np.searchsorted(cuts, ts, side="right") if len(cuts)
             else np.zeros(n, dtype=np.int64))
    if entities is None or n == 0:
        codes, key_list = np.zeros(n, dtype=np.int64), []
    else:
        found, keys = _kernels.entity_codes(entities)
        codes, key_list = found, keys.to_pylist()
    order = np.lexsort((seq_array(table), ts, codes, chunk))
    sorted_codes = codes[order]
    bounds = np.flatnonzero(np.diff(chunk[order])) + 1 if len(cuts) else np.zeros(0, np.int64)
    edges = [0, *bounds.tolist(), n]
    ranges = []
    for lo, hi in zip(edges, edges[1:], strict=False):
        parts = pieces if len(edges) == 2 else 1
        inner = sorted({lo, hi, *(lo + int(np.searchsorted(
            sorted_codes[lo:hi], sorted_codes[lo + i * (hi - lo) // parts]))
            for i in range(1, parts))})
        ranges += list(zip(inner, inner[1:], strict=False))

    def gather(lo: int, hi: int) -> SortedRun:
        piece = order[lo:hi]
        index: dict[str, tuple[int, int]] = {}
        if key_list and hi > lo:
            piece_codes = sorted_codes[lo:hi]
            first, last = int(piece_codes[0]), min(int(piece_codes[-1]), len(key_list) - 1)
            starts, stops = _kernels.run_bounds(piece_codes - first, last - first + 1)
            present = np.flatnonzero(stops > starts)  # a chunk may lack some entities
            names = key_list[first:last + 1]
            index = {names[i]: (s, e) for i, s, e in zip(
                present.tolist(), starts[present].tolist(), stops[present].tolist(),
                strict=True)}
        return SortedRun(table.take(pa.array(piece)), ts[piece], index)

    if not ranges:
        ranges = [(0, 0)]
    return [functools.partial(gather, lo, hi) for lo, hi in ranges]
