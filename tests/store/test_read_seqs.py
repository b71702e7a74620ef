"""``read_seqs``: every column of chosen events by ``_seq``, from segments and memtable at once.

The oracle is the store's own ordered scan of every column, cut to the chosen
``_seq`` values: ``read_seqs`` must give the same rows, columns and types.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal
from tidal.store.readers import Snapshot
from tidal.store.seq_read import read_seqs

from .events import T0, batch

TS = pa.timestamp("ns", "UTC")


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tidal.Store]:
    path = tmp_path / "s" if request.param == "disk" else None
    with tidal.open(path, segment_rows=7, compact_min_rows=1) as s:
        yield s


def fill(store: tidal.Store) -> None:
    """40 events: 0-19 and 20-29 flushed (segments of up to 7, split by entity, so
    their ``_seq`` ranges interleave), 30-39 in the memtable. Only 20-29 have
    ``code`` and ``http``; only 30-39 have ``note``."""
    store.append(batch(0, 20))
    store.flush()
    extra = batch(20, 10)
    extra = extra.append_column("code", pa.array([500 + i for i in range(10)], pa.int32()))
    extra = extra.append_column("http", pa.array(
        [{"status": 200 + i, "method": "GET" if i % 2 else None} for i in range(10)]))
    store.append(extra)
    store.flush()
    store.append(batch(30, 10).append_column("note", pa.array([f"n{i}" for i in range(10)])))


def oracle(snap: Snapshot, seqs: list[int]) -> pa.Table:
    whole = snap.scan(order="seq").read_all()
    return whole.filter(pc.is_in(whole.column("_seq"), pa.array(seqs, pa.int64())))


def chosen(seqs: list[int]) -> np.ndarray:
    return np.array(seqs, dtype=np.int64)


def test_reads_every_column_of_the_chosen_events_in_seq_order(store):
    fill(store)
    seqs = [0, 3, 4, 19, 20, 22, 29, 30, 35, 39]
    with store.snapshot() as snap:
        got = read_seqs(snap, chosen(seqs))
        want = oracle(snap, seqs)
    assert got.column("_seq").to_pylist() == seqs
    assert got.column("id").to_pylist() == seqs
    assert got.column_names == ["_seq", "timestamp", "entity", "id", "code", "http", "note"]
    assert got.schema == want.schema
    assert got.to_pylist() == want.to_pylist()


def test_fields_only_some_segments_have_are_null_elsewhere(store):
    fill(store)
    with store.snapshot() as snap:
        got = read_seqs(snap, chosen([1, 21, 24, 33]))
    assert got.column("code").to_pylist() == [None, 501, 504, None]
    assert got.column("http").to_pylist() == [
        None, {"status": 201, "method": "GET"}, {"status": 204, "method": None}, None]
    assert got.column("note").to_pylist() == [None, None, None, "n3"]
    assert got.schema.field("code").type == pa.int32()
    assert got.schema.field("timestamp").type == TS


def test_types_widen_as_in_a_scan(store):
    store.append(pa.table({"timestamp": pa.array([T0], TS), "entity": ["a"],
                           "n": pa.array([1], pa.int32())}))
    store.flush()
    store.append(pa.table({"timestamp": pa.array([T0 + 1], TS), "entity": ["a"],
                           "n": pa.array([2**40], pa.int64())}))
    with store.snapshot() as snap:
        got = read_seqs(snap, chosen([0, 1]))
    assert got.schema.field("n").type == pa.int64()
    assert got.column("n").to_pylist() == [1, 2**40]


@pytest.mark.parametrize("seqs", [[], [40], [1000, 2000]], ids=["none", "past-end", "far"])
def test_no_event_found_is_an_empty_table_with_every_column(store, seqs):
    fill(store)
    with store.snapshot() as snap:
        got = read_seqs(snap, chosen(seqs))
        want = snap.scan(order="seq").read_all().schema
    assert got.num_rows == 0
    assert got.column_names[0] == "_seq"
    assert got.schema == want


def test_an_empty_store_reads_to_an_empty_table(store):
    with store.snapshot() as snap:
        got = read_seqs(snap, chosen([]))
        assert read_seqs(snap, chosen([0, 5])).num_rows == 0
    assert got.num_rows == 0
    assert got.column_names == ["_seq"]


def test_memtable_only_and_segments_only(store):
    fill(store)
    with store.snapshot() as snap:
        assert read_seqs(snap, chosen([31, 38])).column("note").to_pylist() == ["n1", "n8"]
        assert read_seqs(snap, chosen([5, 6, 7])).column("id").to_pylist() == [5, 6, 7]


def test_a_segment_whose_seq_range_holds_none_is_not_read(store):
    """Only segments whose [min_seq, max_seq] holds a chosen ``_seq`` are read (their
    ``_seq`` column, then rows); the others are never opened for it."""
    fill(store)
    with store.snapshot() as snap:
        read: list[int] = []
        seqs_of, take = snap.segment_seqs, snap.segment_take

        def seqs_spy(meta):
            read.append(meta.id)
            return seqs_of(meta)

        def take_spy(meta, positions):
            assert meta.id in read
            return take(meta, positions)

        snap.segment_seqs, snap.segment_take = seqs_spy, take_spy  # type: ignore[method-assign]
        for seqs in ([2, 35], [31], [], [21, 28], [0, 39]):
            read.clear()
            got = read_seqs(snap, chosen(seqs))
            assert got.column("_seq").to_pylist() == seqs
            holding = {m.id for m in snap.segments
                       if m.rows and any(m.min_seq <= s <= m.max_seq for s in seqs)}
            assert sorted(read) == sorted(holding), seqs
        assert len(snap.segments) >= 4
        assert any(m.min_seq >= 20 for m in snap.segments)  # ([2, 35] skips those)


def test_odd_values_come_back_as_stored(store):
    """Empty objects, null-typed fields, null structs and lists survive the segment."""
    events = [
        {"timestamp": T0, "entity": "a", "o": {}, "n": None, "s": {"x": 1, "y": None},
         "l": [1, 2]},
        {"timestamp": T0 + 1, "entity": "b", "o": {}, "n": None, "s": None, "l": []},
        {"timestamp": T0 + 2, "entity": "a", "o": {}, "n": None, "s": {"x": None, "y": None},
         "l": None},
    ]
    store.append(events[:2])
    store.flush()
    store.append(events[2:])
    with store.snapshot() as snap:
        got = read_seqs(snap, chosen([0, 1, 2]))
        want = oracle(snap, [0, 1, 2])
    assert got.to_pylist() == want.to_pylist()
    for name in ("o", "n", "s", "l"):
        assert got.column(name).to_pylist() == [e[name] for e in events], name


def test_rows_in_many_row_groups_and_compacted_segments(tmp_path):
    """Segments of several row groups (4096 rows each), compacted and reopened."""
    path = tmp_path / "s"
    with tidal.open(path, compact_min_rows=10_000) as store:
        store.append(batch(0, 9000, entities=7))
        store.flush()
        store.append(batch(9000, 3000, entities=7))
        store.flush()
        store.compact()
        store.append(batch(12_000, 50, entities=7))
    seqs = [0, 1, 4095, 4096, 4097, 8191, 8999, 9000, 11_999, 12_000, 12_049]
    with tidal.open(path) as store, store.snapshot() as snap:
        assert max(m.rows for m in snap.segments) > 4096
        got = read_seqs(snap, chosen(seqs))
        assert got.to_pylist() == oracle(snap, seqs).to_pylist()
    assert got.column("id").to_pylist() == seqs


@pytest.mark.parametrize("backend", ["memory", "disk"])
def test_any_subset_agrees_with_a_filtered_scan(tmp_path, backend):
    path = tmp_path / "s" if backend == "disk" else None
    with tidal.open(path, segment_rows=9, compact_min_rows=12) as store:
        fill(store)
        store.compact()
        store.append(batch(40, 15, entities=3))
        store.flush()
        store.append(batch(55, 5, entities=2))
        with store.snapshot() as snap:
            whole = snap.scan(order="seq").read_all()
            n = whole.num_rows
            rows = whole.to_pylist()

            @settings(max_examples=60, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.too_slow])
            @given(st.sets(st.integers(0, n + 3)))
            def agrees(picked: set[int]) -> None:
                seqs = sorted(picked)
                got = read_seqs(snap, chosen(seqs))
                assert got.schema == whole.schema
                assert got.to_pylist() == [rows[s] for s in seqs if s < n]

            agrees()


# -- where a scan found events (positions=True), and reading them back by that ---------

def test_a_scan_as_stored_says_where_each_event_is(store):
    fill(store)
    with store.snapshot() as snap:
        metas = {m.id: m for m in snap.segments}
        for where in (None, pc.field("code") >= 503):
            table = snap.scan(["code"], where, order=None, positions=True).read_all()
            assert table.column_names == ["_seq", "code", "_segment", "_row"]
            for seq, segment, row in zip(*(table.column(n).to_pylist()
                                           for n in ("_seq", "_segment", "_row")),
                                         strict=True):
                if segment < 0:
                    assert row == -1 and seq >= 30  # the memtable
                    continue
                stored = snap.segment_take(metas[segment], np.array([row]))
                assert stored.column("_seq").to_pylist() == [seq]
        pruned = snap.scan(["code"], order=None, positions=True,
                           prune=pc.field("_seq") >= 25).read_all()
        assert set(range(25, 40)) <= set(pruned.column("_seq").to_pylist())


@pytest.mark.parametrize("order", ["seq", "time"])
def test_ordered_scans_say_where_each_event_is_too(store, order):
    fill(store)
    with store.snapshot() as snap:
        plain = snap.scan(["code"], order=order).read_all()
        placed = snap.scan(["code"], order=order, positions=True).read_all()
        assert placed.select(["_seq", "code"]).equals(plain)
        metas = {m.id: m for m in snap.segments}
        for seq, segment, row in zip(*(placed.column(n).to_pylist()
                                       for n in ("_seq", "_segment", "_row")), strict=True):
            if segment >= 0:
                stored = snap.segment_take(metas[segment], np.array([row]))
                assert stored.column("_seq").to_pylist() == [seq]
            else:
                assert row == -1


def test_read_rows_reads_what_read_seqs_reads(store):
    from tidal.store.seq_read import read_rows

    fill(store)
    with store.snapshot() as snap:
        found = snap.scan(["code"], pc.field("_seq").isin(list(range(0, 40, 3))), order=None,
                          positions=True).read_all()
        placed: dict[int, list[int]] = {}
        for segment, row in zip(found.column("_segment").to_pylist(),
                                found.column("_row").to_pylist(), strict=True):
            if segment >= 0:
                placed.setdefault(segment, []).append(row)
        seqs = np.array(found.column("_seq").to_pylist(), dtype=np.int64)
        by_rows = read_rows(snap, {k: np.array(sorted(v)) for k, v in placed.items()},
                            np.sort(seqs[np.array(found.column("_segment").to_pylist()) < 0]))
        assert by_rows.equals(read_seqs(snap, np.sort(seqs)))
        assert by_rows.column("_seq").to_pylist() == [s for s in range(40) if s % 3 == 0]
