"""Write-ahead log: checksummed frames of Arrow IPC, one frame, one write and one fsync
per commit group.

A WAL is a directory of files named ``wal-<first_seq>.log``; file *i* holds
the events from its ``first_seq`` up to the next file's. Each file is a run of
frames, one per commit group::

    magic b"TWL5" | payload_len u64 | first_seq u64 | rows u32 | written_ns u64
          | payload_crc32 u32 | header_crc32 u32
    payload: for each append of the group:
             ipc_len u64 | source_len u32 | position i64 | source (UTF-8)
             | an Arrow IPC stream of its events (without ``_seq``)

An append made with a ``source`` and ``position`` carries them in its part
(``source_len`` 0: none), so an append and its position are durable together
or not at all; a positioned append may hold no events.

``header_crc32`` covers every header field before it (the payload's checksum
included), so a damaged length, ``_seq`` or payload is always caught; the
appends' ``_seq`` values follow from ``first_seq`` and their row counts. A
group is written with one ``writev`` (looped until every byte is written) and
made durable with one ``fsync``; since it is one frame, a group cut short by a
power cut is one damaged frame at the end.

A large append (a big NDJSON file) is one frame too, but written while it is
decoded (:meth:`WalWriter.write_stream`): a placeholder of zeros, then each
block's part as soon as it is made (a helper thread writes, checksums and
fsyncs it while the next block is decoded), then the real header written over
the placeholder and one last fsync. Until that header is durable the frame is
a torn tail, so the append is all there or not at all. A write or fsync that fails is cut
off the file again before anything else is written; if even that fails, the
log refuses appends until a retry of the cut succeeds.

Recovery reads the frames in order. A *torn tail* is a damaged end of the
last file with no intact frame after it: a power cut during an unacknowledged
write. It is cut off and reported. Any other damage (in an older file, or
with an intact frame after it) is corruption: :class:`CorruptionError`, unless
the caller salvages (``repair``).
"""

from __future__ import annotations

import functools
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from tidal.errors import CorruptionError, StorageError
from tidal.store.durations import Durations
from tidal.store.fs import FileSystem, LogFile

MAGIC = b"TWL5"
_PART = struct.Struct("<QIq")  # IPC length, source length, position of one append
_HEADER = struct.Struct("<4sQQIQII")
HEADER_SIZE = _HEADER.size
_CHECKED = slice(4, HEADER_SIZE - 4)  # header bytes the header checksum covers
SEQ = "_seq"
NAME = re.compile(r"wal-(\d{20})\.log")
MAX_FRAME_BYTES = 1 << 40


def file_name(first_seq: int) -> str:
    """The name of the WAL file whose first event is ``first_seq``."""
    return f"wal-{first_seq:020d}.log"


def wal_files(directory: Path) -> list[tuple[int, Path]]:
    """``(first_seq, path)`` of every WAL file in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := NAME.fullmatch(p.name))]
    return sorted(found)


# ------------------------------------------------------------------ frames


def encode_payload(table: pa.Table) -> pa.Buffer:
    """One self-contained Arrow IPC stream of ``table`` (which has no ``_seq``)."""
    measure = pa.MockOutputStream()  # sizes the stream without copying a byte
    with pa.ipc.new_stream(measure, table.schema) as writer:
        writer.write_table(table)
    # One buffer of the exact size: a growing BufferOutputStream re-copies as it
    # grows and costs ≈ 10x more for large tables.
    out = pa.allocate_buffer(measure.size())
    with pa.ipc.new_stream(pa.FixedSizeBufferWriter(out), table.schema) as writer:
        writer.write_table(table)
    return out


def frame_buffers(parts: Sequence[PendingFrame], written_ns: int) -> list[bytes | pa.Buffer]:
    """The bytes of one frame holding ``parts`` (a commit group), ready for ``writev``."""
    body: list[bytes | pa.Buffer] = []
    crc = 0
    for part in parts:
        head = _part_head(part)
        crc = zlib.crc32(memoryview(part.payload), zlib.crc32(head, crc))
        body += [head, part.payload]
    size = sum(len(b) for b in body)
    rows = sum(part.rows for part in parts)
    return [_frame_header(size, parts[0].first_seq, rows, written_ns, crc), *body]


def _part_head(part: PendingFrame) -> bytes:
    source = part.source.encode("utf-8") if part.source is not None else b""
    position = part.position if part.position is not None else 0
    return _PART.pack(part.payload.size, len(source), position) + source


def _frame_header(size: int, first_seq: int, rows: int, written_ns: int, crc: int) -> bytes:
    header = _HEADER.pack(MAGIC, size, first_seq, rows, written_ns, crc, 0)
    return header[:-4] + struct.pack("<I", zlib.crc32(header[_CHECKED]))


@dataclass(frozen=True)
class FrameRef:
    """One intact frame found in a file (payload not yet decoded)."""

    offset: int
    end: int
    first_seq: int
    rows: int
    written_ns: int

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.rows - 1


@dataclass(frozen=True)
class Damage:
    """Where a file stops holding intact frames, and whether any follow."""

    path: str
    offset: int
    reason: str
    file_bytes: int
    next_frame: int | None  # offset of the next intact frame, if any

    @property
    def dropped_bytes(self) -> int:
        return (self.next_frame or self.file_bytes) - self.offset


def _frame_at(data: memoryview, pos: int) -> FrameRef | str:
    """The intact frame at ``pos``, or why there is none."""
    if len(data) - pos < HEADER_SIZE:
        return "short frame header"
    magic, length, first_seq, rows, written_ns, payload_crc, header_crc = (
        _HEADER.unpack_from(data, pos))
    if magic != MAGIC:
        return "bad frame magic"
    if zlib.crc32(data[pos:pos + HEADER_SIZE][_CHECKED]) != header_crc:
        return "frame header checksum mismatch"
    end = pos + HEADER_SIZE + length
    if length > MAX_FRAME_BYTES or end > len(data):
        return "short frame payload"
    if zlib.crc32(data[pos + HEADER_SIZE:end]) != payload_crc:
        return "frame checksum mismatch"
    return FrameRef(pos, end, first_seq, rows, written_ns)


def scan(data: bytes | memoryview, path: Path | str, start: int = 0
         ) -> tuple[list[FrameRef], Damage | None]:
    """The intact frames of a file from ``start`` on, up to the first damage (if any)."""
    view = memoryview(data).cast("B")
    frames: list[FrameRef] = []
    pos = start
    while pos < len(view):
        found = _frame_at(view, pos)
        if isinstance(found, str):
            after = frames[-1].last_seq if frames else -1
            return frames, Damage(str(path), pos, found, len(view),
                                  _next_frame(view, pos + 1, after))
        frames.append(found)
        pos = found.end
    return frames, None


def _next_frame(view: memoryview, pos: int, after_seq: int) -> int | None:
    """Offset of the first intact frame at or after ``pos`` that continues the
    sequence (events above ``after_seq``: bytes that merely look like a frame
    inside a torn payload do not count)."""
    raw = view.obj if isinstance(view.obj, bytes) else bytes(view)
    while (pos := raw.find(MAGIC, pos)) >= 0:
        found = _frame_at(view, pos)
        if isinstance(found, FrameRef) and found.first_seq > after_seq:
            return pos
        pos += 1
    return None


@dataclass(frozen=True)
class Part:
    """One append recovered from a frame: its events (``_seq`` first) and position."""

    table: pa.Table
    source: str | None
    position: int | None


def decode_frame(data: bytes | memoryview, ref: FrameRef, path: Path | str,
                 base: int = 0) -> list[Part]:
    """The appends of frame ``ref``, each with its ``_seq`` column first.

    ``base`` is the file offset of ``data[0]`` (for error messages).
    """
    view = memoryview(data)
    pos, seq, out = ref.offset + HEADER_SIZE, ref.first_seq, []
    try:
        while pos < ref.end:
            size, source_len, position = _PART.unpack_from(view, pos)
            pos += _PART.size
            source = bytes(view[pos:pos + source_len]).decode("utf-8") if source_len else None
            pos += source_len
            payload = pa.py_buffer(view[pos:pos + size])
            if payload.address % 64:  # columns must be aligned for Arrow's compute engine
                payload = pa.allocate_buffer(size, memory_pool=pa.system_memory_pool())
                memoryview(payload).cast("B")[:] = view[pos:pos + size]
            table = pa.ipc.open_stream(payload).read_all()
            pos += size
            stamp = pa.Array.from_buffers(pa.int64(), table.num_rows, [None, pa.py_buffer(
                np.arange(seq, seq + table.num_rows, dtype=np.int64))])  # (pa.array imports pandas)
            out.append(Part(table.add_column(0, SEQ, stamp), source,
                            position if source is not None else None))
            seq += table.num_rows
    except (pa.ArrowException, struct.error, UnicodeDecodeError) as exc:
        raise CorruptionError(f"WAL frame unreadable: {exc}", path=str(path),
                              offset=base + ref.offset) from exc
    if pos != ref.end or seq != ref.first_seq + ref.rows:
        raise CorruptionError("WAL frame row count mismatch", path=str(path),
                              offset=base + ref.offset)
    return out


# ------------------------------------------------------------------ writing


@dataclass
class PendingFrame:
    """One append's part of a frame: its IPC payload, rows, first ``_seq``, and the
    source and position it commits, if any."""

    payload: pa.Buffer
    rows: int
    first_seq: int = -1
    source: str | None = None
    position: int | None = None


@dataclass
class _Failure:
    offset: int
    reason: str
    cause: BaseException | None = field(default=None)


class WalWriter:
    """Appends frames durably; rotates to a new file when a memtable is sealed.

    Args:
        fs: the file system every write goes through.
        directory: the ``wal/`` directory (exists).
        durability: ``"group"`` (fsync each write), ``"interval"`` (fsync at most
            every ``fsync_interval_s``, also from a background thread) or ``"none"``.
        first_seq: ``_seq`` of the next event; names a new file.
        current: an existing last file to continue (its torn tail already cut).
        now_ns: the wall clock that stamps frames.
    """

    durable = True

    def __init__(self, fs: FileSystem, directory: Path, durability: str,
                 fsync_interval_s: float, first_seq: int, *, current: Path | None = None,
                 now_ns: Callable[[], int] = time.time_ns) -> None:
        self.fs = fs
        self.directory = directory
        self.durability = durability
        self.fsync_interval_s = fsync_interval_s
        self._now_ns = now_ns
        self._lock = threading.Lock()
        self._failure: _Failure | None = None
        self._dirty = False
        self._last_sync = time.monotonic()
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        self.sync_error: BaseException | None = None
        self.on_error: Callable[[str, BaseException], None] | None = None
        self.fsync_durations = Durations()
        path = current if current is not None else directory / file_name(first_seq)
        self._log: LogFile = self._open(path)
        if durability == "interval":
            self._syncer = threading.Thread(target=self._sync_loop, name="tidal-wal-sync",
                                            daemon=True)
            self._syncer.start()

    def _open(self, path: Path) -> LogFile:
        try:
            return self.fs.open_log(path)
        except OSError as exc:
            raise StorageError(f"cannot open WAL file: {exc}", path=str(path)) from exc

    @property
    def path(self) -> Path:
        """The file being appended to."""
        return self._log.path

    def write(self, frames: Sequence[PendingFrame]) -> int:
        """Write ``frames`` (``first_seq`` set, consecutive) as one frame with one write;
        durable per the policy on return.

        Returns the bytes written. Raises :class:`StorageError` when the bytes
        could not be made durable; none of them then count as written.
        """
        buffers = frame_buffers(frames, self._now_ns())
        with self._lock:
            self._heal()
            start = self._log.size
            try:
                self._log.write(buffers)
                self._finish_write()
            except OSError as exc:
                self._cut(start, exc)
                raise StorageError(f"WAL write failed, nothing of it was stored: {exc}",
                                   path=str(self._log.path)) from exc
            return self._log.size - start

    def write_stream(self, parts: Iterable[PendingFrame]) -> int:
        """Write ``parts`` (``first_seq`` set, consecutive) as one frame while they are
        still being made: each part is written (and checksummed) on a helper thread
        while the caller's iterator makes the next. Durable per the policy on return.

        The frame's header goes in last, over a placeholder of zeros, so until
        then the frame is a torn tail that recovery cuts off: all of it counts
        or none. Whatever ``parts`` raises is re-raised after the bytes written
        so far are cut off again. Returns the bytes written (0 for no parts).
        """
        with self._lock:
            self._heal()
            start = self._log.size
            writer = _PartWriter(self._log, sync=self._sync if self.durability == "group"
                                 else None)
            try:
                for part in parts:
                    if not writer.parts:
                        self._log.write([bytes(HEADER_SIZE)])
                    writer.submit(part)
                writer.wait()
                if not writer.parts:
                    return 0
                header = _frame_header(writer.size, writer.first_seq, writer.rows,
                                       self._now_ns(), writer.crc)
                self._log.write_at(start, header)
                self._finish_write()
            except BaseException as exc:
                writer.wait(quietly=True)
                self._cut(start, exc)
                if isinstance(exc, OSError):
                    raise StorageError(f"WAL write failed, nothing of it was stored: {exc}",
                                       path=str(self._log.path)) from exc
                raise
            return self._log.size - start

    def _finish_write(self) -> None:
        """Make what was just written durable, as the policy says."""
        if self.durability == "group":
            self._sync(self._log)
        else:
            self._dirty = True
            if (self.durability == "interval"
                    and time.monotonic() - self._last_sync >= self.fsync_interval_s):
                self._sync_locked()

    def _sync(self, log: LogFile) -> None:
        """fsync ``log``, counted in :attr:`fsync_durations`."""
        self.fsync_durations.timed(log.sync)

    def _cut(self, offset: int, cause: BaseException) -> None:
        """Remove a failed write's bytes; if that fails too, refuse writes until it works."""
        try:
            self._log.truncate(offset)
            self._failure = None
        except OSError as exc:
            self._failure = _Failure(offset, str(exc), cause)

    def _heal(self) -> None:
        """Retry cutting a failed write before writing anything after it."""
        failure = self._failure
        if failure is None:
            return
        try:
            self._log.truncate(failure.offset)
        except OSError as exc:
            raise StorageError(f"WAL is unusable until a failed write is removed "
                               f"(first failure: {failure.reason}; now: {exc})",
                               path=str(self._log.path)) from exc
        self._failure = None

    def _sync_locked(self) -> None:
        if self._dirty:
            self._sync(self._log)
        self._dirty = False
        self._last_sync = time.monotonic()

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.fsync_interval_s):
            with self._lock:
                try:
                    self._sync_locked()
                except OSError as exc:  # acknowledged (interval) writes may be lost: say so
                    self.sync_error = exc
                    if self.on_error is not None:
                        self.on_error("WAL fsync", exc)

    def rotate(self, first_seq: int) -> None:
        """Continue in a new file for events from ``first_seq`` on.

        The old file is synced first. If the new file cannot be created, the
        old one stays current and :class:`StorageError` is raised.
        """
        with self._lock:
            self._heal()
            try:
                self._sync_locked()
            except OSError as exc:
                raise StorageError(f"WAL fsync failed: {exc}", path=str(self._log.path)) from exc
            fresh = self._open(self.directory / file_name(first_seq))
            old, self._log = self._log, fresh
            old.close()

    def drop_before(self, first_seq: int) -> None:
        """Delete the files that hold only events below ``first_seq``.

        Call only once a manifest covering those events is durable.
        """
        files = wal_files(self.directory)
        doomed = [path for (_, path), (next_first, _) in zip(files, files[1:], strict=False)
                  if next_first <= first_seq and path != self._log.path]
        if doomed:
            self.fs.remove(doomed)

    def size_bytes(self) -> int:
        """Bytes held in WAL files (a file dropped meanwhile counts as empty)."""
        total = 0
        for _, path in wal_files(self.directory):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                continue
        return total

    def close(self) -> None:
        """Sync and close; stops the interval syncer."""
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join()
            self._syncer = None
        with self._lock:
            try:
                self._heal()  # a failed write must not be left for the next open to replay
                self._sync_locked()
            except OSError as exc:
                raise StorageError(f"WAL could not be synced at close: {exc}",
                                   path=str(self._log.path)) from exc
            finally:
                self._log.close()


class _PartWriter:
    """Writes the parts of one streamed frame in order on a thread of its own, so the
    next part is made while the last one is written; keeps the frame's totals."""

    def __init__(self, log: LogFile, *, sync: Callable[[LogFile], None] | None) -> None:
        self.log = log
        self.sync = sync  # each part, so that the last fsync has little left to do
        self.parts = 0
        self.size = self.rows = self.crc = 0
        self.first_seq = -1
        self._pending: Future[None] | None = None

    def submit(self, part: PendingFrame) -> None:
        """Queue ``part`` after the one before (waits for that one first)."""
        self.wait()
        if not self.parts:
            self.first_seq = part.first_seq
        self.parts += 1
        self.rows += part.rows
        head = _part_head(part)
        self.size += len(head) + part.payload.size
        self._pending = _writer_pool().submit(self._write, head, part.payload)

    def _write(self, head: bytes, payload: pa.Buffer) -> None:
        self.crc = zlib.crc32(memoryview(payload), zlib.crc32(head, self.crc))
        self.log.write([head, payload])
        if self.sync is not None:
            self.sync(self.log)

    def wait(self, *, quietly: bool = False) -> None:
        """Wait for the part being written; its error is raised unless ``quietly``."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            pending.result()
        except BaseException:
            if not quietly:
                raise


@functools.cache
def _writer_pool() -> ThreadPoolExecutor:
    """One thread that writes streamed parts (a WAL writes one streamed frame at a
    time: its lock is held throughout)."""
    return ThreadPoolExecutor(1, thread_name_prefix="tidal-wal-part")


os.register_at_fork(after_in_child=_writer_pool.cache_clear)  # its thread is not forked
