"""Which format, then one decoder per format: whole in-memory inputs to Arrow.

:func:`decode_buffer` takes the bytes of an input (a file's, decompressed, or
bytes and text handed to ``append``) and a format, or a function that guesses
it from the first bytes, and calls the one decoder of that format: NDJSON
(:mod:`tidal.ingest.ndjson`), a JSON array, CSV, Parquet or Arrow IPC. Every
failure is a :class:`~tidal.errors.DecodeError` naming the source, and so is a
Parquet or Arrow table whose type nests deeper than
:data:`~tidal.ingest.nesting.MAX_DEPTH` levels.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from tidal.errors import DecodeError, Problem
from tidal.ingest.ndjson import Decoded, decode_ndjson, empty_decoded, raw_text
from tidal.ingest.nesting import MAX_DEPTH, TOO_DEEP, array_items, check_table

__all__ = ["FORMATS", "HEAD_BYTES", "decode_buffer", "decode_json_array", "detect_format",
           "head_of", "is_ndjson", "remap", "sniff_bytes"]

FORMATS = ("ndjson", "json", "csv", "parquet", "arrow")
_BOM = b"\xef\xbb\xbf"
HEAD_BYTES = 64 << 10
"""How much of an input's start format detection looks at."""
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


def sniff_bytes(head: bytes) -> str:
    """The format of bytes or text handed to ``append`` without one: Parquet or
    Arrow by their magic, a JSON array by its ``[``, else NDJSON.

    Example:
        >>> sniff_bytes(b"PAR1..."), sniff_bytes(b' [{"a": 1}]'), sniff_bytes(b"a,b\\n")
        ('parquet', 'json', 'ndjson')
    """
    found = detect_format(head)
    return found if found in ("parquet", "arrow", "json") else "ndjson"


def decode_buffer(
    data: bytes | bytearray | memoryview | pa.Buffer, *, format: str | None, source: str | None,
    guess: Callable[[bytes], str | None] = detect_format,
) -> Decoded:
    """Decode a whole in-memory input in ``format``, or in the one ``guess`` finds
    in its first bytes (a guessed JSON document that is no array may be NDJSON)."""
    buf = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
    fmt = format or guess(head_of(buf))
    if fmt is None:
        raise DecodeError(f"cannot detect the format of {source}", source=source)
    decoder = _DECODERS.get(fmt)
    if decoder is None:
        raise DecodeError(f"unknown format {fmt!r}; expected one of {FORMATS}", source=source)
    return decoder(buf, source, format is not None)


def _ndjson(buf: pa.Buffer, source: str | None, strict: bool) -> Decoded:
    return decode_ndjson(buf, source=source)


def _json(buf: pa.Buffer, source: str | None, strict: bool) -> Decoded:
    head = head_of(buf).removeprefix(_BOM).lstrip()
    if head.startswith(b"["):
        return decode_json_array(buf, source=source, strict=strict)
    return decode_ndjson(buf, source=source)  # .json files may hold NDJSON


def _parquet(buf: pa.Buffer, source: str | None, strict: bool) -> Decoded:
    import pyarrow.parquet as pq

    table = _guard(lambda: pq.read_table(pa.BufferReader(buf)), "Parquet", source)
    return Decoded(check_table(table, source), [], None, source)


def _arrow(buf: pa.Buffer, source: str | None, strict: bool) -> Decoded:
    table = _guard(lambda: _read_ipc(buf), "Arrow IPC", source)
    return Decoded(check_table(table, source), [], None, source)


def head_of(buf: pa.Buffer) -> bytes:
    """The first :data:`HEAD_BYTES` of ``buf``."""
    return buf.slice(0, min(buf.size, HEAD_BYTES)).to_pybytes()


def is_ndjson(head: bytes, format: str | None) -> bool:
    """Whether content starting with ``head`` in ``format`` (None: as ``head`` says) is
    NDJSON; a ``.json`` document is NDJSON unless it opens with ``[``, as :func:`decode_buffer`
    decodes it."""
    fmt = format or detect_format(head)
    if fmt == "json":
        return not head.removeprefix(_BOM).lstrip().startswith(b"[")
    return fmt == "ndjson"


def _guard(read: Callable[[], pa.Table], what: str, source: str | None) -> pa.Table:
    try:
        return read()
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise DecodeError(f"cannot read {what} from {source}: {exc}", source=source) from exc


def _read_ipc(buf: pa.Buffer) -> pa.Table:
    """An Arrow IPC file, else an IPC stream; validated in full (offsets in bounds, UTF-8
    text), since the bytes may come from anyone."""
    try:
        table = pa.ipc.open_file(pa.BufferReader(buf)).read_all()
    except pa.ArrowInvalid:
        table = pa.ipc.open_stream(pa.BufferReader(buf)).read_all()
    table.validate(full=True)
    return table


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


def _csv(buf: pa.Buffer, source: str | None, strict: bool = False) -> Decoded:
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


_DECODERS: dict[str, Callable[[pa.Buffer, str | None, bool], Decoded]] = {
    "ndjson": _ndjson, "json": _json, "csv": _csv, "parquet": _parquet, "arrow": _arrow}
"""One decoder per format: ``(buffer, source, strict)``; ``strict`` when the format was named."""
