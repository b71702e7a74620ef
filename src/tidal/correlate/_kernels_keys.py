"""Join keys as dense integer codes. Arrays in, arrays out.

A key is one or more columns. Each column becomes one int64 per row: an
integer (or timestamp, boolean) its value, a float its bits, text the 64-bit
FNV-1a hash of its UTF-8 bytes (each distinct text of a batch hashed once,
through a dictionary encoding). The columns of a key are mixed into one
64-bit value (splitmix64 steps), and each distinct value gets the next dense
code from an open-addressing table kept across batches. Collisions among 2**64 values are not
a practical concern for the key counts of one query. Text and numbers are
different keys (``1`` and ``"1"``); integers, booleans and times that share
their int64 value are one.

A key column that holds several values per row (an array field) makes a row
take part under each of them: :func:`combinations` lists each row's key
combinations (the cross product of its keys' values), which are then coded
like rows.

The hashing itself (FNV-1a, the spreading of a value over a table) lives in
:mod:`tidal.store._kernels_hash`, shared with ingest deduplication.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.errors import QueryError
from tidal.store._kernels_hash import GOLDEN as _GOLDEN
from tidal.store._kernels_hash import fnv1a as _fnv
from tidal.store._kernels_hash import spread as _spread

__all__ = ["KeyCodes", "combinations"]

_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


@numba.njit(cache=True, nogil=True)
def _mix(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """One 64-bit value per row for the pair (``left``, ``right``)."""
    out = np.empty(len(left), dtype=np.int64)
    for i in range(len(left)):
        z = np.uint64(left[i]) * _GOLDEN + np.uint64(right[i])
        z = (z ^ (z >> np.uint64(30))) * _MIX_1
        z = (z ^ (z >> np.uint64(27))) * _MIX_2
        out[i] = np.int64(z ^ (z >> np.uint64(31)))
    return out


@numba.njit(cache=True, nogil=True)
def _dense(values: np.ndarray, valid: np.ndarray, slot_values: np.ndarray,
           slot_codes: np.ndarray, next_code: int) -> tuple[np.ndarray, int]:
    """Each valid value's code from an open-addressing table (``slot_codes`` -1: an
    empty slot; new values get the next codes); -1 where not valid. The table
    must have room for every value."""
    mask = np.uint64(len(slot_values) - 1)
    out = np.empty(len(values), dtype=np.int64)
    for i in range(len(values)):
        if not valid[i]:
            out[i] = -1
            continue
        value = values[i]
        at = _spread(value) & mask
        while True:
            code = slot_codes[at]
            if code < 0:
                slot_values[at] = value
                slot_codes[at] = next_code
                out[i] = next_code
                next_code += 1
                break
            if slot_values[at] == value:
                out[i] = code
                break
            at = (at + np.uint64(1)) & mask
    return out, next_code


@numba.njit(cache=True, nogil=True)
def _rehash(slot_values: np.ndarray, slot_codes: np.ndarray, size: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """The table's entries in a table of ``size`` slots (a power of two)."""
    values = np.zeros(size, dtype=np.int64)
    codes = np.full(size, -1, dtype=np.int64)
    mask = np.uint64(size - 1)
    for i in range(len(slot_values)):
        if slot_codes[i] < 0:
            continue
        at = _spread(slot_values[i]) & mask
        while codes[at] >= 0:
            at = (at + np.uint64(1)) & mask
        values[at] = slot_values[i]
        codes[at] = slot_codes[i]
    return values, codes


@numba.njit(cache=True, nogil=True)
def _renumbered(slot_values: np.ndarray, slot_codes: np.ndarray, new_codes: np.ndarray,
                size: int) -> tuple[np.ndarray, np.ndarray]:
    """The entries whose code ``new_codes`` keeps (>= 0), with their new codes, in a
    table of ``size`` slots (a power of two)."""
    values = np.zeros(size, dtype=np.int64)
    codes = np.full(size, -1, dtype=np.int64)
    mask = np.uint64(size - 1)
    for i in range(len(slot_values)):
        if slot_codes[i] < 0 or new_codes[slot_codes[i]] < 0:
            continue
        at = _spread(slot_values[i]) & mask
        while codes[at] >= 0:
            at = (at + np.uint64(1)) & mask
        values[at] = slot_values[i]
        codes[at] = new_codes[slot_codes[i]]
    return values, codes


def _text_hashes(strings: pa.Array) -> np.ndarray:
    """FNV-1a of each string (nulls: any value; the caller masks them)."""
    if pa.types.is_large_string(strings.type):
        strings = strings.cast(pa.string())
    _, offsets_buf, data_buf = strings.buffers()
    n = len(strings)
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[strings.offset:strings.offset + n + 1]
    data = (np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None
            else np.zeros(0, dtype=np.uint8))
    return _fnv(offsets.astype(np.int64), data)


def _column_values(column: pa.Array) -> np.ndarray:
    """One int64 per row standing for its value (see the module docstring)."""
    kind = column.type
    if pa.types.is_date32(kind) or pa.types.is_time32(kind):
        column, kind = column.cast(pa.int32()), pa.int32()
    if pa.types.is_integer(kind) or pa.types.is_temporal(kind) or pa.types.is_boolean(kind):
        ints = pc.fill_null(column.cast(pa.int64()) if not pa.types.is_int64(kind) else column, 0)
        return np.asarray(ints, dtype=np.int64)
    if pa.types.is_nested(kind):
        raise QueryError(f"a join key must be one value, not {kind} (name a field inside it)")
    if pa.types.is_floating(kind):
        floats = np.asarray(pc.fill_null(column.cast(pa.float64()), 0.0), dtype=np.float64)
        return (floats + 0.0).view(np.int64)  # (-0.0 + 0.0 is 0.0)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _text_hashes(column)  # (hashing the bytes beats encoding them first)
    encoded = column if pa.types.is_dictionary(kind) else pc.dictionary_encode(column)
    dictionary = encoded.dictionary
    if not (pa.types.is_string(dictionary.type) or pa.types.is_large_string(dictionary.type)):
        dictionary = dictionary.cast(pa.string())
    hashes = _text_hashes(dictionary)
    indices = np.asarray(pc.fill_null(encoded.indices, 0), dtype=np.int64)
    return hashes[indices] if len(hashes) else np.zeros(len(column), dtype=np.int64)


class KeyCodes:
    """Keys (one or more columns) → dense codes, the same code for the same key in
    every batch; a key with a null value gets -1."""

    def __init__(self) -> None:
        self._values = np.zeros(1024, dtype=np.int64)
        self._codes = np.full(1024, -1, dtype=np.int64)
        self._next = 0

    def codes(self, columns: Sequence[pa.Array], rows: int) -> np.ndarray:
        """The code of each of ``rows`` rows' key (the ``columns``, each ``rows``
        long; none: every row has the same key)."""
        valid = np.ones(rows, dtype=np.bool_)
        mixed = np.zeros(rows, dtype=np.int64)
        for i, column in enumerate(columns):
            if column.null_count:
                valid &= np.asarray(column.is_valid(), dtype=np.bool_)
            values = _column_values(column)
            mixed = values if i == 0 else _mix(mixed, values)
        size = len(self._codes)
        while 2 * (self._next + rows) > size:  # (at most half full)
            size *= 2
        if size > len(self._codes):
            self._values, self._codes = _rehash(self._values, self._codes, size)
        out, self._next = _dense(mixed, valid, self._values, self._codes, self._next)
        return out

    def keep(self, kept: np.ndarray) -> None:
        """Forget the keys whose code ``kept`` (bool, one per code) says not to keep;
        the others are renumbered 0, 1, ... in their order."""
        count = int(kept.sum())
        new_codes = np.full(self._next, -1, dtype=np.int64)
        new_codes[kept[:self._next]] = np.arange(count)
        size = 1024
        while size < 4 * count:
            size *= 2
        self._values, self._codes = _renumbered(self._values, self._codes, new_codes, size)
        self._next = count

    def __len__(self) -> int:
        return self._next

    @property
    def nbytes(self) -> int:
        """The memory its table holds."""
        return int(self._values.nbytes + self._codes.nbytes)


def combinations(lengths: Sequence[np.ndarray | None], rows: int, cap: int
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The key combinations of ``rows`` rows: the cross product of their keys' values.

    Args:
        lengths: per key, None when it has one value per row (row ``r``'s is at
            ``r``), else int64 ``[rows]``: how many values each row has (row
            ``r``'s are consecutive, after those of the rows before it).
        rows: how many rows.
        cap: the most combinations a row keeps (its first ones).

    Returns:
        ``(parents, gathers)``: int64 ``[m]``, the row of each combination (ascending;
        within a row the last key varies fastest), and per key int64 ``[m]``, the
        index of the combination's value among that key's values.

    >>> parents, gathers = combinations([None, np.array([2, 0, 1])], 3, 10)
    >>> parents.tolist(), [g.tolist() for g in gathers]
    ([0, 0, 2], [[0, 0, 2], [0, 1, 2]])
    """
    parents = np.arange(rows, dtype=np.int64)
    gathers: list[np.ndarray] = []
    for count in lengths:
        if count is None:
            gathers.append(parents)
            continue
        starts = np.cumsum(count) - count
        reps = count[parents]
        within = np.arange(int(reps.sum()), dtype=np.int64) - np.repeat(np.cumsum(reps) - reps,
                                                                       reps)
        gathers = [np.repeat(g, reps) for g in gathers]
        gathers.append(np.repeat(starts[parents], reps) + within)
        parents = np.repeat(parents, reps)
        per_row = np.bincount(parents, minlength=rows)
        rank = np.arange(len(parents)) - (np.cumsum(per_row) - per_row)[parents]
        if rank.size and rank.max() >= cap:
            keep = rank < cap
            parents, gathers = parents[keep], [g[keep] for g in gathers]
    return parents, gathers
