"""``decode(data)``: any accepted input → one Arrow table and its problems.

One dispatch: first what the input is (this module), then which format its
bytes are in, then the one decoder of that format
(:func:`~tidal.ingest.formats.decode_buffer`). Paths are opened by
:mod:`tidal.ingest.files`.

Accepted inputs:

* Arrow: ``pa.Table``, ``pa.RecordBatch``, a list or iterator of record
  batches, a ``pa.RecordBatchReader``;
* pandas and polars DataFrames (detected by module, without importing them);
* a list of dicts (a non-dict item is a problem naming its 1-based record);
* NDJSON as ``bytes``/``bytearray``/``memoryview``, or as ``str`` text;
* a path: an ``os.PathLike``, or a ``str`` that has no newline and does not
  start with ``{`` or ``[`` (see :mod:`tidal.ingest.files`).

``format`` (``"ndjson" "json" "csv" "parquet" "arrow"``) overrides detection for
paths, bytes and text.
"""

from __future__ import annotations

import os
import re
import reprlib
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from tidal.errors import DecodeError, Problem
from tidal.ingest.files import open_raw, path_kind, read_head, read_path, reading
from tidal.ingest.formats import (
    FORMATS,
    HEAD_BYTES,
    decode_buffer,
    head_of,
    is_ndjson,
    remap,
    sniff_bytes,
)
from tidal.ingest.ndjson import (
    Decoded,
    decode_ndjson,
    decode_ndjson_blocks,
    empty_decoded,
    line_blocks,
    raw_text,
    read_line_blocks,
)
from tidal.ingest.nesting import MAX_DEPTH, TOO_DEEP, check_table, deep_records
from tidal.model.schema import concat_tables

__all__ = ["STREAM_MIN_BYTES", "Decoded", "decode", "decode_blocks", "decode_path",
           "decode_records"]

_encoder = msgspec.json.Encoder()
_raw_encoder = msgspec.json.Encoder(enc_hook=str)
_ABRIDGED = reprlib.Repr()  # keyword arguments need Python 3.12
_ABRIDGED.maxlevel, _ABRIDGED.maxdict, _ABRIDGED.maxlist = MAX_DEPTH + 2, 20, 20
_ABRIDGED.maxstring = _ABRIDGED.maxother = 200
_TEXT_START = re.compile(r"[\ufeff\s]*[{\[]")
STREAM_MIN_BYTES = 64 << 20
"""NDJSON this large (a file, decompressed, or bytes) is decoded and stored in blocks."""


def decode(data: object, *, format: str | None = None) -> Decoded:
    """Decode ``data`` into one table, reporting every bad line or record.

    Raises:
        DecodeError: unsupported type, unknown format, unreadable or corrupt file.

    Example:
        >>> d = decode([{"a": 1}, "oops", {"a": "x"}])
        >>> d.table.to_pylist(), d.lines.tolist(), [str(p) for p in d.problems]
        ([{'a': '1'}, {'a': 'x'}], [1, 3], ['line 2: not a JSON object'])
    """
    decoded = _decode(data, format)
    check_table(decoded.table, decoded.source)  # a type nested too deep refuses every row
    return decoded


def decode_blocks(data: object, *, format: str | None = None) -> Decoded | Iterator[Decoded]:
    """:func:`decode`, except that large NDJSON (a file or bytes of at least
    :data:`STREAM_MIN_BYTES`) comes as blocks of whole lines, each read and decoded
    only when the caller asks for it (see :func:`~tidal.ingest.ndjson.decode_ndjson_blocks`).
    An uncompressed file is read block by block, never whole."""
    if format is not None and format not in FORMATS:
        raise DecodeError(f"unknown format {format!r}; expected one of {FORMATS}")
    if _is_path(data):
        name = os.fspath(data)  # type: ignore[call-overload]
        compression, fmt = path_kind(name, format)
        if compression is None:
            with reading(name):
                size = os.stat(name).st_size
            if size >= STREAM_MIN_BYTES and is_ndjson(read_head(name, HEAD_BYTES), fmt):
                return _checked_blocks(_read_blocks(name), name)
        buf, fmt = read_path(name, format)
        if buf.size >= STREAM_MIN_BYTES and is_ndjson(head_of(buf), fmt):
            return _checked_blocks(line_blocks(buf), name)
        decoded = decode_buffer(buf, format=fmt, source=name)
        check_table(decoded.table, decoded.source)
        return decoded
    if (isinstance(data, bytes | bytearray | memoryview) and format in (None, "ndjson")
            and memoryview(data).nbytes >= STREAM_MIN_BYTES):
        buf = pa.py_buffer(data)
        if is_ndjson(head_of(buf), format or sniff_bytes(head_of(buf))):
            return _checked_blocks(line_blocks(buf), "ndjson bytes")
    return decode(data, format=format)


def _is_path(data: object) -> bool:
    """Whether ``decode`` takes ``data`` for a path (see the module docstring)."""
    if isinstance(data, os.PathLike):
        return True
    return (isinstance(data, str) and bool(data) and "\n" not in data
            and not _TEXT_START.match(data))


def _read_blocks(name: str) -> Iterator[pa.Buffer]:
    """The file's blocks of whole lines; a failure to read is a DecodeError naming it."""
    with reading(name):
        yield from read_line_blocks(open_raw(name))


def _checked_blocks(blocks: Iterator[pa.Buffer], source: str) -> Iterator[Decoded]:
    for decoded in decode_ndjson_blocks(blocks, source=source):
        check_table(decoded.table, source)
        yield decoded


def _decode(data: object, format: str | None) -> Decoded:
    if format is not None and format not in FORMATS:
        raise DecodeError(f"unknown format {format!r}; expected one of {FORMATS}")
    if isinstance(data, pa.Table):
        return Decoded(data, [], None, "arrow table")
    if isinstance(data, pa.RecordBatch):
        return Decoded(pa.Table.from_batches([data]), [], None, "arrow record batch")
    if isinstance(data, pa.RecordBatchReader):
        return Decoded(_guarded_read_all(data), [], None, "arrow record batch reader")
    if isinstance(data, bytes | bytearray | memoryview):
        return _decode_bytes(data, format, "ndjson bytes")
    if _is_path(data):
        return decode_path(data, format=format)  # type: ignore[arg-type]
    if isinstance(data, str):
        return _decode_bytes(data.encode("utf-8"), format, "ndjson text")
    frame = _from_dataframe(data)
    if frame is not None:
        return frame
    if isinstance(data, list | tuple):
        return _decode_list(data)
    if isinstance(data, Iterator):
        return _decode_list(list(data))
    hint = " (pass a list of dicts)" if isinstance(data, dict) else ""
    kind = f"{type(data).__module__}.{type(data).__qualname__}"
    raise DecodeError(f"cannot decode input of type {kind}{hint}")


def decode_path(path: str | os.PathLike[str], *, format: str | None = None) -> Decoded:
    """Read and decode the file at ``path`` (see :mod:`tidal.ingest.files`)."""
    data, fmt = read_path(path, format)
    return decode_buffer(data, format=fmt, source=os.fspath(path))


def _decode_bytes(data: bytes | bytearray | memoryview, format: str | None, source: str) -> Decoded:
    """Bytes or text: NDJSON unless named otherwise or plainly something else."""
    kind = format
    if kind is None:  # named after what it looks like; decode_buffer guesses the same
        kind = sniff_bytes(bytes(memoryview(data).cast("B")[:64 << 10]))
        kind = "binary" if kind in ("parquet", "arrow") else kind
    return decode_buffer(data, format=format, source=source.replace("ndjson", kind),
                         guess=sniff_bytes)


def _guarded_read_all(reader: pa.RecordBatchReader) -> pa.Table:
    try:
        return reader.read_all()
    except (OSError, pa.ArrowException) as exc:
        raise DecodeError(f"cannot read arrow record batch reader: {exc}") from exc


def _from_dataframe(data: object) -> Decoded | None:
    """A pandas or polars DataFrame as a table; None for anything else."""
    cls = type(data)
    package = cls.__module__.split(".", 1)[0]
    if cls.__name__ != "DataFrame" or package not in ("pandas", "polars"):
        return None
    df: Any = data
    source = f"{package} DataFrame"
    if package == "pandas" and any(  # objects too deep for pyarrow's converter
            deep_records(df[c].tolist(), depth=2) for c in df.columns if df[c].dtype == object):
        return decode_records(df.to_dict(orient="records"), source=source)
    try:
        if package == "polars":
            return Decoded(df.to_arrow(), [], None, source)
        return Decoded(pa.Table.from_pandas(df, preserve_index=False), [], None, source)
    except (pa.ArrowException, TypeError, ValueError):
        # Columns of mixed Python objects: decode as records, which widens.
        records = df.to_dicts() if package == "polars" else df.to_dict(orient="records")
        return decode_records(records, source=source)


def _decode_list(items: Sequence[object]) -> Decoded:
    if not items:
        return empty_decoded("list")
    if all(isinstance(x, pa.RecordBatch | pa.Table) for x in items):
        tables = [x if isinstance(x, pa.Table) else pa.Table.from_batches([x]) for x in items]
        for t in tables:  # before widening recurses into the types
            check_table(t, "arrow record batches")
        schemas = {t.schema for t in tables}
        table = pa.concat_tables(tables) if len(schemas) == 1 else concat_tables(tables)
        return Decoded(table, [], None, "arrow record batches")
    return decode_records(items, source="list of dicts")


def decode_records(items: Sequence[object], *, source: str | None = "list of dicts") -> Decoded:
    """Decode dicts, one row each; a non-dict item is a problem (1-based record).

    Column types come from ``pa.array`` over all records (so every key of every
    record becomes a column). When values of one field disagree in type, each
    record is encoded as JSON and the NDJSON decoder widens the column; values
    that JSON cannot hold (``NaN`` then becomes null) are rare there. A record
    nested deeper than :data:`~tidal.ingest.nesting.MAX_DEPTH` levels is a problem.
    """
    numbers = [n for n, x in enumerate(items, start=1) if isinstance(x, dict)]
    problems = [
        Problem(n, "not a JSON object", raw=raw_text(repr(x).encode("utf-8")))
        for n, x in enumerate(items, start=1)
        if not isinstance(x, dict)
    ]
    good = items if not problems else [items[n - 1] for n in numbers]
    deep = deep_records(good)  # before pa.array, which is slow or recurses on those
    if deep:
        problems = sorted(problems + [Problem(numbers[i], TOO_DEEP, raw=_raw_record(good[i]))
                                      for i in deep], key=lambda p: p.line)
        keep = np.ones(len(good), dtype=bool)
        keep[deep] = False
        numbers = [n for n, k in zip(numbers, keep.tolist(), strict=True) if k]
        good = [x for x, k in zip(good, keep.tolist(), strict=True) if k]
    try:
        table = pa.Table.from_struct_array(pa.array(good))
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return _records_as_ndjson(good, numbers, problems, len(items), source)
    if not problems:
        return Decoded(table, [], None, source)
    return Decoded(table, problems, np.asarray(numbers, dtype=np.int64), source)


def _raw_record(record: object) -> str:
    """A record nested too deep, as JSON text for the report (abridged past ~1,000 levels)."""
    try:
        return raw_text(_raw_encoder.encode(record))
    except (RecursionError, TypeError, ValueError, OverflowError):
        return raw_text(_ABRIDGED.repr(record).encode("utf-8"))


def _records_as_ndjson(
    good: Sequence[object],
    numbers: list[int],
    problems: list[Problem],
    total: int,
    source: str | None,
) -> Decoded:
    encoded: list[bytes] = []
    kept: list[int] = []
    for n, record in zip(numbers, good, strict=True):
        try:
            encoded.append(_encoder.encode(record))
            kept.append(n)
        except (TypeError, ValueError, OverflowError) as exc:
            problems.append(
                Problem(
                    n, f"cannot encode as JSON: {exc}", raw=raw_text(repr(record).encode("utf-8"))
                )
            )
    decoded = decode_ndjson(b"\n".join(encoded), source=source)
    return remap(decoded, kept, problems, total)
