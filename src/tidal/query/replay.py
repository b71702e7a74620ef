"""Reads in ``_seq`` order, for replay and live consumers."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from tidal.model.schema import concat_tables
from tidal.store.run import SEQ

CHUNK_ROWS = 65_536

ReadSeq = Callable[[int, int | None, int], list[pa.RecordBatch]]


def read_from(read_seq: ReadSeq, from_seq: int, limit: int | None = None) -> pa.Table:
    """Events with ``_seq >= from_seq`` in ``_seq`` order, at most ``limit`` of them.

    ``read_seq`` is :meth:`Engine.read_seq`; chunks are read until ``limit``
    events are in hand, so a small limit reads little of a large store.
    """
    batches: list[pa.RecordBatch] = []
    rows, seq = 0, max(0, from_seq)
    while limit is None or rows < limit:
        chunk = read_seq(seq, None, CHUNK_ROWS if limit is None else min(CHUNK_ROWS, limit - rows))
        if not chunk:
            break
        batches += chunk
        rows += sum(b.num_rows for b in chunk)
        seq = int(chunk[-1].column(SEQ)[-1].as_py()) + 1
    if not batches:
        return pa.table({SEQ: pa.array([], pa.int64())})
    table = concat_tables([pa.Table.from_batches([b]) for b in batches])
    return table.slice(0, limit) if limit is not None else table
