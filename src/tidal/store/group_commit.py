"""Group commit: appends that arrive together share one WAL write and one fsync.

The first caller to find no write in progress becomes the *leader*: it takes
the queued appends (its own among them, in arrival order, up to
``max_events``), writes them with one call of ``write_group`` and hands each
waiting *follower* its own result. Whoever arrives during that write queues up
and is written by the next leader, so under load a group fills while the
previous fsync runs. A leader may also wait up to ``max_wait_s`` for a group
to fill before writing it.

Every caller returns only after its own item was written (or with the error
that stopped its group). :meth:`GroupCommit.exclusive` runs other work (WAL
rotation, sealing a memtable) between groups, as if it were a group.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Slot(Generic[Item, Result]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.done = False


class GroupCommit(Generic[Item, Result]):
    """Leader/follower batching of ``write_group`` calls.

    Args:
        write_group: writes a group of items; returns one result per item, in order.
        weight: how many events an item counts for ``max_events``.
        max_events: a group closes at this many events (one item always fits).
        max_wait_s: how long a leader waits for a group to fill (0: no wait).
    """

    def __init__(self, write_group: Callable[[Sequence[Item]], Sequence[Result]], *,
                 weight: Callable[[Item], int], max_events: int, max_wait_s: float) -> None:
        self._write_group = write_group
        self._weight = weight
        self.max_events = max_events
        self.max_wait_s = max_wait_s
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Slot[Item, Result]] = deque()
        self._queued_events = 0
        self._leading = False
        self.groups = 0  # groups written, for stats
        self.items = 0

    def submit(self, item: Item) -> Result:
        """Write ``item`` in some group; return its result once written."""
        slot: _Slot[Item, Result] = _Slot(item)
        with self._cond:
            self._queue.append(slot)
            self._queued_events += self._weight(item)
            if self._queued_events >= self.max_events:
                self._cond.notify_all()  # a leader waiting for a full group
            while not slot.done and self._leading:
                self._cond.wait()
            if not slot.done:
                self._leading = True
        if not slot.done:
            self._lead(slot)
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _lead(self, own: _Slot[Item, Result]) -> None:
        try:
            while not own.done:
                self._write(self._take_group())
        finally:
            with self._cond:
                self._leading = False
                self._cond.notify_all()

    def _take_group(self) -> list[_Slot[Item, Result]]:
        with self._cond:
            if self.max_wait_s > 0 and self._queued_events < self.max_events:
                deadline = time.monotonic() + self.max_wait_s
                while self._queued_events < self.max_events:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            group = [self._queue.popleft()]
            events = self._weight(group[0].item)
            while self._queue and events + self._weight(self._queue[0].item) <= self.max_events:
                group.append(self._queue.popleft())
                events += self._weight(group[-1].item)
            self._queued_events -= events
            return group

    def _write(self, group: list[_Slot[Item, Result]]) -> None:
        try:
            results = self._write_group([slot.item for slot in group])
            for slot, result in zip(group, results, strict=True):
                slot.result = result
        except BaseException as exc:  # every append of the group gets the error
            for slot in group:
                slot.error = exc
        with self._cond:
            for slot in group:
                slot.done = True
            self.groups += 1
            self.items += len(group)
            self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold off every group write while the block runs."""
        with self._cond:
            while self._leading:
                self._cond.wait()
            self._leading = True
        try:
            yield
        finally:
            with self._cond:
                self._leading = False
                self._cond.notify_all()
