"""Join keys as dense integer codes. Arrays in, arrays out.

A key is text (the key values joined); it is hashed with 64-bit FNV-1a over
its UTF-8 bytes (collisions among 2**64 values are not a practical concern for
the key counts of one query), and each distinct hash gets the next dense code
from a table the caller keeps across batches.
"""

from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa
from numba import types
from numba.typed import Dict

__all__ = ["KeyCodes"]

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@numba.njit(cache=True, nogil=True)
def _codes(offsets: np.ndarray, data: np.ndarray, valid: np.ndarray,
           table: Dict, next_code: int) -> tuple[np.ndarray, int]:
    n = len(valid)
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        if not valid[i]:
            out[i] = -1
            continue
        h = _FNV_OFFSET
        for j in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(data[j])) * _FNV_PRIME
        key = np.int64(h)
        code = table.get(key, -1)
        if code < 0:
            code = next_code
            table[key] = code
            next_code += 1
        out[i] = code
    return out, next_code


class KeyCodes:
    """Text keys → dense codes, the same code for the same key in every batch; a null
    key gets -1."""

    def __init__(self) -> None:
        self._table = Dict.empty(key_type=types.int64, value_type=types.int64)
        self._next = 0

    def codes(self, keys: pa.Array) -> np.ndarray:
        if not pa.types.is_string(keys.type):
            keys = keys.cast(pa.string())
        n = len(keys)
        if not n:
            return np.zeros(0, dtype=np.int64)
        validity, offsets_buf, data_buf = keys.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=np.int32)[keys.offset:keys.offset + n + 1]
        data = (np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None
                else np.zeros(0, dtype=np.uint8))
        valid = (np.ones(n, dtype=np.bool_) if validity is None
                 else np.asarray(keys.is_valid(), dtype=np.bool_))
        out, self._next = _codes(offsets.astype(np.int64), data, valid, self._table, self._next)
        return out

    def __len__(self) -> int:
        return self._next
