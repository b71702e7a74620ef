"""A segment opened for reads: entity slices read row group by row group, never the whole file.

A segment's Parquet file is sorted by (entity, timestamp, ``_seq``) in small row
groups, and its index sidecar gives each entity's row range. An entity's
events are therefore the rows of the few row groups its range spans: a
timeline decodes those (through a byte-bounded cache shared by all segments)
and slices them. Opening reads only the footer, checked against the
manifest's checksum; every page read is checked against its own checksum.

The file is memory-mapped while open, so a segment that compaction deletes
stays readable for a reader that already holds it.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tidal.errors import CorruptionError
from tidal.model.storable import restored, restored_schema
from tidal.store import _kernels
from tidal.store.cache import ByteCache
from tidal.store.run import Slice, time_array
from tidal.store.segment import SegmentMeta, read_index, verify_footer


def slice_bytes(part: Slice) -> int:
    """Memory a cached row group holds."""
    return part.table.nbytes + part.ts.nbytes


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

    @functools.cached_property
    def _parquet(self) -> pq.ParquetFile:
        """The Parquet file, its footer checked against the manifest (opened once)."""
        verify_footer(self.meta, self.directory)
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
    def _index_table(self) -> pa.Table:
        return read_index(self.meta, self.directory)

    @functools.cached_property
    def index(self) -> dict[str, tuple[int, int]]:
        """Each entity's row range, from the index sidecar (read once)."""
        table = self._index_table
        return dict(zip(table.column("entity").to_pylist(),
                        zip(table.column("start").to_pylist(),
                            table.column("stop").to_pylist(), strict=True), strict=True))

    @property
    def entities(self) -> pa.Array:
        """The segment's distinct entities."""
        return self._index_table.column("entity").combine_chunks()

    def _group(self, number: int) -> Slice:
        return self._cache.get((self.meta.id, number), functools.partial(self._read, number))

    def _read(self, number: int) -> Slice:
        try:
            with self._lock:
                table = self._parquet.read_row_group(number, use_threads=False)
        except (OSError, pa.ArrowException) as exc:
            raise CorruptionError(f"segment row group {number} unreadable: {exc}",
                                  path=str(self.path)) from exc
        expected = int(self.starts[number + 1] - self.starts[number])
        if table.num_rows != expected:
            raise CorruptionError(f"segment row group {number} holds {table.num_rows} rows, "
                                  f"its footer says {expected}", path=str(self.path))
        table = restored(table).combine_chunks()
        return Slice(table, time_array(table, self.ts_field))

    def entity_slice(self, entity: str, start: int | None, end: int | None) -> Slice | None:
        """``entity``'s events within ``[start, end)``, in (timestamp, ``_seq``) order,
        decoding only the row groups they lie in."""
        bounds = self.index.get(entity)
        if bounds is None:
            return None
        lo, hi = bounds
        first = int(np.searchsorted(self.starts, lo, "right")) - 1
        last = int(np.searchsorted(self.starts, hi - 1, "right")) - 1
        tables, times = [], []
        for number in range(first, last + 1):
            group = self._group(number)
            base = int(self.starts[number])
            a, b = max(lo, base) - base, min(hi, int(self.starts[number + 1])) - base
            tables.append(group.table.slice(a, b - a))
            times.append(group.ts[a:b])
        ts = times[0] if len(times) == 1 else np.concatenate(times)
        i, j = _kernels.time_window(ts, 0, len(ts), start, end)
        if j <= i:
            return None
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        return Slice(table.slice(i, j - i), ts[i:j])
