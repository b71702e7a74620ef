"""One writer, four readers: every read is a consistent snapshot.

The writer appends numbered batches while background flushes and compactions
run (small ``memtable_bytes``); readers loop over ``timeline``, ``sql``,
``read_from`` and ``stats``. A reader must never see an error, part of a
batch, a gap in ``_seq``, or events out of order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest

import tidal

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns
BATCHES = 160
ENTITIES = 4
CONFIG: dict[str, object] = {"memtable_bytes": 8 << 10, "compact_min_rows": 300,
                             "segment_rows": 700}


def batch_size(k: int) -> int:
    return 1 + (k * 37) % 45


def make_batch(k: int) -> pa.Table:
    """Batch ``k``: its events share ``batch == k``; times out of order, with ties."""
    n = batch_size(k)
    j = np.arange(n)
    ts = T0 + ((k * 7_919 + j * 104_729) % 500) * 1_000_000
    return pa.table({
        "timestamp": pa.array(ts, pa.timestamp("ns", "UTC")),
        "entity": pa.array([f"e{x}" for x in (k + j) % ENTITIES], pa.string()),
        "batch": pa.array(np.full(n, k), pa.int64()),
        "payload": pa.array([f"{k}:{x}" for x in j], pa.string()),
    })


SIZES = np.array([batch_size(k) for k in range(BATCHES)])
PER_ENTITY = np.zeros((ENTITIES, BATCHES), dtype=np.int64)  # events of entity e in batch k
for _k in range(BATCHES):
    np.add.at(PER_ENTITY[:, _k], (_k + np.arange(SIZES[_k])) % ENTITIES, 1)


def whole_prefix(batches: np.ndarray, expected: np.ndarray) -> int:
    """Check ``batches`` holds batches 0..m-1 with ``expected`` events each; return m."""
    if batches.size == 0:
        return 0
    m = int(batches.max()) + 1
    counts = np.bincount(batches, minlength=m)
    assert np.array_equal(counts, expected[:m]), "a partial batch, or a batch missing"
    return m


def check_read_from(store: tidal.Store, state: dict[str, int]) -> None:
    table = store.read_from(0)
    n = table.num_rows
    if n == 0:
        return
    seqs = table.column("_seq").to_numpy()
    assert np.array_equal(seqs, np.arange(n)), "_seq not dense from 0"
    batches = table.column("batch").to_numpy()
    assert np.all(np.diff(batches) >= 0), "batches interleaved"
    whole_prefix(batches, SIZES)
    assert n >= state.get("n", 0), "the store went back in time"
    state["n"] = n


def check_timeline(store: tidal.Store, state: dict[str, int]) -> None:
    e = state["i"] % ENTITIES
    state["i"] += 1
    table = store.timeline(f"e{e}")
    if table.num_rows == 0:
        return
    ts = table.column("timestamp").cast(pa.int64()).to_numpy()
    seqs = table.column("_seq").to_numpy()
    order = np.lexsort((seqs, ts))
    assert np.array_equal(order, np.arange(len(order))), "timeline out of (timestamp, _seq) order"
    assert len(np.unique(seqs)) == len(seqs), "an event twice"
    whole_prefix(table.column("batch").to_numpy(), PER_ENTITY[e])


def check_sql(store: tidal.Store, state: dict[str, int]) -> None:
    rows = store.sql("SELECT batch, count(*) AS c, min(_seq) AS lo, max(_seq) AS hi "
                     "FROM events GROUP BY batch ORDER BY batch").to_pylist()
    assert [r["batch"] for r in rows] == list(range(len(rows))), "a batch missing"
    first = 0
    for r in rows:
        k = r["batch"]
        assert r["c"] == SIZES[k], f"batch {k} seen in part"
        assert (r["lo"], r["hi"]) == (first, first + SIZES[k] - 1), f"batch {k} not dense"
        first += SIZES[k]


def check_stats_and_tail(store: tidal.Store, state: dict[str, int]) -> None:
    """A live consumer: read what is new since last time, plus stats."""
    stats = store.stats()
    assert stats["events"] == stats["max_seq"] + 1
    assert stats["events"] >= state.get("events", 0)
    assert stats["entities"] <= ENTITIES
    state["events"] = stats["events"]
    cursor = state.get("cursor", 0)
    new = store.read_from(cursor)
    seqs = new.column("_seq").to_numpy()
    assert np.array_equal(seqs, np.arange(cursor, cursor + len(seqs))), "tail not dense"
    if len(seqs):
        whole_prefix(new.column("batch").to_numpy() - int(new.column("batch")[0].as_py()),
                     SIZES[int(new.column("batch")[0].as_py()):])
    state["cursor"] = cursor + len(seqs)


def run_reader(store: tidal.Store, check: Callable[[tidal.Store, dict[str, int]], None],
               done: threading.Event, errors: list[BaseException], loops: list[int]) -> None:
    state = {"i": 0}
    count = 0
    try:
        while True:
            finished = done.is_set()
            check(store, state)
            count += 1
            if finished:  # one more pass after the writer is done
                break
    except BaseException as exc:  # reported to the test thread
        errors.append(exc)
    loops.append(count)


def test_one_writer_four_readers(backend):
    store = tidal.open(backend, **CONFIG)
    done = threading.Event()
    errors: list[BaseException] = []
    loops: list[int] = []
    checks = [check_read_from, check_timeline, check_sql, check_stats_and_tail]
    readers = [threading.Thread(target=run_reader, args=(store, c, done, errors, loops))
               for c in checks]

    store.append(make_batch(0))  # before it, the store has no column "batch" for SQL

    def write() -> None:
        try:
            for k in range(1, BATCHES):
                store.append(make_batch(k))
                if k % 50 == 49:
                    store.flush()
                if k % 70 == 69:
                    store.compact()
                time.sleep(0.002)  # let readers in between appends too
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    try:
        for t in readers:
            t.start()
        writer.start()
        writer.join(timeout=120)
        for t in readers:
            t.join(timeout=120)
        assert not errors, errors
        assert len(loops) == 4 and min(loops) >= 2
        stats = store.stats()
        assert stats["events"] == int(SIZES.sum())
        assert stats["segments"] >= 1  # flushes happened while readers ran
        check_read_from(store, {})
        check_sql(store, {})
    finally:
        done.set()
        store.close()


def test_readers_see_compactions_atomically(backend):
    """Flushes and explicit compactions under readers: nothing double- or under-counted."""
    store = tidal.open(backend, memtable_bytes=1 << 30, compact_min_rows=10_000)
    errors: list[BaseException] = []
    stop = threading.Event()
    loops = [0, 0]

    def read(i: int) -> None:
        try:
            while not stop.is_set():
                got = store.sql("SELECT count(*) AS c, count(DISTINCT _seq) AS d, "
                                "max(_seq) AS m FROM events").to_pylist()[0]
                assert got["c"] == got["d"] == (got["m"] + 1 if got["c"] else 0), got
                check_read_from(store, {})
                loops[i] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(2)]
    merged = 0
    store.append(make_batch(0))  # before it, the store has no column "batch" for SQL
    store.flush()
    try:
        for t in threads:
            t.start()
        k = 1
        for _ in range(4):
            for _ in range(6):  # 7 with the one before: auto-compaction needs 8
                store.append(make_batch(k))
                store.flush()
                k += 1
            merged += store.compact()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    try:
        assert not errors, errors
        assert min(loops) >= 1
        assert merged == 7 * 4
        assert store.stats()["segments"] == 1
        check_read_from(store, {})
        check_sql(store, {})
    finally:
        store.close()


def test_second_open_of_the_same_directory_is_refused(tmp_path):
    path = tmp_path / "store"
    first = tidal.open(path)
    try:
        first.append(make_batch(0))
        with pytest.raises(tidal.StorageError) as info:
            tidal.open(path)
        assert info.value.path == str(path)
        # The refused open must not disturb the first: it still writes and holds the lock.
        first.append(make_batch(1))
        with pytest.raises(tidal.StorageError):
            tidal.open(str(path), memtable_bytes=1024)
    finally:
        first.close()
    with tidal.open(path) as again:
        assert again.max_seq() == batch_size(0) + batch_size(1) - 1


def test_stats_while_flushes_delete_wal_files(tmp_path):
    """``stats()`` sums WAL file sizes while flushes delete WAL files: it must not fail."""
    store = tidal.open(tmp_path / "store")
    errors: list[BaseException] = []
    stop = threading.Event()
    calls = [0]

    def poll() -> None:
        try:
            while not stop.is_set():
                assert store.stats()["wal_bytes"] >= 0
                calls[0] += 1
        except BaseException as exc:
            errors.append(exc)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for k in range(80):
            store.append(make_batch(k))
            store.flush()  # rotates the WAL and deletes the old file
            if errors:
                break
    finally:
        stop.set()
        poller.join(timeout=60)
        store.close()
    assert not errors, errors
    assert calls[0] > 10
