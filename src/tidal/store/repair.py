"""``tidal repair`` / ``tidal.open(path, repair=True)``: salvage a damaged store.

What can be saved is kept and what cannot is reported, never silently
dropped:

* a missing ``STORE.json`` is written again from the options given;
* a missing or damaged manifest is rebuilt from the segment files: each
  ``_seq`` is kept from the newest segment holding it (older copies are
  compaction inputs whose deletion was cut short), and the WAL takes over
  from its first frame;
* a segment whose data file is missing or damaged leaves the manifest (its
  events are reported lost); a damaged index is rebuilt from the data;
* damaged WAL frames are cut out, the intact frames after them kept, and the
  ``_seq`` ranges in between recorded in the manifest as lost, so the store
  opens again with exactly those gaps.

The repaired manifest is committed before any WAL file is rewritten, so a
repair cut short by a crash can simply be run again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from tidal.config import StoreConfig
from tidal.errors import StorageError
from tidal.store import layout, settings
from tidal.store import manifest as manifest_io
from tidal.store import segment as segment_io
from tidal.store.fs import TMP_SUFFIX, FileSystem
from tidal.store.manifest import Manifest
from tidal.store.run import SortedRun, seq_array
from tidal.store.segment import SegmentMeta
from tidal.store.wal import FrameRef, scan, wal_files


@dataclass
class RepairReport:
    """What a repair did and what it could not save."""

    actions: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    lost_events: int = 0

    def __str__(self) -> str:
        if not self.actions and not self.lost:
            return "nothing to repair"
        lines = [f"repaired: {a}" for a in self.actions]
        lines += [f"lost: {item}" for item in self.lost]
        return "\n".join(lines)


def repair_store(fs: FileSystem, directory: Path, config: StoreConfig) -> RepairReport:
    """Salvage the store at ``directory`` (the caller holds its lock)."""
    report = RepairReport()
    if not (directory / settings.NAME).exists():
        settings.save(fs, directory, config)
        report.actions.append("wrote STORE.json from the options given")
    fs.make_dirs(directory / layout.SEGMENTS)
    fs.make_dirs(directory / layout.WAL)
    wal = _salvage_wal(directory / layout.WAL)
    try:
        original: Manifest | None = manifest_io.load(directory)
        manifest = original
    except StorageError as exc:
        report.actions.append(f"rebuilt the manifest from segment files ({exc})")
        original = None
        manifest = _rebuild_manifest(fs, directory / layout.SEGMENTS, config, wal, report)
    assert manifest is not None
    manifest = _check_segments(fs, directory / layout.SEGMENTS, config, manifest, report)
    lost = _wal_gaps(manifest.flushed_seq, wal.frames)
    for first, last in lost:
        if not any(a <= first and last <= b for a, b in manifest.lost):
            report.lost.append(f"_seq {first}..{last} ({last - first + 1} events) in damaged "
                               "WAL frames")
            report.lost_events += last - first + 1
    manifest = replace(manifest, lost=tuple(sorted(set(manifest.lost) | set(lost))))
    if manifest != original:
        manifest_io.commit(fs, directory, manifest)
    for path, frames in wal.rewrite.items():
        data = path.read_bytes()
        fs.write_atomic(path, b"".join(data[f.offset:f.end] for f in frames))
        report.actions.append(f"cut damaged frames out of {path.name}")
    fs.remove([p for p in (directory / layout.WAL).iterdir() if p.name.endswith(TMP_SUFFIX)])
    return report


@dataclass
class _Wal:
    frames: list[FrameRef] = field(default_factory=list)  # intact frames, in file order
    rewrite: dict[Path, list[FrameRef]] = field(default_factory=dict)  # damaged files


def _salvage_wal(directory: Path) -> _Wal:
    """Every intact frame, skipping damage; files to rewrite without the damage.

    A damaged end of the last file with nothing intact after it is a torn
    tail, left for the normal open to cut off.
    """
    out = _Wal()
    files = wal_files(directory)
    for i, (_, path) in enumerate(files):
        data = path.read_bytes()
        kept: list[FrameRef] = []
        pos, damaged = 0, False
        while True:
            frames, damage = scan(data, path, pos)
            kept += frames
            if damage is None:
                break
            if damage.next_frame is None:
                damaged = damaged or i < len(files) - 1
                break
            damaged = True
            pos = damage.next_frame
        out.frames += kept
        if damaged:
            out.rewrite[path] = kept
    return out


def _wal_gaps(flushed_seq: int, frames: list[FrameRef]) -> list[tuple[int, int]]:
    """``_seq`` ranges above ``flushed_seq`` that no intact frame holds."""
    gaps = []
    expected = flushed_seq + 1
    for ref in frames:
        if ref.last_seq < expected:
            continue
        if ref.first_seq > expected:
            gaps.append((expected, ref.first_seq - 1))
        expected = ref.last_seq + 1
    return gaps


def _rebuild_manifest(fs: FileSystem, directory: Path, config: StoreConfig, wal: _Wal,
                      report: RepairReport) -> Manifest:
    """A manifest from the segment files: newest copy of each ``_seq`` wins."""
    import pyarrow.parquet as pq  # (loads on first use)
    ids = sorted((int(p.name[4:-8]) for p in directory.glob("seg-*.parquet")
                  if layout.is_segment_file(p.name)), reverse=True)
    first_wal = wal.frames[0].first_seq if wal.frames else None
    covered = np.zeros(0, dtype=np.int64)
    chosen: list[SegmentMeta] = []
    positions: dict[str, int] = {}
    for segment_id in ids:
        path = directory / segment_io.segment_name(segment_id, "parquet")
        try:
            table = pq.read_table(path, page_checksum_verification=True)
        except (OSError, pa.ArrowException) as exc:
            report.lost.append(f"{path.name}: unreadable ({exc}); left in place")
            continue
        seqs = seq_array(table)
        if first_wal is not None and seqs.size and seqs.min() >= first_wal:
            continue  # an uncommitted flush: the WAL still holds these events
        if np.isin(seqs, covered).any():
            continue  # a compaction input superseded by a newer segment
        run = SortedRun.build(table, config.entity_field, config.timestamp_field)
        data, index = path.read_bytes(), segment_io.encode_index(run)
        fs.write_atomic(directory / segment_io.segment_name(segment_id, "index.arrow"), index)
        chosen.append(segment_io.describe(run, segment_id, level=0, data=data, index=index))
        for source, position in segment_io.positions_in(path).items():
            if position > positions.get(source, -1):
                positions[source] = position
        covered = np.concatenate([covered, seqs])
        report.actions.append(f"kept segment {path.name} ({table.num_rows} events)")
    chosen.sort(key=lambda m: m.id)
    if positions:
        report.actions.append(f"restored the positions of {len(positions)} source(s) from "
                              "the segments (later ones come from the WAL)")
    flushed = (first_wal - 1 if first_wal is not None
               else int(covered.max()) if covered.size else -1)
    next_id = (ids[0] + 1) if ids else 1
    return Manifest(segments=tuple(chosen), flushed_seq=flushed, next_segment_id=next_id,
                    positions=positions)


def _check_segments(fs: FileSystem, directory: Path, config: StoreConfig, manifest: Manifest,
                    report: RepairReport) -> Manifest:
    """Drop segments whose data is damaged; rebuild damaged indexes."""
    kept: list[SegmentMeta] = []
    for meta in manifest.segments:
        try:
            table = segment_io.read_table(meta, directory)
        except StorageError as exc:
            report.lost.append(f"{meta.data_name}: {exc}; its {meta.rows} events (_seq "
                               f"{meta.min_seq}..{meta.max_seq}) are gone")
            report.lost_events += meta.rows
            continue
        try:
            segment_io.read_index(meta, directory)
            kept.append(meta)
            continue
        except StorageError:
            pass
        run = SortedRun.build(table, config.entity_field, config.timestamp_field)
        index = segment_io.encode_index(run)
        fs.write_atomic(directory / meta.index_name, index)
        data = (directory / meta.data_name).read_bytes()
        kept.append(segment_io.describe(run, meta.id, level=meta.level, data=data, index=index))
        report.actions.append(f"rebuilt {meta.index_name} from its data")
    return replace(manifest, segments=tuple(kept))
