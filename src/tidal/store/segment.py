"""Segments: immutable Parquet files of one sorted run, plus an entity-index sidecar.

``seg-<id>.parquet`` holds the events sorted by (entity, timestamp, ``_seq``),
zstd-compressed with dictionary encoding (delta encoding for ``_seq`` and a
top-level timestamp). ``seg-<id>.index.arrow`` maps each entity to its row
range. Both are encoded in memory, checksummed (crc32, recorded in the
manifest) and written through :meth:`FileSystem.write_files_atomic`; a segment
exists for readers only once the manifest lists it.

Every read verifies the file's size and checksum first: a damaged file raises
:class:`CorruptionError` naming it, never wrong or missing rows. Parquet pages
carry their own checksums as well.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather

from tidal.errors import CorruptionError, StorageError
from tidal.model.storable import restored, storable
from tidal.store.fs import FileSystem
from tidal.store.run import INDEX_SCHEMA, SEQ, SortedRun, seq_array

ROW_GROUP_ROWS = 4096
"""Rows per Parquet row group: an entity's slice is read by the row groups it spans,
so they are small; each has statistics for ``_seq``, the timestamp and the entity."""
DICTIONARY_SAMPLE_ROWS = 8192
DICTIONARY_MAX_DISTINCT_RATIO = 0.4
POSITIONS_KEY = "tidal.positions"
NAME_PATTERN = r"seg-(\d{8,})\.(parquet|index\.arrow)"
"""Segment file names; nothing else in ``segments/`` is the store's to delete."""


@dataclass(frozen=True)
class WriteProfile:
    """How hard to compress: flushes must keep up with ingest, compactions shrink."""

    level: int
    zstd_level: int
    dictionary_page_bytes: int
    dictionary_sample_rows: int | None  # None: count distinct values over the whole column
    number_encoding: str  # for ``_seq`` and a top-level timestamp


FLUSH = WriteProfile(level=0, zstd_level=1, dictionary_page_bytes=1 << 20,
                     dictionary_sample_rows=DICTIONARY_SAMPLE_ROWS,
                     number_encoding="DELTA_BINARY_PACKED")
COMPACT = dataclasses.replace(FLUSH, level=1)
"""Compaction merges segments into fewer, longer ones with the flush's encodings:
on small row groups of sorted events, slower zstd levels, larger dictionaries and
other number encodings measured no smaller (``docs/benchmarks.md``, compact)."""


@dataclass(frozen=True)
class SegmentMeta:
    """What the manifest records of one segment.

    ``bytes`` is the size of both files; ``data_bytes`` of the Parquet file.
    ``data_crc`` and ``index_crc`` are crc32 checksums of the two files;
    ``footer_crc`` covers the Parquet footer, the last ``footer_bytes`` bytes.
    A read of part of a segment checks the footer against it and every page it
    reads against the page's own checksum.
    """

    id: int
    rows: int
    min_ts: int
    max_ts: int
    min_seq: int
    max_seq: int
    bytes: int
    level: int = 0  # 0: written by a flush (fast encoding); 1: by a compaction
    data_bytes: int = 0
    data_crc: int = 0
    index_crc: int = 0
    footer_bytes: int = 0  # the Parquet footer (metadata, its length, magic) at the end
    footer_crc: int = 0

    @property
    def data_name(self) -> str:
        return segment_name(self.id, "parquet")

    @property
    def index_name(self) -> str:
        return segment_name(self.id, "index.arrow")


def segment_name(segment_id: int, kind: str) -> str:
    """The file name of segment ``segment_id``'s ``parquet`` or ``index.arrow`` file."""
    return f"seg-{segment_id:08d}.{kind}"


def describe(run: SortedRun, segment_id: int, *, level: int, data: bytes | pa.Buffer = b"",
             index: bytes | pa.Buffer = b"") -> SegmentMeta:
    """The manifest entry of ``run`` stored as segment ``segment_id`` in ``data`` and ``index``."""
    size = len(data) + len(index)
    view = memoryview(data)
    footer = _footer_size(view[-8:]) if len(view) >= 12 else 0
    crcs = {"data_bytes": len(data), "data_crc": zlib.crc32(view),
            "index_crc": zlib.crc32(memoryview(index)), "footer_bytes": footer,
            "footer_crc": zlib.crc32(view[len(view) - footer:]) if footer else 0}
    if run.rows == 0:
        return SegmentMeta(segment_id, 0, 0, 0, 0, 0, size, level, **crcs)
    seqs = seq_array(run.table)
    return SegmentMeta(id=segment_id, rows=run.rows, min_ts=int(run.ts.min()),
                       max_ts=int(run.ts.max()), min_seq=int(seqs.min()),
                       max_seq=int(seqs.max()), bytes=size, level=level, **crcs)


def _encodings(table: pa.Table, ts_field: str, profile: WriteProfile
               ) -> tuple[list[str], dict[str, str]]:
    """Choose encodings: ``_seq`` and the timestamp by the profile's number
    encoding; dictionary encoding for columns (and struct fields) with few
    distinct values.

    Dictionary encoding is tried only where (a sample of) the column shows few
    distinct values: attempting it on high-cardinality columns costs more time
    and space than it saves.
    """
    schema = table.schema
    delta = {SEQ: profile.number_encoding}
    if ts_field in schema.names and pa.types.is_timestamp(schema.field(ts_field).type):
        delta[ts_field] = profile.number_encoding
    sample_rows = profile.dictionary_sample_rows or table.num_rows
    step = max(1, table.num_rows // max(1, sample_rows))
    sample = table.take(pa.array(range(0, table.num_rows, step))) if step > 1 else table
    dictionary = []
    for name in schema.names:
        if name not in delta:
            dictionary += _dictionary_leaves(name, sample.column(name), len(sample))
    return dictionary, delta


def _dictionary_leaves(path: str, column: pa.ChunkedArray, rows: int) -> list[str]:
    """The column paths under ``path`` to dictionary-encode: a struct's fields each
    on their own (by their dotted Parquet path), other nested columns whole."""
    kind = column.type
    if pa.types.is_null(kind):
        return []  # nothing to encode
    if pa.types.is_struct(kind) and kind.num_fields and not any(
            "." in kind.field(i).name for i in range(kind.num_fields)):
        return [leaf for i in range(kind.num_fields)
                for leaf in _dictionary_leaves(f"{path}.{kind.field(i).name}",
                                               pc.struct_field(column, [i]), rows)]
    if pa.types.is_nested(kind) or rows == 0 or (
            pc.count_distinct(column).as_py() <= DICTIONARY_MAX_DISTINCT_RATIO * rows):
        return [path]
    return []


def encode(run: SortedRun, ts_field: str, entity_field: str, profile: WriteProfile,
           positions: Mapping[str, int] | None = None) -> tuple[pa.Buffer, pa.Buffer]:
    """The Parquet file and the index sidecar of ``run``, in memory.

    ``positions``: the source positions its events' appends committed, kept in
    the file's metadata so that a repair can restore them without the manifest.
    """
    import pyarrow.parquet as pq  # (loads on first use)
    table = storable(run.table)  # e.g. ``{}``, which Parquet cannot hold as it is
    if positions:
        table = table.replace_schema_metadata({
            **(table.schema.metadata or {}), POSITIONS_KEY: msgspec.json.encode(positions)})
    dictionary, delta = _encodings(table, ts_field, profile)
    data = pa.BufferOutputStream()
    with pq.ParquetWriter(data, table.schema, compression="zstd",
                          compression_level=profile.zstd_level, use_dictionary=dictionary,
                          column_encoding=delta,
                          dictionary_pagesize_limit=profile.dictionary_page_bytes,
                          write_statistics=[SEQ, ts_field, entity_field],
                          write_page_checksum=True) as writer:
        cuts = row_group_cuts(run, ROW_GROUP_ROWS)
        for lo, hi in zip(cuts, cuts[1:], strict=False):
            if hi > lo:  # an empty run is a file with no row group
                writer.write_table(table.slice(lo, hi - lo), row_group_size=hi - lo)
    return data.getvalue(), encode_index(run)


def row_group_cuts(run: SortedRun, max_rows: int) -> list[int]:
    """Row group boundaries of ``run``: groups of at most ``max_rows`` rows, cut where
    an entity starts whenever one fits, so that an entity of up to ``max_rows``
    events lies in one row group (a timeline then decodes one group per segment)."""
    n = run.rows
    if n == 0:
        return [0, 0]
    starts = np.fromiter((lo for lo, _ in run.index.values()), dtype=np.int64,
                         count=len(run.index))
    starts.sort()
    cuts = [0]
    while n - cuts[-1] > max_rows:
        limit = cuts[-1] + max_rows
        at = int(starts[max(0, int(starts.searchsorted(limit, "right")) - 1)]) if len(
            starts) else 0
        cuts.append(at if at > cuts[-1] else limit)  # one entity fills it: cut inside
    cuts.append(n)
    return cuts


def encode_index(run: SortedRun) -> pa.Buffer:
    """The entity-index sidecar of ``run``, in memory."""
    index = pa.BufferOutputStream()
    feather.write_feather(run.index_table(), index, compression="uncompressed")
    return index.getvalue()


def write_segment(fs: FileSystem, run: SortedRun, directory: Path, segment_id: int,
                  ts_field: str, entity_field: str, profile: WriteProfile = FLUSH,
                  positions: Mapping[str, int] | None = None) -> SegmentMeta:
    """Write ``run`` durably as segment ``segment_id`` in ``directory``; return its metadata."""
    data_path = directory / segment_name(segment_id, "parquet")
    try:
        data, index = encode(run, ts_field, entity_field, profile, positions)
        fs.write_files_atomic([(data_path, data),
                               (directory / segment_name(segment_id, "index.arrow"), index)])
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"could not write segment: {exc}", path=str(data_path)) from exc
    return describe(run, segment_id, level=profile.level, data=data, index=index)


def _footer_size(tail: memoryview | bytes) -> int:
    """Bytes of a Parquet file's footer (metadata, its length and the magic), from its
    last eight bytes."""
    return int.from_bytes(bytes(tail[:4]), "little") + 8


def verify_footer(meta: SegmentMeta, directory: Path) -> None:
    """Check that segment ``meta``'s Parquet footer is the one written."""
    path = directory / meta.data_name
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            if size != meta.data_bytes:
                raise CorruptionError(f"segment file has {size} bytes, the manifest says "
                                      f"{meta.data_bytes}", path=str(path))
            fh.seek(size - meta.footer_bytes)
            footer = fh.read(meta.footer_bytes)
    except FileNotFoundError as exc:
        raise CorruptionError("segment file is missing", path=str(path)) from exc
    except OSError as exc:
        raise StorageError(f"could not read segment file: {exc}", path=str(path)) from exc
    if zlib.crc32(footer) != meta.footer_crc or _footer_size(footer[-8:]) != meta.footer_bytes:
        raise CorruptionError("segment footer checksum mismatch", path=str(path))


def read_verified(path: Path, size: int, crc: int) -> pa.Buffer:
    """The bytes of ``path`` after checking its size and checksum."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise CorruptionError("segment file is missing", path=str(path)) from exc
    except OSError as exc:
        raise StorageError(f"could not read segment file: {exc}", path=str(path)) from exc
    if len(data) != size:
        raise CorruptionError(f"segment file has {len(data)} bytes, the manifest says {size}",
                              path=str(path))
    if zlib.crc32(data) != crc:
        raise CorruptionError("segment file checksum mismatch", path=str(path))
    return pa.py_buffer(data)


def read_table(meta: SegmentMeta, directory: Path) -> pa.Table:
    """The segment's events (sorted by entity, timestamp, ``_seq``), verified."""
    import pyarrow.parquet as pq  # (loads on first use)
    path = directory / meta.data_name
    data = read_verified(path, meta.data_bytes, meta.data_crc)
    try:
        table = pq.read_table(pa.BufferReader(data), page_checksum_verification=True)
    except (OSError, pa.ArrowException) as exc:
        raise CorruptionError(f"segment file unreadable: {exc}", path=str(path)) from exc
    if table.num_rows != meta.rows:
        raise CorruptionError(f"segment holds {table.num_rows} rows, the manifest says "
                              f"{meta.rows}", path=str(path))
    return restored(table)


def read_index(meta: SegmentMeta, directory: Path) -> pa.Table:
    """The segment's entity index (entity, start row, stop row), verified."""
    path = directory / meta.index_name
    data = read_verified(path, meta.bytes - meta.data_bytes, meta.index_crc)
    try:
        index = feather.read_table(pa.BufferReader(data))
    except (OSError, pa.ArrowException) as exc:
        raise CorruptionError(f"segment index unreadable: {exc}", path=str(path)) from exc
    if not index.schema.equals(INDEX_SCHEMA):
        raise CorruptionError("segment index has the wrong columns", path=str(path))
    if any(column.null_count for column in index.columns):
        raise CorruptionError("segment index holds nulls", path=str(path))
    starts = np.asarray(index.column("start"), dtype=np.int64)
    stops = np.asarray(index.column("stop"), dtype=np.int64)
    if index.num_rows and (starts.min() < 0 or stops.max() > meta.rows
                           or np.any(starts > stops)):
        raise CorruptionError("segment index row ranges out of bounds", path=str(path))
    return index


def positions_in(path: Path) -> dict[str, int]:
    """The source positions a segment file records (see :func:`encode`)."""
    import pyarrow.parquet as pq  # (loads on first use)
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        raise CorruptionError(f"segment file unreadable: {exc}", path=str(path)) from exc
    raw = metadata.get(POSITIONS_KEY.encode())
    return {str(k): int(v) for k, v in msgspec.json.decode(raw).items()} if raw else {}
