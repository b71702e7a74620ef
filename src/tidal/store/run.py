"""A sorted run: events ordered by (entity, timestamp, ``_seq``) with an entity index.

Both flushed segments and the indexed part of the memtable are sorted runs, so
a timeline is the same few steps everywhere: one dict lookup for the entity's
row range, two binary searches for the time window, one zero-copy slice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tidal.model.paths import get_path
from tidal.store import _kernels

SEQ = "_seq"
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
    return np.asarray(table.column(SEQ).combine_chunks(), dtype=np.int64)


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
        return sort_plan(table, entity_field, ts_field, pieces=1)[0]()

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

    def window(self, entity: str, start: int | None, end: int | None) -> tuple[int, int] | None:
        """Row range of ``entity`` within ``[start, end)``, or None when empty."""
        bounds = self.index.get(entity)
        if bounds is None:
            return None
        lo, hi = _kernels.time_window(self.ts, bounds[0], bounds[1], start, end)
        return (lo, hi) if hi > lo else None


def sort_plan(table: pa.Table, entity_field: str, ts_field: str, *, pieces: int
              ) -> list[Callable[[], SortedRun]]:
    """Sort ``table`` by (entity, timestamp, ``_seq``) and cut it into ``pieces`` runs.

    Cuts fall on entity boundaries, so each entity lives in one run. Returns
    one callable per run that gathers its rows (the costly part); they release
    the GIL inside pyarrow and may run on separate threads.
    """
    table = table.combine_chunks()  # take() on one chunk is several times faster
    ts = time_array(table, ts_field)
    entities = get_path(table, entity_field)
    n = table.num_rows
    if entities is None or n == 0:
        order = np.lexsort((seq_array(table), ts))
        return [lambda: SortedRun(table.take(pa.array(order)), ts[order], {})]
    codes, keys = _kernels.entity_codes(entities)
    order = _kernels.sort_order(codes, ts, seq_array(table))
    sorted_codes = codes[order]
    cuts = sorted({0, n, *(int(np.searchsorted(sorted_codes, sorted_codes[i * n // pieces]))
                           for i in range(1, pieces))})
    key_list = keys.to_pylist()

    def gather(lo: int, hi: int) -> SortedRun:
        piece = order[lo:hi]
        piece_codes = sorted_codes[lo:hi]
        first, last = int(piece_codes[0]), min(int(piece_codes[-1]), len(key_list) - 1)
        starts, stops = _kernels.run_bounds(piece_codes - first, last - first + 1)
        index = dict(zip(key_list[first:last + 1],
                         zip(starts.tolist(), stops.tolist(), strict=True), strict=True))
        return SortedRun(table.take(pa.array(piece)), ts[piece], index)

    return [functools.partial(gather, lo, hi) for lo, hi in zip(cuts, cuts[1:], strict=False)]
