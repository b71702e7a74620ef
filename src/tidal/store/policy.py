"""Which segments to merge (compaction) and which to drop (retention).

Pure functions over segment metadata and the config: the engine decides
*when*, these decide *what*.
"""

from __future__ import annotations

from collections.abc import Sequence

from tidal.config import StoreConfig
from tidal.store.segment import SegmentMeta


def small_rows(config: StoreConfig) -> int:
    """Segments with fewer events than this are merged by compaction:
    ``compact_min_rows``, but at most half of ``segment_rows``, so that segments
    cut at ``segment_rows`` are never small (compaction ends)."""
    return min(config.compact_min_rows, max(1, config.segment_rows // 2))


def compaction_groups(segments: Sequence[SegmentMeta], config: StoreConfig, *, rewrite: bool
                      ) -> list[list[SegmentMeta]]:
    """Runs of segments adjacent in time to merge, each within ``compact_chunk_rows``
    events and ``segment_span_s`` of time (so merged segments stay time-bounded).

    Candidates are the segments below :func:`small_rows`; with ``rewrite``
    also every segment still in the flush encoding (level 0). A group of one is
    kept only when it is rewritten.
    """
    span_ns = int(config.segment_span_s * 1e9)
    chosen = sorted((s for s in segments if s.rows < small_rows(config)
                     or (rewrite and s.level == 0)), key=lambda s: (s.min_ts, s.min_seq))
    groups: list[list[SegmentMeta]] = [[]]
    for meta in chosen:
        group = groups[-1]
        if group and (sum(m.rows for m in group) + meta.rows > config.compact_chunk_rows
                      or max(meta.max_ts, *(m.max_ts for m in group))
                      - min(meta.min_ts, *(m.min_ts for m in group)) >= span_ns):
            groups.append([])
        groups[-1].append(meta)
    return [g for g in groups if len(g) >= 2 or (rewrite and g and g[0].level == 0)]


def expired(segments: Sequence[SegmentMeta], config: StoreConfig, now_ns: int
            ) -> list[SegmentMeta]:
    """Segments past retention: newest event older than ``retention_age_s``, then the
    oldest ones (by newest event) while the rest exceed ``retention_bytes``."""
    by_age = sorted(segments, key=lambda s: s.max_ts)
    drop: list[SegmentMeta] = []
    if config.retention_age_s:
        cutoff = now_ns - int(config.retention_age_s * 1e9)
        drop = [s for s in by_age if s.max_ts < cutoff]
    if config.retention_bytes:
        total = sum(s.bytes for s in by_age if s not in drop)
        for s in by_age:
            if total <= config.retention_bytes:
                break
            if s not in drop:
                drop.append(s)
                total -= s.bytes
    return drop
