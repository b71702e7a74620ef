"""Damaged files are found, named, and never turned into wrong or missing rows."""

from __future__ import annotations

import random

import msgspec
import pyarrow as pa
import pytest

import tidal
from tidal.store import manifest as manifest_io

T0 = 1_767_225_600_000_000_000


def batch(first: int, n: int) -> pa.Table:
    return pa.table({
        "timestamp": pa.array([T0 + i * 1000 for i in range(first, first + n)],
                              pa.timestamp("ns", "UTC")),
        "entity": [f"e{i % 7}" for i in range(first, first + n)],
        "id": list(range(first, first + n)),
        "v": [float(i) * 1.5 for i in range(first, first + n)],
    })


@pytest.fixture
def flushed(tmp_path):
    path = tmp_path / "s"
    with tidal.open(path) as store:
        store.append(batch(0, 3000))
        store.flush()
    return path


def segment_file(path, suffix: str):
    (found,) = sorted((path / "segments").glob(f"seg-*{suffix}"))
    return found


def read_all(path) -> list[int]:
    with tidal.open(path, read_only=True) as store:
        ids = sorted(store.read_from(0).column("id").to_pylist())
        for e in range(7):
            store.timeline(f"e{e}")
        return ids


@pytest.mark.parametrize("suffix", [".parquet", ".index.arrow"])
def test_flipped_bits_in_a_segment_or_index_are_corruption(flushed, suffix):
    """The issue: 35 of 60 random flips silently changed values; an index flip crashed."""
    target = segment_file(flushed, suffix)
    original = target.read_bytes()
    rng = random.Random(7)
    for _ in range(60):
        data = bytearray(original)
        bit = rng.randrange(len(data) * 8)
        data[bit // 8] ^= 1 << (bit % 8)
        target.write_bytes(bytes(data))
        with pytest.raises(tidal.CorruptionError) as info:
            read_all(flushed)
        assert info.value.path == str(target)
    target.write_bytes(original)
    assert read_all(flushed) == list(range(3000))


def test_a_truncated_or_missing_segment_is_corruption(flushed):
    target = segment_file(flushed, ".parquet")
    data = target.read_bytes()
    target.write_bytes(data[:-100])
    with pytest.raises(tidal.CorruptionError, match="bytes, the manifest says"):
        read_all(flushed)
    target.unlink()
    with pytest.raises(tidal.CorruptionError, match="missing"):
        read_all(flushed)


def test_sql_checks_segment_files_before_duckdb_reads_them(flushed):
    target = segment_file(flushed, ".parquet")
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x10
    target.write_bytes(bytes(data))
    with tidal.open(flushed, read_only=True) as store, pytest.raises(tidal.CorruptionError):
        store.sql("SELECT sum(v) FROM events")


def test_a_plausible_manifest_edit_is_corruption(flushed):
    """The issue: raising flushed_seq by hand silently skipped WAL events."""
    path = flushed / manifest_io.NAME
    raw = msgspec.json.decode(path.read_bytes())
    raw["manifest"]["flushed_seq"] += 100
    path.write_bytes(msgspec.json.encode(raw))
    with pytest.raises(tidal.CorruptionError, match="manifest checksum mismatch") as info:
        tidal.open(flushed)
    assert info.value.path == str(path)


def test_a_missing_manifest_never_deletes_segments(flushed):
    """The issue: a missing MANIFEST.json made open() start a new store and delete segments."""
    (flushed / manifest_io.NAME).unlink()
    before = sorted(p.name for p in (flushed / "segments").iterdir())
    for attempt in (lambda: tidal.open(flushed), lambda: tidal.open(flushed, read_only=True)):
        with pytest.raises(tidal.CorruptionError, match="MANIFEST.json is missing"):
            attempt()
    assert sorted(p.name for p in (flushed / "segments").iterdir()) == before


def test_a_directory_that_is_not_a_store_is_never_turned_into_one(tmp_path):
    """The issue: `tidal stats --store DIR` on a user's directory deleted DIR/segments/*."""
    user = tmp_path / "mine"
    (user / "segments").mkdir(parents=True)
    (user / "segments" / "holiday.jpg").write_bytes(b"\xff\xd8 not ours")
    (user / "notes.txt").write_text("hello")
    for attempt in (lambda: tidal.open(user), lambda: tidal.open(user, read_only=True)):
        with pytest.raises(tidal.StorageError, match="not a Tidal store"):
            attempt()
    assert (user / "segments" / "holiday.jpg").read_bytes() == b"\xff\xd8 not ours"
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt", "segments"]


def test_read_only_open_of_a_missing_store_creates_nothing(tmp_path):
    with pytest.raises(tidal.StorageError, match="no store at"):
        tidal.open(tmp_path / "nothing", read_only=True)
    assert not (tmp_path / "nothing").exists()


def test_the_sweep_deletes_only_files_it_can_prove_are_its_own(flushed):
    segments = flushed / "segments"
    (segments / "seg-00000099.parquet").write_bytes(b"left by a crashed flush")
    (segments / "seg-00000099.parquet.tmp").write_bytes(b"temp")
    (segments / "README").write_text("someone else's")
    with tidal.open(flushed) as store:
        assert store.read_from(0).num_rows == 3000
    names = sorted(p.name for p in segments.iterdir())
    assert "seg-00000099.parquet" not in names and "seg-00000099.parquet.tmp" not in names
    assert "README" in names


def test_an_empty_directory_becomes_a_store(tmp_path):
    (tmp_path / "new").mkdir()
    with tidal.open(tmp_path / "new") as store:
        store.append(batch(0, 3))
    with tidal.open(tmp_path / "new", read_only=True) as store:
        assert store.max_seq() == 2
