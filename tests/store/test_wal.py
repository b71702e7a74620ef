"""The write-ahead log on its own: frames, torn tails, corruption."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from tidal.errors import CorruptionError
from tidal.store.wal import HEADER_SIZE, WriteAheadLog


def table(first: int, n: int) -> pa.Table:
    return pa.table({"_seq": pa.array(range(first, first + n), pa.int64()),
                     "x": [f"v{i}" for i in range(n)]})


def write_frames(directory: Path, sizes: list[int]) -> None:
    wal = WriteAheadLog(directory, "group", 0.2)
    wal.open_file(0)
    seq = 0
    for n in sizes:
        wal.append(table(seq, n), seq)
        seq += n
    wal.close()


def test_frames_round_trip(tmp_path):
    write_frames(tmp_path, [3, 5, 1])
    frames, torn = WriteAheadLog(tmp_path, "group", 0.2).recover()
    assert torn is None
    assert [f.first_seq for f in frames] == [0, 3, 8]
    assert frames[1].table.equals(table(3, 5))


@pytest.mark.parametrize("cut", [1, HEADER_SIZE - 1, HEADER_SIZE + 5, -1])
def test_torn_tail_is_truncated_and_reported(tmp_path, cut):
    write_frames(tmp_path, [3, 5])
    (path,) = sorted(tmp_path.glob("wal-*.log"))
    data = path.read_bytes()
    frames, _ = WriteAheadLog(tmp_path, "group", 0.2).recover()
    assert len(frames) == 2
    # Tear the second frame at `cut` bytes into it (or drop its last byte).
    boundary = _frame_boundaries(data)[1]
    keep = boundary + cut if cut > 0 else len(data) - 1
    path.write_bytes(data[:keep])
    frames, torn = WriteAheadLog(tmp_path, "group", 0.2).recover()
    assert [f.first_seq for f in frames] == [0]
    assert torn is not None and torn.offset == boundary
    assert path.stat().st_size == boundary


def test_flipped_byte_in_last_frame_is_a_torn_tail(tmp_path):
    write_frames(tmp_path, [3, 5])
    (path,) = sorted(tmp_path.glob("wal-*.log"))
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    frames, torn = WriteAheadLog(tmp_path, "group", 0.2).recover()
    assert len(frames) == 1 and torn is not None and torn.reason == "frame checksum mismatch"


def test_damage_in_an_older_file_is_corruption(tmp_path):
    wal = WriteAheadLog(tmp_path, "group", 0.2)
    wal.open_file(0)
    wal.append(table(0, 3), 0)
    wal.open_file(3)
    wal.append(table(3, 3), 3)
    wal.close()
    older = sorted(tmp_path.glob("wal-*.log"))[0]
    data = bytearray(older.read_bytes())
    data[-3] ^= 0xFF
    older.write_bytes(bytes(data))
    with pytest.raises(CorruptionError) as info:
        WriteAheadLog(tmp_path, "group", 0.2).recover()
    assert info.value.path == str(older) and info.value.offset == 0


def test_drop_before_keeps_current_file(tmp_path):
    wal = WriteAheadLog(tmp_path, "none", 0.2)
    wal.open_file(0)
    wal.append(table(0, 3), 0)
    wal.open_file(3)
    wal.drop_before(3)
    assert [p.name for p in wal.files()] == ["wal-00000000000000000003.log"]
    wal.close()


def _frame_boundaries(data: bytes) -> list[int]:
    import struct

    out, pos = [], 0
    while pos < len(data):
        out.append(pos)
        length = struct.unpack_from("<Q", data, pos + 4)[0]
        pos += HEADER_SIZE + length
    return out


def test_store_with_damaged_older_wal_file_refuses_to_open_and_releases_its_lock(tmp_path):
    import tidal

    path = tmp_path / "s"
    wal = WriteAheadLog(path / "wal", "group", 0.2)
    wal.open_file(0)
    wal.append(table(0, 3), 0)
    wal.open_file(3)
    wal.append(table(3, 3), 3)
    wal.close()
    older = sorted((path / "wal").glob("wal-*.log"))[0]
    data = bytearray(older.read_bytes())
    data[-3] ^= 0xFF
    older.write_bytes(bytes(data))
    for _ in range(2):  # the second attempt must not find the store locked
        with pytest.raises(tidal.CorruptionError):
            tidal.open(path)
