"""Storage failures: nothing acknowledged is lost, and the store keeps serving."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pytest

import tidal

T0 = 1_767_225_600_000_000_000


def batch(first: int, n: int) -> pa.Table:
    return pa.table({
        "timestamp": pa.array([T0 + i for i in range(first, first + n)], pa.timestamp("ns", "UTC")),
        "entity": [f"e{i % 4}" for i in range(first, first + n)],
        "id": list(range(first, first + n)),
    })


def open_with_failing_flushes(path, events: int) -> tuple[tidal.Store, object]:
    """A store holding ``events`` whose segment directory is a file: every flush fails."""
    store = tidal.open(path)
    store.append(batch(0, events))
    segments = path / "segments"
    shutil.rmtree(segments)
    segments.write_text("not a directory")
    return store, segments


def test_failed_flush_keeps_events_and_recovers(tmp_path):
    path = tmp_path / "store"
    store, segments = open_with_failing_flushes(path, 100)
    with pytest.raises(tidal.StorageError, match="background flush failed"):
        store.flush()
    # still readable, and still accepting appends
    assert store.sql("SELECT count(*) AS c FROM events").column("c").to_pylist() == [100]
    store.append(batch(100, 10))
    assert store.timeline("e1").num_rows == 25 + 3
    segments.unlink()
    segments.mkdir()
    store.flush()  # retries the sealed memtable first, then the new one
    assert store.stats()["segments"] >= 1
    store.close()
    with tidal.open(path) as again:
        ids = again.read_from(0).column("id").to_pylist()
        assert ids == list(range(110))


def test_failed_flush_before_reopen_loses_nothing(tmp_path):
    path = tmp_path / "store"
    store, segments = open_with_failing_flushes(path, 50)
    with pytest.raises(tidal.StorageError):
        store.flush()
    store.append(batch(50, 50))
    store.close()  # close does not flush: the WAL holds everything
    segments.unlink()
    with tidal.open(path) as again:
        assert again.read_from(0).column("id").to_pylist() == list(range(100))


def test_background_errors_show_in_stats_the_log_and_the_next_write(tmp_path, caplog):
    from tidal.api import Store
    from tidal.config import StoreConfig

    from .faults import FaultyFiles

    files = FaultyFiles()
    store = Store(tmp_path / "s", StoreConfig.build({}), fs=files)
    store.append(batch(0, 10))
    files.fail_atomic_writes = 1000  # segment files cannot be written: flushes fail
    with caplog.at_level("ERROR", logger="tidal.store"), pytest.raises(tidal.StorageError):
        store.flush()
    assert any("background flush failed" in r.getMessage() for r in caplog.records)
    errors = store.stats()["background_errors"]
    assert errors and errors[0].startswith("flush: StorageError") and "No space left" in errors[0]
    files.fail_atomic_writes = 0
    store.flush()  # retried: works again without a restart
    assert store.stats()["background_errors"] == []
    store.close()


def test_a_failed_wal_rotation_does_not_wedge_appends(tmp_path):
    """The issue: a failed WAL rotation (out of inodes) wedged every later append."""
    from tidal.api import Store
    from tidal.config import StoreConfig

    from .faults import FaultyFiles

    files = FaultyFiles()
    store = Store(tmp_path / "s", StoreConfig.build({}), fs=files)
    store.append(batch(0, 10))
    files.fail_creates = 1  # the new WAL file of the next seal
    with pytest.raises(tidal.StorageError, match="cannot flush"):
        store.flush()
    assert any(e.startswith("WAL rotation") for e in store.stats()["background_errors"])
    store.append(batch(10, 10))  # still appending, to the old WAL file
    store.flush()  # the cause is gone: rotation and flush work
    store.close()
    with tidal.open(tmp_path / "s") as again:
        assert again.read_from(0).column("id").to_pylist() == list(range(20))


def test_a_failed_background_compaction_is_reported(tmp_path, caplog):
    import time

    path = tmp_path / "s"
    store = tidal.open(path, compact_min_rows=1000)
    with caplog.at_level("ERROR", logger="tidal.store"):
        for i in range(7):
            store.append(batch(i * 10, 10))
            store.flush()
        victim = sorted((path / "segments").glob("*.parquet"))[0]
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x01
        victim.write_bytes(bytes(data))
        store.append(batch(70, 10))
        store.flush()  # the eighth small segment: an automatic compaction starts, and fails
        deadline = time.monotonic() + 20
        while not store.stats()["background_errors"] and time.monotonic() < deadline:
            time.sleep(0.05)
    (error,) = store.stats()["background_errors"]
    assert error.startswith("compaction: CorruptionError") and "checksum" in error
    assert any("background compaction failed" in r.getMessage() for r in caplog.records)
    with pytest.raises(tidal.StorageError, match="background compaction failed"):
        store.append(batch(80, 1))
    store.append(batch(80, 1))  # reported once; appends go on
    store.close()
