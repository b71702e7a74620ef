"""``Store.scan`` and ``Snapshot.scan``: columns, filters, bounds, order, schemas, pins."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import tidal

from .events import T0, batch

TS = pa.timestamp("ns", "UTC")


def rows(reader: pa.RecordBatchReader) -> list[dict]:
    return reader.read_all().to_pylist()


def seqs(reader: pa.RecordBatchReader) -> list[int]:
    return reader.read_all().column("_seq").to_pylist()


@pytest.fixture(params=["memory", "disk"])
def store(request, tmp_path: Path):
    path = tmp_path / "s" if request.param == "disk" else None
    with tidal.open(path, segment_rows=7, compact_min_rows=1) as s:
        yield s


def fill(store: tidal.Store) -> None:
    """40 events: 30 in segments (flushed in two goes), 10 in the memtable."""
    store.append(batch(0, 20))
    store.flush()
    store.append(batch(20, 10))
    store.flush()
    store.append(batch(30, 10))


def test_scan_reads_every_event_in_seq_order(store):
    fill(store)
    got = store.scan().read_all()
    assert got.column_names == ["_seq", "timestamp", "entity", "id"]
    assert got.column("_seq").to_pylist() == list(range(40))
    assert got.column("id").to_pylist() == list(range(40))
    assert got.schema.field("timestamp").type == TS


def test_unordered_scan_streams_every_event_as_stored(store):
    fill(store)
    got = store.scan(["id"], pc.field("id") >= 5, order=None).read_all()
    assert got.column_names == ["_seq", "id"]
    assert sorted(got.column("id").to_pylist()) == list(range(5, 40))
    assert got.column("_seq").to_pylist()[-10:] == list(range(30, 40))  # memtable last
    assert got.column("_seq").to_pylist() != list(range(5, 40))  # segments by entity
    assert store.scan(order=None, from_seq=38).read_all().column("_seq").to_pylist() == [38, 39]


def test_columns_are_read_alone(store):
    fill(store)
    got = store.scan(["id"]).read_all()
    assert got.column_names == ["_seq", "id"]
    assert got.column("id").to_pylist() == list(range(40))
    assert store.scan(["_seq"]).read_all().column_names == ["_seq"]


def test_unknown_column_names_what_exists(store):
    fill(store)
    with pytest.raises(tidal.QueryError, match="no column 'nope'.*entity"):
        store.scan(["nope"])


@pytest.mark.parametrize("where, keep", [
    (pc.field("entity") == "e2", lambda i: i % 5 == 2),
    (pc.field("entity").isin(["e1", "e3"]), lambda i: i % 5 in (1, 3)),
    ((pc.field("id") >= 12) & (pc.field("id") < 33), lambda i: 12 <= i < 33),
    (pc.starts_with(pc.field("entity"), "e4"), lambda i: i % 5 == 4),
    (~(pc.field("entity") == "e0") & (pc.bit_wise_and(pc.field("id"), 1) == 0),
     lambda i: i % 5 != 0 and i % 2 == 0),
    (pc.field("id").is_null(), lambda i: False),
])
def test_where_filters_segments_and_memtable(store, where, keep):
    fill(store)
    assert store.scan(["id"], where).read_all().column("id").to_pylist() == [
        i for i in range(40) if keep(i)]


def test_time_and_seq_bounds_are_half_open(store):
    fill(store)
    assert seqs(store.scan(start=T0 + 5, end=T0 + 35)) == list(range(5, 35))
    assert seqs(store.scan(from_seq=18, to_seq=31)) == list(range(18, 31))
    assert seqs(store.scan(start="2026-01-01T00:00:00.000000010Z", to_seq=12)) == [10, 11]
    assert seqs(store.scan(from_seq=40)) == []
    assert seqs(store.scan(start=T0 + 100)) == []


def test_time_order_merges_segments_and_memtable(store):
    """Events appended out of time order come back by (timestamp, _seq)."""
    times = [50, 10, 30, 10, 70, 20, 60, 40, 0, 30]
    for round_, chunk in enumerate((times[:4], times[4:7], times[7:])):
        store.append(pa.table({"timestamp": pa.array([T0 + t for t in chunk], TS),
                               "entity": ["a"] * len(chunk)}))
        if round_ < 2:
            store.flush()
    got = store.scan(order="time").read_all()
    pairs = list(zip(got.column("timestamp").cast(pa.int64()).to_pylist(),
                     got.column("_seq").to_pylist(), strict=True))
    want = sorted((T0 + t, s) for s, t in enumerate(times))
    assert pairs == want
    assert seqs(store.scan(order="seq")) == list(range(10))
    windowed = store.scan(start=T0 + 10, end=T0 + 40, order="time").read_all()
    assert windowed.column("_seq").to_pylist() == [1, 3, 5, 2, 9]


def test_time_order_over_disjoint_segments_streams_them_in_turn(store):
    fill(store)
    store.compact()
    got = store.scan(["id"], order="time").read_all()
    assert got.column("id").to_pylist() == list(range(40))


def test_columns_a_segment_lacks_are_null(store):
    store.append(batch(0, 3))
    store.flush()
    store.append(batch(3, 2).append_column("code", pa.array([500, 200])))
    store.flush()
    store.append(batch(5, 1).append_column("code", pa.array([404])))
    got = store.scan(["id", "code"]).read_all()
    assert got.column("code").to_pylist() == [None, None, None, 500, 200, 404]
    assert store.scan(["id"], pc.field("code") >= 404).read_all().column(
        "id").to_pylist() == [3, 5]
    assert store.scan(["id"], pc.field("code").is_null()).read_all().column(
        "id").to_pylist() == [0, 1, 2]


def test_types_widen_across_segments(store):
    store.append(pa.table({"timestamp": pa.array([T0], TS), "entity": ["a"],
                           "n": pa.array([1], pa.int32())}))
    store.flush()
    store.append(pa.table({"timestamp": pa.array([T0 + 1], TS), "entity": ["a"],
                           "n": pa.array([2**40], pa.int64())}))
    got = store.scan(["n"], pc.field("n") > 0).read_all()
    assert got.schema.field("n").type == pa.int64()
    assert got.column("n").to_pylist() == [1, 2**40]


def test_nested_fields_by_path_and_expression(store):
    def event(i: int, pod: str) -> dict:
        return {"timestamp": T0 + i, "entity": "x",
                "kubernetes": {"pod": {"name": pod, "uid": f"u{i}"}, "ns": "prod"}}
    store.append([event(0, "p1"), event(1, "p2")])
    store.flush()
    store.append([event(2, "p1")])
    where = pc.field("kubernetes", "pod", "name") == "p1"
    got = store.scan(["kubernetes.pod.uid"], where).read_all()
    assert got.column_names == ["_seq", "kubernetes.pod.uid"]
    assert got.column("kubernetes.pod.uid").to_pylist() == ["u0", "u2"]
    whole = store.scan(["kubernetes"], where).read_all()
    assert whole.column("kubernetes").to_pylist()[1] == {
        "pod": {"name": "p1", "uid": "u2"}, "ns": "prod"}


def test_empty_store_scans_to_nothing(store):
    got = store.scan().read_all()
    assert got.num_rows == 0
    assert got.column_names == ["_seq"]
    with pytest.raises(tidal.QueryError, match="no column"):
        store.scan(["timestamp"])


def test_bad_arguments_are_refused(store):
    fill(store)
    with pytest.raises(tidal.QueryError, match="order must be"):
        store.scan(order="backwards")
    with pytest.raises(tidal.QueryError, match="pyarrow compute expression"):
        store.scan(where="entity = 'a'")
    with pytest.raises(tidal.QueryError, match="start"):
        store.scan(start="yesterday-ish")


def test_where_on_a_field_no_event_has_is_an_error(store):
    fill(store)
    with pytest.raises(tidal.QueryError, match="nope"):
        store.scan(where=pc.field("nope") == 1).read_all()


def test_snapshot_keeps_its_view_while_the_store_moves_on(store):
    fill(store)
    with store.snapshot() as snap:
        assert snap.max_seq == 39
        assert "id" in snap.schema.names
        store.append(batch(40, 30))
        store.flush()
        store.compact()
        assert seqs(snap.scan()) == list(range(40))
        assert seqs(snap.scan(from_seq=35)) == list(range(35, 40))
    assert seqs(store.scan(from_seq=35)) == list(range(35, 70))


def test_scan_of_a_closed_snapshot_is_refused(store):
    fill(store)
    with store.snapshot() as snap:
        reader = snap.scan()
    with pytest.raises(tidal.QueryError, match="closed"):
        reader.read_all()


def test_store_scan_releases_its_snapshot(tmp_path):
    with tidal.open(tmp_path / "s", segment_rows=7) as store:
        fill(store)
        readers = store._engine.readers
        assert seqs(store.scan()) == list(range(40))
        assert readers.open_snapshots == 0
        reader = store.scan()
        next(iter(reader))
        assert readers.open_snapshots == len(store._engine.manifest.segments)
        reader.close()
        del reader
        assert readers.open_snapshots == 0


def test_a_damaged_page_is_a_corruption_error(tmp_path):
    path = tmp_path / "s"
    with tidal.open(path) as store:
        store.append(batch(0, 5000, pad=40))
        store.flush()
    [data] = sorted((path / "segments").glob("*.parquet"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 3] ^= 0x40
    data.write_bytes(bytes(raw))
    with tidal.open(path) as store, pytest.raises(tidal.CorruptionError):
        store.scan().read_all()


def test_read_only_store_scans_what_the_writer_committed(tmp_path):
    path = tmp_path / "s"
    with tidal.open(path) as writer:
        fill(writer)
        with tidal.open(path, read_only=True) as reader:
            assert seqs(reader.scan(where=pc.field("entity") == "e1")) == list(range(1, 40, 5))
            writer.append(batch(40, 5))
            assert seqs(reader.scan(from_seq=38)) == list(range(38, 45))


def test_ordered_merge_gives_rows_out_before_reading_later_units():
    """Late events chain every unit's range into the next; rows still go out as soon
    as no later unit can precede them, so memory never holds the whole store."""
    from tidal.store.scan import in_order

    read: list[str] = []

    def unit(name: str, seqs: list[int]):
        def load() -> pa.Table:
            read.append(name)
            return pa.table({"_seq": pa.array(seqs, pa.int64())})
        return (min(seqs), load)

    units = [unit("c", [20, 21, 30]), unit("a", [0, 2, 1, 11]), unit("b", [10, 12, 22])]
    out = []
    for table in in_order(units, ["_seq"]):
        out.append((list(read), table.column("_seq").to_pylist()))
    assert out == [(["a"], [0, 1, 2]),  # before b is read
                   (["a", "b"], [10, 11, 12]),  # 22 waits for c
                   (["a", "b", "c"], [20, 21, 22, 30])]


@pytest.mark.parametrize("backend", ["memory", "disk"])
def test_read_from_a_large_chunk_reads_a_few_rows(tmp_path, backend):
    """A small limit over a large compacted chunk (interleaved _seq across its
    entity pieces) comes back exact, also across a chunk boundary."""
    path = tmp_path / "s" if backend == "disk" else None
    n = 200_000
    with tidal.open(path, segment_rows=50_000, compact_min_rows=20_000,
                    compact_chunk_rows=100_000) as store:
        for lo in range(0, n, 25_000):
            store.append(batch(lo, 25_000, entities=50))
            store.flush()
        store.compact()
        assert len(store._engine.manifest.segments) >= 4
        for seq, limit in ((0, 5), (99_998, 4), (199_997, 5), (12_345, 1)):
            got = store.read_from(seq, limit).column("id").to_pylist()
            assert got == list(range(seq, min(n, seq + limit)))
        assert store.read_from(0).column("_seq").to_pylist() == list(range(n))
