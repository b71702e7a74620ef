"""Compaction's merge: a group of segments cut by entity into pieces of bounded size.

Every segment is sorted by (entity, timestamp, ``_seq``), so the events of a
range of entities are one row range in each segment. A piece of the merge
reads those row ranges (their row groups, not whole files), sorts them and
becomes one output segment. Pieces hold at most ``max_rows`` events, so memory
stays bounded however many events the merged chunk holds, and the segments of
one chunk cover the same time with different entities: a timeline finds an
entity in one of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import pyarrow as pa

from tidal.model.schema import concat_tables
from tidal.store.backend import SegmentStore
from tidal.store.run import SortedRun, sort_plan
from tidal.store.segment import SegmentMeta

__all__ = ["merge_plan"]


def merge_plan(group: Sequence[SegmentMeta], segments: SegmentStore, *, entity_field: str,
               ts_field: str, max_rows: int, min_rows: int
               ) -> list[Callable[[], list[SortedRun]]]:
    """One callable per output segment of merging ``group``: it reads its entities'
    rows from every segment of the group and sorts them (the costly part; callables
    may run on separate threads).

    Pieces hold about ``max_rows`` events; none of several holds fewer than
    ``min_rows`` (it joins its neighbour), so that a compaction's output is never
    small enough to be compacted again on its own. Pieces are cut between
    entities; a piece still larger than ``max_rows`` (one huge entity, or the
    events without one) is cut again by time into segments of at most
    ``max_rows``, holding all its rows in memory while it sorts them.
    """
    indexes = [_sorted_index(segments.index_table(meta)) for meta in group]
    total = sum(meta.rows for meta in group)
    bounds = _entity_bounds(indexes, math.ceil(total / max_rows) if total else 1, min_rows)
    plans: list[Callable[[], list[SortedRun]]] = []
    for low, high in zip([None, *bounds], [*bounds, None], strict=True):
        ranges = [(meta, *_row_range(index, meta.rows, low, high))
                  for meta, index in zip(group, indexes, strict=True)]
        ranges = [(meta, lo, hi) for meta, lo, hi in ranges if hi > lo]
        if ranges:
            plans.append(partial(_gather, segments, ranges, entity_field, ts_field, max_rows))
    return plans


def _sorted_index(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(entities, starts, stops) of an index table, in entity order."""
    table = table.sort_by("entity")
    return (np.asarray(table.column("entity").to_pylist(), dtype=object),
            np.asarray(table.column("start"), dtype=np.int64),
            np.asarray(table.column("stop"), dtype=np.int64))


def _entity_bounds(indexes: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                   pieces: int, min_rows: int) -> list[str]:
    """Entities at which to cut the merged events into ``pieces`` of about equal rows,
    none below ``min_rows`` (a piece starts at its bound; an entity is never split)."""
    if pieces <= 1 or not any(len(entities) for entities, _, _ in indexes):
        return []  # one piece, or nothing to cut by: rows without an entity
    table = pa.table({
        "entity": pa.array(np.concatenate([e for e, _, _ in indexes]), pa.string()),
        "rows": pa.array(np.concatenate([b - a for _, a, b in indexes])),
    }).group_by("entity").aggregate([("rows", "sum")]).sort_by("entity")
    counts = np.asarray(table.column("rows_sum"), dtype=np.int64)
    cumulative = np.cumsum(counts) - counts  # rows before each entity
    targets = np.arange(1, pieces) * (cumulative[-1] + counts[-1]) / pieces
    total = int(cumulative[-1] + counts[-1])
    kept: list[int] = []
    for i in np.unique(np.searchsorted(cumulative, targets, "left")).tolist():
        before = cumulative[i] - (cumulative[kept[-1]] if kept else 0) if i < len(counts) else 0
        if 0 < i < len(counts) and before >= min_rows and total - cumulative[i] >= min_rows:
            kept.append(i)
    entities = table.column("entity")
    return [entities[i].as_py() for i in kept]


def _row_range(index: tuple[np.ndarray, np.ndarray, np.ndarray], rows: int,
               low: str | None, high: str | None) -> tuple[int, int]:
    """The rows of entities in ``[low, high)`` (None: unbounded; events without an
    entity sort last and go with the last range)."""
    entities, starts, stops = index
    first = 0 if low is None else int(entities.searchsorted(low, "left"))
    last = len(entities) if high is None else int(entities.searchsorted(high, "left"))
    lo = int(starts[first]) if first < len(entities) else (
        int(stops[-1]) if len(entities) else 0)
    if high is None:
        return lo, rows
    return lo, int(stops[last - 1]) if last > first else lo


def _gather(segments: SegmentStore, ranges: list[tuple[SegmentMeta, int, int]],
            entity_field: str, ts_field: str, max_rows: int) -> list[SortedRun]:
    # no reference kept here: the decoded row groups are freed once sort_plan has
    # combined them, so a piece holds at most two copies of its rows at a time
    rows = sum(hi - lo for _, lo, hi in ranges)
    runs = sort_plan(concat_tables([segments.rows(meta, lo, hi) for meta, lo, hi in ranges]),
                     entity_field, ts_field,  # cut into equal parts: none is left small
                     max_rows=math.ceil(rows / math.ceil(rows / max_rows)) if rows else max_rows)
    return [gather() for gather in runs]
