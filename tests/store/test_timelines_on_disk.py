"""Timelines on segment files: row groups read on demand, slices joined in time order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tidal
from tidal.store.segment import ROW_GROUP_ROWS

from .events import T0

TS = pa.timestamp("ns", "UTC")


def events(first: int, n: int, *, entities: int, step: int = 10**6) -> pa.Table:
    """``n`` events ``step`` ns apart from ``T0 + first * step``, entity ``e<i % entities>``."""
    ids = np.arange(first, first + n)
    return pa.table({"timestamp": pa.array(T0 + ids * step, TS),
                     "entity": pa.array([f"e{i % entities}" for i in ids]),
                     "id": pa.array(ids)})


def ids(table: pa.Table) -> list[int]:
    return table.column("id").to_pylist()


def test_an_entity_spanning_many_row_groups_comes_back_whole(tmp_path):
    n = 5 * ROW_GROUP_ROWS
    with tidal.open(tmp_path / "s") as store:
        store.append(events(0, n, entities=2))
        store.flush()
        [meta] = store._engine.manifest.segments
        groups = pq.ParquetFile(tmp_path / "s" / "segments" / meta.data_name).num_row_groups
        assert groups == 6  # e0's rows 0..10239 in three groups; e1 starts a new one
        assert ids(store.timeline("e1")) == list(range(1, n, 2))
        window = store.timeline("e0", T0 + 10**6 * 3000, T0 + 10**6 * (n - 3001))
        assert ids(window) == list(range(3000, n - 3001, 2))
        assert ids(store.timeline("e1", limit=3, desc=True)) == [n - 1, n - 3, n - 5]


def test_only_the_row_groups_of_the_entity_are_decoded(tmp_path):
    with tidal.open(tmp_path / "s") as store:
        table = events(0, 8 * ROW_GROUP_ROWS, entities=2)  # e0, e1: 4 row groups each
        store.append(table)
        store.flush()
    with tidal.open(tmp_path / "s") as store:
        assert store.stats()["cache_bytes"] == 0  # opening reads no segment data
        got = store.timeline("e1")
        assert ids(got) == list(range(1, 8 * ROW_GROUP_ROWS, 2))
        kept = store.stats()["cache_bytes"]
        # an entity that fills its row groups keeps only its rows (and their times)
        assert got.nbytes <= kept <= got.nbytes + 8 * got.num_rows + 64
        assert store.timeline("e1").equals(got)
        assert store.stats()["cache_bytes"] == kept  # served from the cache
        assert ids(store.timeline("e1", T0 + 10**6 * 6400, T0 + 10**6 * 12800)) == list(
            range(6401, 12800, 2))  # a window of the cached rows


def test_small_entities_share_their_decoded_row_groups(tmp_path):
    with tidal.open(tmp_path / "s") as store:
        store.append(events(0, 2 * ROW_GROUP_ROWS, entities=4000))  # ~2 events each
        store.flush()
    with tidal.open(tmp_path / "s") as store:
        assert ids(store.timeline("e7")) == [7, 4007, 8007]
        kept = store.stats()["cache_bytes"]
        assert kept > 0
        for k in range(4000):  # every neighbour is served from the same decoded groups
            assert ids(store.timeline(f"e{k}")) == list(range(k, 2 * ROW_GROUP_ROWS, 4000))
        assert store.stats()["cache_bytes"] <= 3 * kept


def test_slices_of_time_ordered_segments_concatenate(tmp_path):
    """Five flushes, each later in time: the timeline is their slices in order."""
    with tidal.open(tmp_path / "s") as store:
        for k in range(5):
            store.append(events(k * 1000, 1000, entities=3))
            store.flush()
        store.append(events(5000, 10, entities=3))  # and the memtable
        got = store.timeline("e2")
        assert ids(got) == list(range(2, 5010, 3))
        assert got.column("timestamp").num_chunks > 1  # joined without copying


def test_overlapping_segments_are_merged(tmp_path):
    """Late events put two segments over the same time: their slices are merged."""
    with tidal.open(tmp_path / "s") as store:
        store.append(events(0, 100, entities=1, step=2 * 10**6))  # even milliseconds
        store.flush()
        late = events(0, 100, entities=1, step=2 * 10**6)
        late = late.set_column(0, "timestamp", pa.array(
            T0 + np.arange(100) * 2 * 10**6 + 10**6, TS))  # odd ones, arriving later
        store.append(late)
        store.flush()
        got = store.timeline("e0")
        ts = got.column("timestamp").cast(pa.int64()).to_numpy()
        assert np.all(np.diff(ts) > 0) and len(ts) == 200
        assert got.column("_seq").to_pylist()[:4] == [0, 100, 1, 101]


@pytest.mark.parametrize("desc", [False, True])
def test_limit_stops_probing_once_the_first_rows_are_known(tmp_path, desc):
    with tidal.open(tmp_path / "s") as store:
        for k in range(6):
            store.append(events(k * 1000, 1000, entities=2))
            store.flush()
        cold = tidal.open(tmp_path / "s", read_only=True)
        try:
            got = cold.timeline("e0", limit=5, desc=desc)
            want = list(range(5998, 5988, -2)) if desc else list(range(0, 10, 2))
            assert ids(got) == want
            # one row group of one segment was read, not six segments
            assert cold.stats()["cache_bytes"] < 2 * got.nbytes + 200_000
        finally:
            cold.close()


def test_cache_budget_bounds_memory_and_answers_stay_right(tmp_path):
    with tidal.open(tmp_path / "s", cache_bytes=300_000) as store:
        for k in range(4):
            store.append(events(k * 4 * ROW_GROUP_ROWS, 4 * ROW_GROUP_ROWS, entities=7))
            store.flush()
        for entity in range(7):
            got = store.timeline(f"e{entity}")
            assert ids(got) == list(range(entity, 16 * ROW_GROUP_ROWS, 7))
            assert store.stats()["cache_bytes"] <= 300_000


def test_a_compaction_between_timelines_is_invisible(tmp_path):
    with tidal.open(tmp_path / "s", compact_min_rows=10**6) as store:
        for k in range(4):
            store.append(events(k * 500, 500, entities=4))
            store.flush()
        before = ids(store.timeline("e3"))
        store.compact()
        assert store.stats()["segments"] == 1
        assert not any(p.name.startswith("seg-00000000") for p in
                       (tmp_path / "s" / "segments").iterdir())
        assert ids(store.timeline("e3")) == before == list(range(3, 2000, 4))


def test_a_damaged_row_group_is_a_corruption_error(tmp_path):
    with tidal.open(tmp_path / "s") as store:
        store.append(events(0, 4 * ROW_GROUP_ROWS, entities=2))
        store.flush()
        [meta] = store._engine.manifest.segments
    path = tmp_path / "s" / "segments" / meta.data_name
    raw = bytearray(path.read_bytes())
    raw[meta.data_bytes // 3] ^= 0x10  # inside the pages, not the footer
    path.write_bytes(bytes(raw))
    with tidal.open(tmp_path / "s") as store:
        failures = 0
        for entity in ("e0", "e1"):
            try:
                got = store.timeline(entity)
            except tidal.CorruptionError as exc:
                assert meta.data_name in str(exc)
                failures += 1
            else:  # a timeline that did not touch the damage is whole and right
                assert got.num_rows == 2 * ROW_GROUP_ROWS
        assert failures >= 1


def test_row_groups_start_where_entities_start():
    from tidal.store.run import SortedRun
    from tidal.store.segment import row_group_cuts

    sizes = {"a": 3000, "b": 3000, "c": 5000, "d": 100}
    table = pa.table({"timestamp": pa.array(np.arange(sum(sizes.values())) + T0, TS),
                      "entity": [k for k, n in sizes.items() for _ in range(n)],
                      "_seq": pa.array(np.arange(sum(sizes.values())))})
    run = SortedRun.build(table, "entity", "timestamp")
    # a and b fit whole; c does not fit in one group and is cut; d rides with c's tail
    assert row_group_cuts(run, 4096) == [0, 3000, 6000, 10096, 11100]
    assert row_group_cuts(run, 100_000) == [0, 11100]
    empty = SortedRun.build(table.slice(0, 0), "entity", "timestamp")
    assert row_group_cuts(empty, 4096) == [0, 0]
