"""The write path: admission, group commit to the WAL, the memtable, sealing.

An append is admitted while the memtables hold less than
``memory_limit_bytes`` (otherwise it waits for a flush to free memory, up to
its ``timeout``, then raises :class:`BackpressureError`). Its payload is
encoded by the appending thread; then :class:`GroupCommit` writes it in a
group with the appends that arrived meanwhile: the group gets consecutive
``_seq`` ranges in arrival order, one WAL write and one fsync, and only then
becomes visible (memtable) and is published to followers. After a group,
the leader seals the active memtable when it is full or old: the WAL moves
to a new file at that ``_seq`` and the sealed memtable queues for the
background flush, so an append never waits for a flush while memory lasts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

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


class Log(Protocol):
    """The WAL side of a backend (:class:`~tidal.store.wal.WalWriter` or a null log)."""

    durable: bool
    sync_error: BaseException | None

    def write(self, frames: Sequence[PendingFrame]) -> int: ...
    def rotate(self, first_seq: int) -> None: ...
    def drop_before(self, first_seq: int) -> None: ...
    def size_bytes(self) -> int: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class SeqRange:
    """The ``_seq`` range given to one append."""

    count: int
    first_seq: int | None
    last_seq: int | None


@dataclass
class _Append:
    table: pa.Table
    frame: PendingFrame


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
        self._group: GroupCommit[_Append, SeqRange] = GroupCommit(
            self._write_group, weight=lambda a: a.frame.rows,
            max_events=config.group_commit_max_events,
            max_wait_s=config.group_commit_max_wait_us / 1e6)
        self.memory_limit_bytes = config.memory_limit_bytes or 4 * config.memtable_bytes
        self.closed = False
        self.backpressure_waits = 0
        self.backpressure_wait_s = 0.0
        self.rotate_error: BaseException | None = None
        self._stats_lock = threading.Lock()

    # -- appending ----------------------------------------------------------------
    def append(self, table: pa.Table, *, timeout_s: float | None = None) -> SeqRange:
        """Store a normalized table; returns once it is durable under the policy."""
        if self.closed:
            raise ClosedError("store is closed")
        error = self.background.take_error()
        if error is not None:
            raise StorageError(f"{error}; nothing of this append was stored") from error
        n = table.num_rows
        if n == 0:
            return SeqRange(0, None, None)
        self._admit(timeout_s)
        if any(column.num_chunks > 1 for column in table.columns):
            table = table.combine_chunks()  # IPC-encoding chunked columns is many times slower
        payload = encode_payload(table) if self.log.durable else None
        table = _own_bytes(table, payload)
        return self._group.submit(_Append(table, PendingFrame(payload or _NO_PAYLOAD, n)))

    def _admit(self, timeout_s: float | None) -> None:
        """Wait while the memtables hold ``memory_limit_bytes`` or more."""
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

    def _write_group(self, appends: Sequence[_Append]) -> list[SeqRange]:
        """Write one group (leader only): WAL, then memtable and followers, then maybe seal."""
        first = self._next_seq
        ranges = []
        for a in appends:
            a.frame.first_seq = first
            ranges.append(SeqRange(a.frame.rows, first, first + a.frame.rows - 1))
            first += a.frame.rows
        self.log.write([a.frame for a in appends])
        committed_ns = time.perf_counter_ns()
        written_ns = self.clock.now_ns()
        seqs = pa.array(np.arange(self._next_seq, first, dtype=np.int64))
        stamped = [a.table.add_column(0, SEQ, seqs.slice(a.frame.first_seq - self._next_seq,
                                                         a.frame.rows)) for a in appends]
        with self.state.lock:
            self.state.add(stamped, first - 1, written_ns)
            for table in stamped:
                self.feed.publish(table, committed_ns)
        self._next_seq = first
        self._seal_if_due()
        return ranges

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
        except StorageError as exc:
            self.rotate_error = exc
            self.background.report_failure("WAL rotation", exc)
            return upto
        with self.state.lock:
            self.state.seal()
        self.background.request_flush()
        return upto

    def seal_if_due(self) -> None:
        """Seal an old or full memtable now (the ager calls this)."""
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
