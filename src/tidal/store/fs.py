"""The store's one door to files that must survive a power cut.

Every file the store writes goes through a :class:`FileSystem`: a whole file
is written under a temporary name, fsynced, renamed into place and its
directory fsynced (:meth:`FileSystem.write_atomic`); a log is appended to,
a frame's header may be written over once its payload is in, and the caller
fsyncs (:class:`LogFile`); a delete is followed by an fsync of its directory
(:meth:`FileSystem.remove`). Nothing else in the store writes, renames or
deletes a store file its own way, so a test can substitute a recorder that
replays what a power cut may leave (see ``tests/store/powercut.py``).

Reads do not go through here: a power cut changes what is on disk, not how it
is read.

Commit order, which callers keep: segment files (data, then index) are durable
before the manifest that lists them; the manifest is durable before the WAL
files it makes redundant are deleted.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa

TMP_SUFFIX = ".tmp"
_MAX_WRITE = 1 << 30  # one write(2) moves at most ~2 GiB; stay well below
_MAX_BUFFERS = 512  # below IOV_MAX (1024 on Linux)


class OutcomeUnknown(OSError):  # noqa: N818 - it is the outcome that is unknown
    """Files were renamed into place but their directory could not be fsynced: after a
    power cut they may be there or not. Whatever depends on them must not be undone
    (nor deleted) on the assumption that they are gone."""


class LogFile:
    """An append-only file: :meth:`write` then :meth:`sync` makes bytes durable.

    Args:
        path: the file.
        fd: an open descriptor (``O_WRONLY | O_APPEND``) positioned at its end.
        size: its current size in bytes.
    """

    def __init__(self, path: Path, fd: int, size: int) -> None:
        self.path = path
        self.size = size
        self._fd = fd
        self._at_fd = -1  # for write_at: an O_APPEND descriptor ignores offsets

    def write(self, buffers: Sequence[bytes | memoryview | pa.Buffer]) -> None:
        """Append ``buffers`` whole, looping over short writes.

        Raises :class:`OSError` when the kernel refuses (``ENOSPC``, ``EIO``);
        the file may then hold part of the bytes: the caller truncates.
        """
        views = [memoryview(b).cast("B") for b in buffers if len(b)]
        while views:
            batch: list[memoryview] = []
            total = 0
            for view in views:  # writev takes a bounded number of bytes per call
                if batch and (total + len(view) > _MAX_WRITE or len(batch) == _MAX_BUFFERS):
                    break
                batch.append(view[:_MAX_WRITE])
                total += len(batch[-1])
            written = os.writev(self._fd, batch)
            if written <= 0:
                raise OSError(errno.EIO, "write made no progress", str(self.path))
            self.size += written
            while written:
                if written >= len(views[0]):
                    written -= len(views[0])
                    views.pop(0)
                else:
                    views[0] = views[0][written:]
                    written = 0

    def write_at(self, offset: int, data: bytes) -> None:
        """Write ``data`` over bytes already appended, at ``offset`` (not yet synced).

        Raises :class:`OSError` as :meth:`write` does.
        """
        if offset < 0 or offset + len(data) > self.size:
            raise ValueError(f"write_at({offset}, {len(data)} bytes) is outside the "
                             f"{self.size} bytes written")
        if self._at_fd < 0:
            self._at_fd = os.open(self.path, os.O_WRONLY)
        view = memoryview(data).cast("B")
        while view:
            written = os.pwrite(self._at_fd, view, offset)
            if written <= 0:
                raise OSError(errno.EIO, "write made no progress", str(self.path))
            view, offset = view[written:], offset + written

    def sync(self) -> None:
        """fsync the file's data."""
        os.fsync(self._fd)

    def truncate(self, size: int) -> None:
        """Cut the file back to ``size`` bytes and make that durable."""
        os.ftruncate(self._fd, size)
        os.fsync(self._fd)
        self.size = size

    def close(self) -> None:
        """Close the descriptors (does not sync)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._at_fd >= 0:
            os.close(self._at_fd)
            self._at_fd = -1


class FileSystem:
    """Durable file operations on the real disk. See the module docstring."""

    def make_dirs(self, path: Path) -> None:
        """Create ``path`` and missing parents; each new entry is made durable."""
        missing: list[Path] = []
        probe = path
        while not probe.exists():
            missing.append(probe)
            if probe.parent == probe:
                break
            probe = probe.parent
        for directory in reversed(missing):
            try:
                directory.mkdir()
            except FileExistsError:
                continue
            self.sync_dir(directory.parent)

    def write_atomic(self, path: Path, data: bytes | memoryview | pa.Buffer) -> None:
        """Replace ``path`` with ``data``: temp file, fsync, rename, fsync the directory."""
        self.write_files_atomic([(path, data)])

    def write_files_atomic(self, files: Sequence[tuple[Path, bytes | memoryview | pa.Buffer]]
                           ) -> None:
        """Write each ``(path, data)`` under a temp name and fsync it, then rename them
        all into place and fsync their directories once.

        On failure the temporary files are removed; files already renamed stay
        (they are not yet referenced by anything durable).
        """
        written: list[tuple[Path, Path]] = []
        try:
            for path, data in files:
                tmp = path.with_name(path.name + TMP_SUFFIX)
                written.append((tmp, path))
                self._write_synced(tmp, data)
            for tmp, path in written:
                os.replace(tmp, path)
        except BaseException:
            for tmp, _ in written:
                tmp.unlink(missing_ok=True)
            raise
        try:
            for directory in dict.fromkeys(path.parent for _, path in written):
                self.sync_dir(directory)
        except OSError as exc:
            raise OutcomeUnknown(exc.errno, f"renamed, but the directory could not be "
                                            f"synced: {exc.strerror}", exc.filename) from exc

    def _write_synced(self, path: Path, data: bytes | memoryview | pa.Buffer) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            log = LogFile(path, fd, 0)
            log.write([data])
            log.sync()
        finally:
            os.close(fd)

    def open_log(self, path: Path) -> LogFile:
        """Open ``path`` for appending; a new file's directory entry is made durable."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                self.sync_dir(path.parent)
        except BaseException:
            os.close(fd)
            raise
        return LogFile(path, fd, size)

    def truncate(self, path: Path, size: int) -> None:
        """Cut ``path`` back to ``size`` bytes, durably."""
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self, paths: Iterable[Path]) -> None:
        """Delete files (missing ones are fine), then fsync each directory touched."""
        directories: dict[Path, None] = {}
        for path in paths:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            directories[path.parent] = None
        for directory in directories:
            self.sync_dir(directory)

    def sync_dir(self, path: Path) -> None:
        """fsync a directory, so the creates, renames and deletes in it are durable."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


OS_FILES = FileSystem()
"""The real disk; what every store uses unless a test substitutes a recorder."""
