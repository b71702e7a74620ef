"""Read-only opens: next to a writer in another process, and without changing a byte."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tidal
from tidal.cli import main

CHILD = Path(__file__).with_name("_writer_child.py")


class Writer:
    """A store writer in a child process."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, str(CHILD), str(path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.answer()

    def answer(self) -> int:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("ok "), line
        return int(line.split()[1])

    def do(self, command: str) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.answer()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait(60)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def writer(tmp_path) -> Iterator[Writer]:
    w = Writer(tmp_path / "s")
    yield w
    w.close()


def tree(path: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``path`` with its size and modification time."""
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            st = os.stat(os.path.join(root, name))
            out[os.path.relpath(os.path.join(root, name), path)] = (st.st_size, st.st_mtime_ns)
    return out


def test_a_reader_sees_what_a_writer_in_another_process_commits(tmp_path, writer):
    path = tmp_path / "s"
    writer.do("append 0 100")
    with pytest.raises(tidal.StorageError, match="already open by another writer"):
        tidal.open(path)
    with tidal.open(path, read_only=True) as reader:
        assert reader.max_seq() == 99
        writer.do("append 100 50")
        assert reader.timeline("e1").column("id").to_pylist() == list(range(1, 150, 5))
        writer.do("flush")  # the WAL the reader read is dropped; segments take over
        writer.do("append 150 50")
        assert reader.read_from(0).column("id").to_pylist() == list(range(200))
        for i in range(4):
            writer.do(f"append {200 + i * 100} 100")
            writer.do("flush")
        writer.do("compact")  # segments the reader knew are deleted
        assert reader.sql("SELECT count(*) AS n FROM events").column("n").to_pylist() == [600]
        assert reader.stats()["events"] == 600
        with pytest.raises(tidal.ReadOnlyError):
            reader.append([{"timestamp": 1, "entity": "x"}])


def test_the_cli_read_commands_work_next_to_a_writer(tmp_path, writer, capsys):
    path = tmp_path / "s"
    writer.do("append 0 20")
    assert main(["stats", "--store", str(path)]) == 0
    assert main(["timeline", "e2", "--store", str(path), "--format", "json"]) == 0
    assert main(["sql", "SELECT max(id) AS m FROM events", "--store", str(path),
                 "--format", "csv"]) == 0
    assert main(["check", "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert '"id":17' in out and "19" in out


def test_read_only_opens_change_nothing(tmp_path):
    path = tmp_path / "s"
    with tidal.open(path) as store:
        store.append([{"timestamp": i, "entity": "a", "n": i} for i in range(10)])
        store.flush()
        store.append([{"timestamp": 99, "entity": "a", "n": 99}])
    ((wal,),) = [list((path / "wal").iterdir())]
    wal.write_bytes(wal.read_bytes() + b"\x00torn")  # a torn tail: a writer would cut it
    before = tree(path)
    with tidal.open(path, read_only=True) as store:
        assert store.timeline("a").column("n").to_pylist() == [*range(10), 99]
        store.sql("SELECT * FROM events")
        store.stats()
    assert main(["stats", "--store", str(path)]) == 0
    assert tree(path) == before


def test_a_reader_notices_a_new_wal_file_before_any_manifest_names_it(tmp_path):
    """A reader that finds nothing changed looks no further than three ``stat`` calls;
    a WAL rotation whose flush has not committed yet changes no manifest and leaves
    the last file as it was, and the reader must still find the events in the new file."""
    from tidal.api import Store
    from tidal.config import StoreConfig

    from .events import batch
    from .faults import FaultyFiles

    files = FaultyFiles()
    writer = Store(tmp_path / "s", StoreConfig.build({}), fs=files)
    files.hold_segment_writes.clear()  # flushes wait: the manifest stays as it is
    flushing = threading.Thread(target=writer.flush)
    try:
        writer.append(batch(0, 10))
        with tidal.open(tmp_path / "s", read_only=True) as reader:
            assert reader.read_from(0).column("id").to_pylist() == list(range(10))
            manifest = (tmp_path / "s" / "MANIFEST.json").stat().st_mtime_ns
            wal = tmp_path / "s" / "wal"
            flushing.start()  # seals: the WAL moves to a new file; the flush then waits
            deadline = time.monotonic() + 10
            while len(list(wal.iterdir())) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(list(wal.iterdir())) == 2
            writer.append(batch(10, 5))  # into the new file
            assert reader.read_from(0).column("id").to_pylist() == list(range(15))
            assert reader.timeline("e1").column("id").to_pylist() == [1, 6, 11]
            assert (tmp_path / "s" / "MANIFEST.json").stat().st_mtime_ns == manifest
    finally:
        files.hold_segment_writes.set()
        if flushing.ident is not None:  # started
            flushing.join()
        writer.close()
