"""The storage engine: WAL → memtable → segments, with snapshot reads.

One writer at a time (appends serialise on the write lock); any number of
readers. A full memtable is *sealed*: it stays readable while a background
thread writes it out as segments, and a fresh memtable takes new appends, so
flushing overlaps ingest. At most one memtable is sealed at a time; a writer
that fills the next one waits (backpressure, bounded memory). Manifest changes
(flush, compaction, retention) serialise on the manifest lock.

A reader takes a :class:`Snapshot` (the segment list and immutable memtable
views) under a short state lock and then works without locks. Segments dropped
by compaction or retention are deleted only when no live snapshot refers to them.

With ``path=None`` the engine keeps segments in memory and has no WAL: the
same behaviour, minus durability.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from tidal.config import StoreConfig
from tidal.errors import ClosedError, StorageError
from tidal.model.schema import concat_tables
from tidal.store import manifest as manifest_io
from tidal.store import policy, settings
from tidal.store import segment as segment_io
from tidal.store.cache import RunCache
from tidal.store.manifest import Manifest
from tidal.store.memtable import Memtable, MemView
from tidal.store.run import SEQ, SortedRun, sort_plan
from tidal.store.segment import SegmentMeta
from tidal.store.wal import TornTail, WriteAheadLog, iter_frames

AUTO_COMPACT_SEGMENTS = 8
FLUSH_THREADS = 2  # a flush sorts and encodes its pieces in parallel
MIN_PARALLEL_ROWS = 100_000  # ... when each piece gets at least this many rows


@dataclass(frozen=True)
class SeqRange:
    """The ``_seq`` range given to one append."""

    count: int
    first_seq: int | None
    last_seq: int | None


class Snapshot:
    """A consistent, immutable view of the store for readers."""

    def __init__(self, engine: Engine, manifest: Manifest, memtables: tuple[MemView, ...],
                 max_seq: int):
        self._engine = engine
        self.segments = manifest.segments
        self.memtables = memtables
        self.max_seq = max_seq

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
        return self._engine._load_run(meta)

    def segment_entities(self, meta: SegmentMeta) -> list[str]:
        """The distinct entities of a segment, from its index alone."""
        return self._engine._segment_entities(meta)

    def segment_table(self, meta: SegmentMeta) -> pa.Table:
        """The segment's events (sorted by entity, time, ``_seq``)."""
        return self._engine._segment_table(meta)

    def segment_paths(self) -> list[str] | None:
        """Parquet files of the segments, or None for an in-memory store."""
        if self._engine.directory is None:
            return None
        return [str(self._engine.segment_dir / s.data_name) for s in self.segments]


class Engine:
    """Durable, ordered, columnar event storage. See the module docstring."""

    def __init__(self, path: str | Path | None, config: StoreConfig) -> None:
        self.config = config
        self.directory = Path(path) if path is not None else None
        self._write_lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._manifest_lock = threading.RLock()
        self._memtable = Memtable(config.entity_field, config.timestamp_field)
        self._sealed: tuple[Memtable, ...] = ()
        self._pending_upto: dict[int, int] = {}  # id(sealed memtable) -> its last _seq
        self._flusher: threading.Thread | None = None
        self._flush_error: BaseException | None = None
        self._version = 0  # bumped by every change readers can see
        self._compact_lock = threading.Lock()
        self._index_lock = threading.Lock()
        self._compactor: threading.Thread | None = None
        self.compaction_error: BaseException | None = None
        self._timeline_view: tuple[int, tuple[SortedRun, ...]] | None = None
        self._cache = RunCache(config.cache_bytes, on_evict=self._bump)
        self._mem_segments: dict[int, SortedRun] = {}
        self._obsolete: list[SegmentMeta] = []
        self._readers: weakref.WeakSet[Snapshot] = weakref.WeakSet()
        self._closed = False
        self._wal: WriteAheadLog | None = None
        self._lock_file: int | None = None
        self.torn_tail: TornTail | None = None
        self.manifest = Manifest()
        self._next_seq = 0
        self._next_segment_id = 1
        if self.directory is not None:
            try:
                self._open_disk(self.directory)
            except BaseException:
                if self._lock_file is not None:  # let a repaired store be opened again
                    os.close(self._lock_file)
                raise
        self._stop = threading.Event()
        self._ager: threading.Thread | None = None
        if config.memtable_age_s > 0:
            self._ager = threading.Thread(target=self._age_loop, name="tidal-age", daemon=True)
            self._ager.start()

    # -- opening --------------------------------------------------------------
    @property
    def segment_dir(self) -> Path:
        assert self.directory is not None
        return self.directory / "segments"

    def _open_disk(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.segment_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create store directory: {exc}",
                               path=str(directory)) from exc
        self._lock_file = _lock_directory(directory)
        settings.save(directory, self.config)
        self.manifest = manifest_io.load(directory)
        self._remove_orphans()
        self._next_seq = self.manifest.flushed_seq + 1
        self._next_segment_id = self.manifest.next_segment_id
        self._wal = WriteAheadLog(directory / "wal", self.config.durability,
                                  self.config.fsync_interval_s)
        frames, self.torn_tail = self._wal.recover()
        for frame in iter_frames(frames, self.manifest.flushed_seq):
            if frame.first_seq != self._next_seq:
                raise StorageError(f"WAL gap: expected _seq {self._next_seq}, "
                                   f"found {frame.first_seq}", path=str(self._wal.directory))
            self._memtable.add(frame.table)
            self._next_seq += frame.table.num_rows
        self._wal.open_file(self._next_seq)
        self._wal.drop_before(self.manifest.flushed_seq + 1)

    def _remove_orphans(self) -> None:
        live = {name for s in self.manifest.segments for name in (s.data_name, s.index_name)}
        for path in self.segment_dir.iterdir():
            if path.name not in live:
                path.unlink(missing_ok=True)

    # -- writing --------------------------------------------------------------
    def append(self, table: pa.Table) -> SeqRange:
        """Stamp ``_seq`` on a normalized table, log it, and add it to the memtable."""
        n = table.num_rows
        with self._write_lock:
            self._check_open()
            self._raise_flush_error()
            if n == 0:
                return SeqRange(0, None, None)
            first = self._next_seq
            seq = pa.array(np.arange(first, first + n, dtype=np.int64))
            stamped = table.add_column(0, SEQ, seq)
            if any(column.num_chunks > 1 for column in stamped.columns):
                # IPC-encoding chunked columns is many times slower than one copy
                stamped = stamped.combine_chunks()
            if self._wal is not None:
                self._wal.append(stamped, first)
            with self._state_lock:
                self._memtable.add(stamped)
                self._next_seq = first + n
                self._version += 1
            self._maybe_flush()
            return SeqRange(n, first, first + n - 1)

    def _maybe_flush(self) -> None:
        view = self._memtable.view
        age_limit = self.config.memtable_age_s
        if view.nbytes >= self.config.memtable_bytes or (
            age_limit and view.rows and self._memtable.age_s() >= age_limit
        ):
            self._seal()

    def _age_loop(self) -> None:
        """Seal a memtable that grew old even when no append comes to notice it."""
        limit_s = self.config.memtable_age_s
        while not self._stop.wait(min(limit_s / 4, 1.0)):
            if self._memtable.age_s() < limit_s or not self._write_lock.acquire(timeout=0.1):
                continue
            try:
                if not self._closed and self._flush_error is None:
                    self._maybe_flush()
            except Exception as exc:  # noqa: BLE001 - reported by the next append
                self._flush_error = exc
            finally:
                self._write_lock.release()

    def flush(self) -> None:
        """Write the memtable out as segments now and wait until they are committed."""
        with self._write_lock:
            self._check_open()
            self._seal()
            self._join_flusher()
            self._raise_flush_error()

    def _seal(self) -> None:
        """Hand the memtable to a background flush; start a fresh one. Write lock held.

        Memtables left sealed by a failed flush are flushed again first, in
        order: a later flush must never commit (and drop the WAL of) events
        above ones that are not yet in segments.
        """
        self._join_flusher()
        for pending in self._sealed:
            if self._flush_error is not None:
                return  # surfaced by the next append or flush
            self._flush_sealed(pending, self._pending_upto[id(pending)])
        if self._flush_error is not None or self._memtable.view.rows == 0:
            return
        if self._wal is not None:
            self._wal.open_file(self._next_seq)
        with self._state_lock:
            sealed = self._memtable
            self._sealed = self._sealed + (sealed,)
            self._pending_upto[id(sealed)] = self._next_seq - 1
            self._memtable = Memtable(self.config.entity_field, self.config.timestamp_field)
            self._version += 1
        self._flusher = threading.Thread(target=self._flush_sealed,
                                         args=(sealed, self._next_seq - 1),
                                         name="tidal-flush", daemon=True)
        self._flusher.start()

    def _join_flusher(self) -> None:
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None

    def _raise_flush_error(self) -> None:
        """Report a failed background flush (its events stay in the WAL and memtable)."""
        if self._flush_error is not None:
            error, self._flush_error = self._flush_error, None
            raise StorageError(f"background flush failed: {error}") from error

    def _flush_sealed(self, sealed: Memtable, upto_seq: int) -> None:
        """Write a sealed memtable as segments, commit them, drop the WAL they cover."""
        try:
            table = sealed.view.table()
            pieces = max(-(-table.num_rows // self.config.segment_rows),
                         min(FLUSH_THREADS, table.num_rows // MIN_PARALLEL_ROWS), 1)
            plans = sort_plan(table, self.config.entity_field, self.config.timestamp_field,
                              pieces=pieces)
            metas = self._write_runs(plans, segment_io.FLUSH)
            with self._manifest_lock:
                new = replace(self.manifest, segments=self.manifest.segments + tuple(metas),
                              flushed_seq=upto_seq, next_segment_id=self._next_segment_id)
                self._commit(new, removed=(), unseal=sealed)
                self._pending_upto.pop(id(sealed), None)
                if self._wal is not None:
                    self._wal.drop_before(upto_seq + 1)
                self._apply_retention()
            del table, plans
            _release_memory()
            self._maybe_compact()
        except BaseException as exc:  # reported to the writer; the WAL still holds the events
            self._flush_error = exc

    def _maybe_compact(self) -> None:
        """Start a background compaction once enough small segments piled up."""
        small = [s for s in self.manifest.segments if s.rows < self.config.compact_min_rows]
        busy = self._compactor is not None and self._compactor.is_alive()
        if len(small) >= AUTO_COMPACT_SEGMENTS and not busy and not self._closed:
            self._compactor = threading.Thread(target=self._compact_quietly,
                                               name="tidal-compact", daemon=True)
            self._compactor.start()

    def _compact_quietly(self) -> None:
        try:
            self.compact()
        except BaseException as exc:  # the segments are intact; report in stats
            self.compaction_error = exc

    def _reserve_segment_ids(self, count: int) -> int:
        with self._state_lock:
            first = self._next_segment_id
            self._next_segment_id += count
        return first

    def _write_runs(self, plans: list[Callable[[], SortedRun]],
                    profile: segment_io.WriteProfile) -> list[SegmentMeta]:
        """Gather and write each planned run as a segment, in parallel threads."""
        first_id = self._reserve_segment_ids(len(plans))

        def write(offset: int) -> SegmentMeta:
            run, seg_id = plans[offset](), first_id + offset
            if self.directory is None:
                self._mem_segments[seg_id] = run  # level 1: in memory there is nothing to re-encode
                return segment_io.describe(run, seg_id, run.table.nbytes, level=1)
            return segment_io.write_segment(run, self.segment_dir, seg_id,
                                            self.config.timestamp_field, profile)

        if len(plans) == 1:
            return [write(0)]
        with ThreadPoolExecutor(min(FLUSH_THREADS, len(plans)),
                                thread_name_prefix="tidal-write") as pool:
            return list(pool.map(write, range(len(plans))))

    def _commit(self, new: Manifest, removed: tuple[SegmentMeta, ...],
                unseal: Memtable | None = None) -> None:
        if self.directory is not None:
            manifest_io.commit(self.directory, new)
        with self._state_lock:
            self.manifest = new
            self._version += 1
            self._obsolete.extend(removed)
            if unseal is not None:
                self._sealed = tuple(m for m in self._sealed if m is not unseal)
        self._collect_garbage()

    def compact(self, *, rewrite: bool = False) -> int:
        """Merge segments smaller than ``compact_min_rows``; returns segments rewritten.

        Without ``rewrite`` (the automatic compaction after flushes) merged
        segments keep the fast flush encoding, so ingest is not slowed. With
        ``rewrite`` everything merged, and every segment still in the flush
        encoding, is written in the compact encoding (smaller on disk).

        The merge runs without holding up flushes; it commits only if every
        merged segment is still live (retention may have dropped one meanwhile).
        """
        with self._compact_lock:
            snapshot = self.snapshot()  # pins the input files while we read them
            groups = policy.compaction_groups(snapshot.segments, self.config, rewrite=rewrite)
            if not groups:
                return 0
            merged = tuple(m for g in groups for m in g)
            profile = segment_io.COMPACT if rewrite else segment_io.FLUSH
            metas: list[SegmentMeta] = []
            for group in groups:  # one group in memory at a time
                metas += self._write_runs(sort_plan(
                    concat_tables([self._segment_table(m) for m in group]),
                    self.config.entity_field, self.config.timestamp_field, pieces=1), profile)
            _release_memory()
            with self._manifest_lock:
                live = set(self.manifest.segments)
                if not all(m in live for m in merged) or self._closed:
                    self._obsolete.extend(metas)
                    return 0
                kept = tuple(s for s in self.manifest.segments if s not in merged)
                new = replace(self.manifest, segments=kept + tuple(metas),
                              next_segment_id=self._next_segment_id)
                self._commit(new, removed=merged)
            del snapshot
            self._collect_garbage()
            return len(merged)

    def _apply_retention(self) -> None:
        drop = policy.expired(self.manifest.segments, self.config, time.time_ns())
        if drop:
            kept = tuple(s for s in self.manifest.segments if s not in drop)
            new = replace(self.manifest, segments=kept,
                          dropped_segments=self.manifest.dropped_segments + len(drop),
                          dropped_events=self.manifest.dropped_events + sum(s.rows for s in drop))
            self._commit(new, removed=tuple(drop))

    def _collect_garbage(self) -> None:
        with self._state_lock:
            referenced = {s.id for snap in list(self._readers) for s in snap.segments}
            live = {s.id for s in self.manifest.segments}
            doomed = [m for m in self._obsolete if m.id not in referenced and m.id not in live]
            self._obsolete = [m for m in self._obsolete if m not in doomed]
        for meta in doomed:
            self._cache.discard(meta.id)
            self._mem_segments.pop(meta.id, None)
            if self.directory is not None:
                segment_io.remove_files(meta, self.segment_dir)

    # -- reading --------------------------------------------------------------
    def snapshot(self, *, indexed: bool = False) -> Snapshot:
        """A consistent view; ``indexed`` also sorts the memtable for timelines.

        The sorting happens outside the state lock, so appends are not held up
        by it; only the few parts that arrive meanwhile are sorted under it.
        """
        if indexed:
            self._index_memtables()
        with self._state_lock:
            self._check_open()
            tables = self._sealed + (self._memtable,)
            views = tuple(m.indexed() if indexed else m.view for m in tables)
            snap = Snapshot(self, self.manifest, views, self._next_seq - 1)
            self._readers.add(snap)
        return snap

    def timeline_runs(self) -> tuple[SortedRun, ...]:
        """Every sorted run a timeline must probe: segments, then memtables.

        Cached until the next change (append, seal, manifest commit, cache
        eviction), so a timeline costs one version check here.
        """
        view = self._timeline_view
        if view is not None and view[0] == self._version and not self._closed:
            return view[1]
        for _ in range(2):  # a load that evicts another run changes the version
            version = self._version
            snap = self.snapshot(indexed=True)
            runs = tuple(snap.segment_run(m) for m in snap.segments) + snap.memtable_runs
            kept = self.directory is None or all(self._cache.holds(m.id) for m in snap.segments)
            if not kept:  # a segment beyond cache_bytes: do not pin it in memory
                break
            with self._state_lock:
                if version == self._version:
                    self._timeline_view = (version, runs)
                    break
        return runs

    def _bump(self) -> None:
        self._version += 1

    def _index_memtables(self) -> None:
        with self._index_lock:
            with self._state_lock:
                work = [(m, p) for m in self._sealed + (self._memtable,)
                        if (p := m.pending()) is not None]
            built = [(m, p, m.build_runs(*p)) for m, p in work]
            with self._state_lock:
                for memtable, pending, runs in built:
                    memtable.install(*pending, runs)

    def max_seq(self) -> int:
        """The highest ``_seq`` assigned so far (-1 for an empty store)."""
        return self._next_seq - 1

    def _load_run(self, meta: SegmentMeta) -> SortedRun:
        if self.directory is None:
            return self._mem_segments[meta.id]
        return self._cache.get(meta.id, lambda: segment_io.load_run(
            meta, self.segment_dir, self.config.timestamp_field))

    def _segment_entities(self, meta: SegmentMeta) -> list[str]:
        if self.directory is None:
            return list(self._mem_segments[meta.id].index)
        return segment_io.read_index(meta, self.segment_dir).column("entity").to_pylist()

    def _segment_table(self, meta: SegmentMeta) -> pa.Table:
        if self.directory is None:
            return self._mem_segments[meta.id].table
        return segment_io.read_table(meta, self.segment_dir)

    def wal_bytes(self) -> int:
        """Bytes currently in the write-ahead log."""
        return self._wal.size_bytes() if self._wal is not None else 0

    @property
    def cache_bytes(self) -> int:
        return self._cache.nbytes

    # -- lifecycle ------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("store is closed")

    def close(self) -> None:
        """Make the WAL durable and release files. Idempotent."""
        with self._write_lock:
            if self._closed:
                return
            self._stop.set()
            try:
                self._join_flusher()
                if self._compactor is not None:
                    self._compactor.join()
                self._raise_flush_error()
            finally:
                self._close_files()

    def _close_files(self) -> None:
        with self._manifest_lock:
            if self._wal is not None:
                self._wal.close()
            if self._lock_file is not None:
                os.close(self._lock_file)
            self._closed = True
            self._readers = weakref.WeakSet()
            self._collect_garbage()

    @property
    def closed(self) -> bool:
        return self._closed


def _release_memory() -> None:
    """Hand memory freed by a flush or compaction back to the OS (mimalloc keeps it)."""
    pa.default_memory_pool().release_unused()


def _lock_directory(directory: Path) -> int:
    """Hold an exclusive lock on the store for this writer's lifetime."""
    fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise StorageError("store is already open by another writer",
                           path=str(directory)) from exc
    return fd
