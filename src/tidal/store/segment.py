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
import pyarrow.feather as feather
import pyarrow.parquet as pq

from tidal.errors import StorageError
from tidal.store.run import SEQ, SortedRun, seq_array

ROW_GROUP_ROWS = 131_072
ZSTD_LEVEL = 6


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

    @property
    def data_name(self) -> str:
        return f"seg-{self.id:08d}.parquet"

    @property
    def index_name(self) -> str:
        return f"seg-{self.id:08d}.index.arrow"


def _durable_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)


def _encodings(schema: pa.Schema, ts_field: str) -> tuple[list[str], dict[str, str]]:
    delta = {SEQ: "DELTA_BINARY_PACKED"}
    if ts_field in schema.names and pa.types.is_timestamp(schema.field(ts_field).type):
        delta[ts_field] = "DELTA_BINARY_PACKED"
    dictionary = [name for name in schema.names if name not in delta]
    return dictionary, delta


def write_segment(run: SortedRun, directory: Path, segment_id: int, ts_field: str) -> SegmentMeta:
    """Write ``run`` as segment ``segment_id`` in ``directory``; return its metadata."""
    meta_stub = SegmentMeta(segment_id, 0, 0, 0, 0, 0, 0)
    data_path = directory / meta_stub.data_name
    index_path = directory / meta_stub.index_name
    dictionary, delta = _encodings(run.table.schema, ts_field)
    try:
        tmp = data_path.with_suffix(".tmp")
        pq.write_table(run.table, tmp, compression="zstd", compression_level=ZSTD_LEVEL,
                       use_dictionary=dictionary, column_encoding=delta,
                       row_group_size=ROW_GROUP_ROWS, write_statistics=[SEQ])
        _durable_replace(tmp, data_path)
        tmp = index_path.with_suffix(".tmp")
        feather.write_feather(run.index_table(), tmp, compression="uncompressed")
        _durable_replace(tmp, index_path)
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"could not write segment: {exc}", path=str(data_path)) from exc
    seqs = seq_array(run.table)
    return SegmentMeta(
        id=segment_id,
        rows=run.rows,
        min_ts=int(run.ts.min()) if run.rows else 0,
        max_ts=int(run.ts.max()) if run.rows else 0,
        min_seq=int(seqs.min()) if run.rows else 0,
        max_seq=int(seqs.max()) if run.rows else 0,
        bytes=data_path.stat().st_size + index_path.stat().st_size,
    )


def load_run(meta: SegmentMeta, directory: Path, ts_field: str) -> SortedRun:
    """Read a whole segment into memory as a sorted run."""
    try:
        table = pq.read_table(directory / meta.data_name)
        index = feather.read_table(directory / meta.index_name)
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"could not read segment: {exc}",
                           path=str(directory / meta.data_name)) from exc
    return SortedRun.load(table, index, ts_field)


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
