"""What a scan reads of a segment file: struct leaves alone, and only the row groups
that ``where`` may match (by the statistics of ``_seq``, the timestamp, the entity).

Expected values come from the appended events themselves. Damaged column chunks
show what is read: a scan that reads one fails, a scan that skips it does not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import tidal

from .events import T0, batch

N = 30
FLUSHED = 24  # events 0-23 in segments (two flushes), 24-29 in the memtable


def event(i: int) -> dict:
    """Event ``i``; its timestamps are a permutation of ``0..N-1`` (time order is not
    ``_seq`` order). ``a.b`` is a flat field, ``k8s`` has a child named ``pod.name``."""
    return {
        "timestamp": T0 + (i * 7) % N,
        "entity": f"e{i % 3}",
        "event": {"category": ("process", "network")[i % 2], "kind": f"k{i % 5}"},
        "process": {"pid": 1000 + i, "name": f"n{i % 4}"},
        "a.b": 10 * i,
        "k8s": {"pod.name": f"p{i % 2}", "ns": f"ns{i % 3}"},
    }


EVENTS = [event(i) for i in range(N)]


def value(e: dict, path: str) -> object:
    """The value at ``path`` in a plain event (a key with dots is tried whole first)."""
    if path in e:
        return e[path]
    for k in range(len(path) - 1, 0, -1):
        if path[k] == "." and path[:k] in e:
            found = e[path[:k]]
            return None if found is None else value(found, path[k + 1:])
    return None


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tidal.Store]:
    path = tmp_path / "s" if request.param == "disk" else None
    with tidal.open(path, segment_rows=5, compact_min_rows=1) as s:
        s.append(EVENTS[:12])
        s.flush()
        s.append(EVENTS[12:FLUSHED])
        s.flush()
        s.append(EVENTS[FLUSHED:])
        yield s


def expected(columns: list[str], keep: Callable[[dict], bool], order: str | None
             ) -> list[dict]:
    rows = [{"_seq": i, **{c: value(e, c) for c in columns}}
            for i, e in enumerate(EVENTS) if keep(e)]
    if order == "time":
        rows.sort(key=lambda r: (EVENTS[r["_seq"]]["timestamp"], r["_seq"]))
    return rows


def everything(e: dict) -> bool:
    return True


CASES = [  # columns, where, the events it keeps
    (["event.category", "process.pid"], None, everything),
    (["event.category", "process.pid"], pc.field("event", "category") == "process",
     lambda e: e["event"]["category"] == "process"),
    (["process.pid"], pc.field("event", "category") == "process",  # where reads another leaf
     lambda e: e["event"]["category"] == "process"),
    (["event.kind"], (pc.field("event", "category") == "network")
     & (pc.field("process", "pid") >= 1010),
     lambda e: e["event"]["category"] == "network" and e["process"]["pid"] >= 1010),
    (["process.name", "process"], pc.bit_wise_and(pc.field("process", "pid"), 3) == 1,
     lambda e: e["process"]["pid"] % 4 == 1),  # (a leaf and its whole struct)
    (["entity", "event.kind"], pc.field("entity") == "e1", lambda e: e["entity"] == "e1"),
    (["a.b"], None, everything),
    (["a.b"], pc.field("a.b") >= 100, lambda e: e["a.b"] >= 100),
    (["process.pid"], pc.field("a.b") >= 100, lambda e: e["a.b"] >= 100),
    (["k8s.pod.name"], None, everything),
    (["k8s.pod.name"], pc.field("k8s", "pod.name") == "p1", lambda e: e["k8s"]["pod.name"] == "p1"),
    (["k8s.ns"], pc.field("k8s", "pod.name") == "p1", lambda e: e["k8s"]["pod.name"] == "p1"),
    (["k8s.ns", "event.category"], pc.field("k8s", "ns") != "ns0",
     lambda e: e["k8s"]["ns"] != "ns0"),
]


@pytest.mark.parametrize("order", [None, "seq", "time"])
@pytest.mark.parametrize("columns, where, keep", CASES,
                         ids=[f"{'+'.join(c[0])}{'' if c[1] is None else '-where'}-{n}"
                              for n, c in enumerate(CASES)])
def test_leaf_columns_read_the_values_a_full_event_has(store, columns, where, keep, order):
    got = store.scan(columns, where, order=order).read_all()
    assert got.column_names == ["_seq", *columns]
    rows = got.to_pylist()
    want = expected(columns, keep, order)
    if order is None:  # as stored: segments by entity, then the memtable
        rows.sort(key=lambda r: r["_seq"])
        want.sort(key=lambda r: r["_seq"])
    assert rows == want
    assert any(r["_seq"] < FLUSHED for r in want) and any(r["_seq"] >= FLUSHED for r in want)


@pytest.mark.parametrize("order", [None, "seq"])
def test_leaf_columns_agree_with_a_full_scan(store, order):
    full = store.scan(order=order).read_all()
    leaves = store.scan(["event.category", "process.pid"], order=order).read_all()
    assert leaves.column("_seq").equals(full.column("_seq"))
    assert leaves.column("event.category").to_pylist() == pc.struct_field(
        full.column("event"), "category").to_pylist()
    assert leaves.column("process.pid").to_pylist() == pc.struct_field(
        full.column("process"), "pid").to_pylist()


def test_a_leaf_only_some_segments_have_is_null_elsewhere(store):
    store.append([{"timestamp": T0 + 99, "entity": "e9",
                   "event": {"category": "file", "kind": "k", "outcome": "ok"}}])
    store.flush()
    where = pc.field("event", "category") != "network"
    got = store.scan(["event.outcome", "process.pid"], where).read_all()
    want = [{"_seq": i, "event.outcome": None, "process.pid": e["process"]["pid"]}
            for i, e in enumerate(EVENTS) if e["event"]["category"] != "network"]
    assert got.to_pylist() == [*want, {"_seq": N, "event.outcome": "ok", "process.pid": None}]
    assert store.scan(["event.outcome"], pc.field("event", "outcome") == "ok").read_all(
        ).column("_seq").to_pylist() == [N]


def test_a_struct_named_with_a_dot(open_store):
    store = open_store()
    rows = [{"timestamp": T0 + i, "entity": "e", "k.s": {"pod": i, "ns": f"n{i % 2}"}}
            for i in range(6)]
    store.append(rows[:4])
    store.flush()
    store.append(rows[4:])
    assert store.scan(["k.s.pod"]).read_all().column("k.s.pod").to_pylist() == list(range(6))
    got = store.scan(["k.s.pod"], pc.field("k.s", "ns") == "n1").read_all()
    assert got.column("k.s.pod").to_pylist() == [1, 3, 5]


def test_leaves_next_to_empty_objects(open_store):
    store = open_store()
    rows = [{"timestamp": T0 + i, "entity": "e", "x": {"e": {}, "v": i, "n": None}}
            for i in range(4)]
    store.append(rows[:3])
    store.flush()
    store.append(rows[3:])
    got = store.scan(["x.e", "x.n", "x.v"], pc.field("x", "v") >= 1).read_all()
    assert got.to_pylist() == [{"_seq": i, "x.e": {}, "x.n": None, "x.v": i} for i in (1, 2, 3)]
    assert store.scan(["x.e"]).read_all().column("x.e").to_pylist() == [{}] * 4


def test_a_where_on_a_whole_struct_outside_the_columns(open_store):
    """``where`` tests the struct itself (not a leaf): the struct must still be read.
    Fails on the file backend: ``_paths_used`` adds no column for ``event`` (dropping
    any one child still binds ``is_valid``), so the filter meets a table without it."""
    store = open_store()
    rows = [{"timestamp": T0 + i, "entity": "e", "process": {"pid": i},
             "event": None if i % 3 == 0 else {"category": "c", "kind": "k"}}
            for i in range(9)]
    store.append(rows)
    store.flush()
    got = store.scan(["process.pid"], pc.field("event").is_valid()).read_all()
    assert got.column("process.pid").to_pylist() == [1, 2, 4, 5, 7, 8]


@pytest.mark.parametrize("flushed", [True, False])
def test_a_flat_dotted_field_beside_the_field_its_name_starts_with(open_store, flushed):
    """``a`` and ``a.b`` are two top-level columns: neither holds the other. Fails on
    flushed segments: ``paths.outermost`` drops ``"a.b"`` as if it lay inside ``"a"``
    (a string prefix test), so ``a.b`` is not read: a full scan then gives null, or
    the struct's ``a.b`` when ``a`` is a struct, and a ``where`` on it cannot bind."""
    store = open_store()
    rows = [{"timestamp": T0 + i, "entity": "e", "a": i, "a.b": 10 * i,
             "s": {"b": -i}, "s.b": 100 + i} for i in range(5)]
    store.append(rows)
    if flushed:
        store.flush()
    full = store.scan().read_all()
    assert full.column("a.b").to_pylist() == [10 * i for i in range(5)]
    assert full.column("s.b").to_pylist() == [100 + i for i in range(5)]
    got = store.scan(["a", "a.b", "s", "s.b"]).read_all()
    assert got.drop_columns(["_seq"]).to_pylist() == [
        {k: r[k] for k in ("a", "a.b", "s", "s.b")} for r in rows]
    assert store.scan(["a.b"], pc.field("a") >= 3).read_all().column(
        "a.b").to_pylist() == [30, 40]
    assert store.scan(where=pc.field("s.b") >= 103).read_all().column(
        "a").to_pylist() == [3, 4]


def damage(store_dir: Path, column: str, row_groups: list[int] | None = None) -> int:
    """Flip the last byte of ``column``'s chunk (page data, under its checksum) in
    ``row_groups`` (None: all) of every segment file; how many chunks were damaged."""
    damaged = 0
    for path in sorted((store_dir / "segments").glob("*.parquet")):
        meta = pq.ParquetFile(path).metadata
        names = [meta.row_group(0).column(i).path_in_schema for i in range(meta.num_columns)]
        raw = bytearray(path.read_bytes())
        for g in range(meta.num_row_groups) if row_groups is None else row_groups:
            chunk = meta.row_group(g).column(names.index(column))
            start = chunk.dictionary_page_offset if chunk.has_dictionary_page \
                else chunk.data_page_offset
            raw[start + chunk.total_compressed_size - 1] ^= 0xFF
            damaged += 1
        path.write_bytes(bytes(raw))
    return damaged


def test_a_leaf_is_read_without_its_siblings(tmp_path):
    """With ``process.name`` damaged on disk, its sibling leaves still read; the whole
    ``process`` struct does not (the damage is there to be found)."""
    path = tmp_path / "s"
    with tidal.open(path, segment_rows=10) as store:
        store.append(EVENTS)
        store.flush()
    assert damage(path, "process.name") >= 3
    with tidal.open(path) as store:
        where = pc.field("event", "category") == "process"
        for order in (None, "seq", "time"):
            got = store.scan(["process.pid"], order=order).read_all()
            assert sorted(got.column("process.pid").to_pylist()) == [1000 + i for i in range(N)]
            got = store.scan(["process.pid", "event.kind"], where, order=order).read_all()
            assert sorted(got.column("process.pid").to_pylist()) == list(range(1000, 1030, 2))
        for columns in (["process"], None, ["process.name"]):
            with pytest.raises(tidal.CorruptionError):
                store.scan(columns).read_all()
        with pytest.raises(tidal.CorruptionError):
            store.scan(["process.pid"], pc.field("process", "name") == "n1").read_all()


def test_where_on_the_entity_skips_the_row_groups_statistics_rule_out(tmp_path):
    """One segment of 12,000 events sorted by entity: row groups [e0 e1] [e2 e3] [e4 e5].
    With ``id`` damaged in the first row group only, scans whose ``where`` on the
    entity rules that group out by its statistics still read right; any scan that
    has to read it fails."""
    path = tmp_path / "s"
    n = 12_000
    with tidal.open(path) as store:
        store.append(batch(0, n, entities=6))
        store.flush()
    [segment] = (path / "segments").glob("*.parquet")
    meta = pq.ParquetFile(segment).metadata
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [4000] * 3
    assert damage(path, "id", [0]) == 1
    with tidal.open(path) as store:
        for where, entities in ((pc.field("entity") == "e4", {4}),
                                (pc.field("entity").isin(["e2", "e5"]), {2, 5}),
                                (pc.field("entity") >= "e3", {3, 4, 5})):
            want = [i for i in range(n) if i % 6 in entities]
            for columns in (None, ["id"], ["id", "entity"]):
                got = store.scan(columns, where).read_all()
                assert got.column("id").to_pylist() == want, (where, columns)
                assert got.column("_seq").to_pylist() == want
            by_time = store.scan(["id"], where, order="time").read_all()
            assert by_time.column("id").to_pylist() == want
            as_stored = store.scan(["id"], where, order=None).read_all()
            assert sorted(as_stored.column("id").to_pylist()) == want
        for where in (pc.field("entity") == "e1", pc.field("id") >= 0, None):
            with pytest.raises(tidal.CorruptionError):
                store.scan(["id"], where).read_all()
