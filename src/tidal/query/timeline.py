"""Entity timelines over a snapshot: segments and memtable, ordered by (timestamp, ``_seq``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tidal.model.schema import concat_tables
from tidal.store.engine import Snapshot
from tidal.store.run import SEQ, SortedRun, seq_array, time_array


def _slice(run: SortedRun, key: str, start: int | None, end: int | None) -> pa.Table | None:
    window = run.window(key, start, end)
    if window is None:
        return None
    return run.table.slice(window[0], window[1] - window[0])


def timeline(snapshot: Snapshot, entity: object, start: int | None, end: int | None, *,
             limit: int | None, desc: bool, ts_field: str) -> pa.Table:
    """Events of ``entity`` with ``start <= timestamp < end``.

    Ordered by (timestamp, ``_seq``), newest first when ``desc``; at most
    ``limit`` rows (the first ones in that order).
    """
    key = entity if isinstance(entity, str) else str(entity)
    parts: list[pa.Table] = []
    for meta in snapshot.segments:
        if (start is not None and meta.max_ts < start) or (end is not None and meta.min_ts >= end):
            continue
        part = _slice(snapshot.segment_run(meta), key, start, end)
        if part is not None:
            parts.append(part)
    for run in snapshot.memtable_runs:
        part = _slice(run, key, start, end)
        if part is not None:
            parts.append(part)
    if not parts:
        return empty_like(snapshot)
    result = parts[0] if len(parts) == 1 else _merge(parts, ts_field)
    if desc:
        result = result.take(pa.array(np.arange(result.num_rows - 1, -1, -1)))
    if limit is not None:
        result = result.slice(0, limit)
    return result


def _merge(parts: list[pa.Table], ts_field: str) -> pa.Table:
    table = concat_tables(parts)
    order = np.lexsort((seq_array(table), time_array(table, ts_field)))
    return table.take(pa.array(order))


def empty_like(snapshot: Snapshot) -> pa.Table:
    """An empty result with the store's schema where one is at hand."""
    for run in snapshot.memtable_runs:
        return run.table.slice(0, 0)
    if snapshot.memtable_parts:
        return snapshot.memtable_parts[0].slice(0, 0)
    for meta in snapshot.segments:
        return snapshot.segment_run(meta).table.slice(0, 0)
    return pa.table({SEQ: pa.array([], pa.int64())})
