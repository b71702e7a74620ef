"""Where segments and the manifest live: on disk or in memory, behind one contract.

:class:`SegmentStore` is what the engine asks of a backend: write a sorted
run as a segment, read one back (as a sorted run, a table, its entities),
name its files for DuckDB, delete it, and commit a manifest. :class:`DiskSegments`
keeps Parquet files checked against the manifest's checksums;
:class:`MemorySegments` keeps the runs themselves. The WAL side has the same
split: :class:`~tidal.store.wal.WalWriter` or :class:`NullLog`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.errors import CorruptionError
from tidal.model.paths import outermost, root_at
from tidal.model.storable import restored
from tidal.store import manifest as manifest_io
from tidal.store import segment as segment_io
from tidal.store.cache import ByteCache
from tidal.store.durations import Durations
from tidal.store.fs import FileSystem
from tidal.store.manifest import Manifest
from tidal.store.run import ROW, Slice, SliceSource, SortedRun
from tidal.store.segment import SegmentMeta, WriteProfile
from tidal.store.segment_file import SegmentFile
from tidal.store.wal import PendingFrame


class SegmentStore(Protocol):
    """The segment side of a backend."""

    durable: bool

    def write(self, run: SortedRun, segment_id: int, profile: WriteProfile,
              positions: Mapping[str, int] | None = None) -> SegmentMeta:
        """Store ``run`` as segment ``segment_id`` (durably, on disk), recording the
        source ``positions`` its appends committed."""
        ...

    def positions(self, meta: SegmentMeta) -> dict[str, int]:
        """The source positions segment ``meta`` records."""
        ...

    def source(self, meta: SegmentMeta) -> SliceSource:
        """The segment opened for entity slices (footer and index only, until asked)."""
        ...

    def lazy_source(self, meta: SegmentMeta) -> SliceSource:
        """The segment as a slice source that opens it only when first probed."""
        ...

    def table(self, meta: SegmentMeta) -> pa.Table:
        """The segment's events, sorted by (entity, timestamp, ``_seq``)."""
        ...

    def rows(self, meta: SegmentMeta, lo: int, hi: int) -> pa.Table:
        """Rows ``[lo, hi)`` of the segment, reading only the row groups they lie in."""
        ...

    def index_table(self, meta: SegmentMeta) -> pa.Table:
        """The segment's entity index: entity, start row, stop row, in entity order."""
        ...

    def take(self, meta: SegmentMeta, positions: np.ndarray) -> pa.Table:
        """The rows at ``positions`` (ascending), reading only the row groups they lie in."""
        ...

    def schema(self, meta: SegmentMeta) -> pa.Schema:
        """The segment's schema (from its footer alone)."""
        ...

    def batches(self, meta: SegmentMeta, columns: Sequence[str] | None,
                where: pc.Expression | None, batch_rows: int,
                prune: pc.Expression | None = None, positions: bool = False
                ) -> Iterator[pa.RecordBatch]:
        """The segment's rows matching ``where`` (fields it has), ``columns`` only
        (top-level columns, or struct leaves as dotted Parquet column paths: a leaf
        comes back inside its struct, or as a column named by its path); row groups
        whose statistics rule out ``where`` or ``prune`` (which filters nothing
        itself) are not read. ``positions``: a last column ``_row``, each row's
        position in the segment."""
        ...

    def entities(self, meta: SegmentMeta) -> pa.Array:
        """The segment's distinct entities."""
        ...

    def paths(self, metas: Sequence[SegmentMeta]) -> list[str] | None:
        """Verified Parquet files of ``metas``, or None when segments are not files."""
        ...

    def remove(self, metas: Iterable[SegmentMeta]) -> None:
        """Delete segments no manifest or reader refers to any more."""
        ...

    def commit(self, manifest: Manifest) -> None:
        """Make ``manifest`` the durable list of live segments."""
        ...

    @property
    def cache_bytes(self) -> int:
        """Decoded row groups held in memory."""
        ...


def _row_groups(segment: SegmentFile, where: pc.Expression) -> list[int] | None:
    """The row groups of a segment file whose statistics do not rule ``where`` out;
    None (all of them) when its statistics cannot be tested against ``where``."""
    try:
        return [group.id for group in segment.fragment.subset(where).row_groups]
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None


_PATHS_USED: dict[tuple[str, pa.Schema], tuple[str, ...]] = {}
""":func:`_paths_used` by the expression's text and the schema (a few hundred at most)."""


def _paths_used(where: pc.Expression, schema: pa.Schema) -> tuple[str, ...]:
    """The Parquet column paths of ``schema`` that ``where`` reads (a top-level column,
    or the children of a struct it reads): those it cannot do without (a filter
    that names a missing field fails to bind)."""
    key = (str(where), schema)
    if key in _PATHS_USED:
        return _PATHS_USED[key]
    used = []
    for i, field in enumerate(schema):
        if applies(where, schema.remove(i)):
            continue
        if not pa.types.is_struct(field.type) or "." in field.name:
            used.append(field.name)
            continue
        children = list(field.type)
        needed = [child.name for j, child in enumerate(children) if not applies(
            where, schema.set(i, field.with_type(pa.struct(children[:j] + children[j + 1:]))))]
        if not needed or any("." in name for name in needed):  # (the struct as a whole)
            used.append(field.name)
        else:
            used += [f"{field.name}.{name}" for name in needed]
    if len(_PATHS_USED) >= 256:
        _PATHS_USED.clear()
    _PATHS_USED[key] = tuple(used)
    return _PATHS_USED[key]


def applies(where: pc.Expression, schema: pa.Schema) -> bool:
    """Whether ``where`` can be evaluated over ``schema`` (every field it names is there)."""
    try:
        schema.empty_table().filter(where)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return False
    return True


def _rows_of(starts: np.ndarray, groups: list[int] | None) -> np.ndarray:
    """The positions of the rows of row groups ``groups`` (None: all), in order;
    ``starts``: each group's first row, then the row count."""
    if groups is None:
        return np.arange(int(starts[-1]), dtype=np.int64)
    picked = np.asarray(groups, dtype=np.int64)
    sizes = starts[picked + 1] - starts[picked]
    firsts = np.repeat(starts[picked] - np.cumsum(sizes) + sizes, sizes)
    return firsts + np.arange(int(sizes.sum()), dtype=np.int64)


def _root(path: str, schema: pa.Schema) -> str:
    return path if path in schema.names else path.split(".")[0]


class LazySegment:
    """A segment as a slice source for timelines, opened when first probed."""

    def __init__(self, meta: SegmentMeta, store: SegmentStore) -> None:
        self.meta = meta
        self.time_range = (meta.min_ts, meta.max_ts)
        self._store = store
        self._source: SliceSource | None = None

    def _opened(self) -> SliceSource:
        source = self._source
        if source is None:
            source = self._source = self._store.source(self.meta)
        return source

    def holds(self, entity: str) -> bool:
        return (self._source or self._opened()).holds(entity)

    def cached(self, entity: str) -> bool:
        return (self._source or self._opened()).cached(entity)

    def entity_slice(self, entity: str, start: int | None, end: int | None) -> Slice | None:
        return (self._source or self._opened()).entity_slice(entity, start, end)


class DiskSegments:
    """Segments as checksummed Parquet files under ``<store>/segments``."""

    durable = True

    def __init__(self, fs: FileSystem, directory: Path, ts_field: str, entity_field: str,
                 cache: ByteCache[Slice]) -> None:
        self.fs = fs
        self.root = directory
        self.directory = directory / "segments"
        self.ts_field = ts_field
        self.entity_field = entity_field
        self.cache = cache
        self._files: dict[int, SegmentFile] = {}
        self._verified: set[int] = set()
        self._lock = threading.Lock()

    def write(self, run: SortedRun, segment_id: int, profile: WriteProfile,
              positions: Mapping[str, int] | None = None) -> SegmentMeta:
        return segment_io.write_segment(self.fs, run, self.directory, segment_id,
                                        self.ts_field, self.entity_field, profile, positions)

    def positions(self, meta: SegmentMeta) -> dict[str, int]:
        return segment_io.positions_in(self.directory / meta.data_name)

    def lazy_source(self, meta: SegmentMeta) -> LazySegment:
        return LazySegment(meta, self)

    def source(self, meta: SegmentMeta) -> SegmentFile:
        found = self._files.get(meta.id)
        if found is None:
            found = SegmentFile(meta, self.directory, self.ts_field, self.cache)
            with self._lock:
                found = self._files.setdefault(meta.id, found)
        return found

    def table(self, meta: SegmentMeta) -> pa.Table:
        return segment_io.read_table(meta, self.directory)

    def rows(self, meta: SegmentMeta, lo: int, hi: int) -> pa.Table:
        return self.source(meta).rows(lo, hi, own_reader=True)

    def index_table(self, meta: SegmentMeta) -> pa.Table:
        return self.source(meta).index_table

    def take(self, meta: SegmentMeta, positions: np.ndarray) -> pa.Table:
        return self.source(meta).take(positions)

    def schema(self, meta: SegmentMeta) -> pa.Schema:
        return self.source(meta).schema

    def batches(self, meta: SegmentMeta, columns: Sequence[str] | None,
                where: pc.Expression | None, batch_rows: int,
                prune: pc.Expression | None = None, positions: bool = False
                ) -> Iterator[pa.RecordBatch]:
        segment = self.source(meta)
        path = segment.path
        try:
            # the row groups their statistics do not rule out (None: all)
            groups = None if where is None and prune is None else _row_groups(
                segment, where if prune is None else prune if where is None else where & prune)
            if groups == []:
                return
            schema = segment.schema
            read = columns if columns is None or where is None else outermost(
                [*columns, *_paths_used(where, schema)],
                top=schema.names)
            rows = _rows_of(segment.starts, groups) if positions else None
            at = 0
            for batch in segment.reader().iter_batches(batch_size=batch_rows,
                                                       row_groups=groups, columns=read):
                table = restored(pa.Table.from_batches([batch]))
                if rows is not None:
                    table = table.append_column(ROW, pa.array(rows[at:at + table.num_rows]))
                    at += table.num_rows
                if where is not None:
                    table = table.filter(where)
                    if columns is not None:  # (without the columns only where reads)
                        table = table.select(list(dict.fromkeys(
                            [*(_root(c, schema) for c in columns),
                             *([ROW] if rows is not None else [])])))
                yield from table.to_batches()
        except FileNotFoundError as exc:
            raise CorruptionError("segment file is missing", path=str(path)) from exc
        except (OSError, pa.ArrowException) as exc:
            raise CorruptionError(f"segment unreadable: {exc}", path=str(path)) from exc

    def entities(self, meta: SegmentMeta) -> pa.Array:
        return self.source(meta).entities

    def paths(self, metas: Sequence[SegmentMeta]) -> list[str]:
        for meta in metas:
            if meta.id not in self._verified:  # DuckDB reads the file: check it once first
                segment_io.read_verified(self.directory / meta.data_name, meta.data_bytes,
                                         meta.data_crc)
                with self._lock:
                    self._verified.add(meta.id)
        return [str(self.directory / meta.data_name) for meta in metas]

    def remove(self, metas: Iterable[SegmentMeta]) -> None:
        metas = list(metas)
        ids = {meta.id for meta in metas}
        with self._lock:
            for meta in metas:  # a reader still holding the file keeps its mapping
                self._verified.discard(meta.id)
                gone = self._files.pop(meta.id, None)
                if gone is not None:
                    gone.retire()  # what it reads from now on is not kept in the cache
        self.cache.discard(lambda key: isinstance(key, tuple) and key[0] in ids)
        self.fs.remove([self.directory / name for meta in metas
                        for name in (meta.data_name, meta.index_name)])

    def commit(self, manifest: Manifest) -> None:
        manifest_io.commit(self.fs, self.root, manifest)

    @property
    def cache_bytes(self) -> int:
        return self.cache.nbytes


class MemorySegments:
    """Segments as sorted runs in memory (the in-memory store)."""

    durable = False

    def __init__(self) -> None:
        self._runs: dict[int, SortedRun] = {}

    def write(self, run: SortedRun, segment_id: int, profile: WriteProfile,
              positions: Mapping[str, int] | None = None) -> SegmentMeta:
        self._runs[segment_id] = run
        # in memory there is nothing to re-encode: every segment counts as compacted
        meta = segment_io.describe(run, segment_id, level=1)
        return SegmentMeta(**{**meta.__dict__, "bytes": run.table.nbytes})

    def positions(self, meta: SegmentMeta) -> dict[str, int]:
        return {}  # nothing to repair in memory

    def source(self, meta: SegmentMeta) -> SortedRun:
        return self._runs[meta.id]

    def lazy_source(self, meta: SegmentMeta) -> SortedRun:
        return self._runs[meta.id]

    def table(self, meta: SegmentMeta) -> pa.Table:
        return self._runs[meta.id].table

    def rows(self, meta: SegmentMeta, lo: int, hi: int) -> pa.Table:
        return self._runs[meta.id].table.slice(lo, hi - lo)

    def index_table(self, meta: SegmentMeta) -> pa.Table:
        return self._runs[meta.id].index_table()

    def take(self, meta: SegmentMeta, positions: np.ndarray) -> pa.Table:
        return self._runs[meta.id].table.take(pa.array(positions))

    def schema(self, meta: SegmentMeta) -> pa.Schema:
        return self._runs[meta.id].table.schema

    def batches(self, meta: SegmentMeta, columns: Sequence[str] | None,
                where: pc.Expression | None, batch_rows: int,
                prune: pc.Expression | None = None, positions: bool = False
                ) -> Iterator[pa.RecordBatch]:
        table = self._runs[meta.id].table  # (no row groups: nothing to prune)
        if positions:
            table = table.append_column(ROW, pa.array(np.arange(table.num_rows,
                                                                dtype=np.int64)))
        if where is not None:
            table = table.filter(where)
        if columns is not None:  # (a struct's leaf reads its whole struct here)
            table = table.select(list(dict.fromkeys(
                [*(root for name in columns if (root := root_at(table.schema, name))),
                 *([ROW] if positions else [])])))
        yield from table.to_batches(max_chunksize=batch_rows)

    def entities(self, meta: SegmentMeta) -> pa.Array:
        return pa.array(list(self._runs[meta.id].index), pa.string())

    def paths(self, metas: Sequence[SegmentMeta]) -> None:
        return None

    def remove(self, metas: Iterable[SegmentMeta]) -> None:
        for meta in metas:
            self._runs.pop(meta.id, None)

    def commit(self, manifest: Manifest) -> None:
        return None

    @property
    def cache_bytes(self) -> int:
        return 0


class NullLog:
    """The WAL of an in-memory store: nothing to write."""

    durable = False
    sync_error: BaseException | None = None
    fsync_durations: Durations | None = None

    def write(self, frames: Sequence[PendingFrame]) -> int:
        return 0

    def write_stream(self, parts: Iterable[PendingFrame]) -> int:
        for _ in parts:  # the parts' tables still go to the memtable
            pass
        return 0

    def rotate(self, first_seq: int) -> None:
        return None

    def drop_before(self, first_seq: int) -> None:
        return None

    def size_bytes(self) -> int:
        return 0

    def close(self) -> None:
        return None
