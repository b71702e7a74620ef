"""Files ingested once: reruns store only what is new; rotation, truncation, --follow."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tidal
from tidal.errors import IngestError
from tidal.sources.files import FileResult, Identity, ingest_file, whole_lines

BIN = Path(sys.executable).parent / "tidal"
TIDAL = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "tidal.cli"]
T0 = 1_767_225_600_000_000_000


def lines(first: int, n: int) -> bytes:
    return b"".join(json.dumps({"timestamp": T0 + i, "pod": f"p{i % 3}", "n": i}).encode()
                    + b"\n" for i in range(first, first + n))


def ns(store_dir: Path) -> list[int]:
    with tidal.open(store_dir, read_only=True) as store:
        table = store.read_from(0)
        return sorted(table.column("n").to_pylist()) if table.num_rows else []


def ingest(*args: object) -> str:
    done = subprocess.run([*TIDAL, "ingest", *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_grown_file_gives_only_its_new_lines(tmp_path):
    log, store = tmp_path / "app.ndjson", tmp_path / "s"
    log.write_bytes(lines(0, 100))
    assert "ingested 100 events" in ingest(log, "--store", store, "--entity-field", "pod")
    with log.open("ab") as fh:
        fh.write(lines(100, 20))
    out = ingest(log, "--store", store)
    assert "ingested 20 events" in out and "skipped" in out
    assert "ingested 0 events" in ingest(log, "--store", store)
    assert ns(store) == list(range(120))


def test_an_unfinished_last_line_waits_for_its_newline(tmp_path):
    log, store = tmp_path / "app.ndjson", tmp_path / "s"
    full = lines(0, 5)
    log.write_bytes(full[:-9])  # the fifth line is still being written
    out = ingest(log, "--store", store, "--entity-field", "pod")
    assert "ingested 4 events" in out and "unfinished last line" in out
    log.write_bytes(full)
    assert "ingested 1 events" in ingest(log, "--store", store)
    assert ns(store) == list(range(5))


def test_a_rotated_file_starts_from_the_top_and_the_old_one_is_not_repeated(tmp_path):
    log, store = tmp_path / "app.ndjson", tmp_path / "s"
    log.write_bytes(lines(0, 10))
    ingest(log, "--store", store, "--entity-field", "pod")
    with log.open("ab") as fh:
        fh.write(lines(10, 5))  # written just before the rotation
    log.rename(tmp_path / "app.ndjson.1")
    log.write_bytes(lines(100, 7))
    out = ingest(log, tmp_path / "app.ndjson.1", "--store", store)
    assert "rotated" in out and "ingested 12 events" in out
    assert ns(store) == list(range(15)) + list(range(100, 107))


def test_a_truncated_file_starts_from_the_top(tmp_path):
    log, store = tmp_path / "app.ndjson", tmp_path / "s"
    log.write_bytes(lines(0, 10))
    ingest(log, "--store", store, "--entity-field", "pod")
    with log.open("r+b") as fh:  # same inode, new content
        fh.truncate(0)
        fh.write(lines(200, 3))
    out = ingest(log, "--store", store)
    assert "truncated" in out and "ingested 3 events" in out
    assert ns(store) == list(range(10)) + [200, 201, 202]


def test_compressed_files_are_positioned_whole(tmp_path):
    packed, store = tmp_path / "old.ndjson.gz", tmp_path / "s"
    packed.write_bytes(gzip.compress(lines(0, 8)))
    assert "ingested 8 events" in ingest(packed, "--store", store, "--entity-field", "pod")
    out = ingest(packed, "--store", store)
    assert "ingested 0 events" in out and "ingested already" in out
    packed.write_bytes(gzip.compress(lines(0, 8) + lines(8, 2)))  # rewritten in place
    assert "ingested 10 events" in ingest(packed, "--store", store)


def test_identity_round_trips_through_the_source_name():
    identity = Identity(2049, 1234567, 1024, "0123456789abcdef", 3)
    assert Identity.parse(identity.source(Path("/var/log/a:b.ndjson"))) == (
        identity, "/var/log/a:b.ndjson")
    assert Identity.parse("nats:S:x") is None


def test_whole_lines_cut_at_newlines():
    import io

    data = b"".join(b"%d%s\n" % (i, b"x" * (i % 7)) for i in range(1000)) + b"tail"
    chunks = list(whole_lines(io.BytesIO(data), 0, 100))
    assert b"".join(c for c, _ in chunks) == data[:-4]
    assert all(c.endswith(b"\n") for c, _ in chunks) and len(chunks) > 50
    assert chunks[-1][1] == len(data) - 4


def test_chunked_ingest_counts_lines_from_the_start_of_the_file(tmp_path):
    events = [json.dumps({"timestamp": T0 + i, "pod": "a", "n": i}).encode() + b"\n"
              for i in range(200)]
    path = tmp_path / "big.ndjson"
    path.write_bytes(b"".join(events[:150]) + b"{broken\n" + b"".join(events[150:]))
    seen: list[int] = []
    with tidal.open(tmp_path / "s", entity_field="pod") as opened:
        with pytest.raises(IngestError) as caught:
            ingest_file(opened, path, advance=seen.append, whole_below=0, chunk_bytes=1000)
        assert [p.line for p in caught.value.problems] == [151]
        stored = opened.sql("SELECT count(*) AS n FROM events").column("n")[0].as_py()
        assert 0 < stored < 150
        assert caught.value.__notes__ == [
            f"lines {stored + 1} on were not stored, but the {stored:,} events before them were"]
        assert sum(seen) < path.stat().st_size
        good = tmp_path / "good.ndjson"
        good.write_bytes(b"".join(events))
        seen.clear()
        result = ingest_file(opened, good, advance=seen.append, whole_below=0, chunk_bytes=1000)
        assert (result.count, result.rejected) == (200, 0)
        assert len(seen) > 5 and sum(seen) == good.stat().st_size
        again = ingest_file(opened, good, whole_below=0, chunk_bytes=1000)
        assert again == FileResult(skipped_bytes=good.stat().st_size)


def _wait_for(store_dir: Path, want: list[int], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if store_dir.exists() and (store_dir / "MANIFEST.json").exists() and ns(store_dir) == want:
            return
        time.sleep(0.1)
    raise AssertionError(f"the store holds {ns(store_dir)}, not {want}")


@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM])
def test_follow_tails_rotation_truncation_and_late_files(tmp_path, stop_with):
    log, late, store = tmp_path / "app.ndjson", tmp_path / "late.ndjson", tmp_path / "s"
    log.write_bytes(lines(0, 10))
    follower = subprocess.Popen([*TIDAL, "ingest", "--follow", str(log), str(late), "--store",
                                 str(store), "--entity-field", "pod"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(store, list(range(10)))
        with log.open("ab") as fh:
            fh.write(lines(10, 5))
            fh.write(lines(15, 1)[:-5])  # half a line: not taken yet
        _wait_for(store, list(range(15)))
        with log.open("ab") as fh:
            fh.write(lines(15, 1)[-5:])  # ... now it is whole
        log.rename(tmp_path / "app.ndjson.1")  # rotation
        log.write_bytes(lines(100, 4))
        _wait_for(store, list(range(16)) + list(range(100, 104)))
        with log.open("r+b") as fh:  # truncation
            fh.truncate(0)
            fh.write(lines(200, 2))
        late.write_bytes(lines(300, 3))  # a file that appears later
        _wait_for(store, list(range(16)) + list(range(100, 104)) + [200, 201, 300, 301, 302])
    finally:
        follower.send_signal(stop_with)
        out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert "rotated" in out and "truncated" in out and "stopped: ingested" in out
    with tidal.open(store) as reopened:  # every line once, and nothing is in flight
        assert sorted(reopened.read_from(0).column("n").to_pylist()) == (
            list(range(16)) + list(range(100, 104)) + [200, 201, 300, 301, 302])


def test_one_file_under_two_spellings_is_one_source(tmp_path, monkeypatch):
    log, store = tmp_path / "logs" / "app.ndjson", tmp_path / "s"
    log.parent.mkdir()
    log.write_bytes(lines(0, 10))
    ingest(log, "--store", store, "--entity-field", "pod")
    with log.open("ab") as fh:
        fh.write(lines(10, 10))
    monkeypatch.chdir(log.parent)
    with tidal.open(store) as opened:
        assert ingest_file(opened, Path("app.ndjson")).count == 10
    with log.open("ab") as fh:
        fh.write(lines(20, 10))
    ingest(log, "--store", store)
    assert ns(store) == list(range(30))
    with tidal.open(store, read_only=True) as opened:
        assert len(opened.positions()) == 1


def test_logrotate_then_cron_stores_each_line_once(tmp_path):
    """logrotate renames the file while the program still writes to it; cron ingests both."""
    log, store = tmp_path / "app.ndjson", tmp_path / "s"
    with log.open("ab", buffering=0) as writer:
        writer.write(lines(0, 10))
        ingest(log, "--store", store, "--entity-field", "pod")
        writer.write(lines(10, 5))
        log.rename(tmp_path / "app.ndjson.1")
        log.write_bytes(lines(100, 3))
        ingest(log, tmp_path / "app.ndjson.1", "--store", store)
        writer.write(lines(15, 5))  # the program has not reopened its log yet
    ingest(log, tmp_path / "app.ndjson.1", "--store", store)
    assert ns(store) == list(range(20)) + [100, 101, 102]


def test_a_file_name_that_is_not_utf8(tmp_path):
    name = os.fsdecode(b"caf\xe9.ndjson")
    log, store = tmp_path / name, tmp_path / "s"
    log.write_bytes(lines(0, 3))
    with tidal.open(store, entity_field="pod") as opened:
        assert ingest_file(opened, log).count == 3
        assert ingest_file(opened, log).count == 0


def test_follow_refuses_files_it_cannot_read_line_by_line(tmp_path):
    store = tmp_path / "s"
    for name in ("a.csv", "b.ndjson.gz"):
        done = subprocess.run([*TIDAL, "ingest", "--follow", str(tmp_path / name), "--store",
                               str(store), "--entity-field", "pod"], capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 1 and "line by line" in done.stderr


def test_follow_keeps_reading_a_rotated_file_until_it_goes_quiet(tmp_path):
    from tidal.sources.files import FileTail

    log = tmp_path / "app.ndjson"
    notes: list[str] = []
    with tidal.open(tmp_path / "s", entity_field="pod") as store, \
            log.open("ab", buffering=0) as writer:
        tail = FileTail(store, log, report=notes.append, rotated_idle_s=0.5)
        writer.write(lines(0, 5) + lines(5, 1)[:-3])  # the program is mid-line
        while tail.poll():
            pass
        log.rename(tmp_path / "app.ndjson.1")
        log.write_bytes(b"")
        while tail.poll():
            pass
        writer.write(lines(5, 1)[-3:] + lines(6, 3))  # to its old file, until it reopens
        log.write_bytes(lines(9, 3))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            tail.poll()
            time.sleep(0.05)
            if sorted(store.read_from(0).column("n").to_pylist()) == list(range(12)):
                break
        tail.close()
        assert sorted(store.read_from(0).column("n").to_pylist()) == list(range(12))
    assert any("rotated" in note for note in notes)


def test_follow_after_a_truncation_to_empty(tmp_path):
    from tidal.sources.files import FileTail

    log = tmp_path / "app.ndjson"
    log.write_bytes(lines(0, 10))
    with tidal.open(tmp_path / "s", entity_field="pod") as store:
        tail = FileTail(store, log, report=lambda note: None)
        while tail.poll():
            pass
        log.write_bytes(b"")  # copytruncate
        while tail.poll():
            pass
        log.write_bytes(lines(200, 12))  # grows past the old offset before the next look
        while tail.poll():
            pass
        tail.close()
        assert sorted(store.read_from(0).column("n").to_pylist()) == (
            list(range(10)) + list(range(200, 212)))
