"""Segments: immutable Parquet files of one sorted run, plus an entity-index sidecar.

``seg-<id>.parquet`` holds the events sorted by (entity, timestamp, ``_seq``),
zstd-compressed with dictionary encoding (delta encoding for ``_seq`` and a
top-level timestamp). ``seg-<id>.index.arrow`` maps each entity to its row
range. Both are written under temporary names, fsynced, and renamed; a segment
exists for readers only once the manifest lists it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather
import pyarrow.parquet as pq

from tidal.errors import StorageError
from tidal.store.run import SEQ, SortedRun, seq_array

ROW_GROUP_ROWS = 1 << 20
DICTIONARY_SAMPLE_ROWS = 8192
DICTIONARY_MAX_DISTINCT_RATIO = 0.4


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
COMPACT = WriteProfile(level=1, zstd_level=9, dictionary_page_bytes=64 << 20,
                       dictionary_sample_rows=None, number_encoding="BYTE_STREAM_SPLIT")


@dataclass(frozen=True)
class SegmentMeta:
    """What the manifest records of one segment."""

    id: int
    rows: int
    min_ts: int
    max_ts: int
    min_seq: int
    max_seq: int
    bytes: int
    level: int = 0  # 0: written by a flush (fast encoding); 1: by a compaction

    @property
    def data_name(self) -> str:
        return f"seg-{self.id:08d}.parquet"

    @property
    def index_name(self) -> str:
        return f"seg-{self.id:08d}.index.arrow"


def describe(run: SortedRun, segment_id: int, nbytes: int, level: int) -> SegmentMeta:
    """The manifest entry of ``run`` stored as segment ``segment_id``."""
    if run.rows == 0:
        return SegmentMeta(segment_id, 0, 0, 0, 0, 0, nbytes, level)
    seqs = seq_array(run.table)
    return SegmentMeta(id=segment_id, rows=run.rows, min_ts=int(run.ts.min()),
                       max_ts=int(run.ts.max()), min_seq=int(seqs.min()),
                       max_seq=int(seqs.max()), bytes=nbytes, level=level)


def _durable_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)


def _encodings(table: pa.Table, ts_field: str, profile: WriteProfile
               ) -> tuple[list[str], dict[str, str]]:
    """Choose encodings: ``_seq`` and the timestamp by the profile's number
    encoding; dictionary encoding for columns with few distinct values.

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
        if name in delta:
            continue
        column = sample.column(name)
        if pa.types.is_nested(column.type):
            dictionary.append(name)
        elif len(sample) == 0 or (pc.count_distinct(column).as_py()
                                  <= DICTIONARY_MAX_DISTINCT_RATIO * len(sample)):
            dictionary.append(name)
    return dictionary, delta


def write_segment(run: SortedRun, directory: Path, segment_id: int, ts_field: str,
                  profile: WriteProfile = FLUSH) -> SegmentMeta:
    """Write ``run`` as segment ``segment_id`` in ``directory``; return its metadata."""
    meta_stub = SegmentMeta(segment_id, 0, 0, 0, 0, 0, 0)
    data_path = directory / meta_stub.data_name
    index_path = directory / meta_stub.index_name
    dictionary, delta = _encodings(run.table, ts_field, profile)
    try:
        tmp = data_path.with_suffix(".tmp")
        pq.write_table(run.table, tmp, compression="zstd", compression_level=profile.zstd_level,
                       use_dictionary=dictionary, column_encoding=delta,
                       dictionary_pagesize_limit=profile.dictionary_page_bytes,
                       row_group_size=ROW_GROUP_ROWS, write_statistics=[SEQ])
        _durable_replace(tmp, data_path)
        tmp = index_path.with_suffix(".tmp")
        feather.write_feather(run.index_table(), tmp, compression="uncompressed")
        _durable_replace(tmp, index_path)
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"could not write segment: {exc}", path=str(data_path)) from exc
    return describe(run, segment_id, data_path.stat().st_size + index_path.stat().st_size,
                    profile.level)


def load_run(meta: SegmentMeta, directory: Path, ts_field: str) -> SortedRun:
    """Read a whole segment into memory as a sorted run."""
    try:
        table = pq.read_table(directory / meta.data_name)
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"could not read segment: {exc}",
                           path=str(directory / meta.data_name)) from exc
    return SortedRun.load(table, read_index(meta, directory), ts_field)


def read_index(meta: SegmentMeta, directory: Path) -> pa.Table:
    """The segment's entity index: entity, start row, stop row."""
    try:
        return feather.read_table(directory / meta.index_name, memory_map=True)
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"could not read segment index: {exc}",
                           path=str(directory / meta.index_name)) from exc


def read_table(meta: SegmentMeta, directory: Path) -> pa.Table:
    """The segment's events as a table (sorted by entity, timestamp, ``_seq``)."""
    try:
        return pq.read_table(directory / meta.data_name)
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"could not read segment: {exc}",
                           path=str(directory / meta.data_name)) from exc


def remove_files(meta: SegmentMeta, directory: Path) -> None:
    """Delete a segment's files (after no manifest or reader refers to it)."""
    (directory / meta.data_name).unlink(missing_ok=True)
    (directory / meta.index_name).unlink(missing_ok=True)
