"""The storage engine: composes the pieces of one store behind a few verbs.

================  ==========================================================
piece             concept
================  ==========================================================
``layout``        what a store directory holds; creating one
``recovery``      opening: manifest, orphan sweep, WAL replay, torn tails
``writer``        admission, group commit to the WAL, memtable, sealing
``background``    flush, compaction, retention, and their errors
``readers``       snapshots, and the pins that keep their segments alive
``feed``          the commit feed behind :meth:`Engine.follow`
``backend``       segments on disk (checked Parquet) or in memory
================  ==========================================================

**Lock order** (a thread holding one may take only those below it):
group-commit leadership (``GroupCommit``) → ``Background.manifest_lock`` →
``StoreState.lock`` → the locks of the run cache, the reader registry, the
WAL writer and each follower. No lock is held across a flush or compaction's
encoding, and appends take only leadership and the state lock.

A store opened ``read_only`` has no writer and no background work and takes
no lock: it reads the manifest and the WAL tail, and picks up what a writer
in another process commits (:meth:`Engine.refresh`) before each read.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import pyarrow as pa

from tidal.config import StoreConfig
from tidal.errors import (
    ClosedError,
    CorruptionError,
    QueryError,
    ReadOnlyError,
    StorageError,
)
from tidal.store import layout
from tidal.store.backend import (
    DiskSegments,
    MemorySegments,
    NullLog,
    SegmentStore,
)
from tidal.store.background import Background, JobError
from tidal.store.cache import ByteCache
from tidal.store.clock import SYSTEM_CLOCK, Clock
from tidal.store.feed import CommitFeed, Follower
from tidal.store.fs import OS_FILES, FileSystem
from tidal.store.manifest import Manifest
from tidal.store.readers import Readers, Snapshot
from tidal.store.recovery import Recovered, recover
from tidal.store.repair import RepairReport, repair_store
from tidal.store.run import SourceSet
from tidal.store.segment_file import slice_bytes
from tidal.store.seq_read import read_seq_range
from tidal.store.state import StoreState
from tidal.store.wal import Damage, WalWriter, wal_files
from tidal.store.watch import WriterWatch
from tidal.store.writer import Log, SeqRange, Writer

__all__ = ["Engine", "SeqRange", "Snapshot"]

T = TypeVar("T")
FOLLOW_QUEUE_BATCHES = 1024
READ_RETRIES = 3


class Engine:
    """Durable, ordered, columnar event storage. See the module docstring."""

    def __init__(self, path: str | Path | None, config: StoreConfig, *,
                 fs: FileSystem = OS_FILES, clock: Clock = SYSTEM_CLOCK,
                 read_only: bool = False, repair: bool = False) -> None:
        self.config = config
        self.fs = fs
        self.clock = clock
        self.directory = Path(path) if path is not None else None
        self.read_only = read_only
        self.feed = CommitFeed()
        self.torn_tail: Damage | None = None
        self.swept: list[str] = []
        self.repair_report: RepairReport | None = None
        self._closed = False
        self._lock_fd: int | None = None
        self._timeline_view: tuple[int, SourceSet] | None = None
        self._watch: WriterWatch | None = None
        self.segments: SegmentStore
        self.writer: Writer | None = None
        self.background: Background | None = None
        if self.directory is None:
            self.segments = MemorySegments()
            self._start(Recovered(Manifest(), [], 0, None, None), NullLog())
        elif read_only:
            self.segments = DiskSegments(fs, self.directory, config.timestamp_field,
                                         config.entity_field,
                                         ByteCache(config.cache_bytes, slice_bytes))
            self._open_read_only(self.directory)
        else:
            self.segments = DiskSegments(fs, self.directory, config.timestamp_field,
                                         config.entity_field,
                                         ByteCache(config.cache_bytes, slice_bytes))
            try:
                recovered = self._open_writer(self.directory, repair=repair)
                wal = WalWriter(fs, self.directory / layout.WAL, config.durability,
                                config.fsync_interval_s, recovered.next_seq,
                                current=recovered.current_wal, now_ns=clock.now_ns)
                self._start(recovered, wal)
            except BaseException:
                self._unlock()  # so that a repaired store can be opened again
                raise

    # -- opening --------------------------------------------------------------------
    def _open_writer(self, directory: Path, *, repair: bool) -> Recovered:
        found = layout.inspect(directory)
        if found.kind is layout.Kind.FOREIGN:
            raise layout.not_a_store(directory, found)
        if found.kind is layout.Kind.HEADLESS and not repair:
            raise CorruptionError(f"{found.reason}: run `tidal repair --store {directory}`",
                                  path=str(directory))
        try:
            self.fs.make_dirs(directory)
            self._lock_fd = _lock_directory(directory)
        except OSError as exc:
            raise _open_error(directory, exc) from exc
        found = layout.inspect(directory)  # again, now that no other writer can change it
        try:
            if repair and found.kind in (layout.Kind.STORE, layout.Kind.HEADLESS):
                self.repair_report = repair_store(self.fs, directory, self.config)
                found = layout.inspect(directory)
            if found.kind in (layout.Kind.MISSING, layout.Kind.EMPTY):
                manifest = layout.create(self.fs, directory, self.config)
                return Recovered(manifest, [], 0, None, None)
            if found.kind is not layout.Kind.STORE:
                raise layout.not_a_store(directory, found)
            recovered = recover(self.fs, directory)
        except OSError as exc:
            raise _open_error(directory, exc) from exc
        self.torn_tail = recovered.torn_tail
        self.swept = recovered.removed
        return recovered

    def _open_read_only(self, directory: Path) -> None:
        found = layout.inspect(directory)
        if found.kind is layout.Kind.HEADLESS:
            raise CorruptionError(f"{found.reason}: run `tidal repair --store {directory}`",
                                  path=str(directory))
        if found.kind is not layout.Kind.STORE:
            raise layout.not_a_store(directory, found)
        self.state = StoreState(Manifest(), self.config.entity_field,
                                self.config.timestamp_field)
        self.readers = Readers(self.segments, live=self._live_ids,
                              ts_field=self.config.timestamp_field)
        self._watch = WriterWatch(directory, self.state, self.feed)
        self.refresh()

    def _start(self, recovered: Recovered, log: Log) -> None:
        """Set up state, writer and background work over what recovery found."""
        self.log = log
        self.state = StoreState(recovered.manifest, self.config.entity_field,
                                self.config.timestamp_field)
        self.state.replay(recovered.frames)
        self.state.max_seq = recovered.next_seq - 1
        self.readers = Readers(self.segments, live=self._live_ids,
                              ts_field=self.config.timestamp_field)
        self.background = Background(self.state, self.segments, log.drop_before, self.readers,
                                     self.snapshot, self.config, self.clock)
        self.readers.on_error = self.background.report_failure
        if isinstance(log, WalWriter):
            log.on_error = self.background.report_failure
        self.writer = Writer(self.state, log, self.feed, self.background, self.config,
                             self.clock, recovered.next_seq)
        self._stop = threading.Event()
        self._ager = threading.Thread(target=self._age_loop, name="tidal-age", daemon=True)
        self._ager.start()
        if recovered.frames:
            self.writer.seal_if_due()  # a reopen replayed a full or old memtable: flush it
        if self.writer.dedup is not None:
            try:
                with self.snapshot() as snap:  # the keys of the last window stored
                    self.writer.dedup.load(snap)
            except BaseException:
                self.close()
                raise

    def _live_ids(self) -> set[int]:
        return {s.id for s in self.state.manifest.segments}

    # -- writing --------------------------------------------------------------------
    def _writer(self) -> Writer:
        if self._closed:
            raise ClosedError("store is closed")
        if self.writer is None:
            raise ReadOnlyError("store is opened read-only", path=str(self.directory))
        return self.writer

    def append(self, data: pa.Table | Callable[[], pa.Table | Iterable[pa.Table]], *,
               weight: int | None = None, source: str | None = None,
               position: int | None = None, timeout_s: float | None = None,
               own_thread: bool = False) -> SeqRange:
        """Log a normalized table (or what ``data()`` returns, prepared by the group's
        leader, or by this thread with ``own_thread``: a table, or blocks of one append,
        logged as they come), stamp ``_seq`` and make it visible. ``weight``: events
        expected. ``source``/``position``: committed with it (see :meth:`Writer.append`)."""
        if isinstance(data, pa.Table):
            table = data
            return self._writer().append(lambda: table, weight=table.num_rows, source=source,
                                         position=position, timeout_s=timeout_s)
        return self._writer().append(data, weight=weight or 1, source=source,
                                     position=position, timeout_s=timeout_s,
                                     own_thread=own_thread)

    def positions(self) -> dict[str, int]:
        """The committed position of every source."""
        self.refresh()
        with self.state.lock:
            return dict(self.state.positions)

    def flush(self) -> None:
        """Write the memtables out as segments now and wait until they are committed."""
        self._writer().flush()

    def compact(self, *, rewrite: bool = False) -> int:
        """Merge small segments (and re-encode flushed ones with ``rewrite``)."""
        self._writer()
        assert self.background is not None
        return self.background.compact(rewrite=rewrite)

    def _age_loop(self) -> None:
        """Seal an old memtable and apply age retention even when no append comes."""
        assert self.writer is not None and self.background is not None
        beat_s = min(self.config.memtable_age_s / 4 if self.config.memtable_age_s else 1.0, 1.0)
        beats = 0
        while not self._stop.wait(beat_s):
            beats += 1
            active = self.state.active
            old = (self.config.memtable_age_s and active.view.rows
                   and active.age_s(self.clock.now_ns()) >= self.config.memtable_age_s)
            if old or active.view.nbytes >= self.config.memtable_bytes:  # full: a seal failed
                try:
                    self.writer.seal_if_due()
                except BaseException as exc:  # noqa: BLE001 - reported like other background work
                    self.background.report_failure("memtable seal", exc)
            if beats % 10 == 0:
                self.background.apply_retention()

    # -- reading --------------------------------------------------------------------
    def refresh(self) -> None:
        """Pick up what a writer in another process committed (read-only stores)."""
        if self._watch is not None:
            self._watch.refresh()

    def retrying(self, read: Callable[[], T]) -> T:
        """Run ``read``; in a read-only store, refresh and retry when a writer's
        compaction deleted a segment under it (found missing by us, or by DuckDB)."""
        for attempt in range(READ_RETRIES + 1):
            try:
                return read()
            except (CorruptionError, QueryError) as exc:
                gone = "missing" in str(exc) or "No such file" in str(exc)
                if self._watch is None or attempt == READ_RETRIES or not gone:
                    raise
                self.refresh()
        raise AssertionError("unreachable")

    def snapshot(self, *, indexed: bool = False) -> Snapshot:
        """A consistent view (close it when done); ``indexed`` also sorts the memtable.

        The sorting happens outside the state lock, so appends are not held up
        by it; only the few parts that arrive meanwhile are sorted under it.
        """
        self._check_open()
        self.refresh()
        if indexed:
            self._index_memtables()
        with self.state.lock:  # pinned before a commit can retire a segment
            tables = tuple(s.memtable for s in self.state.sealed) + (self.state.active,)
            views = tuple(m.indexed() if indexed else m.view for m in tables)
            return self.readers.open(self.state.manifest.segments, views, self.state.max_seq)

    def timeline_sources(self) -> SourceSet:
        """Everything a timeline must probe: segments (opened when first probed),
        then memtables, as sorted runs.

        Cached until the next change (append, seal, manifest commit), so a
        timeline costs one version check here.
        """
        self.refresh()
        view = self._timeline_view
        if view is not None and view[0] == self.state.version and not self._closed:
            return view[1]
        version = self.state.version
        with self.snapshot(indexed=True) as snap:
            sources = SourceSet(tuple(snap.segment_source(m) for m in snap.segments
                                      if m.rows) + snap.memtable_runs)
        with self.state.lock:
            if version == self.state.version:
                self._timeline_view = (version, sources)
        return sources

    def read_sources(self, read: Callable[[SourceSet], T]) -> T:
        """Run ``read`` over :meth:`timeline_sources`; when a segment it holds was
        deleted by a compaction meanwhile, take the new sources and run it again."""
        for attempt in range(READ_RETRIES + 1):
            version = self.state.version
            try:
                return read(self.timeline_sources())
            except CorruptionError as exc:
                if "missing" not in str(exc) or attempt == READ_RETRIES:
                    raise
                self.refresh()
                if self.state.version == version:  # nothing changed: it is really gone
                    raise
        raise AssertionError("unreachable")

    def _index_memtables(self) -> None:
        with self.state.lock:
            tables = tuple(s.memtable for s in self.state.sealed) + (self.state.active,)
            work = [(m, p) for m in tables if (p := m.pending()) is not None]
        built = [(m, p, m.build_runs(*p)) for m, p in work]
        with self.state.lock:
            for memtable, pending, runs in built:
                memtable.install(*pending, runs)

    def read_seq(self, from_seq: int, to_seq: int | None, max_rows: int
                 ) -> list[pa.RecordBatch]:
        """Stored events from ``from_seq`` (below ``to_seq``) in ``_seq`` order, one chunk."""
        def read() -> list[pa.RecordBatch]:
            with self.snapshot() as snap:
                return read_seq_range(snap, from_seq, to_seq, max_rows)
        return self.retrying(read)

    def follow(self, from_seq: int | None = None) -> Follower:
        """Every committed batch from ``from_seq`` on (None: from the next one appended)."""
        self._check_open()
        follower = Follower(self.read_seq, 0, FOLLOW_QUEUE_BATCHES, self.feed.unsubscribe,
                            on_idle=self.refresh if self._watch is not None else None)
        with self.state.lock:
            visible = self.state.max_seq
            follower.next_seq = visible + 1 if from_seq is None else max(0, from_seq)
            self.feed.subscribe(follower, visible)
        return follower

    def max_seq(self) -> int:
        """The highest visible ``_seq`` (-1 for an empty store)."""
        self.refresh()
        return self.state.max_seq

    @property
    def manifest(self) -> Manifest:
        return self.state.manifest

    def wal_bytes(self) -> int:
        """Bytes currently in the write-ahead log."""
        if self.writer is not None:
            return self.log.size_bytes()
        if self.directory is None:
            return 0
        total = 0
        for _, path in wal_files(self.directory / layout.WAL):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                continue  # dropped by the writer meanwhile
        return total

    @property
    def cache_bytes(self) -> int:
        return self.segments.cache_bytes

    def dedup_stats(self) -> dict[str, object] | None:
        """Ingest deduplication: key, window, duplicates skipped, events tracked (None: off)."""
        dedup = self.writer.dedup if self.writer is not None else None
        return dedup.stats() if dedup is not None else None

    def background_errors(self) -> list[JobError]:
        """Background jobs whose last run failed."""
        return self.background.errors() if self.background is not None else []

    # -- lifecycle ------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("store is closed")

    def close(self) -> None:
        """Stop writing, finish sealed flushes, make the WAL durable, release the store.

        Idempotent. Events not yet in segments stay in the WAL for the next
        open; a memtable older than ``memtable_age_s`` is flushed first, so
        short-lived writers (open, append, close) still produce segments.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self.writer is not None and self.background is not None:
                self._stop.set()
                self._ager.join()
                try:
                    self.writer.seal_if_due()
                except StorageError:
                    pass  # stays in the WAL
                self.writer.close()
                self.background.close(drain=True)
                self.log.close()
        finally:
            try:
                self.feed.close()
            finally:
                self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def closed(self) -> bool:
        return self._closed


def _open_error(directory: Path, exc: OSError) -> StorageError:
    import errno

    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StorageError(f"cannot open the store for writing ({exc.strerror}); "
                            f"open it with read_only=True to read it", path=str(directory))
    return StorageError(f"cannot open the store: {exc}", path=str(directory))


def _lock_directory(directory: Path) -> int:
    """Hold an exclusive lock on the store for this writer's lifetime."""
    fd = os.open(directory / layout.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise StorageError("store is already open by another writer (open it with "
                           "read_only=True to read it)", path=str(directory)) from exc
    return fd
