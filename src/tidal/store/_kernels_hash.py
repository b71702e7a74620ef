"""Hashing kernels, and a table of keys with times. Arrays in, arrays out.

:func:`fnv1a` hashes byte strings (FNV-1a, 64 bits) given as Arrow-style
offsets and data; :func:`spread` scatters a 64-bit value over a power-of-two
table. Both are shared with the join keys of :mod:`tidal.correlate`.

The rest keeps *entries* (a key's bytes, its hash and an event time) for ingest
deduplication (:mod:`tidal.store.dedup`): rows of several key columns are
encoded as one byte string each (:func:`encode_rows`), and :func:`keep_first`
tells each row whether an entry with the same bytes lies within a window of
its time, adding the rows it keeps. The entries live in flat arrays, in the
order they were added; an open-addressing table (int64 ``[slots, 2]``: a hash
and its newest entry, -1 for an empty slot, side by side so that a probe
touches one cache line) maps each distinct hash to its newest entry, and
``next`` links every entry to the previous one of its hash.
Keys are compared byte for byte, so two keys that share a hash stay apart.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["GOLDEN", "encode_rows", "fnv1a", "keep_first", "link", "spread"]

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_I64_MIN = np.iinfo(np.int64).min
_I64_MAX = np.iinfo(np.int64).max


@numba.njit(cache=True, nogil=True)
def fnv1a(offsets: np.ndarray, data: np.ndarray) -> np.ndarray:
    """The FNV-1a hash of each byte string ``data[offsets[i]:offsets[i + 1]]``."""
    n = len(offsets) - 1
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        h = FNV_OFFSET
        for j in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(data[j])) * FNV_PRIME
        out[i] = np.int64(h)
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def spread(value: np.int64) -> np.uint64:
    """``value`` scattered over 64 bits (mask it for a table slot)."""
    z = np.uint64(value) * GOLDEN
    return z ^ (z >> np.uint64(29))


@numba.njit(cache=True, nogil=True)
def encode_rows(offsets: np.ndarray, data: np.ndarray, valid: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Each valid row's values as one byte string: per column a 4-byte length, then
    the bytes (so ``("ab", "c")`` and ``("a", "bc")`` differ); an invalid row is empty.

    ``offsets`` is int64 ``[columns, rows + 1]``, each column's offsets into ``data``.
    Returns ``(row_offsets, row_bytes)``.
    """
    columns, rows = offsets.shape[0], offsets.shape[1] - 1
    row_offsets = np.zeros(rows + 1, dtype=np.int64)
    for i in range(rows):
        size = 0
        if valid[i]:
            for c in range(columns):
                size += 4 + offsets[c, i + 1] - offsets[c, i]
        row_offsets[i + 1] = row_offsets[i] + size
    out = np.empty(row_offsets[rows], dtype=np.uint8)
    for i in range(rows):
        if not valid[i]:
            continue
        at = row_offsets[i]
        for c in range(columns):
            lo, hi = offsets[c, i], offsets[c, i + 1]
            size = hi - lo
            for b in range(4):
                out[at + b] = np.uint8((size >> (8 * b)) & 0xFF)
            at += 4
            for j in range(lo, hi):
                out[at] = data[j]
                at += 1
    return row_offsets, out


@numba.njit(cache=True, nogil=True)
def _same(a_bytes: np.ndarray, a_lo: int, a_hi: int, b_bytes: np.ndarray, b_lo: int,
          b_hi: int) -> bool:
    if a_hi - a_lo != b_hi - b_lo:
        return False
    for j in range(a_hi - a_lo):
        if a_bytes[a_lo + j] != b_bytes[b_lo + j]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def keep_first(hashes: np.ndarray, times: np.ndarray, valid: np.ndarray,
               row_offsets: np.ndarray, row_bytes: np.ndarray,
               slots: np.ndarray,
               e_hash: np.ndarray, e_time: np.ndarray, e_next: np.ndarray,
               e_offsets: np.ndarray, e_bytes: np.ndarray,
               entries: int, used: int, visible_from: int, window: int, check: bool
               ) -> tuple[np.ndarray, int, int]:
    """Which rows to keep, in order: a valid row is dropped when an entry with its key
    lies within ``window`` of its time (``|Δt| <= window``), counting the entries
    of the rows kept before it; every valid row kept becomes an entry.

    Entries older than this call count only from ``visible_from`` on (event time).
    ``check=False`` keeps (and adds) every valid row. The arrays must have room
    for every row: entries, bytes, and a table at most half full afterwards.

    Returns ``(keep, entries, used)``: the mask and the new counts of entries and
    of table slots in use.
    """
    mask = np.uint64(len(slots) - 1)
    first_new = entries
    keep = np.ones(len(hashes), dtype=np.bool_)
    for i in range(len(hashes)):
        if not valid[i]:
            continue
        h, t = hashes[i], times[i]
        lo = t - window if t > _I64_MIN + window else _I64_MIN
        hi = t + window if t < _I64_MAX - window else _I64_MAX
        at = spread(h) & mask
        while slots[at, 1] >= 0 and slots[at, 0] != h:
            at = (at + np.uint64(1)) & mask
        head = slots[at, 1]
        if check:
            e = head
            while e >= 0:
                te = e_time[e]
                if lo <= te <= hi and (e >= first_new or te >= visible_from) and _same(
                        e_bytes, e_offsets[e], e_offsets[e + 1],
                        row_bytes, row_offsets[i], row_offsets[i + 1]):
                    keep[i] = False
                    break
                e = e_next[e]
            if not keep[i]:
                continue
        e = entries
        start = e_offsets[e]
        size = row_offsets[i + 1] - row_offsets[i]
        e_bytes[start:start + size] = row_bytes[row_offsets[i]:row_offsets[i + 1]]
        e_offsets[e + 1] = start + size
        e_hash[e], e_time[e], e_next[e] = h, t, head
        if head < 0:
            slots[at, 0] = h
            used += 1
        slots[at, 1] = e
        entries += 1
    return keep, entries, used


@numba.njit(cache=True, nogil=True)
def link(e_hash: np.ndarray, e_next: np.ndarray, entries: int, size: int
         ) -> tuple[np.ndarray, int]:
    """A table of ``size`` slots (a power of two) over the first ``entries`` entries,
    each hash's chain newest first (``e_next`` is filled in). Returns
    ``(slots, used)``."""
    slots = np.full((size, 2), -1, dtype=np.int64)
    mask = np.uint64(size - 1)
    used = 0
    for e in range(entries):
        h = e_hash[e]
        at = spread(h) & mask
        while slots[at, 1] >= 0 and slots[at, 0] != h:
            at = (at + np.uint64(1)) & mask
        if slots[at, 1] < 0:
            slots[at, 0] = h
            used += 1
        e_next[e] = slots[at, 1]
        slots[at, 1] = e
    return slots, used
