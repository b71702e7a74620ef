"""Scans: the one read path, streaming what is asked for from segments and memtable.

``scan(snapshot, columns, where, start=, end=, from_seq=, to_seq=, order=)``
returns a :class:`pyarrow.RecordBatchReader`. It reads as little as it can:

* segments outside the time or ``_seq`` bounds are not opened (their manifest
  entries say their ranges);
* inside a segment, the bounds and the simple parts of ``where`` (a pyarrow
  compute expression) go into the Parquet read, so row groups whose
  statistics rule them out are skipped, and only the named columns (a
  struct's named fields alone) are read; ``prune`` skips row groups the same
  way but filters nothing (for a caller that tests every row itself);
* the memtable is filtered in Arrow.

Every batch has the requested columns (``_seq`` always first; dotted paths
name nested fields), in the types of the snapshot's schema, whatever each
source held (a column a segment lacks is null). ``order="seq"`` yields events
in ``_seq`` order; ``order="time"`` in (timestamp, ``_seq``) order. Segments
whose ranges overlap are read together and sorted; the rest stream one by one.
Segments are sorted by entity inside, so an ordered scan holds one cluster of
overlapping segments (a compacted time chunk) in memory while it sorts it.
``order=None`` streams as stored (segments by entity, then the memtable by
``_seq``), one batch at a time: the fastest scan, in bounded memory. With
``positions=True`` batches also say where each event is stored (``_segment``,
``_row``), so a caller that tests a few columns can read just the matching
rows whole afterwards.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.errors import QueryError
from tidal.model.paths import get_path, type_at
from tidal.model.schema import concat_tables, conform
from tidal.model.time import TIMESTAMP_TYPE
from tidal.store.run import ROW, SEGMENT, SEQ
from tidal.store.segment import SegmentMeta


class Scannable(Protocol):
    """What a scan reads (a :class:`~tidal.store.readers.Snapshot`)."""

    segments: tuple[SegmentMeta, ...]

    @property
    def schema(self) -> pa.Schema: ...
    @property
    def memtable_parts(self) -> tuple[pa.Table, ...]: ...
    def segment_batches(self, meta: SegmentMeta, wanted: pa.Schema,
                        where: pc.Expression | None, batch_rows: int,
                        prune: pc.Expression | None = None, positions: bool = False
                        ) -> Iterator[pa.RecordBatch]: ...

Order = Literal["seq", "time"] | None
BATCH_ROWS = 65_536


@dataclass(frozen=True)
class Bounds:
    """Inclusive ``start``/``from_seq``, exclusive ``end``/``to_seq`` (None: open)."""

    start: int | None = None
    end: int | None = None
    from_seq: int | None = None
    to_seq: int | None = None

    def overlaps(self, meta: SegmentMeta) -> bool:
        """Whether segment ``meta`` may hold events within the bounds."""
        return meta.rows > 0 and not (
            (self.start is not None and meta.max_ts < self.start)
            or (self.end is not None and meta.min_ts >= self.end)
            or (self.from_seq is not None and meta.max_seq < self.from_seq)
            or (self.to_seq is not None and meta.min_seq >= self.to_seq))

    def expression(self, ts_field: str) -> pc.Expression | None:
        """The bounds as a filter over ``_seq`` and the timestamp field."""
        ts = pc.field(*ts_field.split("."))
        parts = []
        if self.start is not None:
            parts.append(ts >= pa.scalar(self.start, TIMESTAMP_TYPE))
        if self.end is not None:
            parts.append(ts < pa.scalar(self.end, TIMESTAMP_TYPE))
        if self.from_seq is not None:
            parts.append(pc.field(SEQ) >= self.from_seq)
        if self.to_seq is not None:
            parts.append(pc.field(SEQ) < self.to_seq)
        return _and(parts)


def _and(parts: Sequence[pc.Expression | None]) -> pc.Expression | None:
    out = None
    for part in parts:
        if part is not None:
            out = part if out is None else out & part
    return out


def output_schema(schema: pa.Schema, columns: Sequence[str] | None, ts_field: str,
                  order: Order) -> pa.Schema:
    """The schema of a scan's batches: ``_seq`` first, then the columns asked for."""
    names = list(schema.names if columns is None else columns)
    fields = [pa.field(SEQ, pa.int64())]
    for name in names:
        if name == SEQ:
            continue
        found = type_at(schema, name)
        if found is None:
            raise QueryError(f"no column {name!r} in the store (its columns: "
                             f"{', '.join(schema.names[:20])})")
        fields.append(pa.field(name, found))
    return pa.schema(fields)


def check_where(where: pc.Expression, schema: pa.Schema) -> None:
    """Raise :class:`QueryError` unless ``where`` can be evaluated over ``schema``."""
    try:
        schema.empty_table().filter(where)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        reason = str(exc).splitlines()[0]
        raise QueryError(f"where {where} does not apply to the store's events: {reason}"
                         ) from exc


def _project(table: pa.Table, target: pa.Schema) -> pa.Table:
    """``table``'s values at the paths ``target`` names, in ``target``'s types."""
    columns = []
    for field in target:
        found = get_path(table, field.name)
        columns.append(found if found is not None else pa.nulls(table.num_rows, field.type))
    picked = pa.table(columns, names=target.names)
    return conform(picked, target)


class _Reader:
    """Reads one scan's sources and turns them into the output's batches."""

    def __init__(self, snapshot: Scannable, target: pa.Schema, where: pc.Expression | None,
                 bounds: Bounds, ts_field: str, batch_rows: int,
                 prune: pc.Expression | None = None, positions: bool = False) -> None:
        self.snapshot = snapshot
        self.target = target
        self.where = where
        self.bounds = bounds
        self.ts_field = ts_field
        self.batch_rows = batch_rows
        self.filter = _and([where, bounds.expression(ts_field)])
        self.prune = prune
        self.positions = positions
        sorting = [SEQ] + ([ts_field] if type_at(snapshot.schema, ts_field) else [])
        read = [n for n in target.names[1:] if n not in (SEGMENT, ROW)]  # (placed after)
        self.read_schema = output_schema(
            snapshot.schema, list(dict.fromkeys(read + sorting[1:])), ts_field, "seq")

    def segment(self, meta: SegmentMeta) -> pa.Table:
        """The wanted rows and columns of one segment, as read (in no particular order)."""
        parts = list(self.segment_tables(meta))
        if not parts:
            return self._placed(self.read_schema.empty_table(), meta.id, None)
        return concat_tables(parts) if len(parts) > 1 else parts[0]

    def segment_tables(self, meta: SegmentMeta) -> Iterator[pa.Table]:
        """The wanted rows and columns of one segment, a batch at a time, as stored."""
        for batch in self.snapshot.segment_batches(meta, self.read_schema, self.filter,
                                                   self.batch_rows, self.prune,
                                                   self.positions):
            table = pa.Table.from_batches([batch])
            yield self._placed(_project(table, self.read_schema), meta.id,
                               table.column(ROW) if self.positions else None)

    def memtable(self) -> list[pa.Table]:
        """The wanted rows of every memtable part, in ``_seq`` order."""
        out = []
        for part in self.snapshot.memtable_parts:
            table = self._filtered(part)
            if table.num_rows:
                out.append(self._placed(_project(table, self.read_schema), -1, None))
        return out

    def _placed(self, table: pa.Table, segment: int, rows: pa.ChunkedArray | None
                ) -> pa.Table:
        """``table`` with where its rows are stored (``_segment``, ``_row``; -1, -1 for
        the memtable), when the scan was asked for positions."""
        if not self.positions:
            return table
        n = table.num_rows
        table = table.append_column(SEGMENT, pa.array(np.full(n, segment, dtype=np.int64)))
        return table.append_column(ROW, rows if rows is not None and n
                                   else pa.array(np.full(n, -1, dtype=np.int64)))

    def _filtered(self, table: pa.Table) -> pa.Table:
        if self.filter is None:
            return table
        try:
            return table.filter(self.filter)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            full = conform(table, self.snapshot.schema)  # a field the part lacks: null
            return full.filter(self.filter)

    def out(self, table: pa.Table) -> Iterator[pa.RecordBatch]:
        """``table`` (read columns) cut to the output columns, in batches."""
        if table.num_rows == 0:
            return
        picked = table.select(self.target.names)
        yield from picked.to_batches(max_chunksize=self.batch_rows)


def _ints(table: pa.Table, path: str) -> np.ndarray:
    column = get_path(table, path)
    assert column is not None
    return np.asarray(column.combine_chunks().cast(pa.int64()))


def sort_by(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """``table`` ordered by the integer (or timestamp) columns at paths ``keys``
    (itself when already in that order)."""
    if table.num_rows < 2:
        return table
    arrays = [_ints(table, k) for k in reversed(keys)]
    order = np.lexsort(arrays)
    if np.all(order[1:] > order[:-1]):
        return table
    return table.take(pa.array(order))


Unit = tuple[int, Callable[[], pa.Table]]
"""A source of an ordered scan: its lowest key, and how to read it."""


def in_order(units: list[Unit], keys: Sequence[str]) -> Iterator[pa.Table]:
    """Tables in ``keys`` order, merging ``units`` read one at a time.

    Units are read in order of their lowest key. After each, the rows below the
    next unit's lowest key are sorted and given out; the rest wait for it. So
    memory holds the units whose key ranges overlap (the pieces of one
    compacted time chunk, a memtable) and the few late rows reaching past them,
    never the whole store, even when late events chain every segment's range
    into the next.
    """
    units = sorted(units, key=lambda unit: unit[0])
    pending: list[pa.Table] = []
    for i, (_, load) in enumerate(units):
        table = load()
        if table.num_rows:
            pending.append(table)
        if not pending:
            continue
        following = units[i + 1][0] if i + 1 < len(units) else None
        if following is not None and min(_low(t, keys[0]) for t in pending) >= following:
            continue  # nothing can go out before the next unit is read
        merged = sort_by(concat_tables(pending) if len(pending) > 1 else pending[0], keys)
        cut = merged.num_rows if following is None else int(
            np.searchsorted(_ints(merged, keys[0]), following, side="left"))
        if cut:
            yield merged.slice(0, cut)
        pending = [merged.slice(cut)] if cut < merged.num_rows else []


def _low(table: pa.Table, key: str) -> int:
    column = get_path(table, key)
    assert column is not None
    return int(pc.min(column).cast(pa.int64()).as_py())


def _segment_units(reader: _Reader, segments: list[SegmentMeta], *, by_time: bool
                   ) -> list[Unit]:
    return [(m.min_ts if by_time else m.min_seq, functools.partial(reader.segment, m))
            for m in segments]


def _memtable_unit(reader: _Reader, key: str) -> list[Unit]:
    tables = reader.memtable()
    if not tables:
        return []
    table = concat_tables(tables) if len(tables) > 1 else tables[0]
    return [(_low(table, key), lambda: table)]


def _in_seq_order(reader: _Reader, segments: list[SegmentMeta]) -> Iterator[pa.Table]:
    units = _segment_units(reader, segments, by_time=False) + _memtable_unit(reader, SEQ)
    return in_order(units, [SEQ])


def _by_seq(reader: _Reader, segments: list[SegmentMeta]) -> Iterator[pa.RecordBatch]:
    for table in _in_seq_order(reader, segments):
        yield from reader.out(table)


def _as_stored(reader: _Reader, segments: list[SegmentMeta]) -> Iterator[pa.RecordBatch]:
    for meta in sorted(segments, key=lambda m: m.min_seq):
        for table in reader.segment_tables(meta):
            yield from reader.out(table)
    for table in reader.memtable():
        yield from reader.out(table)


def _by_time(reader: _Reader, segments: list[SegmentMeta]) -> Iterator[pa.RecordBatch]:
    units = (_segment_units(reader, segments, by_time=True)
             + _memtable_unit(reader, reader.ts_field))
    for table in in_order(units, [reader.ts_field, SEQ]):
        yield from reader.out(table)


def in_snapshot_schema(snapshot: Scannable, table: pa.Table, *, ts_field: str) -> pa.Table:
    """Rows read from one segment, with every column of ``snapshot`` in its types
    (``_seq`` first), as a scan of all columns gives them."""
    return _project(table, output_schema(snapshot.schema, None, ts_field, "seq"))


def seq_tables(snapshot: Scannable, from_seq: int, to_seq: int, *, ts_field: str
               ) -> Iterator[pa.Table]:
    """Every column of the events with ``from_seq <= _seq < to_seq``, as tables in
    ``_seq`` order, each as large as one merge step gives out (for replays)."""
    bounds = Bounds(from_seq=from_seq, to_seq=to_seq)
    reader = _Reader(snapshot, output_schema(snapshot.schema, None, ts_field, "seq"), None,
                     bounds, ts_field, BATCH_ROWS)
    segments = [m for m in snapshot.segments if bounds.overlaps(m)]
    for table in _in_seq_order(reader, segments):
        yield table.select(reader.target.names)


def scan(snapshot: Scannable, columns: Sequence[str] | None = None,
         where: pc.Expression | None = None, *, start: int | None = None,
         end: int | None = None, from_seq: int | None = None, to_seq: int | None = None,
         order: Order = "seq", ts_field: str = "timestamp",
         batch_rows: int = BATCH_ROWS, prune: pc.Expression | None = None,
         positions: bool = False) -> pa.RecordBatchReader:
    """Stream the events of ``snapshot`` that match; see the module docstring."""
    if order not in ("seq", "time", None):
        raise QueryError(f"order must be 'seq', 'time' or None, not {order!r}")
    if where is not None and not isinstance(where, pc.Expression):
        raise QueryError(f"where must be a pyarrow compute expression, not "
                         f"{type(where).__name__}")
    target = output_schema(snapshot.schema, columns, ts_field, order)
    if positions:
        target = target.append(pa.field(SEGMENT, pa.int64())).append(pa.field(ROW, pa.int64()))
    for expression in (where, prune):
        if expression is not None:
            check_where(expression, snapshot.schema)
    bounds = Bounds(start, end, from_seq, to_seq)
    reader = _Reader(snapshot, target, where, bounds, ts_field, batch_rows, prune, positions)
    segments = [m for m in snapshot.segments if bounds.overlaps(m)]
    read = {"seq": _by_seq, "time": _by_time, None: _as_stored}[order]
    batches: Iterable[pa.RecordBatch] = read(reader, segments)
    return pa.RecordBatchReader.from_batches(target, batches)
