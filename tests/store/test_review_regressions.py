"""Failures found in review: each lost, repeated or stalled something before its fix."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pyarrow as pa
import pytest

import tidal
from tidal.api import Store
from tidal.config import StoreConfig
from tidal.store.group_commit import GroupCommit

from .events import batch
from .faults import FaultyFiles


def ids(store: tidal.Store) -> list[int]:
    return store.read_from(0).column("id").to_pylist()


def test_an_async_follower_whose_loop_is_gone_does_not_fail_appends(tmp_path):
    """Publishing to a stale async waker raised after the WAL write: the group was
    reported failed, and the next append reused its _seq (acknowledged events lost)."""
    store = tidal.open(tmp_path / "s")
    store.append(batch(0, 3))
    follower = store.follow()

    async def give_up() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(follower.__anext__(), 0.05)

    asyncio.run(give_up())  # the loop is closed now
    store.append(batch(100, 2))
    store.append(batch(200, 2))
    store.close()  # and closing does not trip over it either
    with tidal.open(tmp_path / "s") as again:
        assert ids(again) == [0, 1, 2, 100, 101, 200, 201]


def test_close_waits_for_a_compaction_in_another_thread(tmp_path):
    files = FaultyFiles()
    store = Store(tmp_path / "s", StoreConfig.build({"compact_min_rows": 1000}), fs=files)
    for i in range(2):
        store.append(batch(i * 10, 10))
        store.flush()
    files.hold_segment_writes.clear()  # the compaction's writes wait
    compactor = threading.Thread(target=lambda: store.compact(rewrite=False))
    compactor.start()
    time.sleep(0.2)
    closer = threading.Thread(target=store.close)
    closer.start()
    closer.join(0.5)
    assert closer.is_alive()  # the lock is still held while the compaction runs
    files.hold_segment_writes.set()
    closer.join(20)
    compactor.join(20)
    with tidal.open(tmp_path / "s") as again:
        again.append(batch(20, 5))
        again.flush()
        assert ids(again) == list(range(25))


def test_a_manifest_commit_of_unknown_outcome_deletes_nothing(tmp_path):
    """The rename happened but the directory fsync failed: the manifest may be durable,
    so the segments it lists must stay."""
    files = FaultyFiles()
    store = Store(tmp_path / "s", StoreConfig.build({}), fs=files)
    store.append(batch(0, 5))
    files.fail_dir_syncs = 1
    with pytest.raises(tidal.StorageError, match="manifest commit uncertain"):
        store.flush()
    assert list((tmp_path / "s" / "segments").glob("*.parquet"))
    store.close()
    with tidal.open(tmp_path / "s") as again:
        assert ids(again) == list(range(5))


def test_follow_over_seq_values_with_holes_repeats_nothing(tmp_path):
    """Retention dropped one entity piece of a flush, leaving _seq 1, 3, 5, 7."""
    now = time.time_ns()
    old = now - 10 * 86_400 * 10**9
    table = pa.table({
        "timestamp": pa.array([(old if i % 2 == 0 else now) + i for i in range(8)],
                              pa.timestamp("ns", "UTC")),
        "entity": ["a" if i % 2 == 0 else "b" for i in range(8)],
        "id": list(range(8)),
    })
    with tidal.open(tmp_path / "s", segment_rows=4, retention_age_s=86_400) as store:
        store.append(table)
        store.flush()
        got = []
        with store.follow(from_seq=0) as follower:
            while (b := follower.poll(0.3)) is not None:
                got += b.column("_seq").to_pylist()
        assert got == [1, 3, 5, 7] == store.read_from(0).column("_seq").to_pylist()


def test_a_retention_failure_does_not_hang_later_flushes(tmp_path):
    files = FaultyFiles()
    config = StoreConfig.build({"retention_age_s": 86_400})
    store = Store(tmp_path / "s", config, fs=files)
    old = time.time_ns() - 10 * 86_400 * 10**9
    store.append(pa.table({"timestamp": pa.array([old + i for i in range(4)],
                                                 pa.timestamp("ns", "UTC")),
                           "entity": ["a"] * 4, "id": list(range(4))}))
    files.fail_manifest_writes = 0
    original = files.write_files_atomic
    commits = []

    def second_manifest_fails(items):  # 1: the flush's commit, 2: retention's
        if items[0][0].name == "MANIFEST.json":
            commits.append(1)
            if len(commits) == 2:
                files.fail_manifest_writes = 1
        return original(items)

    files.write_files_atomic = second_manifest_fails  # type: ignore[method-assign]
    store.flush()  # the flush itself worked
    assert any(e.startswith("retention") for e in store.stats()["background_errors"])
    done = threading.Thread(target=store.flush)
    done.start()
    done.join(10)
    assert not done.is_alive()
    store.close()


def test_a_failed_rotation_at_the_memory_limit_does_not_stall_appends(tmp_path):
    files = FaultyFiles()
    config = StoreConfig.build({"memtable_bytes": 64 << 10, "memory_limit_bytes": 64 << 10,
                                "memtable_age_s": 0})
    store = Store(tmp_path / "s", config, fs=files)
    files.fail_creates = 1  # the next WAL rotation fails once
    store.append(batch(0, 10_000))  # fills the memtable; its seal fails
    with pytest.raises(tidal.StorageError, match="WAL rotation"):
        store.append(batch(10_000, 10), timeout=5)  # the failure is reported once...
    store.append(batch(10_000, 10), timeout=10)  # ...and the ager seals: memory is freed
    store.close()


def test_a_read_only_follower_gets_live_events(tmp_path):
    writer = tidal.open(tmp_path / "s")
    writer.append(batch(0, 3))
    reader = tidal.open(tmp_path / "s", read_only=True)
    with reader.follow() as follower:
        writer.append(batch(3, 2))
        got = follower.poll(5)
        assert got is not None and got.column("id").to_pylist() == [3, 4]
    reader.close()
    writer.close()


def test_an_interrupted_wait_in_group_commit_leaves_it_working():
    release = threading.Event()

    def write(items):
        if "slow" in items:
            release.wait(10)
        return list(items)

    commit: GroupCommit[str, str] = GroupCommit(write, weight=lambda _: 1, max_events=10,
                                                max_wait_s=0)
    leader = threading.Thread(target=commit.submit, args=("slow",))
    leader.start()
    time.sleep(0.1)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(KeyboardInterrupt):
            commit.submit("waiting")  # a follower, interrupted while it waits
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    release.set()
    leader.join(10)
    after: list[str] = []
    late = threading.Thread(target=lambda: after.append(commit.submit("after")))
    late.start()
    late.join(10)
    assert after == ["after"]  # the queue is sound: nobody waits for a thread that left


# --- reads at scale ------------------------------------------------------------------------

TS = pa.timestamp("ns", "UTC")


@pytest.mark.parametrize("backend", ["memory", "disk"])
def test_compacting_events_without_an_entity_past_segment_rows(tmp_path, backend):
    """A merge group with no entity in its index and more than segment_rows events
    raised IndexError while cutting it into entity pieces."""
    import numpy as np

    path = tmp_path / "s" if backend == "disk" else None
    with tidal.open(path, segment_rows=100, compact_min_rows=1000,
                    compact_chunk_rows=10_000) as store:
        for k in range(3):
            store.append(pa.table({"timestamp": pa.array(np.arange(100) + k * 100, TS),
                                   "x": np.arange(100) + k * 100}))
            store.flush()
        store.compact()
        rows = [m.rows for m in store._engine.manifest.segments]
        assert sum(rows) == 300 and max(rows) <= 100
        assert store.read_from(0).column("x").to_pylist() == list(range(300))


def test_compaction_cuts_one_huge_entity_at_segment_rows():
    """One entity bigger than segment_rows became one segment as large as the chunk."""
    import numpy as np

    with tidal.open(None, segment_rows=1000, compact_min_rows=2000,
                    compact_chunk_rows=10_000) as store:
        for k in range(8):
            store.append(pa.table({"timestamp": pa.array(10**12 + k * 1000 + np.arange(1000), TS),
                                   "entity": ["big"] * 1000}))
            store.flush()
        store.compact()
        assert [m.rows for m in store._engine.manifest.segments] == [1000] * 8
        ts = store.timeline("big").column("timestamp").cast(pa.int64()).to_pylist()
        assert ts == sorted(ts) and len(ts) == 8000


def test_read_from_with_a_small_limit_has_the_store_schema():
    """The few-rows path of read_from returned one segment's own schema: a column
    widened or added by a later segment came back in the old type, or not at all."""
    import numpy as np

    with tidal.open(None) as store:
        n = 20_000
        store.append(pa.table({"timestamp": pa.array(10**12 + np.arange(n), TS),
                               "entity": pa.array(np.arange(n) % 7).cast(pa.string()),
                               "x": pa.array(np.arange(n, dtype=np.int32))}))
        store.flush()
        store.append(pa.table({"timestamp": pa.array([2 * 10**12], TS), "entity": ["a"],
                               "x": ["text"], "y": [1.5]}))
        store.flush()
        few, many = store.read_from(0, 1), store.read_from(0, 10)
        assert few.schema == many.schema
        assert few.schema.field("x").type == pa.string() and "y" in few.schema.names
        assert few.column("x").to_pylist() == ["0"]


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_reads_cold_timelines(tmp_path):
    """The prefetch thread pool was inherited by a forked child without its threads:
    the child's first cold timeline over several segments waited forever."""
    import os

    import numpy as np

    def make(path):
        store = tidal.open(path, compact_min_rows=1)
        for k in range(3):
            store.append(pa.table({"timestamp": pa.array(10**12 + k * 10**13 + np.arange(10), TS),
                                   "entity": ["a"] * 10}))
            store.flush()
        return store

    parent = make(tmp_path / "p")
    parent.timeline("a")  # the parent's pool exists now
    make(tmp_path / "c").close()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            rows = tidal.open(tmp_path / "c", read_only=True).timeline("a").num_rows
            os._exit(0 if rows == 30 else 1)
        finally:
            os._exit(2)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the child's timeline hung")
    parent.close()
    assert os.waitstatus_to_exitcode(status) == 0
