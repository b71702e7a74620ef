"""Answers of the query and live routes: Arrow tables and correlations as JSON, NDJSON
and Arrow IPC, streamed a batch at a time.

One rule for every JSON answer: **times are RFC 3339 text in UTC, to the
nanosecond** (``"2026-01-01T00:00:00.123456789Z"``; a timestamp without a
time zone, which only SQL can make, has no ``Z``), nested structs are objects,
lists are arrays, bytes are base64. Timestamps are turned into text by Arrow
(``pyarrow.compute.strftime``), at any depth of structs and lists, before the
rows become Python values; msgspec encodes the rows a batch at a time, so a
large answer is never one JSON string in memory (:func:`json_document`,
:func:`ndjson` and :func:`arrow_stream` yield the bytes to send, chunk by chunk).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.result import Correlation
from tidal.render import instant

__all__ = ["ARROW_BATCH_ROWS", "BATCH_ROWS", "CORRELATIONS_PER_CHUNK", "arrow_stream",
           "batched", "correlation_objects", "dumps", "event_table", "json_document",
           "ndjson", "plain", "row_arrays", "row_objects"]

T = TypeVar("T")

BATCH_ROWS = 8192
"""Rows turned into Python values (and encoded) at a time."""
ARROW_BATCH_ROWS = 65536
"""Rows in one record batch of an Arrow IPC answer."""
CORRELATIONS_PER_CHUNK = 1024
"""Correlations whose events are converted together (one Arrow call for many)."""


def _fallback(value: Any) -> Any:
    if isinstance(value, dt.datetime):  # (a pandas Timestamp nested where Arrow left it)
        return value.isoformat()
    return str(value)


_ENCODER = msgspec.json.Encoder(enc_hook=_fallback)


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON bytes (dates, decimals and the like as text)."""
    return _ENCODER.encode(value)


def plain(table: pa.Table) -> pa.Table:
    """``table`` with every timestamp, at any depth, as RFC 3339 text."""
    for i, field in enumerate(table.schema):
        if _has_time(field.type):
            column = pa.chunked_array([_text_times(chunk) for chunk in table.column(i).chunks],
                                      type=_texted(field.type))
            table = table.set_column(i, field.name, column)
    return table


def row_objects(table: pa.Table) -> Iterator[list[dict[str, Any]]]:
    """The rows of ``table`` as JSON-ready dicts, ``BATCH_ROWS`` at a time."""
    for batch in _plain_batches(table):
        yield batch.to_pylist()


def row_arrays(table: pa.Table) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``table`` as JSON-ready tuples in column order, ``BATCH_ROWS`` at a time
    (for results whose column names may repeat, as SQL's may)."""
    for batch in _plain_batches(table):
        yield list(zip(*(column.to_pylist() for column in batch.columns), strict=True))


def _plain_batches(table: pa.Table) -> Iterator[pa.Table]:
    """``table`` in slices of ``BATCH_ROWS``, each :func:`plain` (converted as it is read)."""
    for at in range(0, table.num_rows, BATCH_ROWS):
        yield plain(table.slice(at, BATCH_ROWS))


def correlation_objects(correlations: Iterable[Correlation], *, rule: str | None = None
                        ) -> Iterator[dict[str, Any]]:
    """Each correlation as ``{id, key, start, end, completeness, labels, events}``
    (``rule`` first when given); the events of ``CORRELATIONS_PER_CHUNK``
    correlations are converted together."""
    chunk: list[Correlation] = []
    for correlation in correlations:
        chunk.append(correlation)
        if len(chunk) == CORRELATIONS_PER_CHUNK:
            yield from _objects(chunk, rule)
            chunk = []
    if chunk:
        yield from _objects(chunk, rule)


def event_table(correlations: Sequence[Correlation]) -> pa.Table:
    """The events of ``correlations`` as one table (``_sequence`` says whose)."""
    if not correlations:
        return pa.table({})
    return pa.concat_tables([c.events for c in correlations], promote_options="default")


def _objects(chunk: list[Correlation], rule: str | None) -> Iterator[dict[str, Any]]:
    rows = [row for batch in row_objects(event_table(chunk)) for row in batch]
    at = 0
    for correlation in chunk:
        width = correlation.events.num_rows
        head = {} if rule is None else {"rule": rule}
        completeness = correlation.completeness
        yield {**head, "id": correlation.id, "key": correlation.key,
               "start": instant(correlation.start), "end": instant(correlation.end),
               "completeness": completeness if isinstance(completeness, str)
               else list(completeness),
               "labels": correlation.labels, "events": rows[at:at + width]}
        at += width


# -- streamed answers --------------------------------------------------------------------

def json_document(parts: list[tuple[str, Iterator[list[Any]]]],
                  head: dict[str, Any] | None = None) -> Iterator[bytes]:
    """A JSON object: ``head``'s members, then each part (a name and its batches of
    values) as an array, in chunks of one batch.

    >>> b"".join(json_document([("rows", iter([[1, 2], [3]]))], head={"n": 3}))
    b'{"n":3,"rows":[1,2,3]}'
    """
    opening = dumps(head or {})[:-1]  # ("{" and the head's members)
    for number, (name, batches) in enumerate(parts):
        yield opening + (b"," if number or head else b"") + dumps(name) + b":["
        opening = b""
        first = True
        for batch in batches:
            if batch:
                inner = dumps(batch)[1:-1]
                yield inner if first else b"," + inner
                first = False
        yield b"]"
    yield b"}"


def ndjson(batches: Iterable[list[Any]]) -> Iterator[bytes]:
    """One JSON value a line, in chunks of one batch."""
    for batch in batches:
        if batch:
            yield _ENCODER.encode_lines(batch)


def arrow_stream(table: Callable[[], pa.Table]) -> Iterator[bytes]:
    """An Arrow IPC stream of the table ``table()`` makes, in chunks of one record batch
    (``table`` is called on the first chunk: in the thread pool that reads them)."""
    import pyarrow.ipc as ipc

    made = table()
    sink = _Chunks()
    with ipc.new_stream(sink, made.schema) as writer:
        for batch in made.to_batches(max_chunksize=ARROW_BATCH_ROWS):
            writer.write_batch(batch)
            yield sink.take()
    yield sink.take()


class _Chunks:
    """A write-only file for the IPC writer, emptied by :meth:`take`."""

    closed = False

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last may be shorter)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# -- timestamps to text, at any depth ----------------------------------------------------

def _has_time(kind: pa.DataType) -> bool:
    if pa.types.is_timestamp(kind):
        return True
    if pa.types.is_struct(kind):
        return any(_has_time(kind.field(i).type) for i in range(kind.num_fields))
    if _is_list(kind):
        return _has_time(kind.value_type)
    return False


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind)


def _texted(kind: pa.DataType) -> pa.DataType:
    """``kind`` with its timestamps as strings."""
    if pa.types.is_timestamp(kind):
        return pa.string()
    if pa.types.is_struct(kind):
        return pa.struct([kind.field(i).with_type(_texted(kind.field(i).type))
                          for i in range(kind.num_fields)])
    if pa.types.is_large_list(kind):
        return pa.large_list(kind.value_field.with_type(_texted(kind.value_type)))
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(_texted(kind.value_type)))
    return kind


_UNITS = {"s": (1, 0), "ms": (1000, 3), "us": (10**6, 6), "ns": (10**9, 9)}


def _timestamp_text(array: pa.Array) -> pa.Array:
    """A timestamp array as RFC 3339 text, with ``Z`` when it has a time zone (its values
    are UTC), and as many fraction digits as its unit has (as ``strftime``'s ``%S``)."""
    from tidal.server._kernels_rfc3339 import in_range, rfc3339  # (numba: on first use)

    kind = array.type
    per_second, digits = _UNITS[kind.unit]
    values = pc.fill_null(array.cast(pa.int64()), 0).to_numpy()
    if not in_range(values, per_second):  # (years past 9999 or before 1: rare, slower)
        if kind.tz is None:
            return pc.strftime(array, format="%Y-%m-%dT%H:%M:%S")
        utc = array.cast(pa.timestamp(kind.unit, tz="UTC"))
        return pc.strftime(utc, format="%Y-%m-%dT%H:%M:%SZ")
    zulu = kind.tz is not None
    text = rfc3339(values, per_second, digits, zulu)
    width = 19 + (digits + 1 if digits else 0) + zulu
    offsets = np.arange(0, (len(values) + 1) * width, width, dtype=np.int32)
    strings = pa.Array.from_buffers(pa.string(), len(values),
                                    [None, pa.py_buffer(offsets), pa.py_buffer(text)])
    if array.null_count:
        return pc.if_else(array.is_valid(), strings, pa.scalar(None, pa.string()))
    return strings


def _text_times(array: pa.Array) -> pa.Array:
    kind = array.type
    if not _has_time(kind):
        return array
    if pa.types.is_timestamp(kind):
        return _timestamp_text(array)
    mask = array.is_null() if array.null_count else None
    if pa.types.is_struct(kind):
        children = [_text_times(array.field(i)) for i in range(kind.num_fields)]
        return pa.StructArray.from_arrays(children, fields=list(_texted(kind)), mask=mask)
    if array.offset:  # (a slice: its offsets do not start at 0, which a mask cannot take)
        array = pa.concat_arrays([array])
    texted = _text_times(array.values)
    build = pa.LargeListArray if pa.types.is_large_list(kind) else pa.ListArray
    return build.from_arrays(array.offsets, texted, type=_texted(kind), mask=mask)
