"""Reads in ``_seq`` order, for live consumers and replay."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tidal.model.schema import concat_tables
from tidal.store.engine import Snapshot
from tidal.store.run import SEQ, seq_array


def read_from(snapshot: Snapshot, from_seq: int, limit: int | None = None) -> pa.Table:
    """Events with ``_seq >= from_seq`` in ``_seq`` order, at most ``limit`` of them."""
    parts: list[pa.Table] = []
    for meta in sorted(snapshot.segments, key=lambda s: s.min_seq):
        if meta.max_seq < from_seq:
            continue
        table = snapshot.segment_table(meta)
        seqs = seq_array(table)
        keep = np.flatnonzero(seqs >= from_seq)
        parts.append(table.take(pa.array(keep[np.argsort(seqs[keep], kind="stable")])))
    for part in snapshot.memtable_parts:
        first = part.column(SEQ)[0].as_py()
        last = first + part.num_rows - 1
        if last >= from_seq:
            parts.append(part.slice(max(0, from_seq - first)))
        if limit is not None and sum(p.num_rows for p in parts) >= limit:
            break
    if not parts:
        return pa.table({SEQ: pa.array([], pa.int64())})
    table = concat_tables(parts)
    if len(snapshot.segments) > 1:
        seqs = seq_array(table)
        if np.any(np.diff(seqs) < 0):
            table = table.take(pa.array(np.argsort(seqs, kind="stable")))
    return table.slice(0, limit) if limit is not None else table
