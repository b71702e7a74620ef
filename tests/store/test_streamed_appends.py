"""Large NDJSON appends: decoded in blocks, each written to the WAL while the next is
decoded, and still one all-or-nothing commit (one frame whose header goes in last).

The thresholds are lowered here (64 MiB and 32 MiB blocks by default) so that
small files take the same path.
"""

from __future__ import annotations

import gzip
import importlib
import json
import threading
import time
from pathlib import Path

import pytest

import tidal
from tidal.store.wal import decode_frame, scan, wal_files

T0 = "2026-01-01T00:00:{:02d}Z"
BLOCK = 4 << 10
decode_module = importlib.import_module("tidal.ingest.decode")  # the package exports decode()
ndjson_module = importlib.import_module("tidal.ingest.ndjson")


@pytest.fixture
def streaming(monkeypatch):
    """NDJSON of 16 KiB or more streams, in 4 KiB blocks."""
    monkeypatch.setattr(decode_module, "STREAM_MIN_BYTES", 16 << 10)
    monkeypatch.setattr(ndjson_module, "STREAM_BLOCK_BYTES", BLOCK)


def lines(ids: range, *, bad: dict[int, str] | None = None) -> list[str]:
    out = []
    for i in ids:
        if bad and i in bad:
            out.append(bad[i])
            continue
        out.append(json.dumps({"timestamp": T0.format(i % 60), "entity": f"e{i % 7}", "id": i,
                               "pad": "p" * (i % 50)}))
    return out


def write(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


def frames(store_dir: Path) -> list[list[int]]:
    """The rows of each part of each WAL frame, in order."""
    out = []
    for _, path in wal_files(store_dir / "wal"):
        data = path.read_bytes()
        found, damage = scan(data, path)
        assert damage is None
        out += [[p.table.num_rows for p in decode_frame(data, ref, path)] for ref in found]
    return out


def ids(store: tidal.Store) -> list[int]:
    return store.read_from(0).column("id").to_pylist()


def test_a_large_file_is_one_frame_of_many_parts_and_reads_as_a_small_one(tmp_path, streaming):
    path = write(tmp_path / "big.ndjson", lines(range(600)))
    assert path.stat().st_size > 16 << 10
    with tidal.open(tmp_path / "s") as store:
        receipt = store.append(path)
        assert (receipt.count, receipt.first_seq, receipt.last_seq) == (600, 0, 599)
        streamed = store.read_from(0)
        parts = frames(tmp_path / "s")
    assert len(parts) == 1 and len(parts[0]) > 4, parts  # one commit, written in blocks
    assert sum(parts[0]) == 600
    with tidal.open(tmp_path / "whole") as store:
        store.append(path.read_text())  # text below the threshold: one table
        whole = store.read_from(0)
        assert [len(f) for f in frames(tmp_path / "whole")] == [1]
    assert streamed.equals(whole)
    with tidal.open(tmp_path / "s") as again:  # replayed from the WAL frame's parts
        assert again.read_from(0).equals(whole)
        again.flush()
        assert again.read_from(0).equals(whole)


def test_bad_lines_in_later_blocks_reject_the_whole_file_with_their_own_line_numbers(
        tmp_path, streaming):
    bad = {3: "{oops", 450: "[1, 2]", 599: '{"timestamp": "not a time", "id": 599}'}
    path = write(tmp_path / "bad.ndjson", lines(range(600), bad=bad))
    with tidal.open(tmp_path / "s", missing_timestamp="reject") as store:
        store.append("\n".join(lines(range(1000, 1003))))  # something before, to keep
        wal_before = store.stats()["wal_bytes"]
        with pytest.raises(tidal.IngestError) as info:
            store.append(path)
        assert [p.line for p in info.value.problems] == [4, 451, 600]
        assert "not a JSON object" in info.value.problems[1].reason
        assert info.value.problems[2].field == "timestamp"
        assert store.stats()["wal_bytes"] == wal_before  # the frame's blocks were cut off
        assert ids(store) == [1000, 1001, 1002]
        store.append("\n".join(lines(range(2000, 2002))))
        assert ids(store)[-2:] == [2000, 2001]
    with tidal.open(tmp_path / "s") as again:
        assert ids(again) == [1000, 1001, 1002, 2000, 2001]


def test_skipped_lines_go_to_the_dead_letter_file_with_their_line_numbers(tmp_path, streaming):
    bad = {0: "nope", 321: "{", 598: "7"}
    path = write(tmp_path / "bad.ndjson", lines(range(600), bad=bad))
    dead = tmp_path / "dead.ndjson"
    with tidal.open(tmp_path / "s", dead_letter_path=str(dead)) as store:
        receipt = store.append(path, on_error="skip")
        assert (receipt.count, receipt.rejected, receipt.dead_letter) == (597, 3, str(dead))
        assert ids(store) == [i for i in range(600) if i not in bad]
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [(d["line"], d["raw"]) for d in letters] == [(1, "nope"), (322, "{"), (599, "7")]


def test_a_field_that_changes_type_between_blocks_keeps_every_value(tmp_path, streaming):
    rows = lines(range(300))
    rows += [json.dumps({"timestamp": T0.format(1), "entity": "e1", "id": 300 + i,
                         "pad": "text", "extra": f"x{i}"}) for i in range(300)]
    path = write(tmp_path / "mixed.ndjson", rows)
    with tidal.open(tmp_path / "s") as store:
        store.append(path)
        table = store.read_from(0)
        assert table.column("id").to_pylist() == list(range(600))
        extra = table.column("extra").to_pylist()
        assert extra[:300] == [None] * 300 and extra[300:] == [f"x{i}" for i in range(300)]


def test_a_positioned_large_append_commits_its_position_with_its_last_block(tmp_path, streaming):
    path = write(tmp_path / "p.ndjson", lines(range(500)))
    with tidal.open(tmp_path / "s") as store:
        with store.follow() as follower:
            receipt = store.append(path, source="files:p", position=7)
            got = []
            while sum(b.num_rows for b in got) < 500:
                got.append(next(iter(follower)))
        assert (receipt.count, receipt.position, receipt.duplicate) == (500, 7, False)
        assert store.positions() == {"files:p": 7}
        tagged = [b.schema.metadata for b in got if b.schema.metadata]
        assert tagged == [{b"tidal.source": b"files:p", b"tidal.position": b"7"}]
        assert got[-1].schema.metadata == tagged[0]  # on the last batch, after every event
        again = store.append(path, source="files:p", position=7)
        assert again.duplicate and again.count == 0
    parts = frames(tmp_path / "s")
    assert len(parts) == 1 and len(parts[0]) > 2
    with tidal.open(tmp_path / "s") as reopened:
        assert reopened.positions() == {"files:p": 7}
        assert ids(reopened) == list(range(500))


def test_a_positioned_file_without_events_still_commits_its_position(tmp_path, streaming):
    path = write(tmp_path / "blank.ndjson", [" " * 100] * 400)  # 40 KiB of blank lines
    with tidal.open(tmp_path / "s") as store:
        receipt = store.append(path, source="files:blank", position=3)
        assert (receipt.count, receipt.position) == (0, 3)
    with tidal.open(tmp_path / "s") as again:
        assert again.positions() == {"files:blank": 3}
        assert again.read_from(0).num_rows == 0


def test_appends_queued_with_a_large_one_keep_arrival_order(tmp_path, streaming):
    path = write(tmp_path / "big.ndjson", lines(range(100, 700)))
    store = tidal.open(tmp_path / "s")
    receipts: dict[str, tidal.Receipt] = {}

    def append(name: str, data: object) -> None:
        receipts[name] = store.append(data)

    group = store._engine._writer()._group  # hold the next group until all three queue
    with group.exclusive():
        threads = [threading.Thread(target=append, args=(name, data)) for name, data in
                   [("before", "\n".join(lines(range(0, 5)))), ("big", path),
                    ("after", "\n".join(lines(range(900, 903))))]]
        for queued, t in enumerate(threads, start=1):
            t.start()
            deadline = time.monotonic() + 10
            while len(group._queue) < queued and time.monotonic() < deadline:
                time.sleep(0.001)  # each queues before the next starts: arrival order
            assert len(group._queue) == queued
    for t in threads:
        t.join()
    assert [(r.first_seq, r.count) for r in
            (receipts["before"], receipts["big"], receipts["after"])] == [(0, 5), (5, 600),
                                                                            (605, 3)]
    expected = [*range(5), *range(100, 700), *range(900, 903)]
    assert ids(store) == expected
    store.close()
    with tidal.open(tmp_path / "s") as again:
        assert ids(again) == expected


def test_a_write_that_fails_midway_stores_nothing_and_the_store_goes_on(tmp_path, streaming):
    from tidal.api import Store
    from tidal.config import StoreConfig

    from .faults import FaultyFiles

    path = write(tmp_path / "big.ndjson", lines(range(600)))
    files = FaultyFiles()
    store = Store(tmp_path / "s", StoreConfig.build({}), fs=files)
    store.append("\n".join(lines(range(1000, 1002))))
    files.space_bytes = 3 * BLOCK  # the disk fills up a few blocks in
    with pytest.raises(tidal.StorageError, match="nothing of it was stored"):
        store.append(path)
    files.space_bytes = None
    assert ids(store) == [1000, 1001]
    receipt = store.append(path)
    assert (receipt.first_seq, receipt.count) == (2, 600)
    store.close()
    with tidal.open(tmp_path / "s") as again:
        assert ids(again) == [1000, 1001, *range(600)]


def test_compressed_files_and_bytes_stream_too(tmp_path, streaming):
    text = "\n".join(lines(range(600))) + "\n"
    packed = tmp_path / "big.ndjson.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    assert packed.stat().st_size < 16 << 10 <= len(text)  # the decompressed size counts
    for name, data in [("gz", packed), ("bytes", text.encode()),
                       ("json", write(tmp_path / "lines.json", text.splitlines()))]:
        with tidal.open(tmp_path / name) as store:
            assert store.append(data).count == 600
            assert ids(store) == list(range(600))
            parts = frames(tmp_path / name)
        assert len(parts) == 1 and len(parts[0]) > 4, (name, parts)


def test_a_large_json_array_is_decoded_whole(tmp_path, streaming):
    path = tmp_path / "array.json"
    path.write_text("[" + ",\n".join(lines(range(600))) + "]")
    with tidal.open(tmp_path / "s") as store:
        assert store.append(path).count == 600
        assert ids(store) == list(range(600))
        assert frames(tmp_path / "s") == [[600]]
