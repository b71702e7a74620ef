"""NDJSON → one Arrow table, with every bad line reported.

How it works:

* **Fast path.** ``pyarrow.json.read_json`` parses the whole buffer in parallel
  blocks of 16 MiB (grown to the longest line when a line straddles blocks).
  A numpy scan of the newline positions then checks that every non-blank line
  gave exactly one row, which yields ``lines``.
* **Slow path**, only when the fast path fails. The buffer is split into lines
  with numpy; each non-blank line is checked with msgspec (invalid JSON, not a
  JSON object). The good lines are parsed by pyarrow in chunks of at most
  16 MiB. When pyarrow reports a *type conflict* at a path (``Column(/a)
  changed from number to string``), the chunk's rows are partitioned by the
  JSON kind of the value at that path and each part is parsed on its own; the
  parts are joined by :func:`tidal.model.schema.concat_tables`, which widens
  (int → float, anything else → string), and put back in input order. Other
  errors split the chunk at the row pyarrow names (or in halves). A row that
  pyarrow refuses on its own is re-encoded from its decoded value, so a
  duplicate key keeps its *last* value and a list of mixed kinds becomes its
  JSON text; if pyarrow still refuses it, it is a problem.
* **Nesting.** A line nested deeper than :data:`~tidal.ingest.nesting.MAX_DEPTH`
  levels is a problem. Lines that could hurt pyarrow (1,024 brackets or more) are
  found before parsing, per 512-byte block, and scanned; the rest are caught by
  the decoded schema, and only then are lines scanned (see :mod:`tidal.ingest.nesting`).

Semantics: blank (whitespace-only) lines, ``\\r\\n`` and a UTF-8 BOM are fine and
not problems. Two objects on one line are a problem. ``NaN``/``Infinity``
literals, which pyarrow accepts, are accepted on both paths. pyarrow infers
``timestamp[s]`` for whole-second ISO 8601 strings (converting offsets to UTC);
such columns are tagged ``tz="UTC"``. Integers beyond int64 become float64.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.json as pj

from tidal.errors import Problem
from tidal.ingest.arrow_json import read_json
from tidal.ingest.nesting import (
    TOO_DEEP,
    deep_field,
    deep_lines,
    newline_free_blocks,
    risky_spans,
)
from tidal.model.schema import concat_tables

__all__ = [
    "BLOCK_BYTES",
    "MAX_RAW_BYTES",
    "STREAM_BLOCK_BYTES",
    "Decoded",
    "decode_ndjson",
    "decode_ndjson_blocks",
    "line_blocks",
    "read_line_blocks",
    "empty_decoded",
    "raw_text",
    "utc_timestamps",
]

MAX_RAW_BYTES = 64 << 10
BLOCK_BYTES = 16 << 20
STREAM_BLOCK_BYTES = 32 << 20
"""The size of the blocks a large input is decoded and stored in, one after another."""
_MAX_BLOCK = (1 << 31) - 1
_SCAN_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"
_NL, _LBRACE = 10, ord("{")
_NL_BRACE = _NL | _LBRACE << 8  # b"\n{" read as little-endian uint16
_WS = np.zeros(256, dtype=bool)
_WS[[9, 10, 13, 32]] = True
_PARSE_ERRORS = (pa.ArrowException, UnicodeDecodeError, ValueError)
_CONFLICT = re.compile(r"Column\((?P<path>.*)\) changed from \w+ to \w+", re.DOTALL)
_ROW = re.compile(r"in row (\d+)\s*$")
_LENIENT = re.compile(rb"NaN|Infinity")
_raw_decoder = msgspec.json.Decoder(msgspec.Raw)
_decoder = msgspec.json.Decoder()
_NO_LINES = np.empty(0, np.int64)
_END = object()
T = TypeVar("T")


@dataclass
class Decoded:
    """The result of decoding one input.

    Attributes:
        table: the good rows, in input order.
        problems: every bad line or record, ordered by line.
        lines: int64, row ``i`` came from input line ``lines[i]`` (1-based); None
            when rows are the input records 1:1 and there is no line notion.
        source: a file path or a short description of the input.
    """

    table: pa.Table
    problems: list[Problem]
    lines: np.ndarray | None
    source: str | None


def empty_decoded(source: str | None, *, lines: bool = False) -> Decoded:
    """An empty table without problems (``lines`` an empty array if asked)."""
    return Decoded(pa.table({}), [], np.empty(0, np.int64) if lines else None, source)


def raw_text(raw: bytes) -> str:
    """``raw`` as text for a problem report, cut to :data:`MAX_RAW_BYTES`."""
    return raw[:MAX_RAW_BYTES].decode("utf-8", errors="replace").rstrip("\r")


def decode_ndjson(
    data: bytes | bytearray | memoryview | str | pa.Buffer, *, source: str | None = "ndjson bytes"
) -> Decoded:
    """Decode newline-delimited JSON objects into one table.

    Example:
        >>> d = decode_ndjson(b'{"a": 1}\\n\\nnot json\\n{"a": 2.5}\\n')
        >>> d.table.to_pylist(), d.lines.tolist(), [p.line for p in d.problems]
        ([{'a': 1.0}, {'a': 2.5}], [1, 4], [3])
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    return _decode_all(data, source)


def decode_ndjson_blocks(blocks: Iterable[pa.Buffer], *, source: str | None
                         ) -> Iterator[Decoded]:
    """Decode NDJSON that comes in ``blocks`` of whole lines (see :func:`line_blocks`,
    :func:`read_line_blocks`), one block per step, so that a caller can store a block
    while the next is decoded. The next block is read and surveyed (lines counted,
    UTF-8 checked) on a helper thread while this one is parsed.

    Each block is decoded as :func:`decode_ndjson` decodes a whole input (its
    own column types: a later block may widen them, as a later append would);
    line numbers count from the start of the first block.
    """
    first_line = 0
    for surveyed in _one_ahead(map(_Surveyed.of, blocks)):
        if surveyed is None:  # an empty block
            continue
        decoded = surveyed.decode(source)
        yield _after_line(decoded, first_line) if first_line else decoded
        first_line += surveyed.counts[0]


def line_blocks(data: pa.Buffer, block_bytes: int | None = None) -> Iterator[pa.Buffer]:
    """``data`` cut after the first newline past every ``block_bytes`` (default
    :data:`STREAM_BLOCK_BYTES`); slices, not copies."""
    arr = np.frombuffer(data, dtype=np.uint8)
    step = block_bytes or STREAM_BLOCK_BYTES
    pos = 0
    while pos < arr.size:
        stop = _line_end(arr, pos + step)
        yield data.slice(pos, stop - pos)
        pos = stop


def read_line_blocks(file: io.RawIOBase, block_bytes: int | None = None) -> Iterator[pa.Buffer]:
    """The bytes of ``file`` (opened unbuffered) in blocks of whole lines: each read of
    about ``block_bytes`` (default :data:`STREAM_BLOCK_BYTES`) is cut after its last
    newline, and the rest starts the next block (a line longer than a block grows
    it). Closes ``file`` at the end."""
    step = block_bytes or STREAM_BLOCK_BYTES
    carry = b""
    with file:
        while True:
            block = pa.allocate_buffer(len(carry) + step)
            view = memoryview(block).cast("B")
            view[: len(carry)] = carry
            got = file.readinto(view[len(carry):]) or 0
            size = len(carry) + got
            if not got:
                break
            cut = _last_line_end(np.frombuffer(block, dtype=np.uint8, count=size))
            if cut:
                yield block.slice(0, cut)
            carry = bytes(view[cut:size])
    if carry:
        yield pa.py_buffer(carry)


def _last_line_end(arr: np.ndarray) -> int:
    """The offset just past the last newline in ``arr`` (0: there is none)."""
    stop = arr.size
    while stop > 0:
        start = max(0, stop - _SCAN_BYTES)
        found = np.flatnonzero(arr[start:stop] == _NL)
        if found.size:
            return start + int(found[-1]) + 1
        stop = start
    return 0


def _one_ahead(items: Iterator[T]) -> Iterator[T]:
    """``items``, each next one made on a helper thread while the caller uses this one."""
    pool = _ahead_pool()
    pending = pool.submit(next, items, _END)
    while True:
        item = pending.result()
        if item is _END:
            return
        pending = pool.submit(next, items, _END)
        yield item  # type: ignore[misc]


@functools.cache
def _ahead_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(1, thread_name_prefix="tidal-ndjson-ahead")


os.register_at_fork(after_in_child=_ahead_pool.cache_clear)  # its thread is not forked


def _line_end(arr: np.ndarray, at: int) -> int:
    """The offset just past the first newline at or after ``at`` (else the end)."""
    while at < arr.size:
        window = arr[at : at + _SCAN_BYTES]
        found = np.flatnonzero(window == _NL)
        if found.size:
            return at + int(found[0]) + 1
        at += window.size
    return arr.size


def _after_line(decoded: Decoded, offset: int) -> Decoded:
    """``decoded`` with its line numbers moved on by ``offset`` lines."""
    problems = [replace(p, line=p.line + offset) for p in decoded.problems]
    lines = decoded.lines + offset if decoded.lines is not None else None
    return Decoded(decoded.table, problems, lines, decoded.source)


def _decode_all(data: bytes | bytearray | memoryview | pa.Buffer, source: str | None
                ) -> Decoded:
    surveyed = _Surveyed.of(data)
    return surveyed.decode(source) if surveyed is not None else empty_decoded(source, lines=True)


@dataclass
class _Surveyed:
    """An input's bytes and what a pass over them found, before any parsing: its
    line counts, whether it is valid UTF-8, and the lines nested deep enough to hurt
    pyarrow."""

    data: bytes | bytearray | memoryview | pa.Buffer
    buf: pa.Buffer
    arr: np.ndarray
    start: int  # past a BOM
    utf8: bool
    counts: tuple[int, int]  # lines, lines starting with "{"
    bounds: tuple[np.ndarray, np.ndarray] | None
    deep: np.ndarray

    @classmethod
    def of(cls, data: bytes | bytearray | memoryview | pa.Buffer) -> _Surveyed | None:
        """Survey ``data``; None when it holds nothing (or only a BOM)."""
        buf = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
        arr = np.frombuffer(buf, dtype=np.uint8)
        start = 3 if arr[:3].tobytes() == _BOM else 0
        if arr.size == start:
            return None
        utf8 = _valid_utf8(buf.slice(start))  # pyarrow.json passes invalid UTF-8 on
        counts, free = _survey(arr, start)
        bounds, deep = None, _NO_LINES
        risky = risky_spans(arr, start, free)
        if risky.size:  # lines that may nest deep enough to hurt pyarrow: find the deep ones
            bounds = _line_bounds(arr, start)
            rows = np.unique(np.concatenate([
                np.arange(a, b + 1) for a, b in (np.searchsorted(bounds[0], risky, "right") - 1)]))
            deep = deep_lines(arr, *bounds, rows)
        return cls(data, buf, arr, start, utf8, counts, bounds, deep)

    def decode(self, source: str | None) -> Decoded:
        """Parse: pyarrow's fast path, else the slow path that finds every bad line."""
        arr, start, counts = self.arr, self.start, self.counts
        body = self.buf.slice(start)
        bounds = self.bounds
        table, error = (_read(body, _parse_block(body.size)) if self.utf8 and not self.deep.size
                        else (None, ""))
        if table is None and "straddl" in error:
            bounds = bounds or _line_bounds(arr, start)
            longest = int(np.max(bounds[1] - bounds[0]))
            table, error = _read(body, min(max(longest + 2, BLOCK_BYTES), _MAX_BLOCK))
        if table is not None and deep_field(table.schema) is not None:
            table = None  # a short line nests too deep: the slow path finds it
        if table is not None:
            rows = table.num_rows
            if counts == (rows, rows):  # every line one object: the usual case
                return Decoded(utc_timestamps(table), [], np.arange(1, rows + 1, dtype=np.int64),
                               source)
            bounds = bounds or _line_bounds(arr, start)
            lines = _nonblank_lines(arr, *bounds, rows)
            if lines is not None:
                return Decoded(utc_timestamps(table), [], lines, source)
        starts, ends = bounds or _line_bounds(arr, start)
        raw = self.data if isinstance(self.data, bytes) else self.buf.to_pybytes()
        slow = _SlowDecoder(raw, arr, starts, ends, check_utf8=not self.utf8, deep=self.deep)
        return slow.run(source)


def _survey(arr: np.ndarray, start: int, window: int = _SCAN_BYTES
            ) -> tuple[tuple[int, int], np.ndarray]:
    """How many lines ``arr[start:]`` has and how many start with ``{``; and which aligned
    runs of :data:`LONG_LINE_BYTES` hold no newline (see :func:`~tidal.ingest.nesting.risky_spans`).

    Counts newline-brace pairs through two unaligned ``uint16`` views per window, which
    is cheaper than locating every newline. ``window`` must be a multiple of
    :data:`LONG_LINE_BYTES` for the runs to be found.
    """
    n = arr.size
    lines = int(arr[n - 1] != _NL) if n > start else 0
    braced = int(n > start and arr[start] == _LBRACE)
    free: list[np.ndarray] = []
    for i in range(start, n, window):
        stop = min(i + window, n)
        newline = arr[i:stop] == _NL
        lines += int(np.count_nonzero(newline))
        free.append(newline_free_blocks(newline))
        pairs = arr[i : min(stop + 1, n)]  # pairs (p, p + 1) for p in [i, stop)
        k = pairs.size - 1
        even = pairs[: 2 * ((k + 1) // 2)].view("<u2")
        odd = pairs[1 : 1 + 2 * (k // 2)].view("<u2")
        braced += int(np.count_nonzero(even == _NL_BRACE) + np.count_nonzero(odd == _NL_BRACE))
    return (lines, braced), np.concatenate(free) if free else np.zeros(0, dtype=bool)


def _count_lines(arr: np.ndarray, start: int, window: int = _SCAN_BYTES) -> tuple[int, int]:
    """How many lines ``arr[start:]`` has, and how many of them start with ``{``."""
    return _survey(arr, start, window)[0]


def _valid_utf8(buf: pa.Buffer) -> bool:
    """Whether ``buf`` is valid UTF-8 (Arrow's SIMD validation, no copy)."""
    offsets = pa.py_buffer(np.array([0, buf.size], dtype=np.int64))
    text = pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, buf])
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def utc_timestamps(table: pa.Table) -> pa.Table:
    """Tag naive timestamp columns (also nested) as UTC; a no-op without any."""
    fields = [f.with_type(_utc_type(f.type)) for f in table.schema]
    if all(f.type == old.type for f, old in zip(fields, table.schema, strict=True)):
        return table
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def _utc_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(t) and t.tz is None:
        return pa.timestamp(t.unit, "UTC")
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_utc_type(f.type)) for f in t])
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(_utc_type(t.value_type)))
    if pa.types.is_large_list(t):
        return pa.large_list(t.value_field.with_type(_utc_type(t.value_type)))
    return t


def _parse_block(size: int) -> int:
    """pyarrow's block size for ``size`` bytes: at most :data:`BLOCK_BYTES`, and small
    enough that two threads share the work (each block is parsed by one)."""
    return max(1 << 20, min(BLOCK_BYTES, size // 2 + 1))


def _read(body: pa.Buffer, block_size: int) -> tuple[pa.Table | None, str]:
    """``read_json`` over ``body``: the table, or None and the error message."""
    try:
        opts = pj.ReadOptions(block_size=block_size)
        return read_json(body, opts), ""
    except _PARSE_ERRORS as exc:
        return None, str(exc)


def _line_bounds(arr: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive, before ``\\n``) offsets of every line.

    A final empty segment after a trailing newline is not a line. The scan runs
    in cache-sized windows.
    """
    parts = [
        np.flatnonzero(arr[i : i + _SCAN_BYTES] == _NL) + i
        for i in range(start, arr.size, _SCAN_BYTES)
    ]
    nl = np.concatenate(parts) if parts else np.empty(0, np.int64)
    starts = np.concatenate([np.array([start], np.int64), nl + 1])
    ends = np.concatenate([nl, np.array([arr.size], np.int64)])
    if starts[-1] >= arr.size:
        starts, ends = starts[:-1], ends[:-1]
    return starts, ends


def _nonblank(arr: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Bool mask of lines holding something besides whitespace."""
    keep = ~_WS[arr[starts]]  # an empty line's first byte is its own "\n"
    for i in np.flatnonzero(~keep).tolist():  # rare: blank or indented lines
        keep[i] = bool(arr[starts[i] : ends[i]].tobytes().strip())
    return keep


def _nonblank_lines(
    arr: np.ndarray, starts: np.ndarray, ends: np.ndarray, rows: int
) -> np.ndarray | None:
    """Line numbers of the fast path's rows, or None if lines and rows disagree."""
    keep = np.flatnonzero(_nonblank(arr, starts, ends))
    # Each non-blank line gives at least one row, so equal counts mean one each.
    return keep.astype(np.int64) + 1 if keep.size == rows else None


def _kind(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, dict) else "array"


def _kinds_at(value: object, rest: str, out: set[str]) -> None:
    """Collect the JSON kinds of the values at pyarrow path ``rest`` (``/a/[]/b``)."""
    if not rest:
        kind = _kind(value)
        if kind is not None:
            out.add(kind)
    elif isinstance(value, dict):
        # Direct lookups; a key holding "/" is found only when it ends the path
        # (else the rows are not partitioned, which is slower but still right).
        name, slash, tail = rest[1:].partition("/")
        if name in value:
            _kinds_at(value[name], slash + tail, out)
        elif slash and rest[1:] in value:
            _kinds_at(value[rest[1:]], "", out)
    elif isinstance(value, list) and (rest == "/[]" or rest.startswith("/[]/")):
        for child in value:
            _kinds_at(child, rest[3:], out)


def _stringify_list(value: object, rest: str) -> bool:
    """Replace the outermost list on path ``rest`` by its JSON text; True if done."""
    if not isinstance(value, dict):
        return False
    for key, child in value.items():
        p = "/" + str(key)
        if rest.startswith(p + "/[]") and isinstance(child, list):
            value[key] = json.dumps(child, ensure_ascii=False, separators=(",", ":"))
            return True
        if rest.startswith(p + "/") and _stringify_list(child, rest[len(p) :]):
            return True
    return False


class _SlowDecoder:
    """Locate bad lines and decode the good ones in columnar chunks."""

    def __init__(
        self,
        data: bytes,
        arr: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        *,
        check_utf8: bool,
        deep: np.ndarray = _NO_LINES,
    ):
        self.data, self.buf, self.arr = data, pa.py_buffer(data), arr
        self.bounds = starts, ends
        self.starts: list[int] = starts.tolist()
        self.ends: list[int] = ends.tolist()
        self.deep = deep  # lines known to nest too deep: pyarrow must not see them
        self.nonblank = _nonblank(arr, starts, ends)
        self.chunk_starts = np.flatnonzero(np.diff(ends // BLOCK_BYTES)) + 1
        self.check_utf8 = check_utf8
        self.problems: list[Problem] = []
        self.pieces: list[tuple[pa.Table, np.ndarray]] = []
        self.objects: dict[int, Any] = {}

    def line(self, i: int) -> bytes:
        return self.data[self.starts[i] : self.ends[i]]

    def problem(self, i: int, reason: str) -> None:
        self.problems.append(Problem(i + 1, reason, raw=raw_text(self.line(i))))

    def run(self, source: str | None) -> Decoded:
        bounds = [0, *self.chunk_starts.tolist(), len(self.starts)]
        ranges = list(zip(bounds[:-1], bounds[1:], strict=True))
        workers = min(pa.cpu_count(), len(ranges))
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:  # pyarrow parses without the GIL
                parsed_ranges = list(pool.map(self.parse_range, ranges))
        else:
            parsed_ranges = [self.parse_range(r) for r in ranges]
        for (a, b), parsed in zip(ranges, parsed_ranges, strict=True):
            rows = np.flatnonzero(self.nonblank[a:b]) + a
            if parsed is not None:
                if rows.size:
                    self.pieces.append((parsed, rows))
                continue
            stack = [self.classify(rows)]
            while stack:
                stack.extend(self.step(stack.pop())[::-1])
        self.problems.sort(key=lambda p: p.line)
        if not self.pieces:
            return Decoded(pa.table({}), self.problems, np.empty(0, np.int64), source)
        rows = np.concatenate([r for _, r in self.pieces])
        tables = [t for t, _ in self.pieces]
        table = tables[0] if len(tables) == 1 else concat_tables(tables)
        if rows.size > 1 and bool(np.any(rows[1:] < rows[:-1])):
            order = np.argsort(rows, kind="stable")
            table, rows = table.take(pa.array(order)), rows[order]
        return Decoded(table, self.problems, rows.astype(np.int64) + 1, source)

    def parse_range(self, bounds: tuple[int, int]) -> pa.Table | None:
        """Parse lines ``a:b`` as one slice; None unless each non-blank line is one row."""
        a, b = bounds
        if np.searchsorted(self.deep, a) < np.searchsorted(self.deep, b):
            return None
        body = self.buf.slice(self.starts[a], self.ends[b - 1] - self.starts[a])
        if self.check_utf8 and not _valid_utf8(body):
            return None
        try:
            return self.parse_body(body, int(np.count_nonzero(self.nonblank[a:b])))
        except _PARSE_ERRORS:
            return None

    def classify(self, rows: np.ndarray) -> np.ndarray:
        """Those of ``rows`` (non-blank lines) that hold one JSON object; report the others."""
        braced = self.arr[np.asarray(self.starts)[rows]] == _LBRACE if rows.size else rows
        ok = np.zeros(rows.size, dtype=bool)
        deep = set(deep_lines(self.arr, *self.bounds, rows).tolist())
        for j, i in enumerate(rows.tolist()):
            if i in deep:
                self.problem(i, TOO_DEEP)
                continue
            line = self.line(i)
            try:
                _raw_decoder.decode(line)
                if self.check_utf8:
                    line.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.problem(i, f"invalid JSON: {exc}")
                continue
            except msgspec.DecodeError as exc:
                ok[j] = self.lenient(i, line, exc)
                continue
            if braced[j] or line.lstrip().startswith(b"{"):
                ok[j] = True
            else:
                self.problem(i, "not a JSON object")
        return rows[ok]

    def lenient(self, i: int, line: bytes, exc: Exception) -> bool:
        """Accept a line msgspec refuses only for ``NaN``/``Infinity``, as pyarrow does."""
        if _LENIENT.search(line):
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                self.objects[i] = obj
                return True
        self.problem(i, f"invalid JSON: {exc}")
        return False

    def parse(self, rows: np.ndarray) -> pa.Table:
        body = b"\n".join([self.line(i) for i in rows.tolist()])
        return self.parse_body(pa.py_buffer(body), rows.size)

    @staticmethod
    def parse_body(body: pa.Buffer, nrows: int) -> pa.Table:
        """One block, one thread: pyarrow's "row N" is then the Nth non-blank line."""
        opts = pj.ReadOptions(block_size=min(body.size + 2, _MAX_BLOCK), use_threads=False)
        table = read_json(body, opts)
        if table.num_rows != nrows:
            raise ValueError(f"expected {nrows} rows, got {table.num_rows}")
        if deep_field(table.schema) is not None:  # never after classify(); kept as a guard
            raise ValueError(TOO_DEEP)
        return utc_timestamps(table)

    def obj(self, i: int) -> Any:
        if i not in self.objects:
            self.objects[i] = _decoder.decode(self.line(i))
        return self.objects[i]

    def step(self, rows: np.ndarray) -> list[np.ndarray]:
        """Decode ``rows`` (line indices), or return the smaller parts to try next."""
        if not rows.size:
            return []
        try:
            self.pieces.append((self.parse(rows), rows))
            return []
        except _PARSE_ERRORS as exc:
            msg = str(exc)
        if rows.size == 1:
            self.single(int(rows[0]), msg)
            return []
        conflict = _CONFLICT.search(msg)
        if conflict:
            parts = self.partition(rows, conflict["path"])
            if len(parts) > 1:
                return parts
        row = _ROW.search(msg)
        at = int(row.group(1)) if row else -1
        if at == 0:
            self.single(int(rows[0]), msg)
            return [rows[1:]]
        if 0 < at < rows.size:
            return [rows[:at], rows[at:]]
        return [rows[: rows.size // 2], rows[rows.size // 2 :]]

    def partition(self, rows: np.ndarray, path: str) -> list[np.ndarray]:
        """Split ``rows`` by the kinds of the values at ``path`` (stable)."""
        groups: dict[frozenset[str], list[int]] = {}
        unknown: list[int] = []
        for i in rows.tolist():
            found: set[str] = set()
            try:
                _kinds_at(self.obj(i), path, found)
            except (msgspec.DecodeError, UnicodeDecodeError):
                found = set()
            (groups.setdefault(frozenset(found), []) if found else unknown).append(i)
        if not groups:
            return [rows]
        first = next(iter(groups.values()))
        first.extend(unknown)  # nulls and absent values fit any kind
        return [np.sort(np.array(g, dtype=np.int64)) for g in groups.values()]

    def single(self, i: int, msg: str) -> None:
        """Decode one line pyarrow refused among others, or report it."""
        try:
            obj = self.obj(i)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            self.problem(i, f"invalid JSON: {exc}")
            return
        for _ in range(16):
            text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
            try:
                table = self.parse_body(pa.py_buffer(text.encode("utf-8")), 1)
                self.pieces.append((table, np.array([i])))
                return
            except _PARSE_ERRORS as exc:
                msg = str(exc)
            conflict = _CONFLICT.search(msg)
            if not (conflict and _stringify_list(obj, conflict["path"])):
                break
        self.problem(i, f"cannot decode: {msg}")
