"""Segment encodings: struct leaves with few distinct values are dictionary-encoded
each on its own (Parquet column path ``event.category``), high-cardinality leaves
are not, and every value reads back exactly as appended."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import tidal
from tidal.store.seq_read import read_seqs

from .events import T0

DICTIONARY = {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}

LOW = ["entity", "code", "event.category", "event.outcome", "process.name",
       "process.parent.name", "n.b"]
"""Column paths with few distinct values (nulls and all)."""
HIGH = ["uid", "event.id", "process.pid", "process.parent.pid"]
"""Column paths with a value of their own in every row."""


def event(i: int) -> dict:
    return {
        "timestamp": T0 + i,
        "entity": f"e{i % 4}",
        "uid": f"u{i:06d}",
        "code": (200, 404, 500)[i % 3],
        "event": None if i % 10 == 0 else {
            "category": ("process", "network", "file")[i % 3],
            "id": f"ev-{i}",
            "outcome": "ok" if i % 7 == 0 else None,
        },
        "process": {"pid": 10_000 + i, "name": f"proc{i % 5}",
                    "parent": {"name": ("init", "sshd")[i % 2], "pid": 20_000 + i}},
        "o": {},  # an empty object: stored as a placeholder struct
        "n": {"a": None, "b": i % 2},  # "a" is null in every event: a null-typed child
    }


def encodings(path: Path) -> dict[str, set[str]]:
    """Each column path of ``path``'s first row group, with the encodings it uses."""
    group = pq.ParquetFile(path).metadata.row_group(0)
    return {group.column(i).path_in_schema: set(group.column(i).encodings)
            for i in range(group.num_columns)}


def segment_files(store_dir: Path) -> list[Path]:
    return sorted((store_dir / "segments").glob("*.parquet"))


def check_encodings(path: Path) -> None:
    found = encodings(path)
    for column in LOW:
        assert found[column] & DICTIONARY, (column, found[column])
    for column in HIGH + ["_seq", "timestamp"]:
        assert not found[column] & DICTIONARY, (column, found[column])


def test_low_cardinality_struct_leaves_are_dictionary_encoded(tmp_path):
    path = tmp_path / "s"
    with tidal.open(path) as store:
        store.append([event(i) for i in range(1000)])
        store.flush()
    [segment] = segment_files(path)
    check_encodings(segment)
    assert {"event.category", "process.parent.name", "n.a", "o._empty"} <= set(encodings(segment))


def test_compaction_keeps_the_leaf_encodings(tmp_path):
    path = tmp_path / "s"
    with tidal.open(path, compact_min_rows=5000) as store:
        store.append([event(i) for i in range(600)])
        store.flush()
        store.append([event(i) for i in range(600, 1200)])
        store.flush()
        assert store.compact() > 0
        [meta] = store._engine.manifest.segments
        assert meta.level == 1
    [segment] = segment_files(path)
    check_encodings(segment)


def test_encodings_are_chosen_from_a_sample_of_a_large_segment(tmp_path):
    """Over 8192 rows the distinct values are counted on a sample; the choice stands."""
    n = 20_000
    ids = np.arange(n)
    table = pa.table({
        "timestamp": pa.array(T0 + ids, pa.timestamp("ns", "UTC")),
        "entity": pa.array([f"e{i % 8}" for i in range(n)]),
        "event": pa.StructArray.from_arrays(
            [pa.array([("process", "network", "file")[i % 3] for i in range(n)]),
             pa.array([f"ev-{i}" for i in range(n)])], names=["category", "id"]),
    })
    path = tmp_path / "s"
    with tidal.open(path) as store:
        store.append(table)
        store.flush()
        got = store.scan(["event"], pc.field("event", "category") == "file").read_all()
        assert got.column("event").to_pylist() == [
            {"category": "file", "id": f"ev-{i}"} for i in range(2, n, 3)]
    [segment] = segment_files(path)
    found = encodings(segment)
    assert found["event.category"] & DICTIONARY
    assert not found["event.id"] & DICTIONARY


@pytest.mark.parametrize("compact", [False, True])
def test_values_round_trip_exactly(open_store, backend, compact):
    """Nulls (of leaves and of whole structs), ``{}`` and null-typed children come back
    as appended, by scan, timeline, ``read_seqs``, SQL and after a reopen."""
    events = [event(i) for i in range(300)]
    store = open_store(compact_min_rows=1000)
    store.append(events[:120])
    store.flush()
    store.append(events[120:250])
    store.flush()
    if compact:
        store.compact()
    store.append(events[250:])  # (the memtable as a second opinion)
    names = [name for name in events[0] if name != "timestamp"]
    values = [{name: e[name] for name in names} for e in events]

    def check(store: tidal.Store) -> None:
        got = store.scan([*names, "timestamp"]).read_all()
        assert got.select(names).to_pylist() == values
        assert got.column("timestamp").cast(pa.int64()).to_pylist() == [
            e["timestamp"] for e in events]
        assert store.timeline("e3").column("event").to_pylist() == [
            e["event"] for e in events if e["entity"] == "e3"]
        with store.snapshot() as snap:
            some = read_seqs(snap, np.array([0, 7, 119, 120, 299], dtype=np.int64))
        assert some.select(names).to_pylist() == [values[i] for i in (0, 7, 119, 120, 299)]
        where = (pc.field("event", "category") == "network") & (
            pc.field("process", "parent", "name") == "sshd")
        assert store.scan(["uid"], where).read_all().column("uid").to_pylist() == [
            e["uid"] for e in events if e["event"] and e["event"]["category"] == "network"
            and e["process"]["parent"]["name"] == "sshd"]
        counted = store.sql("SELECT count(*) AS c FROM events "
                            "WHERE event.category = 'file' AND n.b = 1")
        assert counted.column("c").to_pylist() == [sum(
            1 for e in events if e["event"] and e["event"]["category"] == "file"
            and e["n"]["b"] == 1)]

    check(store)
    if backend is not None:
        store.close()
        with tidal.open(backend) as again:
            check(again)
