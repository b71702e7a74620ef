"""``repair=True`` / ``tidal repair`` salvage what can be saved; ``tidal check`` finds damage."""

from __future__ import annotations

import shutil
import struct

import pytest

import tidal
from tidal.cli import main
from tidal.store.check import check_store
from tidal.store.wal import HEADER_SIZE, wal_files

from .events import batch


def ids(path) -> list[int]:
    with tidal.open(path, read_only=True) as store:
        return store.read_from(0).column("id").to_pylist()


def flip_wal_frame(path, frame_no: int) -> None:
    """Flip one payload byte of frame ``frame_no`` of the (only) WAL file."""
    ((_, wal),) = wal_files(path / "wal")
    data = bytearray(wal.read_bytes())
    pos = 0
    for _ in range(frame_no):
        pos += HEADER_SIZE + struct.unpack_from("<Q", data, pos + 4)[0]
    data[pos + HEADER_SIZE + 8] ^= 0x40
    wal.write_bytes(bytes(data))


def test_mid_wal_damage_stops_the_open_and_repair_salvages_the_rest(tmp_path):
    path = tmp_path / "s"
    with tidal.open(path) as store:
        for i in range(10):
            store.append(batch(i * 10, 10))
    flip_wal_frame(path, 3)
    with pytest.raises(tidal.CorruptionError, match="intact frames after it"):
        tidal.open(path)
    assert not check_store(path).ok
    with tidal.open(path, repair=True) as store:
        report = store.repair_report
        assert report is not None and report.lost_events == 10
        assert any("_seq 30..39" in line for line in report.lost)
        store.append(batch(100, 5))
    assert ids(path) == [i for i in range(105) if not 30 <= i < 40]
    assert check_store(path).ok
    with tidal.open(path) as store:  # opens normally ever after, the gap recorded
        assert store.max_seq() == 104


def test_a_damaged_segment_leaves_the_manifest_and_is_reported(tmp_path):
    path = tmp_path / "s"
    with tidal.open(path) as store:
        store.append(batch(0, 100))
        store.flush()
        store.append(batch(100, 50))
        store.flush()
    first = sorted((path / "segments").glob("*.parquet"))[0]
    data = bytearray(first.read_bytes())
    data[100] ^= 0xFF
    first.write_bytes(bytes(data))
    report = check_store(path)
    assert not report.ok and str(first) in report.problems[0]
    with tidal.open(path, repair=True) as store:
        assert store.repair_report.lost_events == 100
    assert ids(path) == list(range(100, 150))
    assert check_store(path).ok


def test_a_damaged_index_is_rebuilt_from_its_data(tmp_path):
    path = tmp_path / "s"
    with tidal.open(path) as store:
        store.append(batch(0, 100))
        store.flush()
    (index,) = (path / "segments").glob("*.index.arrow")
    index.write_bytes(b"garbage")
    with tidal.open(path, repair=True) as store:
        assert store.repair_report.lost_events == 0
        assert store.timeline("e1").column("id").to_pylist() == list(range(1, 100, 5))


def test_a_lost_manifest_is_rebuilt_from_segments_and_wal(tmp_path):
    path = tmp_path / "s"
    with tidal.open(path, compact_min_rows=1000) as store:
        for i in range(3):
            store.append(batch(i * 100, 100))
            store.flush()
        saved = tmp_path / "before-compaction"
        shutil.copytree(path / "segments", saved)
        store.compact()
        store.append(batch(300, 40))  # in the WAL only
    for old in saved.iterdir():  # compaction inputs whose deletion was "cut short"
        shutil.copy(old, path / "segments" / old.name)
    (path / "MANIFEST.json").unlink()
    with pytest.raises(tidal.CorruptionError, match="tidal repair"):
        tidal.open(path)
    assert main(["repair", "--store", str(path)]) == 0
    assert ids(path) == list(range(340))
    assert check_store(path).ok


def test_check_reports_a_torn_tail_as_a_note_not_a_problem(tmp_path):
    path = tmp_path / "s"
    with tidal.open(path) as store:
        store.append(batch(0, 10))
        store.append(batch(10, 10))
    ((_, wal),) = wal_files(path / "wal")
    wal.write_bytes(wal.read_bytes()[:-7])
    report = check_store(path)
    assert report.ok and any("torn WAL tail" in n for n in report.notes)


def test_cli_check_exit_codes(tmp_path, capsys):
    path = tmp_path / "s"
    with tidal.open(path) as store:
        store.append(batch(0, 10))
        store.flush()
    assert main(["check", "--store", str(path)]) == 0
    assert "ok" in capsys.readouterr().out
    (seg,) = (path / "segments").glob("*.parquet")
    seg.write_bytes(seg.read_bytes()[:-1])
    assert main(["check", "--store", str(path)]) == 1
    out = capsys.readouterr().out
    assert "problem" in out and seg.name in out
