"""Exactly-once appends: a source's position commits with its events, retries store nothing."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

import tidal

from .events import batch


def test_positions_commit_with_their_events(open_store):
    store = open_store()
    r = store.append(batch(0, 5), source="kafka:orders:0", position=10)
    assert (r.count, r.first_seq, r.last_seq, r.duplicate) == (5, 0, 4, False)
    assert (r.source, r.position) == ("kafka:orders:0", 10)
    assert store.positions() == {"kafka:orders:0": 10}
    r = store.append(batch(5, 3), source="kafka:orders:0", position=17)  # gaps are fine
    assert (r.first_seq, r.position) == (5, 17)
    store.append(batch(8, 2))  # appends without a source go on as before
    assert store.positions() == {"kafka:orders:0": 17}


@pytest.mark.parametrize("position", [17, 12, 0])
def test_a_position_at_or_below_the_committed_one_stores_nothing(open_store, position):
    store = open_store()
    store.append(batch(0, 5), source="s", position=17)
    r = store.append(batch(5, 5), source="s", position=position)
    assert r.duplicate and r.count == 0 and r.first_seq is None and r.position == 17
    assert store.max_seq() == 4 and store.positions() == {"s": 17}


def test_a_retried_append_after_a_reopen_is_still_a_duplicate(tmp_path):
    with tidal.open(tmp_path / "s") as store:
        store.append(batch(0, 5), source="s", position=1)
    with tidal.open(tmp_path / "s") as again:
        assert again.positions() == {"s": 1}
        assert again.append(batch(0, 5), source="s", position=1).duplicate
        assert again.max_seq() == 4


def test_a_positioned_append_without_events_still_commits_its_position(open_store):
    store = open_store()
    r = store.append([], source="s", position=5)
    assert (r.count, r.first_seq, r.position, r.duplicate) == (0, None, 5, False)
    assert store.positions() == {"s": 5} and store.max_seq() == -1
    assert store.append([], source="s", position=5).duplicate


def test_positions_outlive_flush_compaction_and_retention(open_store, backend):
    store = open_store(compact_min_rows=1000, retention_bytes=1)
    for i in range(4):
        store.append(batch(i * 10, 10), source=f"src-{i % 2}", position=100 + i)
        store.flush()
    store.compact()
    stats = store.stats()
    assert stats["dropped_events"] > 0 and stats["sources"] == 2
    assert store.positions() == {"src-0": 102, "src-1": 103}
    if backend is not None:
        store.close()
        again = open_store()
        assert again.positions() == {"src-0": 102, "src-1": 103}
        assert again.append(batch(0, 1), source="src-1", position=103).duplicate


def test_positions_are_restored_from_the_wal_tail_and_the_manifest(tmp_path):
    path = tmp_path / "s"
    with tidal.open(path) as store:
        store.append(batch(0, 10), source="a", position=1)
        store.flush()  # "a" is in the manifest now
        store.append(batch(10, 10), source="a", position=2)
        store.append(batch(20, 10), source="b", position=7)  # only in the WAL
    with tidal.open(path, read_only=True) as reader:
        assert reader.positions() == {"a": 2, "b": 7}
        assert reader.stats()["positions"] == {"a": 2, "b": 7}
    with tidal.open(path) as store:
        assert store.positions() == {"a": 2, "b": 7}


@pytest.mark.parametrize(("source", "position", "message"), [
    ("s", None, "give both or neither"),
    (None, 3, "give both or neither"),
    ("s", "7", "must be an integer"),
    ("s", 1.5, "must be an integer"),
    ("s", True, "must be an integer"),
    ("s", -1, "between 0 and 2\\*\\*63-1"),
    ("s", 1 << 63, "between 0 and 2\\*\\*63-1"),
    ("", 1, "1 to 1024 bytes"),
    ("x" * 1025, 1, "1 to 1024 bytes"),
    ("bad \udcff name", 1, "not valid UTF-8"),
    (b"bytes", 1, "must be a string"),
])
def test_bad_sources_and_positions_are_clear_errors(open_store, source, position, message):
    store = open_store()
    store.append(batch(0, 2), source="ok", position=1)
    with pytest.raises(tidal.ConfigError, match=message):
        store.append(batch(2, 2), source=source, position=position)
    assert store.max_seq() == 1 and store.positions() == {"ok": 1}


def test_the_largest_position_and_long_names_work(open_store):
    store = open_store()
    name = "ü" * 512  # 1024 bytes of UTF-8
    store.append(batch(0, 1), source=name, position=(1 << 63) - 1)
    assert store.positions() == {name: (1 << 63) - 1}
    assert store.append(batch(1, 1), source=name, position=5).duplicate


def test_a_bad_input_does_not_advance_its_position(open_store):
    store = open_store()
    with pytest.raises(tidal.IngestError):
        store.append(b'{"timestamp": 1, "entity": "a"\n', source="s", position=3)
    assert store.positions() == {}
    assert store.append(batch(0, 1), source="s", position=3).count == 1


def test_concurrent_appends_of_one_source_store_each_position_at_most_once(open_store):
    store = open_store()
    start = threading.Barrier(8)
    receipts: dict[int, tidal.Receipt] = {}

    def run(position: int) -> None:
        start.wait()
        receipts[position] = store.append(batch(position * 10, 10), source="s",
                                          position=position)

    threads = [threading.Thread(target=run, args=(p,)) for p in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = sorted((r.first_seq, p) for p, r in receipts.items() if not r.duplicate)
    assert [p for _, p in stored] == sorted(p for _, p in stored)  # _seq order = position order
    assert store.positions() == {"s": max(p for _, p in stored)} and max(p for _, p in stored) == 8
    assert store.max_seq() + 1 == 10 * len(stored)
    for p, r in receipts.items():
        assert r.duplicate == (p not in {q for _, q in stored})


def test_100k_sources(tmp_path):
    path = tmp_path / "s"
    with tidal.open(path, durability="none") as store:
        for i in range(100_000):
            store.append([], source=f"partition-{i}", position=i + 1)
        store.append(batch(0, 1))
        store.flush()  # the manifest holds them all now
        store.append([], source="late", position=1)  # and the WAL one more
    started = time.perf_counter()
    with tidal.open(path, read_only=True) as store:
        positions = store.positions()
    assert len(positions) == 100_001 and positions["partition-99999"] == 100_000
    assert time.perf_counter() - started < 10
    with tidal.open(path) as store:
        assert store.append([], source="partition-5", position=6).duplicate


def test_followed_batches_carry_their_source_and_position(open_store):
    store = open_store()
    with store.follow() as follower:
        store.append(batch(0, 3), source="nats:S:a", position=41)
        store.append(batch(3, 2))
        first, second = follower.poll(5), follower.poll(5)
    assert first is not None and second is not None
    assert first.schema.metadata == {b"tidal.source": b"nats:S:a", b"tidal.position": b"41"}
    assert not second.schema.metadata


def test_appending_a_copy_with_seq_as_position_is_exactly_once(open_store, tmp_path):
    """A follower copies a store into another exactly once: the copy's position is
    the last ``_seq`` copied, and a restarted copier resumes from position + 1."""
    origin = open_store()
    for i in range(5):
        origin.append(batch(i * 4, 4))
    copy = tidal.open(tmp_path / "copy")

    def copy_some(limit: int) -> None:
        start = copy.positions().get("origin", -1) + 1
        with origin.follow(from_seq=start) as follower:
            for _ in range(limit):
                b = follower.poll(0.2)
                if b is None:
                    return
                last = b.column("_seq")[-1].as_py()
                copy.append(pa.Table.from_batches([b]).drop_columns(["_seq"]),
                            source="origin", position=last)

    copy_some(2)  # then the copier "crashes" and restarts
    copy_some(100)
    assert copy.read_from(0).column("id").to_pylist() == list(range(20))
    copy.close()





def test_repair_of_a_lost_manifest_keeps_the_positions(tmp_path):
    path = tmp_path / "s"
    with tidal.open(path) as store:
        for position in (1, 2, 3):
            store.append(batch(position * 10, 10), source="a", position=position)
        store.append([], source="quiet", position=40)
        store.flush()
        store.append(batch(100, 1), source="b", position=9)  # only in the WAL
    (path / "MANIFEST.json").unlink()
    with tidal.open(path, repair=True) as store:
        assert store.positions() == {"a": 3, "quiet": 40, "b": 9}
        assert store.append(batch(20, 10), source="a", position=2).duplicate
        assert store.max_seq() == 30


def test_positions_only_appends_survive_a_reopen(tmp_path):
    with tidal.open(tmp_path / "s") as store:
        store.append([], source="s", position=5)
    with tidal.open(tmp_path / "s") as store:
        assert store.positions() == {"s": 5}
        assert store.append([], source="s", position=5).duplicate
