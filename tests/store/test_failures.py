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
