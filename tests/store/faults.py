"""Fault injection for the store's file layer: real files, with chosen failures.

:class:`FaultyFiles` is the real :class:`~tidal.store.fs.FileSystem` (every
byte goes to disk) whose logs and atomic writes fail the way a full or broken
disk fails: a write that stops short after a byte budget and then raises
``ENOSPC``, an ``fsync`` that raises ``EIO``, a ``truncate`` that raises, a
file creation that raises ``ENOSPC`` (out of inodes). Each fault is armed by
setting a field and fires as often as its counter says.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from tidal.store.fs import FileSystem, LogFile


class FaultyLog(LogFile):
    """A log file whose writes, syncs and truncates obey its :class:`FaultyFiles`."""

    def __init__(self, files: FaultyFiles, path: Path, fd: int, size: int) -> None:
        super().__init__(path, fd, size)
        self.files = files

    def write(self, buffers: Sequence[bytes | memoryview | pa.Buffer]) -> None:
        budget = self.files.space_bytes
        if budget is None:
            super().write(buffers)
            return
        data = b"".join(bytes(memoryview(b)) for b in buffers)
        take = min(budget, len(data))
        if take:
            written = os.write(self._fd, data[:take])  # a real short write
            self.size += written
            self.files.space_bytes = budget - written
        if take < len(data):
            raise OSError(errno.ENOSPC, "No space left on device (injected)", str(self.path))

    def sync(self) -> None:
        if self.files.fail_syncs:
            self.files.fail_syncs -= 1
            raise OSError(errno.EIO, "Input/output error (injected)", str(self.path))
        super().sync()

    def truncate(self, size: int) -> None:
        if self.files.fail_truncates:
            self.files.fail_truncates -= 1
            raise OSError(errno.EIO, "Input/output error (injected)", str(self.path))
        if self.files.space_bytes is not None:
            self.files.space_bytes += max(0, self.size - size)
        super().truncate(size)


class FaultyFiles(FileSystem):
    """The real file system with armed faults.

    Attributes:
        space_bytes: bytes log writes may still add (None: unlimited); a
            write beyond it writes what fits, then raises ``ENOSPC``.
        fail_syncs: how many log fsyncs raise ``EIO``.
        fail_truncates: how many log truncates raise ``EIO``.
        fail_creates: how many new files (logs or atomic writes) raise ``ENOSPC``.
        fail_atomic_writes: how many atomic writes (segments, manifest) raise ``ENOSPC``.
        fail_manifest_writes: how many manifest commits raise ``ENOSPC``.
        fail_dir_syncs: how many directory fsyncs of the store's root raise ``EIO`` (the
            manifest's rename then happened, but its durability is unknown).
        hold_segment_writes: cleared, atomic writes (segments, manifest) wait
            until it is set again: a flush that takes as long as the test wants.
    """

    def __init__(self) -> None:
        self.space_bytes: int | None = None
        self.fail_syncs = 0
        self.fail_truncates = 0
        self.fail_creates = 0
        self.fail_atomic_writes = 0
        self.fail_manifest_writes = 0
        self.fail_dir_syncs = 0
        self.hold_segment_writes = threading.Event()
        self.hold_segment_writes.set()

    def _create_fault(self, path: Path) -> None:
        if self.fail_creates and not path.exists():
            self.fail_creates -= 1
            raise OSError(errno.ENOSPC, "No space left on device (injected)", str(path))

    def sync_dir(self, path: Path) -> None:
        if self.fail_dir_syncs and (path / "MANIFEST.json").exists():
            self.fail_dir_syncs -= 1
            raise OSError(errno.EIO, "Input/output error (injected)", str(path))
        super().sync_dir(path)

    def open_log(self, path: Path) -> LogFile:
        self._create_fault(path)
        log = super().open_log(path)
        return FaultyLog(self, log.path, log._fd, log.size)

    def write_files_atomic(self, files: Sequence[tuple[Path, bytes | memoryview | pa.Buffer]]
                           ) -> None:
        self.hold_segment_writes.wait()
        if self.fail_atomic_writes:
            self.fail_atomic_writes -= 1
            raise OSError(errno.ENOSPC, "No space left on device (injected)", str(files[0][0]))
        if self.fail_manifest_writes and files[0][0].name == "MANIFEST.json":
            self.fail_manifest_writes -= 1
            raise OSError(errno.ENOSPC, "No space left on device (injected)", str(files[0][0]))
        for path, _ in files:
            self._create_fault(path)
        super().write_files_atomic(files)
