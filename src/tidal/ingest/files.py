"""Files and whole buffers: open, decompress, detect the format, read.

A path's format comes from its extension (``.ndjson .jsonl .json .csv .parquet
.arrow .ipc .feather``, each optionally followed by ``.gz`` or ``.zst``) or,
failing that, from its first bytes. ``.json`` (and ``format="json"``) holds a
JSON array of objects or NDJSON, told apart by the first non-blank byte.
Decompression uses pyarrow's codecs. Files are read whole into memory (not
mapped: a mapped file truncated later would crash readers of zero-copy tables).
Every failure to read is a :class:`~tidal.errors.DecodeError` naming the path, and so
is a Parquet or Arrow file whose type nests deeper than
:data:`~tidal.ingest.nesting.MAX_DEPTH` levels.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tidal.errors import DecodeError, Problem
from tidal.ingest.ndjson import Decoded, decode_ndjson, empty_decoded, raw_text
from tidal.ingest.nesting import MAX_DEPTH, TOO_DEEP, array_items, check_table

__all__ = ["FORMATS", "decode_buffer", "decode_json_array", "decode_path", "detect_format"]

FORMATS = ("ndjson", "json", "csv", "parquet", "arrow")
_EXTENSIONS = {
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".ipc": "arrow",
    ".feather": "arrow",
}
_COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_MAGIC_COMPRESSION = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}
_BOM = b"\xef\xbb\xbf"
_HEAD = 64 << 10
_array_decoder = msgspec.json.Decoder(list[msgspec.Raw])


def detect_format(head: bytes) -> str | None:
    """Guess the format from the first bytes of (uncompressed) content.

    Example:
        >>> detect_format(b"PAR1..."), detect_format(b' [{"a": 1}]'), detect_format(b"a,b\\n")
        ('parquet', 'json', 'csv')
    """
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith((b"ARROW1", b"\xff\xff\xff\xff")):
        return "arrow"
    text = head.removeprefix(_BOM).lstrip()
    if not text or text.startswith(b"{"):
        return "ndjson"
    if text.startswith(b"["):
        return "json"
    first = text.split(b"\n", 1)[0]
    return "csv" if b"," in first or b"\t" in first else None


def decode_path(path: str | os.PathLike[str], *, format: str | None = None) -> Decoded:
    """Read and decode the file at ``path`` (see the module docstring)."""
    name = os.fspath(path)
    stem, suffix = os.path.splitext(name.lower())
    compression = _COMPRESSIONS.get(suffix)
    if compression:
        stem, suffix = os.path.splitext(stem)
    fmt = format or _EXTENSIONS.get(suffix)
    if fmt == "parquet" and not compression:
        if not os.path.isfile(name):
            raise DecodeError(f"cannot read {name}: no such file", source=name)
        table = _guard(lambda: pq.read_table(name), "Parquet", name)
        return Decoded(check_table(table, name), [], None, name)
    if compression is None and fmt is None:
        with _opening(name):
            with open(name, "rb") as f:
                magic = f.read(4)
        compression = next((c for m, c in _MAGIC_COMPRESSION.items() if magic.startswith(m)), None)
    with _opening(name):  # pyarrow reads a file several times faster than f.read()
        with pa.input_stream(name, compression=compression) as stream:
            data = stream.read_buffer()
    return decode_buffer(data, format=fmt, source=name)


@contextmanager
def _opening(name: str) -> Iterator[None]:
    """Translate a failure to open or decompress ``name`` into a DecodeError."""
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        raise DecodeError(f"cannot read {name}: {exc}", source=name) from exc


def decode_buffer(
    data: bytes | bytearray | memoryview | pa.Buffer, *, format: str | None, source: str | None
) -> Decoded:
    """Decode a whole in-memory input; ``format=None`` detects it (default NDJSON)."""
    buf = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
    fmt = format or detect_format(_head(buf))
    if fmt is None:
        raise DecodeError(f"cannot detect the format of {source}", source=source)
    if fmt == "ndjson":
        return decode_ndjson(buf, source=source)
    if fmt == "json":
        head = _head(buf).removeprefix(_BOM).lstrip()
        if head.startswith(b"["):
            return decode_json_array(buf, source=source, strict=format is not None)
        return decode_ndjson(buf, source=source)
    if fmt == "csv":
        return _read_csv(buf, source)
    if fmt == "parquet":
        table = _guard(lambda: pq.read_table(pa.BufferReader(buf)), "Parquet", source)
        return Decoded(check_table(table, source), [], None, source)
    if fmt == "arrow":
        table = _guard(lambda: _read_ipc(buf), "Arrow IPC", source)
        return Decoded(check_table(table, source), [], None, source)
    raise DecodeError(f"unknown format {fmt!r}; expected one of {FORMATS}", source=source)


def _head(buf: pa.Buffer) -> bytes:
    return buf.slice(0, min(buf.size, _HEAD)).to_pybytes()


def _guard(read: Callable[[], pa.Table], what: str, source: str | None) -> pa.Table:
    try:
        return read()
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise DecodeError(f"cannot read {what} from {source}: {exc}", source=source) from exc


def _read_ipc(buf: pa.Buffer) -> pa.Table:
    """An Arrow IPC file, else an IPC stream."""
    try:
        return pa.ipc.open_file(pa.BufferReader(buf)).read_all()
    except pa.ArrowInvalid:
        return pa.ipc.open_stream(pa.BufferReader(buf)).read_all()


def decode_json_array(
    data: bytes | pa.Buffer, *, source: str | None, strict: bool = True
) -> Decoded:
    """Decode a JSON array of objects; ``line`` in problems is the 1-based item.

    Items are compacted to one line each and decoded as NDJSON, so types are
    inferred and widened exactly as for NDJSON. A non-object item is a problem.
    A document that is not a JSON array is a :class:`DecodeError`, unless
    ``strict`` is false and its first line is JSON by itself: then it is NDJSON.
    """
    raw = data.to_pybytes() if isinstance(data, pa.Buffer) else bytes(data)
    raw = raw.removeprefix(_BOM)
    try:
        items: list[bytes] = list(map(bytes, _array_decoder.decode(raw)))
        deep: set[int] = set()
    except RecursionError:  # an item nests too deep for msgspec: split it without recursing
        split = _split_array(raw)
        if split is None:
            problem = Problem(1, f"invalid JSON array: {TOO_DEEP}", raw=raw_text(raw))
            raise DecodeError(f"cannot decode {source}", problems=[problem],
                              source=source) from None
        items, deep = split
    except msgspec.DecodeError as exc:
        if not strict and _first_line_is_json(raw):
            return decode_ndjson(raw, source=source)
        problem = Problem(1, f"invalid JSON array: {exc}", raw=raw_text(raw))
        raise DecodeError(f"cannot decode {source}", problems=[problem], source=source) from exc
    if not items:
        return empty_decoded(source)
    numbers: list[int] = []
    parts: list[bytes] = []
    problems: list[Problem] = []
    for n, text in enumerate(items, start=1):
        if n in deep:
            problems.append(Problem(n, TOO_DEEP, raw=raw_text(text)))
        elif text.startswith(b"{"):
            try:
                parts.append(msgspec.json.format(text, indent=-1))
                numbers.append(n)
            except (msgspec.DecodeError, RecursionError) as exc:
                why = TOO_DEEP if isinstance(exc, RecursionError) else f"invalid JSON: {exc}"
                problems.append(Problem(n, why, raw=raw_text(text)))
        else:
            problems.append(Problem(n, "not a JSON object", raw=raw_text(text)))
    return remap(decode_ndjson(b"\n".join(parts), source=source), numbers, problems, len(items))


def _split_array(raw: bytes) -> tuple[list[bytes], set[int]] | None:
    """The items of a JSON array (stripped) and the numbers of those nested too deep.

    None if ``raw`` is not one array. Used when msgspec cannot split it.
    """
    found = array_items(np.frombuffer(raw, dtype=np.uint8))
    if found is None:
        return None
    starts, stops, depths = found
    items = [raw[a:b].strip() for a, b in zip(starts.tolist(), stops.tolist(), strict=True)]
    deep = {int(n) + 1 for n in np.flatnonzero(depths > MAX_DEPTH)}  # item numbers
    return items, deep


def _first_line_is_json(raw: bytes) -> bool:
    try:
        msgspec.json.decode(raw.lstrip().split(b"\n", 1)[0])
    except msgspec.DecodeError:
        return False
    return True


def remap(decoded: Decoded, numbers: list[int], problems: list[Problem], total: int) -> Decoded:
    """Map a decode of selected records (line k = ``numbers[k-1]``) back to records.

    ``problems`` are those already found; ``lines`` is None when every one of
    ``total`` records became a row in order.
    """
    index = np.asarray(numbers, dtype=np.int64)
    found = [
        Problem(int(index[p.line - 1]), p.reason, field=p.field, raw=p.raw)
        for p in decoded.problems
    ]
    all_problems = sorted(problems + found, key=lambda p: p.line)
    lines = index[decoded.lines - 1] if decoded.lines is not None else index
    if not all_problems and decoded.table.num_rows == total:
        return Decoded(decoded.table, [], None, decoded.source)
    return Decoded(decoded.table, all_problems, lines, decoded.source)


def _read_csv(buf: pa.Buffer, source: str | None) -> Decoded:
    """CSV with a header row; a row with the wrong column count is a problem."""
    if buf.size >= 3 and buf.slice(0, 3).to_pybytes() == _BOM:
        buf = buf.slice(3)
    bad: list[tuple[int, str, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        why = f"expected {row.expected_columns} columns, got {row.actual_columns}"
        bad.append((row.number if row.number is not None else -1, why, row.text))
        return "skip"

    read = pacsv.ReadOptions(use_threads=False)  # single-threaded: rows get numbers
    parse = pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid)
    try:
        table = pacsv.read_csv(pa.BufferReader(buf), read_options=read, parse_options=parse)
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            return empty_decoded(source, lines=True)
        raise DecodeError(f"cannot read CSV from {source}: {exc}", source=source) from exc
    records = _csv_record_lines(np.frombuffer(buf, dtype=np.uint8))
    bad_numbers = np.array([b[0] for b in bad], dtype=np.int64)
    if records.size == 1 + table.num_rows + len(bad) and bool(np.all(bad_numbers >= 1)):
        physical = records  # record k (1-based, header = 1) starts at line records[k-1]
    else:  # unusual quoting: fall back to record numbers
        physical = np.arange(1, 2 + table.num_rows + len(bad), dtype=np.int64)
    problems = [
        Problem(int(physical[n - 1]) if n >= 1 else n, why, raw=raw_text(text.encode()))
        for n, why, text in bad
    ]
    data_rows = np.ones(physical.size, dtype=bool)
    data_rows[0] = False
    data_rows[bad_numbers[(bad_numbers >= 1) & (bad_numbers <= physical.size)] - 1] = False
    return Decoded(table, problems, physical[data_rows], source)


def _csv_record_lines(arr: np.ndarray) -> np.ndarray:
    """First physical line (1-based) of every non-empty CSV record.

    A newline ends a record unless it sits inside quotes; with ``""`` escapes
    the count of quotes before it is then odd.
    """
    nl = np.flatnonzero(arr == 10)
    quotes = np.flatnonzero(arr == ord('"'))
    ends = nl[np.searchsorted(quotes, nl) % 2 == 0]
    starts = np.concatenate([np.array([0], np.int64), ends + 1])
    stops = np.concatenate([ends, np.array([arr.size], np.int64)])
    length = stops - starts
    cr_only = (length == 1) & (arr[np.minimum(starts, max(arr.size - 1, 0))] == 13)
    keep = (length > 0) & ~cr_only
    return np.searchsorted(nl, starts[keep]).astype(np.int64) + 1
