"""Snapshots and the registry that keeps the segments they read alive.

A :class:`Snapshot` is a consistent view (segment list, immutable memtable
views, highest visible ``_seq``) taken under the state lock, after which a
reader works without locks. It pins its segments until :meth:`Snapshot.close`
(or the end of its ``with`` block): segments that compaction or retention
retire are deleted only once no open snapshot pins them.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from types import TracebackType

import pyarrow as pa

from tidal.store.backend import SegmentStore
from tidal.store.memtable import MemView
from tidal.store.run import SortedRun
from tidal.store.segment import SegmentMeta


class Snapshot:
    """A consistent, immutable view of the store; close it when done."""

    def __init__(self, segments: tuple[SegmentMeta, ...], memtables: tuple[MemView, ...],
                 max_seq: int, store: SegmentStore, release: Callable[[Snapshot], None]):
        self.segments = segments
        self.memtables = memtables
        self.max_seq = max_seq
        self._store = store
        self._release: Callable[[Snapshot], None] | None = release

    @property
    def memtable_parts(self) -> tuple[pa.Table, ...]:
        """Every memtable table (sealed ones first), in ``_seq`` order."""
        return tuple(part for view in self.memtables for part in view.parts)

    @property
    def memtable_runs(self) -> tuple[SortedRun, ...]:
        """The sorted runs of every memtable (indexed snapshots only)."""
        return tuple(run for view in self.memtables for run in view.runs)

    @property
    def memtable_rows(self) -> int:
        return sum(view.rows for view in self.memtables)

    @property
    def memtable_bytes(self) -> int:
        return sum(view.nbytes for view in self.memtables)

    def segment_run(self, meta: SegmentMeta) -> SortedRun:
        """The segment's events as a sorted run (cached)."""
        return self._store.load_run(meta)

    def segment_entities(self, meta: SegmentMeta) -> list[str]:
        """The distinct entities of a segment, from its index alone."""
        return self._store.entities(meta)

    def segment_table(self, meta: SegmentMeta) -> pa.Table:
        """The segment's events (sorted by entity, time, ``_seq``)."""
        return self._store.table(meta)

    def segment_paths(self) -> list[str] | None:
        """Parquet files of the segments (checked), or None for an in-memory store."""
        return self._store.paths(self.segments)

    def close(self) -> None:
        """Release the segments this snapshot pins. Idempotent."""
        release, self._release = self._release, None
        if release is not None:
            release(self)

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Readers:
    """Pins segments for open snapshots and deletes retired ones when unpinned.

    Args:
        store: where retired segments are deleted.
        live: the segment ids the current manifest lists (never deleted).
    """

    def __init__(self, store: SegmentStore, live: Callable[[], set[int]]) -> None:
        self._store = store
        self._live = live
        self._lock = threading.Lock()
        self._pins: Counter[int] = Counter()
        self._retired: dict[int, SegmentMeta] = {}
        self.on_error: Callable[[str, BaseException], None] | None = None

    def open(self, segments: tuple[SegmentMeta, ...], memtables: tuple[MemView, ...],
             max_seq: int) -> Snapshot:
        """A snapshot of these parts, pinning its segments."""
        with self._lock:
            self._pins.update(meta.id for meta in segments)
        return Snapshot(segments, memtables, max_seq, self._store, self._release)

    def _release(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._pins.subtract(meta.id for meta in snapshot.segments)
            self._pins = +self._pins
        self.collect()

    def retire(self, metas: Iterable[SegmentMeta]) -> None:
        """Mark segments that left the manifest for deletion once unpinned."""
        with self._lock:
            self._retired.update((meta.id, meta) for meta in metas)
        self.collect()

    def collect(self) -> None:
        """Delete retired segments that no snapshot pins and no manifest lists.

        A deletion that fails (a read-only or broken disk) is kept for the next
        try and reported through :attr:`on_error`; the segments are harmless.
        """
        if not self._retired:
            return
        live = self._live()
        with self._lock:
            doomed = [m for i, m in self._retired.items() if not self._pins[i] and i not in live]
            for meta in doomed:
                del self._retired[meta.id]
        if not doomed:
            return
        try:
            self._store.remove(doomed)
        except OSError as exc:
            with self._lock:
                self._retired.update((meta.id, meta) for meta in doomed)
            if self.on_error is not None:
                self.on_error("segment cleanup", exc)

    @property
    def open_snapshots(self) -> int:
        """How many segment pins are held (for stats)."""
        with self._lock:
            return sum(self._pins.values())
