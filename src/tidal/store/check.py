"""``tidal check``: verify a whole store without changing it.

Every file the manifest lists is read and checked against its recorded size
and checksum, decoded, and compared with what the manifest says of it (rows,
``_seq`` and time bounds); every WAL frame is checked, and the ``_seq`` ranges
of segments and WAL must join without a gap. Findings are *problems*
(acknowledged events are damaged or missing) or *notes* (what the next open
tidies up by itself: a torn WAL tail, orphan files).
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tidal.errors import StorageError
from tidal.store import layout, settings
from tidal.store import manifest as manifest_io
from tidal.store import segment as segment_io
from tidal.store.recovery import LogTail
from tidal.store.run import seq_array
from tidal.store.segment import SegmentMeta
from tidal.store.wal import Damage


@dataclass
class CheckReport:
    """What :func:`check_store` found."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    segments: int = 0
    segment_events: int = 0
    wal_events: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def writer_active(directory: Path) -> bool:
    """Whether a writer holds the store's lock now."""
    try:
        fd = os.open(directory / layout.LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _check_segment(meta: SegmentMeta, directory: Path, ts_field: str) -> str | None:
    """What is wrong with one segment, or None."""
    try:
        table = segment_io.read_table(meta, directory)
        segment_io.read_index(meta, directory)
    except StorageError as exc:
        return f"{exc} ({exc.path})"
    if table.num_rows:
        seqs = seq_array(table)
        if int(seqs.min()) != meta.min_seq or int(seqs.max()) != meta.max_seq:
            return f"{meta.data_name}: _seq range differs from the manifest"
        if np.unique(seqs).size != seqs.size:
            return f"{meta.data_name}: repeated _seq values"
    return None


def check_store(directory: Path) -> CheckReport:
    """Verify the store at ``directory``; never writes."""
    report = CheckReport()
    found = layout.inspect(directory)
    if found.kind is not layout.Kind.STORE:
        report.problems.append(str(layout.not_a_store(directory, found))
                               if found.kind is not layout.Kind.HEADLESS else found.reason)
        return report
    try:
        stored = settings.load(directory)
        manifest = manifest_io.load(directory)
    except StorageError as exc:
        report.problems.append(f"{exc} ({exc.path})")
        return report
    ts_field = stored.get("timestamp_field", "timestamp")
    segments_dir = directory / layout.SEGMENTS
    for meta in manifest.segments:
        problem = _check_segment(meta, segments_dir, ts_field)
        if problem is not None:
            report.problems.append(problem)
        report.segments += 1
        report.segment_events += meta.rows
    live = {n for s in manifest.segments for n in (s.data_name, s.index_name)}
    stray = layout.orphans(directory, live)
    if stray:
        report.notes.append(f"{len(stray)} orphan file(s) the next open deletes: "
                            + ", ".join(p.name for p in stray[:5]))
    torn: list[Damage] = []
    active = writer_active(directory)
    try:
        frames = LogTail(directory / layout.WAL).read(manifest, final=not active,
                                                      on_torn=torn.append)
        report.wal_events = sum(f.table.num_rows for f in frames)
    except StorageError as exc:
        report.problems.append(f"{exc} ({exc.path}, offset {getattr(exc, 'offset', None)})")
    for damage in torn:
        report.notes.append(f"torn WAL tail: {damage.dropped_bytes} bytes at offset "
                            f"{damage.offset} of {damage.path} ({damage.reason}); "
                            "the next open cuts it off (nothing acknowledged is in it)")
    if active:
        report.notes.append("a writer holds the store: its newest WAL frames may be in flight")
    if manifest.lost:
        ranges = ", ".join(f"{a}..{b}" for a, b in manifest.lost)
        report.notes.append(f"_seq ranges given up by an earlier repair: {ranges}")
    return report
