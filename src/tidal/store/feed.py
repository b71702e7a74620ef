"""The commit feed: every committed batch, delivered to followers in ``_seq`` order.

The writer publishes each committed table right after its WAL commit, under
the state lock, so publication order is ``_seq`` order and anything not yet
published is not yet visible. A :class:`Follower` receives them in a bounded
queue. It never misses or repeats an event:

* it starts by reading stored history (``from_seq`` up to what was visible
  when it subscribed), then continues with the queue;
* a follower that falls behind (its queue full) has the queue dropped, not
  the writer held up; it then reads the missing range back from the store
  and carries on live. Whenever a queued batch starts above the next
  expected ``_seq``, the gap is read from the store first; events below it
  are cut off.

So ``append`` never waits for a follower, and a slow follower costs memory
only up to its queue bound.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType

import numpy as np
import pyarrow as pa

from tidal.errors import ClosedError

SEQ = "_seq"
SOURCE_KEY = "tidal.source"
POSITION_KEY = "tidal.position"
HISTORY_CHUNK_ROWS = 65_536
IDLE_REFRESH_S = 0.1  # how often a waiting follower of a read-only store looks for commits
ReadHistory = Callable[[int, int | None, int], list[pa.RecordBatch]]
"""``read(from_seq, to_seq, max_rows)``: stored events with ``from_seq <= _seq < to_seq``
(``to_seq=None``: up to the highest visible), at most about ``max_rows`` of them,
as record batches in ``_seq`` order; empty when there are none."""


def _first_seq(batch: pa.RecordBatch) -> int:
    return int(batch.column(SEQ)[0].as_py())


class Follower:
    """An iterator (sync and async) over committed record batches, each with ``_seq``.

    Made by :meth:`tidal.Store.follow`. Iteration blocks until events arrive
    and ends when the follower or the store is closed. Events that retention
    dropped before the follower read them are skipped.
    """

    def __init__(self, read_history: ReadHistory, from_seq: int, max_batches: int,
                 unsubscribe: Callable[[Follower], None], *,
                 on_idle: Callable[[], None] | None = None) -> None:
        self.next_seq = from_seq
        self._on_idle = on_idle  # a read-only store refreshes while its followers wait
        self.max_batches = max_batches
        self._read_history = read_history
        self._unsubscribe = unsubscribe
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[tuple[pa.RecordBatch, int]] = deque()  # (batch, committed at)
        self._behind = False  # the queue overflowed: catch up from the store
        self._catching_up = False
        self._catchup_to: int | None = None  # None: up to the highest visible
        self._buffer: deque[pa.RecordBatch] = deque()  # history read, not yet delivered
        self._closed = False
        self._wakers: list[Callable[[], None]] = []
        self.overflows = 0
        self.history_batches = 0
        self.lag_ns: int | None = None  # commit → delivery of the last live batch

    def _start(self, visible_max_seq: int) -> None:
        """Subscribed while ``visible_max_seq`` was the highest visible ``_seq``."""
        if self.next_seq <= visible_max_seq:
            self._catching_up, self._catchup_to = True, visible_max_seq + 1

    # -- the writer's side (state lock held) ------------------------------------
    def offer(self, batches: list[pa.RecordBatch], committed_ns: int) -> None:
        """Queue batches committed at ``committed_ns`` (``perf_counter_ns``); never blocks
        and never raises."""
        with self._cond:
            if self._closed:
                return
            if len(self._queue) + len(batches) > self.max_batches:
                self._queue.clear()
                self._behind = True
                self.overflows += 1
            else:
                self._queue.extend((batch, committed_ns) for batch in batches)
            self._cond.notify_all()
            wakers, self._wakers = self._wakers, []
        _call_all(wakers)

    # -- the reader's side --------------------------------------------------------
    def _step(self) -> pa.RecordBatch | str:
        """One batch, or what to do first: ``"wait"``, ``"history"`` (read the store) or
        ``"closed"``."""
        while True:
            if self._buffer:
                batch = self._trim(self._buffer.popleft())
                if batch is not None:
                    self.history_batches += 1
                    return batch
                continue
            if self._catching_up:
                return "closed" if self._closed else "history"
            with self._cond:
                if self._closed:
                    return "closed"
                if self._behind:
                    self._behind = False
                    self._catching_up, self._catchup_to = True, None
                    continue
                if not self._queue:
                    return "wait"
                first = _first_seq(self._queue[0][0])
                if first > self.next_seq:  # a gap (after an overflow): read it from the store
                    self._catching_up, self._catchup_to = True, first
                    continue
                batch, committed_ns = self._queue.popleft()
            self.lag_ns = time.perf_counter_ns() - committed_ns
            trimmed = self._trim(batch)
            if trimmed is not None:
                return trimmed

    def _read_chunk(self) -> None:
        """Read the next chunk of history into the buffer, or finish catching up."""
        to = self._catchup_to
        if to is not None and self.next_seq >= to:
            self._catching_up = False
            return
        try:
            batches = self._read_history(self.next_seq, to, HISTORY_CHUNK_ROWS)
        except ClosedError:
            self.close()  # the store closed under us: iteration ends
            return
        if not batches:
            self._catching_up = False
            if to is not None:  # dropped by retention meanwhile: skip to what is there
                self.next_seq = max(self.next_seq, to)
            return
        self._buffer.extend(batches)

    def _trim(self, batch: pa.RecordBatch) -> pa.RecordBatch | None:
        """Cut events already delivered; advance ``next_seq``.

        Batches are in ``_seq`` order but may skip values (events dropped by
        retention, ranges a repair gave up), so the cut is found by search.
        """
        if batch.num_rows == 0:
            return None
        seqs = batch.column(SEQ)
        last = int(seqs[-1].as_py())
        if last < self.next_seq:
            return None
        if int(seqs[0].as_py()) < self.next_seq:
            batch = batch.slice(int(np.searchsorted(np.asarray(seqs), self.next_seq)))
        self.next_seq = last + 1
        return batch

    def _idle(self) -> bool:
        """Whether nothing can be delivered now (state lock held)."""
        return not (self._queue or self._closed or self._behind)

    def poll(self, timeout_s: float | None = None) -> pa.RecordBatch | None:
        """The next batch, waiting up to ``timeout_s`` (None: forever); None on timeout or close."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            step = self._step()
            if isinstance(step, pa.RecordBatch):
                return step
            if step == "closed":
                return None
            if step == "history":
                self._read_chunk()
                continue
            with self._cond:
                if not self._idle():
                    continue
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                if self._on_idle is not None:
                    left = IDLE_REFRESH_S if left is None else min(left, IDLE_REFRESH_S)
                self._cond.wait(left)
            if self._on_idle is not None:
                self._on_idle()

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self

    def __next__(self) -> pa.RecordBatch:
        batch = self.poll()
        if batch is None:
            raise StopIteration
        return batch

    def __aiter__(self) -> Follower:
        return self

    async def __anext__(self) -> pa.RecordBatch:
        loop = asyncio.get_running_loop()
        while True:
            step = self._step()
            if isinstance(step, pa.RecordBatch):
                return step
            if step == "closed":
                raise StopAsyncIteration
            if step == "history":
                await asyncio.to_thread(self._read_chunk)
                continue
            woken: asyncio.Future[None] = loop.create_future()

            def wake(future: asyncio.Future[None] = woken) -> None:
                loop.call_soon_threadsafe(_resolve, future)

            with self._cond:
                if not self._idle():
                    continue
                self._wakers.append(wake)
            try:
                if self._on_idle is None:
                    await woken
                else:
                    await asyncio.wait([woken], timeout=IDLE_REFRESH_S)
                    await asyncio.to_thread(self._on_idle)
            finally:  # cancelled, or timed out: this waker must not outlive the wait
                with self._cond:
                    if wake in self._wakers:
                        self._wakers.remove(wake)

    def close(self) -> None:
        """Stop following; iteration ends. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
            wakers, self._wakers = self._wakers, []
        _call_all(wakers)
        self._unsubscribe(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _call_all(wakers: list[Callable[[], None]]) -> None:
    """Wake async waiters; one whose event loop is gone is simply skipped."""
    for wake in wakers:
        try:
            wake()
        except RuntimeError:  # "Event loop is closed": nobody is waiting there any more
            continue


class CommitFeed:
    """The followers of one store; :meth:`publish` is called under the state lock."""

    def __init__(self) -> None:
        self._followers: tuple[Follower, ...] = ()
        self._lock = threading.Lock()

    def subscribe(self, follower: Follower, visible_max_seq: int) -> None:
        """Add ``follower``; call under the state lock so no commit slips between."""
        follower._start(visible_max_seq)
        with self._lock:
            self._followers += (follower,)

    def unsubscribe(self, follower: Follower) -> None:
        with self._lock:
            self._followers = tuple(f for f in self._followers if f is not follower)

    def publish(self, table: pa.Table, committed_ns: int, source: str | None = None,
                position: int | None = None) -> None:
        """Offer a table committed at ``committed_ns`` (``perf_counter_ns``) to every
        follower; an append's source and position go into the batches' schema metadata
        (``tidal.source``, ``tidal.position``)."""
        if self._followers:
            if source is not None:
                table = table.replace_schema_metadata({SOURCE_KEY: source,
                                                       POSITION_KEY: str(position)})
            batches = table.to_batches()
            for follower in self._followers:
                follower.offer(batches, committed_ns)

    def close(self) -> None:
        """Close every follower (the store is closing)."""
        for follower in self._followers:
            follower.close()

    @property
    def count(self) -> int:
        return len(self._followers)

