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

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tidal.errors import CorruptionError
from tidal.model.storable import restored, restored_schema
from tidal.store import manifest as manifest_io
from tidal.store import segment as segment_io
from tidal.store.cache import RunCache
from tidal.store.fs import FileSystem
from tidal.store.manifest import Manifest
from tidal.store.run import SortedRun
from tidal.store.segment import SegmentMeta, WriteProfile
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

    def load_run(self, meta: SegmentMeta) -> SortedRun:
        """The segment as a sorted run (maybe cached)."""
        ...

    def table(self, meta: SegmentMeta) -> pa.Table:
        """The segment's events, sorted by (entity, timestamp, ``_seq``)."""
        ...

    def schema(self, meta: SegmentMeta) -> pa.Schema:
        """The segment's schema (from its footer alone)."""
        ...

    def batches(self, meta: SegmentMeta, columns: Sequence[str] | None,
                where: pc.Expression | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """The segment's rows matching ``where`` (fields it has), top-level ``columns``
        only; row groups that statistics rule out are not read."""
        ...

    def entities(self, meta: SegmentMeta) -> list[str]:
        """The segment's distinct entities."""
        ...

    def paths(self, metas: Sequence[SegmentMeta]) -> list[str] | None:
        """Verified Parquet files of ``metas``, or None when segments are not files."""
        ...

    def holds(self, meta: SegmentMeta) -> bool:
        """Whether ``load_run`` of ``meta`` is served from memory."""
        ...

    def remove(self, metas: Iterable[SegmentMeta]) -> None:
        """Delete segments no manifest or reader refers to any more."""
        ...

    def commit(self, manifest: Manifest) -> None:
        """Make ``manifest`` the durable list of live segments."""
        ...

    @property
    def cache_bytes(self) -> int:
        """Decoded segment bytes held in memory."""
        ...


_PARQUET = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(
    page_checksum_verification=True))
"""Parquet reads that check every page against its checksum."""


class DiskSegments:
    """Segments as checksummed Parquet files under ``<store>/segments``."""

    durable = True

    def __init__(self, fs: FileSystem, directory: Path, ts_field: str, cache: RunCache) -> None:
        self.fs = fs
        self.root = directory
        self.directory = directory / "segments"
        self.ts_field = ts_field
        self.cache = cache
        self._verified: set[int] = set()
        self._footers: set[int] = set()
        self._schemas: dict[int, pa.Schema] = {}
        self._lock = threading.Lock()

    def write(self, run: SortedRun, segment_id: int, profile: WriteProfile,
              positions: Mapping[str, int] | None = None) -> SegmentMeta:
        meta = segment_io.write_segment(self.fs, run, self.directory, segment_id,
                                        self.ts_field, profile, positions)
        with self._lock:
            self._verified.add(segment_id)
        return meta

    def positions(self, meta: SegmentMeta) -> dict[str, int]:
        return segment_io.positions_in(self.directory / meta.data_name)

    def load_run(self, meta: SegmentMeta) -> SortedRun:
        return self.cache.get(meta.id, lambda: segment_io.load_run(
            meta, self.directory, self.ts_field))

    def table(self, meta: SegmentMeta) -> pa.Table:
        return segment_io.read_table(meta, self.directory)

    def _checked(self, meta: SegmentMeta) -> Path:
        """The segment's file, its footer checked once (pages are checked as read)."""
        path = self.directory / meta.data_name
        if meta.id not in self._footers:
            segment_io.verify_footer(meta, self.directory)
            with self._lock:
                self._footers.add(meta.id)
        return path

    def schema(self, meta: SegmentMeta) -> pa.Schema:
        found = self._schemas.get(meta.id)
        if found is None:
            path = self._checked(meta)
            try:
                found = restored_schema(pq.read_schema(path))
            except (OSError, pa.ArrowException) as exc:
                raise CorruptionError(f"segment footer unreadable: {exc}",
                                      path=str(path)) from exc
            with self._lock:
                self._schemas[meta.id] = found
        return found

    def batches(self, meta: SegmentMeta, columns: Sequence[str] | None,
                where: pc.Expression | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
        path = self._checked(meta)
        try:
            dataset = ds.dataset(path, format=_PARQUET)
            for batch in dataset.to_batches(columns=columns, filter=where,
                                            batch_size=batch_rows):
                yield from restored(pa.Table.from_batches([batch])).to_batches()
        except FileNotFoundError as exc:
            raise CorruptionError("segment file is missing", path=str(path)) from exc
        except (OSError, pa.ArrowException) as exc:
            raise CorruptionError(f"segment unreadable: {exc}", path=str(path)) from exc

    def entities(self, meta: SegmentMeta) -> list[str]:
        return segment_io.read_index(meta, self.directory).column("entity").to_pylist()

    def paths(self, metas: Sequence[SegmentMeta]) -> list[str]:
        for meta in metas:
            if meta.id not in self._verified:  # DuckDB reads the file: check it once first
                segment_io.read_verified(self.directory / meta.data_name, meta.data_bytes,
                                         meta.data_crc)
                with self._lock:
                    self._verified.add(meta.id)
        return [str(self.directory / meta.data_name) for meta in metas]

    def holds(self, meta: SegmentMeta) -> bool:
        return self.cache.holds(meta.id)

    def remove(self, metas: Iterable[SegmentMeta]) -> None:
        metas = list(metas)
        for meta in metas:
            self.cache.discard(meta.id)
            with self._lock:
                self._verified.discard(meta.id)
                self._footers.discard(meta.id)
                self._schemas.pop(meta.id, None)
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

    def load_run(self, meta: SegmentMeta) -> SortedRun:
        return self._runs[meta.id]

    def table(self, meta: SegmentMeta) -> pa.Table:
        return self._runs[meta.id].table

    def schema(self, meta: SegmentMeta) -> pa.Schema:
        return self._runs[meta.id].table.schema

    def batches(self, meta: SegmentMeta, columns: Sequence[str] | None,
                where: pc.Expression | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
        table = self._runs[meta.id].table
        if where is not None:
            table = table.filter(where)
        if columns is not None:
            table = table.select(list(columns))
        yield from table.to_batches(max_chunksize=batch_rows)

    def entities(self, meta: SegmentMeta) -> list[str]:
        return list(self._runs[meta.id].index)

    def paths(self, metas: Sequence[SegmentMeta]) -> None:
        return None

    def holds(self, meta: SegmentMeta) -> bool:
        return True

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

    def write(self, frames: Sequence[PendingFrame]) -> int:
        return 0

    def rotate(self, first_seq: int) -> None:
        return None

    def drop_before(self, first_seq: int) -> None:
        return None

    def size_bytes(self) -> int:
        return 0

    def close(self) -> None:
        return None
