"""The WAL's fsync durations: one per sync, in the right bucket, reported by stats()."""

from __future__ import annotations

import math

import pytest

import tidal
from tidal.store.durations import Durations


def test_durations_fall_in_cumulative_buckets():
    durations = Durations((0.001, 0.01, 0.1))
    for seconds in (0.0005, 0.001, 0.002, 0.05, 3.0):
        durations.observe(seconds)
    snap = durations.snapshot()
    assert snap.count == 5
    assert snap.sum_s == pytest.approx(3.0535)
    assert snap.buckets == ((0.001, 2), (0.01, 3), (0.1, 4), (math.inf, 5))
    assert snap.as_dict()["buckets"] == [[0.001, 2], [0.01, 3], [0.1, 4]]


def test_a_failing_call_is_timed_and_raises():
    durations = Durations()

    def failing() -> None:
        raise OSError("EIO")

    with pytest.raises(OSError, match="EIO"):
        durations.timed(failing)
    assert durations.snapshot().count == 1


@pytest.mark.parametrize("durability", ["group", "interval", "none"])
def test_stats_count_the_wal_fsyncs(tmp_path, durability):
    with tidal.open(tmp_path / "s", durability=durability, fsync_interval_s=3600) as store:
        for i in range(4):
            store.append([{"timestamp": i, "entity": "a", "i": i}])
        fsyncs = store.stats()["wal_fsync"]
        if durability == "group":
            assert fsyncs["count"] == store.stats()["commit_groups"] == 4
            assert fsyncs["sum_s"] > 0
        else:  # no fsync per append: "interval" syncs at most once an hour here
            assert fsyncs["count"] == 0
        assert fsyncs["buckets"][-1][1] == fsyncs["count"]


def test_an_in_memory_store_has_no_fsyncs():
    with tidal.open(None) as store:
        store.append([{"timestamp": 1, "entity": "a"}])
        assert store.stats()["wal_fsync"] is None
