"""Write-ahead log: framed Arrow IPC streams with group commit.

A WAL is a directory of files named ``wal-<first_seq>.log``. Each file is a run
of frames::

    magic b"TWAL" | payload_len u64 | first_seq u64 | rows u32 | crc32 u32 | payload

where the payload is a self-contained Arrow IPC stream (schema, batches, end
marker) holding ``rows`` events whose ``_seq`` starts at ``first_seq``. One
append is one frame, written with one ``write`` and made durable with one
``fsync`` (durability ``"group"``). On open, frames are checked in order; the
first short, misframed or checksum-failing frame of the *last* file marks a torn
tail, which is truncated and reported. Damage before the tail, or in an older
file, is corruption and raises :class:`CorruptionError`.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from tidal.errors import CorruptionError, StorageError

MAGIC = b"TWAL"
_HEADER = struct.Struct("<4sQQII")
HEADER_SIZE = _HEADER.size


@dataclass(frozen=True)
class TornTail:
    """What recovery cut off the end of the log."""

    path: str
    offset: int
    dropped_bytes: int
    reason: str


@dataclass(frozen=True)
class Frame:
    """One recovered append."""

    first_seq: int
    table: pa.Table


def encode(table: pa.Table) -> pa.Buffer:
    """Serialise ``table`` as one self-contained Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _file_name(first_seq: int) -> str:
    return f"wal-{first_seq:020d}.log"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteAheadLog:
    """Appends frames durably; rotates and truncates after flushes.

    Args:
        directory: where the ``wal-*.log`` files live (created if missing).
        durability: ``"group"`` (fsync each append), ``"interval"`` (fsync at
            most every ``fsync_interval_s``, from a background thread too) or
            ``"none"``.
    """

    def __init__(self, directory: Path, durability: str, fsync_interval_s: float) -> None:
        self.directory = directory
        self.durability = durability
        self.fsync_interval_s = fsync_interval_s
        self._fd: int | None = None
        self._path: Path | None = None
        self._lock = threading.Lock()
        self._dirty = False
        self._last_sync = time.monotonic()
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        directory.mkdir(parents=True, exist_ok=True)

    # -- recovery -------------------------------------------------------------
    def files(self) -> list[Path]:
        """WAL files, oldest first."""
        return sorted(self.directory.glob("wal-*.log"))

    def recover(self) -> tuple[list[Frame], TornTail | None]:
        """Read every intact frame; truncate a torn tail of the last file."""
        frames: list[Frame] = []
        torn: TornTail | None = None
        files = self.files()
        for i, path in enumerate(files):
            last = i == len(files) - 1
            data = path.read_bytes()
            pos = 0
            while pos < len(data):
                problem = None
                if len(data) - pos < HEADER_SIZE:
                    problem = "short frame header"
                else:
                    magic, length, first_seq, rows, crc = _HEADER.unpack_from(data, pos)
                    end = pos + HEADER_SIZE + length
                    if magic != MAGIC:
                        problem = "bad frame magic"
                    elif end > len(data):
                        problem = "short frame payload"
                    else:
                        payload = memoryview(data)[pos + HEADER_SIZE : end]
                        if zlib.crc32(payload) != crc:
                            problem = "frame checksum mismatch"
                if problem is not None:
                    if not last:
                        raise CorruptionError(f"WAL file damaged: {problem}", path=str(path),
                                              offset=pos)
                    torn = TornTail(str(path), pos, len(data) - pos, problem)
                    with open(path, "r+b") as fh:
                        fh.truncate(pos)
                        os.fsync(fh.fileno())
                    break
                try:
                    table = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
                except pa.ArrowException as exc:
                    raise CorruptionError(f"WAL frame unreadable: {exc}", path=str(path),
                                          offset=pos) from exc
                if table.num_rows != rows:
                    raise CorruptionError("WAL frame row count mismatch", path=str(path),
                                          offset=pos)
                frames.append(Frame(first_seq, table))
                pos = end
        return frames, torn

    # -- writing --------------------------------------------------------------
    def open_file(self, first_seq: int) -> None:
        """Start a new WAL file for events from ``first_seq`` on."""
        with self._lock:
            self._close_fd()
            path = self.directory / _file_name(first_seq)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._fd, self._path = fd, path
            _fsync_dir(self.directory)
        if self.durability == "interval" and self._syncer is None:
            self._syncer = threading.Thread(target=self._sync_loop, name="tidal-wal-sync",
                                            daemon=True)
            self._syncer.start()

    def append(self, table: pa.Table, first_seq: int) -> int:
        """Write one frame; returns once it is durable under the policy. Returns bytes written."""
        payload = encode(table)
        header = _HEADER.pack(MAGIC, payload.size, first_seq, table.num_rows,
                              zlib.crc32(memoryview(payload)))
        with self._lock:
            if self._fd is None:
                raise StorageError("WAL is not open", path=str(self.directory))
            start = os.lseek(self._fd, 0, os.SEEK_END)
            try:
                os.writev(self._fd, [header, payload])
                if self.durability == "group":
                    os.fsync(self._fd)
                else:
                    self._dirty = True
                    if (self.durability == "interval"
                            and time.monotonic() - self._last_sync >= self.fsync_interval_s):
                        self._sync_locked()
            except OSError as exc:
                # Leave no partial frame behind: later frames must stay readable.
                os.ftruncate(self._fd, start)
                raise StorageError(f"WAL write failed: {exc}", path=str(self._path)) from exc
        return HEADER_SIZE + payload.size

    def _sync_locked(self) -> None:
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
        self._dirty = False
        self._last_sync = time.monotonic()

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.fsync_interval_s):
            with self._lock:
                self._sync_locked()

    def drop_before(self, first_seq: int) -> None:
        """Delete WAL files that hold only events below ``first_seq``.

        Call after a manifest that covers them is durable, and after
        :meth:`open_file` started the file for ``first_seq``.
        """
        for path in self.files():
            if path != self._path and int(path.stem.split("-")[1]) < first_seq:
                path.unlink(missing_ok=True)
        _fsync_dir(self.directory)

    def size_bytes(self) -> int:
        """Bytes held in WAL files (a file dropped meanwhile counts as empty)."""
        total = 0
        for path in self.files():
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                continue
        return total

    def _close_fd(self) -> None:
        if self._fd is not None:
            self._sync_locked()
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Sync and close; stops the interval syncer."""
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join()
            self._syncer = None
        with self._lock:
            self._close_fd()


def iter_frames(frames: list[Frame], after_seq: int) -> Iterator[Frame]:
    """Frames (or their tails) holding events with ``_seq > after_seq``."""
    for frame in frames:
        last = frame.first_seq + frame.table.num_rows - 1
        if last <= after_seq:
            continue
        skip = max(0, after_seq + 1 - frame.first_seq)
        yield Frame(frame.first_seq + skip, frame.table.slice(skip))
