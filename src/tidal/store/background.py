"""Background work: flushing sealed memtables, compaction, retention, and their errors.

One flusher thread writes sealed memtables out as segments, oldest first (a
later flush must never commit, and drop the WAL of, events above ones not
yet in segments). A failed flush keeps its memtable sealed (readable, and in
the WAL) and is retried with growing pauses, at once when someone calls
:meth:`Background.request_flush`. Compaction runs on its own thread when
enough small segments pile up; retention runs after each flush and on the
ager's beat. Every failure is logged, kept in :meth:`Background.errors` for
``stats()``, and handed once to the next write (:meth:`take_error`).

The clock is injected: memtable age and retention read ``clock.now_ns()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import pyarrow as pa

from tidal.config import StoreConfig
from tidal.errors import ClosedError, StorageError
from tidal.store import policy
from tidal.store import segment as segment_io
from tidal.store.backend import SegmentStore
from tidal.store.clock import Clock
from tidal.store.fs import OutcomeUnknown
from tidal.store.manifest import Manifest
from tidal.store.merge import merge_plan
from tidal.store.readers import Readers, Snapshot
from tidal.store.run import SortedRun, sort_plan
from tidal.store.segment import SegmentMeta
from tidal.store.state import Sealed, StoreState

log = logging.getLogger("tidal.store")

AUTO_COMPACT_SEGMENTS = 8
FLUSH_THREADS = 2  # a flush sorts and encodes its pieces in parallel
MIN_PARALLEL_ROWS = 100_000  # ... when each piece gets at least this many rows
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0


@dataclass(frozen=True)
class JobError:
    """The last failure of one kind of background job."""

    job: str
    message: str
    at_ns: int
    failures: int  # consecutive failures of this job


class Background:
    """Flush, compaction and retention for one store. See the module docstring.

    Args:
        state: the shared state (manifest, memtables).
        segments: where segments are written and deleted.
        drop_wal_before: deletes WAL files below a ``_seq`` once a manifest covers them.
        readers: retires segments that left the manifest.
        pin: a snapshot of the store, pinning the segments a compaction reads.
        config: the store's settings.
        clock: wall-clock time for retention.
    """

    def __init__(self, state: StoreState, segments: SegmentStore,
                 drop_wal_before: Callable[[int], None], readers: Readers,
                 pin: Callable[[], Snapshot], config: StoreConfig, clock: Clock) -> None:
        self.state = state
        self.pin = pin
        self.segments = segments
        self.drop_wal_before = drop_wal_before
        self.readers = readers
        self.config = config
        self.clock = clock
        self.manifest_lock = threading.Lock()  # manifest changes serialise here
        self._compact_lock = threading.Lock()
        self._next_segment_id = state.manifest.next_segment_id
        self._errors: dict[str, JobError] = {}
        self._unreported: BaseException | None = None
        self._error_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closing = False
        self._flush_failures = 0
        self._done_seq = state.manifest.flushed_seq  # flushes finished, retention included
        self.flushed_bytes_per_s = 0.0  # recent flush throughput (memtable bytes)
        self._flusher = threading.Thread(target=self._flush_loop, name="tidal-flush",
                                         daemon=True)
        self._flusher.start()
        self._compactor: threading.Thread | None = None

    # -- errors -------------------------------------------------------------------
    def report_failure(self, job: str, exc: BaseException) -> None:
        """Record that ``job`` failed: for ``errors()``, the log and the next write."""
        with self._error_lock:
            previous = self._errors.get(job)
            count = previous.failures + 1 if previous is not None else 1
            self._errors[job] = JobError(job, f"{type(exc).__name__}: {exc}",
                                         self.clock.now_ns(), count)
            self._unreported = StorageError(f"background {job} failed: {exc}")
            self._unreported.__cause__ = exc
        log.error("background %s failed (%d in a row): %s", job, count, exc)

    def report_success(self, job: str) -> None:
        """Record that ``job`` worked again (it leaves ``errors()``)."""
        with self._error_lock:
            self._errors.pop(job, None)

    def take_error(self) -> BaseException | None:
        """The newest background failure not yet reported to a writer (then forgotten)."""
        if self._unreported is None:
            return None  # the common case, without the lock
        with self._error_lock:
            error, self._unreported = self._unreported, None
        return error

    def errors(self) -> list[JobError]:
        """Jobs whose last run failed."""
        with self._error_lock:
            return list(self._errors.values())

    # -- flushing -----------------------------------------------------------------
    def request_flush(self) -> None:
        """Flush sealed memtables now (also cuts short a pause after a failure)."""
        self._wake.set()

    def wait_flushed(self, upto_seq: int) -> None:
        """Block until events up to ``upto_seq`` are in segments, or a flush fails."""
        with self.state.changed:
            failures = self._flush_failures
            while self._done_seq < upto_seq:
                if self._flush_failures != failures or self._stop.is_set():
                    self.take_error()  # the caller gets it now
                    error = self._errors.get("flush")
                    raise StorageError(f"background flush failed: "
                                       f"{error.message if error else 'store closing'}")
                self.state.changed.wait(0.5)

    def _flush_loop(self) -> None:
        pause = RETRY_FIRST_S
        while not self._stop.is_set():
            with self.state.lock:
                sealed = self.state.sealed[0] if self.state.sealed else None
            if sealed is None:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                self._flush(sealed)
                pause = RETRY_FIRST_S
            except BaseException as exc:  # the memtable stays sealed and in the WAL
                self.report_failure("flush", exc)
                with self.state.changed:
                    self._flush_failures += 1
                    self.state.changed.notify_all()
                self._wake.wait(pause)
                self._wake.clear()
                pause = min(pause * 2, RETRY_MAX_S)

    def _flush(self, sealed: Sealed) -> None:
        started = time.perf_counter()
        nbytes = sealed.memtable.view.nbytes
        table = sealed.memtable.view.table()
        plans = self._plan(table)
        metas = self._write_runs(plans, segment_io.FLUSH, sealed.memtable.positions)
        del table, plans
        with self.manifest_lock:
            current = self.state.manifest
            positions = {**current.positions, **sealed.memtable.positions}
            self._commit(replace(current, segments=current.segments + tuple(metas),
                                 flushed_seq=sealed.upto_seq, positions=positions),
                         written=metas, unseal=sealed)
            self.report_success("flush")
            try:  # each reports its own failure: the flush itself is done
                self._drop_wal(sealed.upto_seq + 1)
                self._retain_quietly()
            finally:
                with self.state.changed:
                    self._done_seq = sealed.upto_seq
                    self.state.changed.notify_all()
        _release_memory()
        elapsed = time.perf_counter() - started
        if elapsed > 0:
            rate = nbytes / elapsed
            self.flushed_bytes_per_s = rate if not self.flushed_bytes_per_s else (
                0.7 * self.flushed_bytes_per_s + 0.3 * rate)
        self._maybe_compact()

    def _drop_wal(self, below_seq: int) -> None:
        try:
            self.drop_wal_before(below_seq)
        except OSError as exc:  # the events are safe in segments; retried after the next flush
            self.report_failure("wal cleanup", exc)

    def _commit(self, manifest: Manifest, *, written: Sequence[SegmentMeta] = (),
                removed: Sequence[SegmentMeta] = (), unseal: Sealed | None = None) -> None:
        """Make ``manifest`` durable and visible; manifest lock held.

        If the commit fails, the segments ``written`` for it are deleted again.
        """
        manifest = replace(manifest, next_segment_id=max(manifest.next_segment_id,
                                                         self._next_segment_id))
        try:
            self.segments.commit(manifest)
        except OutcomeUnknown as exc:  # it may be durable: keep what it may list
            raise StorageError(f"manifest commit uncertain: {exc}") from exc
        except BaseException as exc:
            self.readers.retire(written)
            if isinstance(exc, OSError):
                raise StorageError(f"manifest commit failed: {exc}") from exc
            raise
        with self.state.lock:
            self.state.commit(manifest, unseal)
        self.readers.retire(removed)

    def _plan(self, table: pa.Table) -> list[Callable[[], SortedRun]]:
        """``table`` cut into segments: time chunks of at most ``segment_rows`` events
        and ``segment_span_s``, a large chunk cut again for parallel writes."""
        return sort_plan(table, self.config.entity_field, self.config.timestamp_field,
                         max_rows=self.config.segment_rows,
                         span_ns=int(self.config.segment_span_s * 1e9),
                         pieces=max(1, min(FLUSH_THREADS, table.num_rows // MIN_PARALLEL_ROWS)))

    def _reserve_segment_ids(self, count: int) -> int:
        with self.state.lock:
            first = self._next_segment_id
            self._next_segment_id += count
        return first

    def _write_runs(self, plans: Sequence[Callable[[], SortedRun | list[SortedRun]]],
                    profile: segment_io.WriteProfile,
                    positions: Mapping[str, int] | None = None) -> list[SegmentMeta]:
        """Gather and write each planned run (or runs) as segments, in parallel threads.

        If one fails, the segments already written are deleted again.
        """
        def write(plan: Callable[[], SortedRun | list[SortedRun]]) -> list[SegmentMeta]:
            gathered = plan()
            runs = gathered if isinstance(gathered, list) else [gathered]
            first_id = self._reserve_segment_ids(len(runs))
            written: list[SegmentMeta] = []
            try:
                for offset, run in enumerate(runs):
                    written.append(self.segments.write(run, first_id + offset, profile,
                                                       positions))
            except BaseException:
                self.readers.retire(written)
                raise
            return written

        if len(plans) == 1:
            return write(plans[0])
        with ThreadPoolExecutor(min(FLUSH_THREADS, len(plans)),
                                thread_name_prefix="tidal-write") as pool:
            futures = [pool.submit(write, plan) for plan in plans]
        failed = [exc for f in futures if (exc := f.exception()) is not None]
        done = [m for f in futures if f.exception() is None for m in f.result()]
        if failed:
            self.readers.retire(done)
            raise failed[0]
        return done

    # -- compaction ---------------------------------------------------------------
    def _maybe_compact(self) -> None:
        """Start a background compaction once enough small segments piled up."""
        limit = policy.small_rows(self.config)
        small = [s for s in self.state.manifest.segments if s.rows < limit]
        busy = self._compactor is not None and self._compactor.is_alive()
        if len(small) >= AUTO_COMPACT_SEGMENTS and not busy and not self._closing:
            self._compactor = threading.Thread(target=self._compact_quietly,
                                               name="tidal-compact", daemon=True)
            self._compactor.start()

    def _compact_quietly(self) -> None:
        try:
            self.compact()
            self.report_success("compaction")
        except ClosedError:
            return  # the store closed first; nothing was committed
        except BaseException as exc:  # the segments are intact
            self.report_failure("compaction", exc)

    def compact(self, *, rewrite: bool = False) -> int:
        """Merge small segments; returns how many were rewritten. See ``Store.compact``.

        The merge runs without holding up flushes; it commits only if every
        merged segment is still live (retention may have dropped one meanwhile)
        and the store is not closing (:meth:`close` waits for it).
        """
        with self._compact_lock:
            if self._closing:
                raise ClosedError("store is closed")
            pin = self.pin()  # keeps the input files while we read them
            try:
                groups = policy.compaction_groups(pin.segments, self.config, rewrite=rewrite)
                if not groups:
                    return 0
                merged = tuple(m for g in groups for m in g)
                profile = segment_io.COMPACT if rewrite else segment_io.FLUSH
                metas: list[SegmentMeta] = []
                try:
                    for group in groups:  # one group in memory at a time
                        if self._closing:
                            raise ClosedError("store is closing")
                        plans = merge_plan(group, self.segments,
                                           entity_field=self.config.entity_field,
                                           ts_field=self.config.timestamp_field,
                                           max_rows=self.config.segment_rows,
                                           min_rows=policy.small_rows(self.config))
                        metas += self._write_runs(
                            plans, profile, _merged(self.segments.positions(m) for m in group))
                except BaseException:
                    self.readers.retire(metas)
                    raise
                _release_memory()
                with self.manifest_lock:
                    current = self.state.manifest
                    live = set(current.segments)
                    if not all(m in live for m in merged) or self._closing:
                        self.readers.retire(metas)
                        return 0
                    kept = tuple(s for s in current.segments if s not in merged)
                    self._commit(replace(current, segments=kept + tuple(metas)),
                                 written=metas, removed=merged)
                return len(merged)
            finally:
                pin.close()

    # -- retention ----------------------------------------------------------------
    def _retain(self) -> None:
        """Drop segments past retention; manifest lock held."""
        current = self.state.manifest
        drop = policy.expired(current.segments, self.config, self.clock.now_ns())
        if drop:
            kept = tuple(s for s in current.segments if s not in drop)
            self._commit(replace(current, segments=kept,
                                 dropped_segments=current.dropped_segments + len(drop),
                                 dropped_events=current.dropped_events + sum(s.rows for s in drop)),
                         removed=tuple(drop))

    def _retain_quietly(self) -> None:
        """Retention, its failure reported as its own (manifest lock held)."""
        if not (self.config.retention_age_s or self.config.retention_bytes):
            return
        try:
            self._retain()
            self.report_success("retention")
        except BaseException as exc:  # noqa: BLE001 - the events stay; retried later
            self.report_failure("retention", exc)

    def apply_retention(self) -> None:
        """Run retention now (the ager's beat, for stores that stopped flushing)."""
        with self.manifest_lock:
            self._retain_quietly()

    # -- lifecycle ----------------------------------------------------------------
    @property
    def flushing(self) -> bool:
        """Whether sealed memtables wait for a flush."""
        return bool(self.state.sealed)

    def close(self, *, drain: bool) -> None:
        """Stop; with ``drain``, first flush what is sealed (unless flushes fail).

        Waits for a compaction in progress (automatic or called by a user), which
        then commits nothing: after this returns, no thread writes the store.
        """
        if drain:
            with self.state.changed:
                while self.state.sealed and "flush" not in self._errors:
                    self._wake.set()
                    self.state.changed.wait(0.5)
        self._closing = True
        self._stop.set()
        self._wake.set()
        self._flusher.join()
        with self._compact_lock:  # a compaction in any thread has finished
            pass
        if self._compactor is not None:
            self._compactor.join()


def _merged(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Source positions from several segments: the furthest of each."""
    out: dict[str, int] = {}
    for part in parts:
        for source, position in part.items():
            if position > out.get(source, -1):
                out[source] = position
    return out


def _release_memory() -> None:
    """Hand memory freed by a flush or compaction back to the OS (mimalloc keeps it)."""
    pa.default_memory_pool().release_unused()
