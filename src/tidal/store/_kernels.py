"""Array kernels for sorting and indexing events. Arrays in, arrays out."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def entity_codes(entities: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Dense codes ordered like the sorted distinct entity strings.

    Returns ``(codes, keys)``: ``keys`` holds the distinct non-null entities in
    ascending order and ``codes[i]`` the position of row ``i``'s entity in
    ``keys``; null entities get ``len(keys)`` so they sort last.
    """
    if isinstance(entities, pa.ChunkedArray):
        entities = entities.combine_chunks()
    if not pa.types.is_string(entities.type):
        entities = entities.cast(pa.string())
    encoded = pc.dictionary_encode(entities)
    dictionary = encoded.dictionary
    order = np.asarray(pc.sort_indices(dictionary))
    rank = np.empty(len(dictionary) + 1, dtype=np.int64)
    rank[order] = np.arange(len(dictionary), dtype=np.int64)
    rank[len(dictionary)] = len(dictionary)
    raw = encoded.indices.fill_null(len(dictionary))
    codes = rank[np.asarray(raw, dtype=np.int64)]
    return codes, dictionary.take(pa.array(order))


def run_bounds(sorted_codes: np.ndarray, nkeys: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop row of each key ``0..nkeys-1`` in sorted codes."""
    keys = np.arange(nkeys, dtype=np.int64)
    starts = np.searchsorted(sorted_codes, keys, side="left")
    stops = np.searchsorted(sorted_codes, keys, side="right")
    return starts, stops


def time_window(ts_ns: np.ndarray, lo: int, hi: int, start: int | None, end: int | None
                ) -> tuple[int, int]:
    """Narrow rows ``lo:hi`` (sorted by time) to ``start <= ts < end``."""
    if start is None and end is None:
        return lo, hi
    part = ts_ns[lo:hi]
    if end is not None:
        hi = lo + int(part.searchsorted(end, "left"))
    if start is not None:
        lo = lo + int(part.searchsorted(start, "left"))
    return lo, max(lo, hi)
