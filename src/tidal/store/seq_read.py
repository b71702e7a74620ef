"""Reading stored events by ``_seq`` range, in ``_seq`` order, a bounded chunk at a time.

Segments are sorted by entity, not ``_seq``, and the pieces of one flush
cover interleaved ``_seq`` values, so a range is read a *cluster* at a time:
the segments whose ``_seq`` ranges overlap one another. Clusters never
overlap, and every segment event precedes every memtable event.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tidal.model.schema import concat_tables
from tidal.store.readers import Snapshot
from tidal.store.run import SEQ, seq_array
from tidal.store.segment import SegmentMeta


def _first_cluster(metas: list[SegmentMeta]) -> list[SegmentMeta]:
    """The segments overlapping (transitively) the one with the lowest ``min_seq``."""
    ordered = sorted(metas, key=lambda m: m.min_seq)
    cluster = [ordered[0]]
    top = ordered[0].max_seq
    for meta in ordered[1:]:
        if meta.min_seq > top:
            break
        cluster.append(meta)
        top = max(top, meta.max_seq)
    return cluster


def read_seq_range(snapshot: Snapshot, from_seq: int, to_seq: int | None,
                   max_rows: int) -> list[pa.RecordBatch]:
    """Events with ``from_seq <= _seq < to_seq`` (None: all visible), in ``_seq`` order.

    Returns the first chunk only: one segment cluster (whole, whatever
    ``max_rows``), or up to about ``max_rows`` memtable events; empty when the
    range holds nothing. Call again from the last ``_seq`` + 1 for more.
    """
    hi = snapshot.max_seq + 1 if to_seq is None else min(to_seq, snapshot.max_seq + 1)
    if from_seq >= hi:
        return []
    metas = [m for m in snapshot.segments if m.rows and m.max_seq >= from_seq and m.min_seq < hi]
    if metas:
        parts = []
        for meta in _first_cluster(metas):
            table = snapshot.segment_table(meta)
            seqs = seq_array(table)
            keep = np.flatnonzero((seqs >= from_seq) & (seqs < hi))
            parts.append(table.take(pa.array(keep[np.argsort(seqs[keep], kind="stable")])))
        table = concat_tables(parts)
        if len(parts) > 1:
            table = table.take(pa.array(np.argsort(seq_array(table), kind="stable")))
        return table.to_batches()
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
