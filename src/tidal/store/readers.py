"""Snapshots and the registry that keeps the segments they read alive.

A :class:`Snapshot` is a consistent view (segment list, immutable memtable
views, highest visible ``_seq``) taken under the state lock, after which a
reader works without locks. It pins its segments until :meth:`Snapshot.close`
(or the end of its ``with`` block): segments that compaction or retention
retire are deleted only once no open snapshot pins them.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.errors import QueryError
from tidal.model.paths import nested_column, outermost
from tidal.model.schema import conform, unify
from tidal.model.time import parse_instant
from tidal.store.backend import SegmentStore, applies
from tidal.store.memtable import MemView
from tidal.store.run import ROW, SEQ, SliceSource, SortedRun
from tidal.store.scan import Order, scan
from tidal.store.segment import SegmentMeta


def _columns_of(schema: pa.Schema, names: Sequence[str]) -> list[str]:
    """The Parquet columns that read ``names`` from a segment of ``schema`` (a struct's
    leaves, unless the whole struct is wanted too)."""
    return outermost([c for name in names if (c := nested_column(schema, name))],
                     top=schema.names)


class Snapshot:
    """A consistent, immutable view of the store; close it when done."""

    def __init__(self, segments: tuple[SegmentMeta, ...], memtables: tuple[MemView, ...],
                 max_seq: int, store: SegmentStore, release: Callable[[Snapshot], None],
                 ts_field: str = "timestamp"):
        self.segments = segments
        self.memtables = memtables
        self.max_seq = max_seq
        self.ts_field = ts_field
        self._store = store
        self._release: Callable[[Snapshot], None] | None = release
        self._schema: pa.Schema | None = None

    @property
    def memtable_parts(self) -> tuple[pa.Table, ...]:
        """Every memtable table (sealed ones first), in ``_seq`` order."""
        return tuple(part for view in self.memtables for part in view.parts)

    @property
    def memtable_runs(self) -> tuple[SortedRun, ...]:
        """The sorted runs of every memtable (indexed snapshots only)."""
        return tuple(run for view in self.memtables for run in view.runs)

    @property
    def memtable_rows(self) -> int:
        return sum(view.rows for view in self.memtables)

    @property
    def memtable_bytes(self) -> int:
        return sum(view.nbytes for view in self.memtables)

    def segment_source(self, meta: SegmentMeta) -> SliceSource:
        """Segment ``meta`` as a slice source, opened when first probed."""
        return self._store.lazy_source(meta)

    def segment_entities(self, meta: SegmentMeta) -> pa.Array:
        """The distinct entities of a segment, from its index alone."""
        return self._store.entities(meta)

    def segment_table(self, meta: SegmentMeta) -> pa.Table:
        """The segment's events (sorted by entity, time, ``_seq``)."""
        return self._store.table(meta)

    def segment_seqs(self, meta: SegmentMeta) -> np.ndarray:
        """The segment's ``_seq`` column alone, in stored order."""
        parts = [b.column(0) for b in self._store.batches(meta, [SEQ], None, 1 << 20)]
        return np.concatenate([np.asarray(p, dtype=np.int64) for p in parts]) if parts \
            else np.zeros(0, dtype=np.int64)

    def segment_take(self, meta: SegmentMeta, positions: np.ndarray) -> pa.Table:
        """The segment's rows at ``positions`` (ascending), reading only their row groups."""
        return self._store.take(meta, positions)

    def segment_paths(self) -> list[str] | None:
        """Parquet files of the segments (checked), or None for an in-memory store."""
        return self._store.paths(self.segments)

    @property
    def schema(self) -> pa.Schema:
        """Every column of the snapshot, types widened across segments and memtable
        (segments' schemas come from their footers alone)."""
        if self._schema is None:
            schemas = [self._store.schema(m) for m in self.segments if m.rows]
            schemas += [part.schema for part in self.memtable_parts]
            self._schema = unify(schemas) if schemas else pa.schema([(SEQ, pa.int64())])
        return self._schema

    def segment_schema(self, meta: SegmentMeta) -> pa.Schema:
        """One segment's own schema."""
        return self._store.schema(meta)

    def segment_batches(self, meta: SegmentMeta, wanted: pa.Schema,
                        where: pc.Expression | None, batch_rows: int,
                        prune: pc.Expression | None = None, positions: bool = False
                        ) -> Iterator[pa.RecordBatch]:
        """Rows of segment ``meta`` matching ``where``, holding the columns ``wanted``
        names (those the segment has). ``where`` goes into the read when the segment
        has every field it names; otherwise the segment is read whole, widened to the
        snapshot's schema and filtered. ``prune`` only skips row groups (when the
        segment has its fields). ``positions``: a last column ``_row``, each row's
        position in the segment."""
        if self.closed:
            raise QueryError("the snapshot was closed before its scan was read; read "
                             "scans inside the snapshot's with-block")
        own = self.segment_schema(meta)
        if where is not None and not applies(where, own):
            whole = pa.Table.from_batches(list(self._store.batches(
                meta, None, None, batch_rows, positions=positions)))
            rows = whole.column(ROW) if positions else None
            whole = conform(whole.drop_columns([ROW]) if positions else whole, self.schema)
            if rows is not None:
                whole = whole.append_column(ROW, rows)
            yield from whole.filter(where).to_batches(batch_rows)
            return
        if prune is not None and not applies(prune, own):
            prune = None
        yield from self._store.batches(meta, _columns_of(own, wanted.names), where, batch_rows,
                                       prune, positions)

    def scan(self, columns: Sequence[str] | None = None, where: pc.Expression | None = None,
             *, start: object = None, end: object = None,
             from_seq: int | None = None, to_seq: int | None = None,
             order: Order = "seq", prune: pc.Expression | None = None,
             positions: bool = False) -> pa.RecordBatchReader:
        """Stream the matching events as Arrow batches (``_seq`` first).

        ``columns`` names the columns to read (dotted paths for nested fields;
        None: all). ``where`` is a pyarrow compute expression. ``start``
        (inclusive) and ``end`` (exclusive) are instants (ns, aware datetime,
        ISO 8601); ``from_seq`` is inclusive, ``to_seq`` exclusive. ``order``
        is ``"seq"``, ``"time"`` ((timestamp, ``_seq``)) or None (as stored,
        fastest). ``prune`` (an expression, like ``where``) skips the row groups
        whose statistics rule it out and filters nothing. ``positions`` adds
        ``_segment`` and ``_row``: where each event is stored (-1, -1 in the
        memtable), for :func:`~tidal.store.seq_read.read_rows`.
        Read the reader
        before closing the snapshot; see :mod:`tidal.store.scan`.
        """
        return scan(self, columns, where, start=parse_instant(start, name="start"),
                    end=parse_instant(end, name="end"), from_seq=from_seq, to_seq=to_seq,
                    order=order, ts_field=self.ts_field, prune=prune, positions=positions)

    @property
    def closed(self) -> bool:
        return self._release is None

    def close(self) -> None:
        """Release the segments this snapshot pins. Idempotent."""
        release, self._release = self._release, None
        if release is not None:
            release(self)

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Readers:
    """Pins segments for open snapshots and deletes retired ones when unpinned.

    Args:
        store: where retired segments are deleted.
        live: the segment ids the current manifest lists (never deleted).
    """

    def __init__(self, store: SegmentStore, live: Callable[[], set[int]],
                 ts_field: str = "timestamp") -> None:
        self._store = store
        self.ts_field = ts_field
        self._live = live
        self._lock = threading.Lock()
        self._pins: Counter[int] = Counter()
        self._retired: dict[int, SegmentMeta] = {}
        self.on_error: Callable[[str, BaseException], None] | None = None

    def open(self, segments: tuple[SegmentMeta, ...], memtables: tuple[MemView, ...],
             max_seq: int) -> Snapshot:
        """A snapshot of these parts, pinning its segments."""
        with self._lock:
            self._pins.update(meta.id for meta in segments)
        return Snapshot(segments, memtables, max_seq, self._store, self._release,
                        self.ts_field)

    def _release(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._pins.subtract(meta.id for meta in snapshot.segments)
            self._pins = +self._pins
        self.collect()

    def retire(self, metas: Iterable[SegmentMeta]) -> None:
        """Mark segments that left the manifest for deletion once unpinned."""
        with self._lock:
            self._retired.update((meta.id, meta) for meta in metas)
        self.collect()

    def collect(self) -> None:
        """Delete retired segments that no snapshot pins and no manifest lists.

        A deletion that fails (a read-only or broken disk) is kept for the next
        try and reported through :attr:`on_error`; the segments are harmless.
        """
        if not self._retired:
            return
        live = self._live()
        with self._lock:
            doomed = [m for i, m in self._retired.items() if not self._pins[i] and i not in live]
            for meta in doomed:
                del self._retired[meta.id]
        if not doomed:
            return
        try:
            self._store.remove(doomed)
        except OSError as exc:
            with self._lock:
                self._retired.update((meta.id, meta) for meta in doomed)
            if self.on_error is not None:
                self.on_error("segment cleanup", exc)

    @property
    def open_snapshots(self) -> int:
        """How many segment pins are held (for stats)."""
        with self._lock:
            return sum(self._pins.values())
