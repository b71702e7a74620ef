"""A live query: a :class:`~tidal.correlate.live.LiveExecutor` on the store's commit
feed, in a thread of its own.

The thread takes each committed batch from a :class:`~tidal.store.feed.Follower`
(history first when it starts in the past, then live, with no gap and no
repeat), pushes it through the executor and hands the correlations to the
subscriber: a callback, or a queue read by iterating the subscription (sync or
async). ``append`` never waits for it: a subscription that falls behind has its
feed read back from the store, and that is counted (``stats().behind``).

With ``idle_advance``, a quiet stream still moves the watermark: once no event
has come for that long (by ``clock``), the watermark becomes the clock minus
``idle_advance``, so absence fires while nothing happens. The clock is
injectable (``clock() -> int`` ns), and :meth:`Subscription.tick` applies it at
once, so tests of time are deterministic.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import TracebackType

import pyarrow as pa

from tidal.correlate.live import LiveExecutor, LiveStats
from tidal.correlate.result import Correlation
from tidal.errors import ConfigError
from tidal.store.feed import Follower

__all__ = ["Subscription"]

_POLL_S = 0.05


class Subscription:
    """Correlations of one live query, as they complete. Iterate it (``for c in
    sub``, ``async for c in sub``) or give a callback; :meth:`close` ends it."""

    def __init__(self, follower: Follower, executor: LiveExecutor, *,
                 idle_advance_ns: int | None = None, clock: Callable[[], int] | None = None,
                 callback: Callable[[Correlation], object] | None = None) -> None:
        self._follower = follower
        self._executor = executor
        self._idle_ns = idle_advance_ns
        self._clock = clock or time.time_ns
        self._callback = callback
        self._lock = threading.Lock()  # the executor's state (stats() reads it)
        self._step = threading.RLock()  # one step at a time, delivered in order
        self._ready = threading.Condition(threading.Lock())
        self._out: deque[Correlation] = deque()
        self._closed = False
        self._error: BaseException | None = None
        self._last_arrival = self._clock()
        self._wakers: list[Callable[[], None]] = []
        self._thread = threading.Thread(target=self._run, name="tidal-subscription",
                                        daemon=True)
        self._thread.start()

    # -- the feed side ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._closed:
                batch = self._follower.poll(_POLL_S)
                if batch is not None:
                    with self._step:
                        with self._lock:
                            self._last_arrival = self._clock()
                            found = self._executor.push(pa.Table.from_batches([batch]))
                        self._deliver(found)
                elif self._follower.closed:
                    break
                else:
                    self.tick()
        except BaseException as exc:  # noqa: BLE001 (handed to the subscriber)
            self._error = exc
        finally:
            with self._ready:
                self._closed = True
                self._ready.notify_all()
                wakers, self._wakers = self._wakers, []
            for wake in wakers:
                wake()

    def tick(self) -> list[Correlation]:
        """Apply ``idle_advance`` now (the thread does it while it waits): when no
        event has come for that long, move the watermark to the clock minus it.
        Returns what that settled (also delivered)."""
        if self._idle_ns is None:
            return []
        with self._step:
            with self._lock:
                now = self._clock()
                if now - self._last_arrival < self._idle_ns:
                    return []
                found = self._executor.advance(now - self._idle_ns)
            self._deliver(found)
        return found

    def _deliver(self, found: list[Correlation]) -> None:
        if not found:
            return
        if self._callback is not None:
            for correlation in found:
                self._callback(correlation)
            return
        with self._ready:
            self._out.extend(found)
            self._ready.notify_all()
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    # -- the subscriber side ------------------------------------------------------------

    def get(self, timeout_s: float | None = None) -> Correlation | None:
        """The next correlation, waiting up to ``timeout_s`` (None: until closed);
        None on timeout or when the subscription has ended.

        Raises:
            ConfigError: the subscription delivers to its callback instead.
        """
        if self._callback is not None:
            raise ConfigError("this subscription delivers to its callback; get() and "
                              "iteration are for subscriptions without one",
                              field="callback")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._ready:
            while not self._out:
                if self._closed:
                    self._raise()
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._ready.wait(left)
            return self._out.popleft()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def __iter__(self) -> Iterator[Correlation]:
        return self

    def __next__(self) -> Correlation:
        found = self.get()
        if found is None:
            raise StopIteration
        return found

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Correlation:
        if self._callback is not None:
            self.get(0)  # (raises: a callback takes them)
        loop = asyncio.get_running_loop()
        while True:
            woken: asyncio.Future[None] = loop.create_future()

            def wake(future: asyncio.Future[None] = woken) -> None:
                loop.call_soon_threadsafe(_set, future)

            with self._ready:
                if self._out:
                    return self._out.popleft()
                if self._closed:
                    self._raise()
                    raise StopAsyncIteration
                self._wakers.append(wake)
            await woken

    def stats(self) -> LiveStats:
        """State size, evictions, late events, lag (commit to delivery of the last
        batch) and how often it fell behind the feed."""
        with self._lock:
            stats = self._executor.refresh()
            stats = replace(stats, extra=dict(stats.extra))
        stats.lag_ns = self._follower.lag_ns
        stats.behind = self._follower.overflows
        return stats

    @property
    def watermark_ns(self) -> int | None:
        return self._executor.watermark_ns

    def close(self) -> None:
        """End the subscription (iteration ends once what was found is read)."""
        self._closed = True
        self._follower.close()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
