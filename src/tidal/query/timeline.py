"""Entity timelines: probe every sorted run, merge by (timestamp, ``_seq``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tidal.model.schema import concat_tables
from tidal.store.run import SEQ, SortedRun, seq_array, time_array

_EMPTY = pa.table({SEQ: pa.array([], pa.int64())})


def timeline(runs: tuple[SortedRun, ...], entity: object, start: int | None, end: int | None,
             *, limit: int | None, desc: bool, ts_field: str) -> pa.Table:
    """Events of ``entity`` with ``start <= timestamp < end``.

    Ordered by (timestamp, ``_seq``), newest first when ``desc``; at most
    ``limit`` rows (the first ones in that order). Each run gives one
    contiguous, already ordered slice; slices from several runs are merged.
    """
    key = entity if isinstance(entity, str) else str(entity)
    parts: list[pa.Table] = []
    for run in runs:
        window = run.window(key, start, end)
        if window is not None:
            parts.append(run.table.slice(window[0], window[1] - window[0]))
    if not parts:
        return runs[0].table.slice(0, 0) if runs else _EMPTY
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
