"""``Store.stats()``: counts and sizes from a snapshot, and the engine's health."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tidal.store.engine import Engine


def store_stats(engine: Engine, path: Path | None) -> dict[str, Any]:
    """Counts and sizes: events, entities, segments, WAL, memory, background errors."""
    with engine.snapshot(indexed=True) as snap:
        seg_rows = sum(s.rows for s in snap.segments)
        seg_bytes = sum(s.bytes for s in snap.segments)
        flushed = sum(s.rows for s in snap.segments if s.level == 0)
        names = [pa.array(list(run.index), pa.string()) for run in snap.memtable_runs]
        names += [snap.segment_entities(meta) for meta in snap.segments]
        entities = len(pc.unique(pa.chunked_array(names, pa.string()))) if names else 0
    manifest = engine.manifest
    torn = engine.torn_tail
    writer = engine.writer
    groups, appends = writer.groups if writer is not None else (0, 0)
    return {
        "path": str(path) if path is not None else None,
        "read_only": engine.read_only,
        "events": seg_rows + snap.memtable_rows,
        "entities": entities,
        "max_seq": snap.max_seq,
        "segments": len(snap.segments),
        "segment_events": seg_rows,
        "uncompacted_events": flushed,
        "memtable_events": snap.memtable_rows,
        "memtable_bytes": snap.memtable_bytes,
        "sealed_memtables": len(snap.memtables) - 1,
        "segment_bytes": seg_bytes,
        "wal_bytes": engine.wal_bytes(),
        "disk_bytes": seg_bytes if path is not None else 0,
        "bytes_per_event_disk": (seg_bytes / seg_rows) if seg_rows and path else 0.0,
        "bytes_per_event_memory": (snap.memtable_bytes / snap.memtable_rows
                                   if snap.memtable_rows else 0.0),
        "cache_bytes": engine.cache_bytes,
        "dropped_segments": manifest.dropped_segments,
        "dropped_events": manifest.dropped_events,
        "torn_tail_bytes": torn.dropped_bytes if torn else 0,
        "commit_groups": groups,
        "wal_fsync": _fsyncs(engine),
        "appends_per_group": round(appends / groups, 3) if groups else 0.0,
        "backpressure_waits": writer.backpressure_waits if writer is not None else 0,
        "backpressure_wait_s": round(writer.backpressure_wait_s, 6) if writer else 0.0,
        "followers": engine.feed.count,
        "sources": len(positions := engine.positions()),
        "positions": positions,
        "background_errors": [f"{e.job}: {e.message} ({e.failures} in a row)"
                              for e in engine.background_errors()],
    }


def _fsyncs(engine: Engine) -> dict[str, object] | None:
    """The WAL's fsync durations since open (None without a WAL that syncs)."""
    durations = engine.log.fsync_durations if engine.writer is not None else None
    return durations.snapshot().as_dict() if durations is not None else None
