"""Many writers, one fsync: group commit, failures inside a group, backpressure."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

import tidal
from tidal.api import Store
from tidal.config import StoreConfig
from tidal.store.group_commit import GroupCommit

from .faults import FaultyFiles

T0 = 1_767_225_600_000_000_000


def batch(writer: int, i: int, n: int = 10) -> pa.Table:
    return pa.table({
        "timestamp": pa.array([T0 + i] * n, pa.timestamp("ns", "UTC")),
        "entity": [f"w{writer}"] * n,
        "i": [i] * n,
    })


def hammer(store: tidal.Store, writers: int, appends: int) -> list[tidal.Receipt]:
    receipts: list[tidal.Receipt] = []
    lock = threading.Lock()
    start = threading.Barrier(writers)

    def run(w: int) -> None:
        start.wait()
        for i in range(appends):
            r = store.append(batch(w, i))
            with lock:
                receipts.append(r)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return receipts


def test_concurrent_appends_share_fsyncs_and_get_disjoint_dense_ranges(tmp_path):
    with tidal.open(tmp_path / "s") as store:
        receipts = hammer(store, writers=8, appends=40)
        stats = store.stats()
        ranges = sorted((r.first_seq, r.last_seq) for r in receipts)
        assert ranges[0][0] == 0
        assert all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:], strict=False))
        assert stats["appends_per_group"] > 1.0  # some appends shared a write and an fsync
        assert stats["commit_groups"] < len(receipts)
    with tidal.open(tmp_path / "s") as again:  # every acknowledged append is durable
        for w in range(8):
            assert again.timeline(f"w{w}").num_rows == 400


def test_each_writer_sees_its_own_appends_in_order(tmp_path):
    with tidal.open(tmp_path / "s") as store:
        hammer(store, writers=4, appends=25)
        for w in range(4):
            t = store.timeline(f"w{w}")
            assert t.column("i").to_pylist() == [i for i in range(25) for _ in range(10)]


def test_a_failed_group_fails_every_append_in_it_and_leaves_no_gap(tmp_path):
    files = FaultyFiles()
    store = Store(tmp_path / "s", StoreConfig.build({}), fs=files)
    store.append(batch(0, 0))
    files.space_bytes = 0
    with pytest.raises(tidal.StorageError, match="nothing of it was stored"):
        store.append(batch(0, 1))
    files.space_bytes = None
    r = store.append(batch(0, 2))
    assert (r.first_seq, r.last_seq) == (10, 19)  # the failed append's _seq values are reused
    store.close()
    with tidal.open(tmp_path / "s") as again:
        assert again.read_from(0).column("i").to_pylist() == [0] * 10 + [2] * 10


def test_group_size_is_bounded_by_max_events():
    groups: list[list[int]] = []
    gate = threading.Event()

    def write(items):
        gate.wait()
        groups.append(list(items))
        return list(items)

    commit = GroupCommit(write, weight=lambda n: n, max_events=10, max_wait_s=0)
    results: list[int] = []
    threads = [threading.Thread(target=lambda n=n: results.append(commit.submit(n)))
               for n in [4] * 6]
    for t in threads:
        t.start()
    time.sleep(0.2)  # let them all queue behind the first leader
    gate.set()
    for t in threads:
        t.join()
    assert sorted(results) == [4] * 6
    assert all(sum(g) <= 10 for g in groups) and sum(len(g) for g in groups) == 6


def test_a_leader_waits_up_to_max_wait_for_a_group_to_fill():
    groups: list[list[int]] = []
    commit = GroupCommit(lambda items: groups.append(list(items)) or list(items),
                         weight=lambda n: n, max_events=3, max_wait_s=5.0)
    threads = [threading.Thread(target=commit.submit, args=(1,)) for _ in range(3)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert groups == [[1, 1, 1]]  # the third arrival filled the group: no 5 s wait
    assert time.monotonic() - started < 4.0


def test_backpressure_is_explicit_past_the_memory_limit(tmp_path):
    files = FaultyFiles()
    config = StoreConfig.build({"memtable_bytes": 64 << 10, "memory_limit_bytes": 256 << 10})
    store = Store(tmp_path / "s", config, fs=files)
    files.hold_segment_writes.clear()  # flushes block: memory cannot be freed
    big = pa.table({"timestamp": pa.array([T0] * 2000, pa.timestamp("ns", "UTC")),
                    "entity": ["e"] * 2000, "pad": ["x" * 40] * 2000})
    stored = 0
    with pytest.raises(tidal.BackpressureError) as info:
        for _ in range(100):
            store.append(big, timeout=0.05)
            stored += 2000
    assert 0 < info.value.retry_after_s < 60
    assert stored >= 2000  # appends went on while the first flush was stuck
    assert store.stats()["backpressure_waits"] >= 1
    files.hold_segment_writes.set()
    store.append(big, timeout=30)  # memory freed by the flushes: accepted again
    store.close()
    with tidal.open(tmp_path / "s") as again:
        assert again.max_seq() == stored + 2000 - 1


def test_ndjson_bytes_are_decoded_by_their_appender_not_the_leader(tmp_path, monkeypatch):
    """Bytes decode (in pyarrow, mostly without the GIL) in the appending thread, so that
    bodies decode side by side and during the leader's fsync."""
    import tidal.api

    decoded_in: dict[type, int] = {}
    real = tidal.api.prepare_blocks

    def spy(data: object, **kwargs: object) -> object:
        decoded_in[type(data)] = threading.get_ident()
        return real(data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tidal.api, "prepare_blocks", spy)
    # the first append leads, and waits for its group to fill while the second arrives
    store = tidal.open(tmp_path / "s", group_commit_max_wait_us=300_000)
    leader = threading.Thread(target=store.append, args=(batch(0, 0),))
    leader.start()
    time.sleep(0.1)
    receipt = store.append(b'{"timestamp": 1, "entity": "x"}\n{"timestamp": 2, "entity": "y"}\n')
    leader.join()
    assert receipt.count == 2
    assert decoded_in[bytes] == threading.get_ident()  # (the leader decoded it, before)
    assert decoded_in[pa.Table] == leader.ident  # (a table is still prepared by the leader)
    assert store.stats()["appends_per_group"] == 2.0  # one group, one fsync
    store.close()


def test_a_bad_append_in_a_group_fails_alone(tmp_path):
    store = tidal.open(tmp_path / "s")
    outcomes: dict[int, object] = {}
    start = threading.Barrier(12)

    def run(i: int) -> None:
        start.wait()
        data = b'{"timestamp": 1, "entity": "x", "oops": ' if i % 4 == 0 else batch(i, 0, 5)
        try:
            outcomes[i] = store.append(data)
        except tidal.IngestError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = [i for i, o in outcomes.items() if isinstance(o, tidal.IngestError)]
    assert sorted(bad) == [0, 4, 8]
    assert all(o.problems[0].line == 1 for o in outcomes.values()  # type: ignore[union-attr]
               if isinstance(o, tidal.IngestError))
    assert store.max_seq() == 9 * 5 - 1  # the good appends, densely numbered
    store.close()
