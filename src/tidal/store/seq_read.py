"""Reading stored events by ``_seq`` range, in ``_seq`` order, a bounded chunk at a time.

Segments are sorted by entity, not ``_seq``, and the pieces of one time chunk
cover interleaved ``_seq`` values, so a range is read by the ordered merge of
:func:`~tidal.store.scan.seq_tables` a step at a time, or, for a few events,
from the row groups that hold them. Every segment event precedes every
memtable event.

:func:`read_seqs` reads given events (any ``_seq`` values) whole: a query that
found them by a few fields reads the rest of their columns from just the row
groups that hold them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from tidal.model.schema import concat_tables
from tidal.store.readers import Snapshot
from tidal.store.run import SEQ, seq_array
from tidal.store.scan import in_snapshot_schema, seq_tables
from tidal.store.segment import ROW_GROUP_ROWS, SegmentMeta


def _first_rows(snapshot: Snapshot, from_seq: int, hi: int, max_rows: int
                ) -> list[pa.RecordBatch] | None:
    """The events from ``from_seq`` below ``min(hi, from_seq + max_rows)``, when they
    lie in few row groups: only the ``_seq`` columns of the segments that may hold
    them are read to find them, then the row groups they lie in. None when that
    would read most of those segments anyway."""
    top = min(hi, from_seq + max_rows)
    metas = [m for m in snapshot.segments if m.rows and m.max_seq >= from_seq and m.min_seq < top]
    if not metas or 4 * max_rows > sum(m.rows for m in metas) // ROW_GROUP_ROWS:
        return None
    seqs = [snapshot.segment_seqs(meta) for meta in metas]
    parts = [snapshot.segment_take(meta, np.flatnonzero((s >= from_seq) & (s < top)))
             for meta, s in zip(metas, seqs, strict=True)]
    parts = [in_snapshot_schema(snapshot, p, ts_field=snapshot.ts_field)
             for p in parts if p.num_rows]
    if not parts:
        return None  # a gap (a repair's lost range): the merged read skips it
    table = concat_tables(parts) if len(parts) > 1 else parts[0]
    return table.take(pa.array(np.argsort(seq_array(table), kind="stable"))).to_batches()


def read_seq_range(snapshot: Snapshot, from_seq: int, to_seq: int | None,
                   max_rows: int) -> list[pa.RecordBatch]:
    """Events with ``from_seq <= _seq < to_seq`` (None: all visible), in ``_seq`` order.

    Returns the first chunk only: when ``max_rows`` is small next to the segments
    that hold the range, about ``max_rows`` events read from their row groups;
    else one step of the ordered merge (up to one compacted time chunk), or up to
    about ``max_rows`` memtable events. Empty when the range holds nothing. Call
    again from the last ``_seq`` + 1 for more.
    """
    hi = snapshot.max_seq + 1 if to_seq is None else min(to_seq, snapshot.max_seq + 1)
    if from_seq >= hi:
        return []
    if any(m.rows and m.max_seq >= from_seq and m.min_seq < hi for m in snapshot.segments):
        found = _first_rows(snapshot, from_seq, hi, max_rows)
        if found is not None:
            return found
        for table in seq_tables(snapshot, from_seq, hi, ts_field=snapshot.ts_field):
            return table.to_batches()
        return []
    batches: list[pa.RecordBatch] = []
    rows = 0
    for part in snapshot.memtable_parts:  # each in _seq order (gaps possible after a repair)
        seqs = part.column(SEQ)
        if seqs[-1].as_py() < from_seq:
            continue
        if seqs[0].as_py() >= hi or rows >= max_rows:
            break
        lo, top = np.searchsorted(np.asarray(seqs), [from_seq, hi])
        piece = part.slice(int(lo), int(top - lo))
        batches += piece.to_batches()
        rows += piece.num_rows
    return batches


READ_THREADS = 2
"""Segments :func:`read_seqs` and :func:`read_rows` read at once."""


def read_seqs(snapshot: Snapshot, seqs: np.ndarray) -> pa.Table:
    """Every column of the events whose ``_seq`` is in ``seqs`` (ascending, distinct),
    in ``_seq`` order. A segment is read only when its ``_seq`` range holds one of
    them: its ``_seq`` column, then the row groups that hold them."""
    seqs = np.asarray(seqs, dtype=np.int64)
    jobs = []
    for meta in snapshot.segments:
        lo, hi = np.searchsorted(seqs, [meta.min_seq, meta.max_seq + 1])
        if meta.rows and lo < hi:
            jobs.append((meta, functools.partial(_positions_of, snapshot, meta, seqs[lo:hi])))
    return _whole(snapshot, jobs, seqs)


def read_rows(snapshot: Snapshot, rows: Mapping[int, np.ndarray], seqs: np.ndarray
              ) -> pa.Table:
    """Every column of the events stored at ``rows`` (segment id → ascending positions,
    as a scan with ``positions=True`` gives them) and of the memtable events whose
    ``_seq`` is in ``seqs``, in ``_seq`` order; segments are read only in the row
    groups that hold them."""
    jobs = [(meta, functools.partial(np.asarray, rows[meta.id]))
            for meta in snapshot.segments if meta.id in rows and len(rows[meta.id])]
    return _whole(snapshot, jobs, np.asarray(seqs, dtype=np.int64))


def read_placed(snapshot: Snapshot, segments: np.ndarray, rows: np.ndarray,
                seqs: np.ndarray) -> pa.Table:
    """Every column of the events a scan with ``positions=True`` found: event ``i`` is
    stored in segment ``segments[i]`` at row ``rows[i]`` (segment -1: the memtable,
    found by its ``_seq``, ``seqs[i]``), in ``_seq`` order, each once."""
    segments, rows, seqs = (np.asarray(a, dtype=np.int64) for a in (segments, rows, seqs))
    in_memtable = np.unique(seqs[segments < 0])
    order = np.lexsort((rows, segments))
    segments, rows = segments[order], rows[order]
    ids, starts = np.unique(segments, return_index=True)
    ends = [*starts[1:].tolist(), len(segments)]
    placed = {int(i): np.unique(rows[lo:hi])
              for i, lo, hi in zip(ids.tolist(), starts.tolist(), ends, strict=True) if i >= 0}
    return read_rows(snapshot, placed, in_memtable)


def _positions_of(snapshot: Snapshot, meta: SegmentMeta, seqs: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.isin(snapshot.segment_seqs(meta), seqs))


def _whole(snapshot: Snapshot, jobs: Sequence[tuple[SegmentMeta, Callable[[], np.ndarray]]],
           seqs: np.ndarray) -> pa.Table:
    """The rows each job's segment holds at the positions it gives, and the memtable
    events whose ``_seq`` is in ``seqs``: every column, in ``_seq`` order."""
    def segment_rows(job: tuple[SegmentMeta, Callable[[], np.ndarray]]) -> pa.Table:
        meta, positions = job
        return snapshot.segment_take(meta, positions())

    if len(jobs) > 1:  # (decoding releases the GIL: segments on two threads)
        with ThreadPoolExecutor(READ_THREADS) as pool:
            parts = [p for p in pool.map(segment_rows, jobs) if p.num_rows]
    else:
        parts = [p for p in map(segment_rows, jobs) if p.num_rows]
    for part in snapshot.memtable_parts:
        keep = np.isin(seq_array(part), seqs)
        if keep.any():
            parts.append(part.filter(pa.array(keep)))
    if not parts:
        return in_snapshot_schema(snapshot, snapshot.schema.empty_table(),
                                  ts_field=snapshot.ts_field)
    table = concat_tables([in_snapshot_schema(snapshot, p, ts_field=snapshot.ts_field)
                           for p in parts])
    order = np.argsort(seq_array(table), kind="stable")
    return table if np.all(order[1:] > order[:-1]) else table.take(pa.array(order))
