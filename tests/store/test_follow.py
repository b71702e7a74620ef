"""The commit feed: gapless history-then-live hand-off, slow followers, async, close."""

from __future__ import annotations

import asyncio
import threading

import pytest

import tidal

from .events import batch


def take(follower: tidal.Follower, events: int, timeout_s: float = 20.0) -> list[int]:
    """The ``id`` of the next ``events`` events; every batch must carry ``_seq``."""
    ids: list[int] = []
    while len(ids) < events:
        b = follower.poll(timeout_s)
        assert b is not None, f"timed out after {len(ids)} events"
        seqs = b.column("_seq").to_pylist()
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        ids += b.column("id").to_pylist()
    return ids


def test_follow_from_none_gets_only_new_events(open_store):
    store = open_store()
    store.append(batch(0, 5))
    with store.follow() as f:
        assert f.poll(0.05) is None
        store.append(batch(5, 3))
        assert take(f, 3) == [5, 6, 7]


def test_follow_from_a_seq_reads_history_then_continues_live(open_store):
    store = open_store()
    store.append(batch(0, 100))
    store.flush()  # history from segments ...
    store.append(batch(100, 50))  # ... and from the memtable
    with store.follow(from_seq=30) as f:
        store.append(batch(150, 10))
        assert take(f, 130) == list(range(30, 160))
        assert f.poll(0.05) is None


def test_follow_with_concurrent_appends_never_misses_or_repeats(open_store):
    store = open_store(memtable_bytes=64 << 10)  # flushes happen while following
    done = threading.Event()

    def write() -> None:
        for i in range(200):
            store.append(batch(i * 25, 25))
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    with store.follow(from_seq=0) as f:
        ids = take(f, 5000)
    writer.join()
    assert ids == list(range(5000))


def test_a_slow_follower_falls_back_to_the_store_and_loses_nothing(open_store):
    store = open_store(memtable_bytes=32 << 10)
    f = store.follow(from_seq=0)
    f.max_batches = 4  # fills after a few appends
    for i in range(100):  # nobody reads meanwhile: the queue overflows, appends go on
        store.append(batch(i * 10, 10))
    assert f.overflows > 0
    assert take(f, 1000) == list(range(1000))
    store.append(batch(1000, 5))
    assert take(f, 5) == [1000, 1001, 1002, 1003, 1004]
    f.close()


def test_async_iteration(open_store):
    store = open_store()
    store.append(batch(0, 4))

    async def consume() -> list[int]:
        ids: list[int] = []
        async for b in store.follow(from_seq=2):
            ids += b.column("id").to_pylist()
            if len(ids) == 2:
                await asyncio.to_thread(store.append, batch(4, 3))
            if len(ids) >= 5:
                break
        return ids

    assert asyncio.run(asyncio.wait_for(consume(), 20)) == [2, 3, 4, 5, 6]


def test_close_ends_iteration_from_another_thread(open_store):
    store = open_store()
    f = store.follow()
    got: list[object] = []
    t = threading.Thread(target=lambda: got.extend(f))
    t.start()
    store.append(batch(0, 2))
    f.close()
    t.join(10)
    assert not t.is_alive()
    assert sum(b.num_rows for b in got) <= 2


def test_closing_the_store_ends_its_followers(open_store):
    store = open_store()
    f = store.follow()
    store.close()
    assert list(f) == [] and f.closed


def test_follow_on_a_closed_store_is_an_error(open_store):
    store = open_store()
    store.close()
    with pytest.raises(tidal.ClosedError):
        store.follow()


def test_read_from_honours_limit(open_store):
    store = open_store()
    for i in range(10):
        store.append(batch(i * 100, 100))
        if i % 3 == 0:
            store.flush()
    t = store.read_from(250, limit=120)
    assert t.column("id").to_pylist() == list(range(250, 370))
    assert store.read_from(990).column("id").to_pylist() == list(range(990, 1000))
    assert store.read_from(5000).num_rows == 0
