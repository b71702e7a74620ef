"""The write path: admission, group commit to the WAL, the memtable, sealing.

An append is admitted while the memtables hold less than
``memory_limit_bytes`` (otherwise it waits for a flush to free memory, up to
its ``timeout``, then raises :class:`BackpressureError`). It then queues in
:class:`GroupCommit`: the *leader* of the next group prepares every queued
append (runs its ``prepare`` step: decoding and normalizing, for the API;
then encodes its WAL payload), gives the group consecutive ``_seq`` ranges in
arrival order, writes it with one WAL write and one fsync, and only then makes
it visible (memtable) and publishes it to followers. The waiting appenders
sleep meanwhile: in CPython, threads that prepared their own appends side by
side would mostly fight over the GIL (one thread's per-append cost doubles
with a second thread on this kind of machine), so one thread does the CPU work
of a group while the others wait, and the next group fills during the fsync.
The exception is work that runs mostly outside the GIL: NDJSON bytes are decoded
(by pyarrow) in the appender's own thread once it is admitted (``own_thread``), so
that bodies decode side by side and during the leader's fsync.

An append whose ``prepare`` raises (bad input) fails alone; a failed WAL write
fails the appends it held. An append whose ``prepare`` gives blocks (a large
file) is written in a frame of its own as its blocks are decoded (see
:meth:`~tidal.store.wal.WalWriter.write_stream`); the appends before it in its
group are written first, those after it next. After a group, the leader seals the active memtable
when it is full or old: the WAL moves to a new file at that ``_seq`` and the
sealed memtable queues for the background flush, so an append never waits for
a flush while memory lasts.

With ``dedup_key`` set, the leader also drops each append's duplicates
(:class:`~tidal.store.dedup.DedupIndex`) before encoding its frame: under the
leadership, so two appends of one event, however concurrent, keep it once. What
an append keeps is staged for the appends after it, made final when its WAL
write succeeds and forgotten when it fails; an append that only skipped
duplicates fails with the write of its group's batch too (the event it matched
may have been in that batch).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pyarrow as pa

from tidal.config import StoreConfig
from tidal.errors import BackpressureError, ClosedError, StorageError
from tidal.store.background import Background
from tidal.store.clock import Clock
from tidal.store.feed import CommitFeed
from tidal.store.group_commit import GroupCommit
from tidal.store.run import SEQ
from tidal.store.state import StoreState
from tidal.store.wal import PendingFrame, encode_payload

if TYPE_CHECKING:
    from tidal.store.dedup import DedupIndex
    from tidal.store.durations import Durations


class Log(Protocol):
    """The WAL side of a backend (:class:`~tidal.store.wal.WalWriter` or a null log)."""

    durable: bool
    sync_error: BaseException | None

    @property
    def fsync_durations(self) -> Durations | None:
        """How long its fsyncs took (None: it makes none)."""

    def write(self, frames: Sequence[PendingFrame]) -> int: ...
    def write_stream(self, parts: Iterable[PendingFrame]) -> int: ...
    def rotate(self, first_seq: int) -> None: ...
    def drop_before(self, first_seq: int) -> None: ...
    def size_bytes(self) -> int: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class SeqRange:
    """The ``_seq`` range given to one append; for a positioned one, the source's
    committed position after it, and whether it was a duplicate (stored nothing);
    ``duplicates``: events it held that the dedup index skipped."""

    count: int
    first_seq: int | None
    last_seq: int | None
    position: int | None = None
    duplicate: bool = False
    duplicates: int = 0


@dataclass
class _Request:
    """An append waiting for a leader: how to get its table, and how many events it
    is expected to hold (for ``group_commit_max_events``)."""

    prepare: Callable[[], pa.Table | Iterable[pa.Table]]
    weight: int
    source: str | None = None
    position: int | None = None


@dataclass
class _Stream:
    """An append that comes in blocks (a large file), decoded as it is written."""

    blocks: Iterator[pa.Table]


@dataclass
class _Append:
    """A prepared append: its table and its WAL frame (and the duplicates it skipped)."""

    table: pa.Table
    frame: PendingFrame
    duplicates: int = 0


_NO_PAYLOAD = pa.py_buffer(b"")
SLACK_BYTES = 64 << 10


def _own_bytes(table: pa.Table, payload: pa.Buffer | None) -> pa.Table:
    """``table``, copied if it is a small view of large buffers.

    A slice of a big table keeps the whole of it alive (and counted): the
    memtable keeps its own copy instead, decoded from the WAL payload when
    there is one.
    """
    held = table.get_total_buffer_size()
    if held <= SLACK_BYTES:
        return table
    needed = payload.size if payload is not None else table.nbytes
    if held <= 2 * needed + SLACK_BYTES:
        return table
    if payload is not None:
        return pa.ipc.open_stream(payload).read_all()
    return table.take(pa.array(np.arange(table.num_rows)))


def _in_position_order(requests: Sequence[_Request]) -> list[int]:
    """Request indices in arrival order, but each source's requests by position."""
    order = list(range(len(requests)))
    slots: dict[str, list[int]] = {}
    for i, request in enumerate(requests):
        if request.source is not None:
            slots.setdefault(request.source, []).append(i)
    for taken in slots.values():
        if len(taken) > 1:
            ranked = sorted(taken, key=lambda i: requests[i].position or 0)
            for slot, i in zip(taken, ranked, strict=True):
                order[slot] = i
    return order


def _range_of(append: _Append) -> SeqRange:
    frame = append.frame
    if not frame.rows:
        return SeqRange(0, None, None, frame.position, duplicates=append.duplicates)
    return SeqRange(frame.rows, frame.first_seq, frame.first_seq + frame.rows - 1,
                    frame.position, duplicates=append.duplicates)


class Writer:
    """Appends for one store. See the module docstring."""

    def __init__(self, state: StoreState, log: Log, feed: CommitFeed, background: Background,
                 config: StoreConfig, clock: Clock, next_seq: int) -> None:
        self.state = state
        self.log = log
        self.feed = feed
        self.background = background
        self.config = config
        self.clock = clock
        self._next_seq = next_seq
        self._group: GroupCommit[_Request, SeqRange] = GroupCommit(
            self._write_group, weight=lambda r: r.weight,
            max_events=config.group_commit_max_events,
            max_wait_s=config.group_commit_max_wait_us / 1e6)
        self.memory_limit_bytes = config.memory_limit_bytes or 4 * config.memtable_bytes
        self.closed = False
        self.backpressure_waits = 0
        self.backpressure_wait_s = 0.0
        self.rotate_error: BaseException | None = None
        self._stats_lock = threading.Lock()
        self.dedup: DedupIndex | None = None
        if config.dedup_key is not None and config.dedup_window_ns is not None:
            from tidal.store.dedup import DedupIndex  # (numba loads only for a dedup store)

            self.dedup = DedupIndex(config.dedup_key, config.dedup_window_ns,
                                    config.timestamp_field)

    # -- appending ----------------------------------------------------------------
    def append(self, prepare: Callable[[], pa.Table | Iterable[pa.Table]], *, weight: int = 1,
               source: str | None = None, position: int | None = None,
               timeout_s: float | None = None, own_thread: bool = False) -> SeqRange:
        """Store the table ``prepare()`` returns (run by the group's leader, or with
        ``own_thread`` by the caller once admitted); returns once it is durable under
        the policy. ``weight``: the events it is expected to hold.

        With ``source`` and ``position`` (validated by the caller), the append commits
        that position with its events in one WAL frame, unless ``position`` is at or
        below the source's committed one: then nothing is stored (``duplicate``).
        """
        if self.closed:
            raise ClosedError("store is closed")
        error = self.background.take_error()
        if error is not None:
            raise StorageError(f"{error}; nothing of this append was stored") from error
        committed = self.state.positions.get(source) if source is not None else None
        if committed is not None and position is not None and position <= committed:
            return SeqRange(0, None, None, committed, duplicate=True)  # a cheap early answer
        self._admit(timeout_s)
        if own_thread:  # (what it raises fails this append alone, as from the leader)
            made = prepare()
            if isinstance(made, pa.Table):
                weight = made.num_rows
            prepare = lambda: made  # noqa: E731
        return self._group.submit(_Request(prepare, max(1, weight), source, position))

    def _admit(self, timeout_s: float | None) -> None:
        """Wait while the memtables hold ``memory_limit_bytes`` or more."""
        if self.state.memory_bytes() < self.memory_limit_bytes:
            return  # the common case, read without the lock (appends must not queue on it)
        with self.state.changed:
            if self.state.memory_bytes() < self.memory_limit_bytes:
                return
            started = time.monotonic()
            deadline = None if timeout_s is None else started + timeout_s
            try:
                while self.state.memory_bytes() >= self.memory_limit_bytes:
                    if self.closed:
                        raise ClosedError("store is closed")
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise BackpressureError(
                            f"memtables hold {self.state.memory_bytes():,} bytes, at the limit "
                            f"of {self.memory_limit_bytes:,}; flushes are behind",
                            retry_after_s=self._retry_after_s())
                    self.background.request_flush()
                    self.state.changed.wait(0.5 if left is None else min(left, 0.5))
            finally:
                with self._stats_lock:
                    self.backpressure_waits += 1
                    self.backpressure_wait_s += time.monotonic() - started

    def _retry_after_s(self) -> float:
        """How long until a flush frees memory, from recent flush throughput (lock held)."""
        queued = sum(s.memtable.view.nbytes for s in self.state.sealed)
        rate = self.background.flushed_bytes_per_s
        return round(max(0.05, queued / rate if rate else 1.0), 3)

    def _prepare(self, request: _Request) -> _Append | _Stream | SeqRange | BaseException:
        """Run an append's ``prepare`` and encode its frame; an empty one is done already.
        A ``prepare`` that gives blocks instead of a table is a stream, written later."""
        mark = self.dedup.mark() if self.dedup is not None else None
        try:
            made = request.prepare()
            if not isinstance(made, pa.Table):
                return _Stream(iter(made))
            return self._encoded(made, positioned=request.source is not None)
        except BaseException as exc:  # bad input: this append fails alone
            if self.dedup is not None:
                self.dedup.rollback(mark)
            return exc

    def _encoded(self, table: pa.Table, *, positioned: bool) -> _Append | SeqRange:
        """``table`` without its duplicates, with its WAL part; an empty one needs none
        unless it carries a position."""
        duplicates = 0
        if self.dedup is not None and table.num_rows:
            table, duplicates = self.dedup.keep(table)
        if table.num_rows == 0 and not positioned:
            return SeqRange(0, None, None, duplicates=duplicates)
        if any(column.num_chunks > 1 for column in table.columns):
            table = table.combine_chunks()  # IPC-encoding chunked columns is much slower
        payload = encode_payload(table) if self.log.durable else None
        return _Append(_own_bytes(table, payload),
                       PendingFrame(payload or _NO_PAYLOAD, table.num_rows), duplicates)

    def _write_group(self, requests: Sequence[_Request]
                     ) -> list[SeqRange | BaseException]:
        """Write one group (leader only): prepare, WAL, memtable and followers, maybe seal.

        Appends are taken in arrival order, except that the appends of one source
        in the same group are taken in order of position; a positioned append at
        or below its source's committed position (counting those before it) is a
        duplicate and stores nothing. The group is one WAL frame, unless an
        append comes in blocks (a large file): the appends before it are written
        first, it is written in a frame of its own while it is decoded, and
        those after it follow in another.
        """
        results: list[_Append | SeqRange | BaseException | None] = [None] * len(requests)
        accepted: dict[str, int] = {}
        batch: list[tuple[int, _Append | SeqRange]] = []
        if self.dedup is not None:
            self.dedup.rollback()  # what a group that broke off left staged
        for i in _in_position_order(requests):
            request = requests[i]
            source, position = request.source, request.position
            positioned = source is not None and position is not None
            if source is not None and position is not None:
                committed = accepted.get(source, self.state.positions.get(source))
                if committed is not None and position <= committed:
                    results[i] = SeqRange(0, None, None, committed, duplicate=True)
                    continue
            result = self._prepare(request)
            if isinstance(result, _Stream):
                self._commit(batch, results)  # what came before it goes first
                batch = []
                results[i] = self._write_stream(request, result)
            else:
                if isinstance(result, _Append):
                    if positioned:
                        result.frame.source, result.frame.position = source, position
                    batch.append((i, result))
                elif isinstance(result, SeqRange) and result.duplicates:
                    batch.append((i, result))  # only duplicates: stands or falls with the batch
                results[i] = result
            if source is not None and position is not None and not isinstance(
                    results[i], BaseException):
                accepted[source] = position
        self._commit(batch, results)
        try:
            self._seal_if_due()
        except BaseException as exc:  # noqa: BLE001 - the group is stored; report, go on
            self.background.report_failure("memtable seal", exc)
        return [_range_of(r) if isinstance(r, _Append) else r  # type: ignore[misc]
                for r in results]

    def _commit(self, batch: list[tuple[int, _Append | SeqRange]],
                results: list[_Append | SeqRange | BaseException | None]) -> None:
        """Write ``batch`` as one WAL frame and make it visible; if the write fails,
        that is each of its appends' result (also of those that only skipped duplicates)."""
        if not batch:
            return
        appends = [a for _, a in batch if isinstance(a, _Append)]
        if appends:
            first = self._next_seq
            for a in appends:
                a.frame.first_seq = first
                first += a.frame.rows
            try:
                self.log.write([a.frame for a in appends])
            except Exception as exc:  # noqa: BLE001 - nothing of the batch was stored
                for i, _ in batch:
                    results[i] = exc
                if self.dedup is not None:
                    self.dedup.rollback()
                return
            self._publish(appends)
        if self.dedup is not None:
            self.dedup.commit(sum(a.duplicates for _, a in batch))

    def _write_stream(self, request: _Request, stream: _Stream) -> SeqRange | BaseException:
        """Write an append that comes in blocks as one WAL frame, each block written while
        the next is decoded; then make it visible. A positioned append's position rides
        on its last block (so each block is held until the next one is made)."""
        positioned = request.source is not None and request.position is not None
        appends: list[_Append] = []
        skipped = [0]  # duplicates of blocks that kept nothing

        def parts() -> Iterator[PendingFrame]:
            seq = self._next_seq
            for table in stream.blocks:
                made = self._encoded(table, positioned=False)
                if isinstance(made, SeqRange):
                    skipped[0] += made.duplicates
                    continue  # an empty block (or one of duplicates only)
                if positioned and appends:
                    yield appends[-1].frame
                made.frame.first_seq, seq = seq, seq + made.frame.rows
                appends.append(made)
                if not positioned:
                    yield made.frame
            if positioned:
                if not appends:
                    empty = self._encoded(pa.table({}), positioned=True)
                    assert isinstance(empty, _Append)
                    empty.frame.first_seq = seq
                    appends.append(empty)
                appends[-1].frame.source = request.source
                appends[-1].frame.position = request.position
                yield appends[-1].frame

        try:
            self.log.write_stream(parts())
        except Exception as exc:  # noqa: BLE001 - bad input or a failed write: stored nothing
            if self.dedup is not None:
                self.dedup.rollback()
            return exc
        duplicates = skipped[0] + sum(a.duplicates for a in appends)
        if self.dedup is not None:
            self.dedup.commit(duplicates)
        if not appends:
            return SeqRange(0, None, None, duplicates=duplicates)
        self._publish(appends)
        rows = sum(a.frame.rows for a in appends)
        first = appends[0].frame.first_seq
        return SeqRange(rows, first if rows else None, first + rows - 1 if rows else None,
                        request.position if positioned else None, duplicates=duplicates)

    def _publish(self, appends: list[_Append]) -> None:
        """Stamp durable appends with their ``_seq`` and make them visible (memtable,
        positions, followers). Nothing here may fail or reuse their ``_seq``."""
        base = appends[0].frame.first_seq
        first = appends[-1].frame.first_seq + appends[-1].frame.rows
        self._next_seq = first
        committed_ns = time.perf_counter_ns()
        written_ns = self.clock.now_ns()
        seqs = pa.array(np.arange(base, first, dtype=np.int64))
        stamped = [a.table.add_column(0, SEQ, seqs.slice(a.frame.first_seq - base,
                                                         a.frame.rows)) for a in appends]
        positions = {a.frame.source: a.frame.position for a in appends
                     if a.frame.source is not None and a.frame.position is not None}
        with self.state.lock:
            self.state.add(stamped, first - 1, written_ns, positions)
            for a, table in zip(appends, stamped, strict=True):
                if table.num_rows:
                    self.feed.publish(table, committed_ns, a.frame.source, a.frame.position)

    # -- sealing ------------------------------------------------------------------
    def _seal_if_due(self) -> None:
        active = self.state.active
        if active.view.nbytes >= self.config.memtable_bytes or (
                self.config.memtable_age_s and active.view.rows
                and active.age_s(self.clock.now_ns()) >= self.config.memtable_age_s):
            self._seal()

    def _seal(self) -> int:
        """Seal the active memtable (leadership held); returns the ``_seq`` it ends at.

        The WAL first moves to a new file, so the sealed events' files can be
        dropped once flushed. If that fails, nothing is sealed now: appends go
        on in the old file and the next seal tries again.
        """
        upto = self._next_seq - 1
        if self.state.active.view.rows == 0:
            return upto
        try:
            self.log.rotate(self._next_seq)
            if self.rotate_error is not None:
                self.rotate_error = None
                self.background.report_success("WAL rotation")
        except (StorageError, OSError) as exc:
            self.rotate_error = exc
            self.background.report_failure("WAL rotation", exc)
            return upto
        with self.state.lock:
            self.state.seal()
        self.background.request_flush()
        return upto

    def seal_if_due(self) -> None:
        """Seal an old or full memtable now (the ager calls this: also after a failed
        rotation, when no append may come to retry it because memory is at its limit)."""
        with self._group.exclusive():
            if not self.closed:
                self._seal_if_due()

    def flush(self) -> None:
        """Seal the active memtable and wait until every event so far is in segments."""
        if self.closed:
            raise ClosedError("store is closed")
        with self._group.exclusive():
            upto = self._seal()
            if self.rotate_error is not None:
                self.background.take_error()  # reported here
                raise StorageError(f"cannot flush: {self.rotate_error}") from self.rotate_error
        self.background.request_flush()
        self.background.wait_flushed(upto)

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def groups(self) -> tuple[int, int]:
        """(groups written, appends written): appends per fsync is their ratio."""
        return self._group.groups, self._group.items

    def close(self) -> None:
        """Refuse new appends once the ones in flight are written."""
        with self._group.exclusive():
            self.closed = True
        with self.state.changed:
            self.state.changed.notify_all()
