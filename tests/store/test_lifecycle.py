"""Short-lived writers, many small appends, and memory that is counted as it is used."""

from __future__ import annotations

import time

import pyarrow as pa

import tidal
from tidal.api import Store
from tidal.config import StoreConfig
from tidal.store.wal import wal_files

T0 = 1_767_225_600_000_000_000


class ManualClock:
    """A wall clock the test moves by hand."""

    def __init__(self, now_ns: int) -> None:
        self.now = now_ns

    def now_ns(self) -> int:
        return self.now


def one(i: int) -> list[dict[str, object]]:
    return [{"timestamp": T0 + i, "entity": f"e{i % 10}", "i": i}]


def test_short_lived_writers_reuse_one_wal_file_and_flush_once_old(tmp_path):
    """The issue: 1,000 open-append-close writers left 1,000 WAL files and no segment."""
    path = tmp_path / "s"
    clock = ManualClock(time.time_ns())
    config = StoreConfig.build({"memtable_age_s": 300})
    for i in range(60):  # a cron job: open, append, close
        with Store(path, config, clock=clock) as store:
            store.append(one(i))
        clock.now += 1_000_000_000
    assert len(wal_files(path / "wal")) == 1
    assert tidal.open(path, read_only=True).stats()["segments"] == 0
    clock.now += 300 * 1_000_000_000  # the oldest event is now older than memtable_age_s
    with Store(path, config, clock=clock) as store:
        store.append(one(60))
    with tidal.open(path, read_only=True) as store:
        stats = store.stats()
        assert stats["segments"] >= 1 and stats["memtable_events"] <= 1
        assert store.read_from(0).column("i").to_pylist() == list(range(61))
    assert len(wal_files(path / "wal")) <= 2


def test_an_old_memtable_is_sealed_by_the_clock_alone(tmp_path):
    clock = ManualClock(time.time_ns())
    store = Store(tmp_path / "s", StoreConfig.build({"memtable_age_s": 2}), clock=clock)
    store.append(one(0))
    clock.now += 3_000_000_000
    deadline = time.monotonic() + 20
    while store.stats()["segments"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)  # the ager beats every 0.5 s here
    assert store.stats()["segments"] == 1
    store.close()


def test_many_one_event_appends_are_counted_and_flushed(tmp_path):
    """The issue: 1-event appends used ~4.5 KB each while the memtable counted far less,
    so memtable_bytes never triggered a flush."""
    with tidal.open(tmp_path / "s", durability="none", memtable_bytes=256 << 10) as store:
        before = pa.total_allocated_bytes()
        for i in range(4000):
            store.append(one(i))
        held = pa.total_allocated_bytes() - before
        assert store.stats()["memtable_bytes"] * 4 >= held
        for i in range(4000, 12000):
            store.append(one(i))
        stats = store.stats()
        assert stats["segments"] + stats["sealed_memtables"] >= 1  # the limit was reached
        assert len(store._engine.state.active.view.parts) < 100  # small parts are merged


def test_reopen_replays_many_small_frames_quickly(tmp_path):
    with tidal.open(tmp_path / "s", durability="none") as store:
        for i in range(5000):
            store.append(one(i))
    started = time.perf_counter()
    with tidal.open(tmp_path / "s") as store:
        assert store.max_seq() == 4999
    assert time.perf_counter() - started < 30  # the old store took ~1.2 s per 5,000 frames
