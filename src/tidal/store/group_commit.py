"""Group commit: appends that arrive together share one WAL write and one fsync.

The first caller to find no write in progress becomes the *leader*: it takes
the queued appends (its own among them, in arrival order, up to
``max_events``), writes them with one call of ``write_group`` and hands each
waiting *follower* its own result. Whoever arrives during that write queues up
and is written by the next leader, so under load a group fills while the
previous fsync runs. A leader may also wait up to ``max_wait_s`` for a group
to fill before writing it.

Each waiter sleeps on its own lock and is woken exactly once, when its item
is written or when it is made the next leader: finishing a group wakes the
members of that group, not every waiting thread. :meth:`GroupCommit.exclusive`
takes a turn in the same queue to run other work (WAL rotation, sealing a
memtable) between groups.
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
    """A place in the queue: an item to write, or a turn (``item is None``) for
    :meth:`GroupCommit.exclusive`."""

    __slots__ = ("done", "error", "item", "result", "wake")

    def __init__(self, item: Item | None) -> None:
        self.item = item
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.done = False
        self.wake = threading.Lock()
        self.wake.acquire()  # released once: written, or made leader


class GroupCommit(Generic[Item, Result]):
    """Leader/follower batching of ``write_group`` calls.

    Args:
        write_group: writes a group of items; returns one result per item, in order
            (an exception as a result fails that item alone; one raised fails them all).
        weight: how many events an item counts for ``max_events``.
        max_events: a group closes at this many events (one item always fits).
        max_wait_s: how long a leader waits for a group to fill (0: no wait).
    """

    def __init__(self, write_group: Callable[[Sequence[Item]],
                                             Sequence[Result | BaseException]], *,
                 weight: Callable[[Item], int], max_events: int, max_wait_s: float) -> None:
        self._write_group = write_group
        self._weight = weight
        self.max_events = max_events
        self.max_wait_s = max_wait_s
        self._lock = threading.Lock()
        self._filled = threading.Condition(self._lock)
        self._queue: deque[_Slot[Item, Result]] = deque()
        self._queued_events = 0
        self._leading = False
        self.groups = 0  # groups written, for stats
        self.items = 0

    def submit(self, item: Item) -> Result:
        """Write ``item`` in some group; return its result once written."""
        slot: _Slot[Item, Result] = _Slot(item)
        if self._enqueue(slot):
            self._sleep(slot)  # written by a leader, or made the leader
        if not slot.done:
            self._lead(slot)
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _enqueue(self, slot: _Slot[Item, Result]) -> bool:
        """Queue ``slot``; True when another thread leads (so wait), False when we lead."""
        with self._lock:
            self._queue.append(slot)
            if slot.item is not None:
                self._queued_events += self._weight(slot.item)
                if self._queued_events >= self.max_events:
                    self._filled.notify()
            if self._leading:
                return True
            self._leading = True
            return False

    def _sleep(self, slot: _Slot[Item, Result]) -> None:
        """Wait until ``slot`` is written or made leader.

        If the wait is interrupted (Ctrl-C), the queue is left sound: the slot
        leaves it, and passes the lead on if it had just been given it.
        """
        try:
            slot.wake.acquire()
        except BaseException:
            with self._lock:
                promoted = slot.wake.acquire(blocking=False)
                if slot in self._queue:
                    self._drop(slot)
                if promoted and not slot.done:
                    self._pass_lead()
            raise

    def _drop(self, slot: _Slot[Item, Result]) -> None:
        """Take ``slot`` out of the queue. Lock held."""
        self._queue.remove(slot)
        if slot.item is not None:
            self._queued_events -= self._weight(slot.item)

    def _lead(self, own: _Slot[Item, Result]) -> None:
        """Write groups until ``own`` is written, then pass the lead on."""
        while True:
            try:
                with self._lock:
                    if own.done:
                        self._pass_lead()
                        return
                    if self._queue[0].item is None:  # an exclusive turn waits ahead of us
                        self._pass_lead()
                        group = None
                    else:
                        group = self._take_group()
            except BaseException:  # interrupted while waiting for a group to fill
                with self._lock:
                    if own in self._queue:
                        self._drop(own)
                    self._pass_lead()
                raise
            if group is None:
                self._sleep(own)  # written meanwhile, or made the leader again
                if own.done:
                    return
                continue
            self._write(group, own)

    def _pass_lead(self) -> None:
        """Make the first queued slot's thread the leader, or stop leading. Lock held."""
        if not self._queue:
            self._leading = False
            return
        head = self._queue[0]
        if head.item is None:
            self._queue.popleft()
        head.wake.release()

    def _take_group(self) -> list[_Slot[Item, Result]]:
        """Queued items from the head, up to ``max_events``, stopping at a turn. Lock held."""
        if self.max_wait_s > 0 and self._queued_events < self.max_events:
            deadline = time.monotonic() + self.max_wait_s
            while self._queued_events < self.max_events:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._filled.wait(left)
        group = [self._queue.popleft()]
        events = self._weight(group[0].item)  # type: ignore[arg-type]
        while self._queue and self._queue[0].item is not None and (
                events + self._weight(self._queue[0].item) <= self.max_events):
            group.append(self._queue.popleft())
            events += self._weight(group[-1].item)  # type: ignore[arg-type]
        self._queued_events -= events
        return group

    def _write(self, group: list[_Slot[Item, Result]], own: _Slot[Item, Result]) -> None:
        try:
            results = self._write_group([slot.item for slot in group])  # type: ignore[misc]
            for slot, result in zip(group, results, strict=True):
                if isinstance(result, BaseException):
                    slot.error = result  # this item alone failed
                else:
                    slot.result = result
        except BaseException as exc:  # every item of the group gets the error
            for slot in group:
                slot.error = exc
        self.groups += 1
        self.items += len(group)
        for slot in group:
            slot.done = True
            if slot is not own:
                slot.wake.release()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Take a turn between groups: no group is written while the block runs."""
        turn: _Slot[Item, Result] = _Slot(None)
        if self._enqueue(turn):
            self._sleep(turn)  # the leader before us passed the lead to this turn
        else:
            with self._lock:
                self._queue.remove(turn)
        try:
            yield
        finally:
            with self._lock:
                self._pass_lead()
