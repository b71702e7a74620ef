"""A segment opened for reads: entity slices read row group by row group, never the whole file.

A segment's Parquet file is sorted by (entity, timestamp, ``_seq``) in small row
groups, and its index sidecar gives each entity's row range. An entity's
events are therefore the rows of the few row groups its range spans: a
timeline decodes those once and keeps them in a byte-bounded cache shared by
all segments: the entity's own rows when it fills an eighth of them or more, else the
decoded row groups, which its neighbours share. Opening reads only the footer, checked against the
manifest's checksum; every page read is checked against its own checksum.

The file is memory-mapped while open, so a segment that compaction deletes
stays readable for a reader that already holds it.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    import pyarrow.parquet as pq

from tidal.errors import CorruptionError
from tidal.model.storable import restored, restored_schema
from tidal.store.cache import ByteCache
from tidal.store.run import Slice, time_array
from tidal.store.segment import SegmentMeta, read_index, verify_footer

if TYPE_CHECKING:
    import pyarrow.dataset as ds


def slice_bytes(part: Slice) -> int:
    """Memory a cached entity slice holds."""
    return part.table.nbytes + part.ts.nbytes


TAKE_THREADS = 8
"""Row groups a take reads before it decodes their columns on several threads."""


class SegmentFile:
    """One segment's Parquet file, opened for reads by row group."""

    def __init__(self, meta: SegmentMeta, directory: Path, ts_field: str,
                 cache: ByteCache[Slice]) -> None:
        self.meta = meta
        self.directory = directory
        self.path = directory / meta.data_name
        self.ts_field = ts_field
        self._cache = cache
        self._lock = threading.Lock()  # one Parquet reader, one thread at a time
        self._retired = False

    @functools.cached_property
    def _parquet(self) -> pq.ParquetFile:
        """The Parquet file, its footer checked against the manifest (opened once)."""
        verify_footer(self.meta, self.directory)
        return self._reader()

    def reader(self) -> pq.ParquetFile:
        """A reader of its own for one thread (the footer checked once per file)."""
        self._parquet  # noqa: B018 - opens and checks the footer the first time
        return self._reader()

    def _reader(self) -> pq.ParquetFile:
        """A new reader of the memory-mapped file (readers are not shared by threads)."""
        import pyarrow.parquet as pq  # (loads on first use)
        try:
            found = pq.ParquetFile(pa.memory_map(str(self.path)),
                                   page_checksum_verification=True)
            rows = found.metadata.num_rows
        except FileNotFoundError as exc:
            raise CorruptionError("segment file is missing", path=str(self.path)) from exc
        except (OSError, pa.ArrowException) as exc:
            raise CorruptionError(f"segment footer unreadable: {exc}",
                                  path=str(self.path)) from exc
        if rows != self.meta.rows:
            raise CorruptionError(f"segment holds {rows} rows, the manifest says "
                                  f"{self.meta.rows}", path=str(self.path))
        return found

    @functools.cached_property
    def fragment(self) -> ds.ParquetFileFragment:  # (pyarrow.dataset loads pandas: on use)
        """The file as a dataset fragment, for pruning row groups by their statistics
        (its footer parsed once)."""
        self._parquet  # noqa: B018 - the footer checked against the manifest first
        import pyarrow.dataset as ds

        found = ds.ParquetFileFormat().make_fragment(str(self.path), _local())
        found.ensure_complete_metadata()
        return found

    @functools.cached_property
    def starts(self) -> np.ndarray:
        """The first row of each row group, then the row count."""
        metadata = self._parquet.metadata
        counts = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])

    @functools.cached_property
    def schema(self) -> pa.Schema:
        return restored_schema(self._parquet.schema_arrow)

    @property
    def time_range(self) -> tuple[int, int]:
        return self.meta.min_ts, self.meta.max_ts

    @functools.cached_property
    def index_table(self) -> pa.Table:
        """The index sidecar: entity, start row, stop row, in entity order (read once)."""
        return read_index(self.meta, self.directory)

    @functools.cached_property
    def index(self) -> dict[str, tuple[int, int]]:
        """Each entity's row range, from the index sidecar (read once)."""
        table = self.index_table
        return dict(zip(table.column("entity").to_pylist(),
                        zip(table.column("start").to_pylist(),
                            table.column("stop").to_pylist(), strict=True), strict=True))

    @property
    def entities(self) -> pa.Array:
        """The segment's distinct entities."""
        return self.index_table.column("entity").combine_chunks()

    def rows(self, lo: int, hi: int, *, own_reader: bool = False) -> pa.Table:
        """Rows ``[lo, hi)``, decoded from the row groups they lie in (not copied out).

        ``own_reader``: read through a reader of its own, so that threads reading
        other rows of this file at the same time (compaction) do not wait.
        """
        if hi <= lo:
            return self.schema.empty_table()
        first = int(np.searchsorted(self.starts, lo, "right")) - 1
        last = int(np.searchsorted(self.starts, hi - 1, "right")) - 1
        numbers = list(range(first, last + 1))
        try:
            if own_reader:
                table = self.reader().read_row_groups(numbers, use_threads=False)
            else:
                with self._lock:
                    table = self._parquet.read_row_groups(numbers, use_threads=False)
        except (OSError, pa.ArrowException) as exc:
            raise CorruptionError(f"segment row groups {first}-{last} unreadable: {exc}",
                                  path=str(self.path)) from exc
        base = int(self.starts[first])
        expected = int(self.starts[last + 1]) - base
        if table.num_rows != expected:
            raise CorruptionError(f"segment row groups {first}-{last} hold {table.num_rows} "
                                  f"rows, the footer says {expected}", path=str(self.path))
        return restored(table).slice(lo - base, hi - lo)

    def take(self, positions: np.ndarray) -> pa.Table:
        """Rows at ``positions`` (ascending), decoding only the row groups they lie in."""
        if len(positions) == 0:
            return self.schema.empty_table()
        group_of = np.searchsorted(self.starts, positions, "right") - 1
        groups = np.unique(group_of)
        try:
            table = self.reader().read_row_groups(groups.tolist(),  # (columns in parallel)
                                                  use_threads=len(groups) >= TAKE_THREADS)
        except (OSError, pa.ArrowException) as exc:
            raise CorruptionError(f"segment row groups unreadable: {exc}",
                                  path=str(self.path)) from exc
        sizes = self.starts[groups + 1] - self.starts[groups]
        if table.num_rows != int(sizes.sum()):
            raise CorruptionError(f"segment row groups hold {table.num_rows} rows, the footer "
                                  f"says {int(sizes.sum())}", path=str(self.path))
        offsets = np.cumsum(sizes) - sizes
        local = positions - self.starts[group_of] + offsets[np.searchsorted(groups, group_of)]
        return restored(table).take(pa.array(local))

    def entity_slice(self, entity: str, start: int | None, end: int | None) -> Slice | None:
        """``entity``'s events within ``[start, end)``, in (timestamp, ``_seq``) order.

        Its row groups are decoded once and kept in the shared cache: an entity
        that fills an eighth of them or more keeps only its own rows (copied out), small
        entities keep the decoded row groups they share, so that their
        neighbours are found there too. Later calls slice the cached rows.
        """
        bounds = self.index.get(entity)
        if bounds is None:
            return None
        lo, hi = bounds
        rows = self._cache.find((self.meta.id, entity))
        if rows is None:
            first, last = self._groups_of(lo, hi)
            groups = self._cache.find((self.meta.id, first, last))
            if groups is None:
                base, top = int(self.starts[first]), int(self.starts[last + 1])
                table = self.rows(base, top)
                if 8 * (hi - lo) >= top - base:  # an eighth or more: its own rows
                    own = table.slice(lo - base, hi - lo)
                    own = own.take(pa.array(np.arange(own.num_rows)))
                    rows = Slice(own, time_array(own, self.ts_field))
                    self._keep((self.meta.id, entity), rows)
                    return rows.within(start, end)
                table = table.combine_chunks()
                groups = Slice(table, time_array(table, self.ts_field))
                self._keep((self.meta.id, first, last), groups)
            base = int(self.starts[first])
            rows = groups.part(lo - base, hi - base)
        return rows.within(start, end)

    def retire(self) -> None:
        """The segment was deleted: readers still holding it may read on, uncached."""
        self._retired = True

    def _keep(self, key: tuple[object, ...], value: Slice) -> None:
        if not self._retired:
            self._cache.put(key, value)

    def _groups_of(self, lo: int, hi: int) -> tuple[int, int]:
        """The first and last row group of rows ``[lo, hi)``."""
        return (int(self.starts.searchsorted(lo, "right")) - 1,
                int(self.starts.searchsorted(hi - 1, "right")) - 1)

    def holds(self, entity: str) -> bool:
        return entity in self.index

    def cached(self, entity: str) -> bool:
        if (self.meta.id, entity) in self._cache:
            return True
        bounds = self.index.get(entity)
        return bounds is not None and (self.meta.id, *self._groups_of(*bounds)) in self._cache


def _local() -> object:
    """The local file system (pyarrow.fs loads its S3/GCS/Azure modules: on first use)."""
    import pyarrow.fs as pafs

    return pafs.LocalFileSystem()
