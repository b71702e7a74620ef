"""The nesting limit: events nested deeper than :data:`MAX_DEPTH` levels are refused.

Depth counts objects and arrays from the event itself: ``{"a": 1}`` is 1,
``{"a": {"b": 1}}`` and ``{"a": [1]}`` are 2. Why 32: Arrow IPC, the WAL's
format, refuses more than 64 levels of nesting (a map level costs Arrow two);
Python and msgspec recurse once per level; pyarrow's JSON reader slows down
with depth (one 10,000-level line costs it a second) and crashes the process
(stack overflow) by 20,000; ``pa.array`` spends a minute on one 10,000-level
dict. Real events (Kubernetes objects, cloud audit logs, OpenTelemetry) stay
near 10; Elasticsearch refuses mappings deeper than 20 by default. 32 keeps every
plausible event and every component far from its limit.

Each input path checks where it is cheap:

* NDJSON: before pyarrow parses anything, lines that may hold
  :data:`PARSE_SAFE_OPENS` opening brackets (found per 512-byte block, and
  only around blocks without a newline, so only in lines of 1 KiB or more) are
  scanned by :func:`line_depths`, and deep ones never reach pyarrow. The rest
  is parsed; only when the decoded schema is too deep are the lines scanned to
  find the culprits. Input of short lines costs one test per 512 bytes on the
  newline mask the line count computes anyway.
* JSON arrays: items are NDJSON lines; a document too deep for msgspec to split
  is split by :func:`array_items`.
* Python records (and object columns of pandas DataFrames): :func:`deep_records`
  walks the values breadth-first with C-level iteration, one level at a time,
  before ``pa.array`` sees them.
* Arrow tables, Parquet, IPC, DataFrames: :func:`deep_field` reads the type;
  a type applies to every row, so the whole input is refused (DecodeError).

Nothing here recurses on the data, so no input reaches a ``RecursionError``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from itertools import chain, compress, repeat
from typing import Any

import numpy as np
import pyarrow as pa

from tidal.errors import DecodeError
from tidal.ingest._kernels import array_items, line_depths

__all__ = [
    "LONG_LINE_BYTES",
    "MAX_DEPTH",
    "PARSE_SAFE_OPENS",
    "TOO_DEEP",
    "array_items",
    "check_table",
    "deep_field",
    "deep_records",
    "deep_lines",
    "line_depths",
    "newline_free_blocks",
    "risky_spans",
]

MAX_DEPTH = 32
TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"
PARSE_SAFE_OPENS = 1024
"""pyarrow's JSON reader parses a line with fewer opening brackets (so fewer levels)
in milliseconds; a line with more is scanned before it may parse it: one line of
2,000 nested arrays costs it a quarter of a second, 16,000 cost 45 s, and 20,000
nested objects crash the process (stack overflow)."""
LONG_LINE_BYTES = PARSE_SAFE_OPENS // 2
"""Every NDJSON line of ``2 * LONG_LINE_BYTES - 1`` bytes or more, so every line that
may hold :data:`PARSE_SAFE_OPENS` brackets, contains an aligned run of this many
bytes without a newline: :func:`risky_spans` starts from those runs."""

_NL = 10
_SCAN_BYTES = 1 << 20
_GAP_BYTES = 64 << 10
_CONTAINERS = (dict, list, tuple)


# ----------------------------------------------------------------- Arrow types


def _members(t: pa.DataType) -> tuple[bool, list[tuple[str, pa.DataType]]]:
    """Whether ``t`` nests (adds a level) and the (path suffix, type) inside it."""
    if pa.types.is_struct(t):
        return True, [(f".{t.field(i).name}", t.field(i).type) for i in range(t.num_fields)]
    if pa.types.is_map(t):
        return True, [("[].key", t.key_type), ("[].value", t.item_type)]
    if (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
            or pa.types.is_list_view(t) or pa.types.is_large_list_view(t)):
        return True, [("[]", t.value_type)]
    if pa.types.is_union(t):
        return True, [(f".{t.field(i).name}", t.field(i).type) for i in range(t.num_fields)]
    if pa.types.is_dictionary(t):
        return False, [("", t.value_type)]
    if pa.types.is_run_end_encoded(t):
        return False, [("", t.value_type)]
    if isinstance(t, pa.BaseExtensionType):
        return False, [("", t.storage_type)]
    return False, []


def deep_field(schema: pa.Schema, limit: int = MAX_DEPTH) -> str | None:
    """The path of the first field whose values nest deeper than ``limit``, or None.

    A top-level column is at depth 1; its values add a level when they are
    objects (structs, maps) or arrays. Iterative, and never descends past ``limit``.

    Example:
        >>> deep_field(pa.schema([("a", pa.list_(pa.struct([("b", pa.int8())])))]), 2)
        'a[]'
        >>> deep_field(pa.schema([("a", pa.struct([("b", pa.int8())]))]), 2) is None
        True
    """
    stack = [(f.type, 1, f.name) for f in reversed(schema)]
    while stack:
        t, depth, path = stack.pop()
        nests, members = _members(t)
        if nests:
            depth += 1
            if depth > limit:
                return path
        stack.extend((m, depth, path + suffix) for suffix, m in reversed(members))
    return None


@functools.lru_cache(maxsize=256)
def _deep_field_of(schema: pa.Schema) -> str | None:
    return deep_field(schema)  # appends of one source repeat one schema: check it once


def check_table(table: pa.Table, source: str | None) -> pa.Table:
    """``table`` if its type nests at most :data:`MAX_DEPTH` levels, else DecodeError."""
    path = _deep_field_of(table.schema)
    if path is not None:
        raise DecodeError(f"cannot decode {source or 'input'}: field {path!r} is {TOO_DEEP}",
                          source=source)
    return table


# -------------------------------------------------------------- Python values


def _inner(level: list[Any], roots: list[int] | None = None
           ) -> tuple[list[Any], list[int] | None]:
    """The values directly inside the containers of ``level`` (with the root each came
    from, when ``roots`` gives the roots of ``level``).

    Iterates in C and keeps no per-container objects (views would feed the garbage
    collector, which then walks every record again and again).
    """
    types = list(map(type, level))
    kinds = set(types)
    mappings = {k for k in kinds if issubclass(k, dict)}
    if kinds != mappings:  # mixed: mappings first, then sequences
        is_mapping = list(map(mappings.__contains__, types))
        is_sequence = list(map((kinds - mappings).__contains__, types))
        if roots is not None:
            roots = [*compress(roots, is_mapping), *compress(roots, is_sequence)]
        level = [*compress(level, is_mapping), *compress(level, is_sequence)]
        split = len(level) - sum(is_sequence)
        inner = list(chain(chain.from_iterable(map(dict.values, level[:split])),
                           chain.from_iterable(level[split:])))
    else:
        inner = list(chain.from_iterable(map(dict.values, level)))
    if roots is None:
        return inner, None
    return inner, list(chain.from_iterable(map(repeat, roots, map(len, level))))


def _containers(values: list[Any]) -> list[bool] | None:
    """Which of ``values`` are objects or arrays; None when none is."""
    types = list(map(type, values))
    nested = {k for k in set(types) if issubclass(k, _CONTAINERS)}
    return list(map(nested.__contains__, types)) if nested else None


def _nested_inside(level: list[Any]) -> list[Any]:
    """The objects and arrays directly inside the containers of ``level``."""
    def values() -> Iterator[Any]:
        if all(map(isinstance, level, repeat(dict))):
            return chain.from_iterable(map(dict.values, level))
        return chain.from_iterable(v.values() if isinstance(v, dict) else v for v in level)

    types = list(map(type, values()))  # no list of the values themselves: most are scalars
    nested = {k for k in set(types) if issubclass(k, _CONTAINERS)}
    return list(compress(values(), map(nested.__contains__, types))) if nested else []


def deep_records(values: Sequence[object], *, depth: int = 1,
                 limit: int = MAX_DEPTH) -> list[int]:
    """Indices of ``values`` (each at ``depth``: 1 for an event) that nest deeper than ``limit``.

    Dicts are objects; lists and tuples are arrays. Walks level by level with
    C-level iteration and stops past ``limit``, so even a dict that contains
    itself is just too deep.

    Example:
        >>> deep_records([{"a": 1}, {"a": {"b": [1]}}, {"a": {}}], limit=2)
        [1]
    """
    everything = list(values)
    flags = _containers(everything)
    level = list(compress(everything, flags)) if flags is not None else []
    top = depth
    while level:
        if depth > limit:  # some value is too deep: find which, remembering roots
            return _roots_too_deep(everything, depth - top)
        level = _nested_inside(level)
        depth += 1
    return []


def _roots_too_deep(values: list[Any], levels: int) -> list[int]:
    """Indices of ``values`` holding containers ``levels`` levels below their own."""
    flags = _containers(values)
    if flags is None:
        return []
    level = list(compress(values, flags))
    roots = list(compress(range(len(values)), flags))
    for _ in range(levels):
        inner, inner_roots = _inner(level, roots)
        assert inner_roots is not None
        flags = _containers(inner)
        if flags is None:
            return []
        level = list(compress(inner, flags))
        roots = list(compress(inner_roots, flags))
    return sorted(set(roots))


# ------------------------------------------------------------------ JSON text


def newline_free_blocks(newline: np.ndarray, block: int = LONG_LINE_BYTES) -> np.ndarray:
    """For a window's newline mask: whether each whole ``block`` of it holds no newline."""
    whole = newline.size // block * block
    words = newline[:whole].view(np.uint64).reshape(-1, block // 8)
    return words.sum(axis=1, dtype=np.uint64) == 0  # bytes are 0 or 1: no lane overflows


def risky_spans(arr: np.ndarray, start: int, free: np.ndarray,
                block: int = LONG_LINE_BYTES) -> np.ndarray:
    """Byte ranges ``[[lo, hi], ...]`` of ``arr`` holding every line that may have
    :data:`PARSE_SAFE_OPENS` opening brackets or more; ``free`` flags the aligned
    ``block``-byte blocks from ``start`` without a newline (:func:`newline_free_blocks`).

    Such a line is at least ``2 * block - 1`` bytes long, so it covers a run of
    free blocks and, at most, the two blocks around the run. Brackets are counted
    per block (strings included), only near free blocks: the sum over a run and
    its two neighbours bounds the brackets of any line there.
    """
    if not free.any():
        return np.empty((0, 2), dtype=np.int64)
    free = np.append(free, False)  # the bytes after the last whole block, if any
    near = free.copy()
    near[1:] |= free[:-1]
    near[:-1] |= free[1:]
    opens = np.zeros(free.size, dtype=np.int64)
    per_window = _SCAN_BYTES // block
    for w in np.unique(np.flatnonzero(near) // per_window).tolist():
        first = w * per_window  # count the opening brackets per block of this window
        count = min(per_window, free.size - 1 - first)
        if count <= 0:
            continue  # only the tail is here
        lo = start + first * block
        chunk = (arr[lo : lo + count * block] | 0x20) == ord("{")
        # Sum each block's 8-byte words: every byte lane adds block / 8 zeros and ones.
        lanes = chunk.view(np.uint64).reshape(count, -1).sum(axis=1, dtype=np.uint64)
        opens[first : first + count] = lanes.view(np.uint8).reshape(count, 8).sum(axis=1)
    if near[-1]:
        opens[-1] = np.count_nonzero((arr[start + (free.size - 1) * block :] | 0x20) == ord("{"))
    edges = np.diff(free.astype(np.int8), prepend=0)
    first, last = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1  # runs
    lo, hi = np.maximum(first - 1, 0), last + 1
    total = np.concatenate([[0], np.cumsum(opens)])
    risky = total[hi + 1] - total[lo] >= PARSE_SAFE_OPENS
    spans = np.stack([lo[risky] * block, (hi[risky] + 1) * block], axis=1) + start
    return np.minimum(spans, arr.size)


def _spans(starts: np.ndarray, ends: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
    """``rows`` (sorted line indices) cut where lines lie more than :data:`_GAP_BYTES` apart."""
    gaps = starts[rows[1:]] - ends[rows[:-1]]
    return np.split(rows, np.flatnonzero(gaps > _GAP_BYTES) + 1)


def deep_lines(arr: np.ndarray, starts: np.ndarray, ends: np.ndarray,
               rows: np.ndarray) -> np.ndarray:
    """Those of line indices ``rows`` (sorted) whose text nests deeper than :data:`MAX_DEPTH`.

    Rows less than :data:`_GAP_BYTES` apart are scanned as one span, lines between included.
    """
    if rows.size == 0:
        return rows
    out: list[np.ndarray] = []
    for run in _spans(starts, ends, rows):
        first, last = int(run[0]), int(run[-1])
        depths = line_depths(arr[int(starts[first]) : int(ends[last])])
        out.append(run[depths[run - first] > MAX_DEPTH])
    return np.concatenate(out)
