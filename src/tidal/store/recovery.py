"""Opening a store directory: the manifest, the sweep, and the WAL replay.

:func:`recover` is what a writer does on open, under the store lock: verify
the manifest, delete the store's own orphan files, read every WAL frame
above the manifest's ``flushed_seq``, cut a torn tail, and check that the
events form one unbroken ``_seq`` range. :class:`LogTail` reads the WAL
incrementally, for a writer's recovery and for read-only opens that follow a
live writer (whose frames may be half written at the end).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa

from tidal.errors import CorruptionError
from tidal.store import layout
from tidal.store import manifest as manifest_io
from tidal.store.fs import FileSystem
from tidal.store.manifest import Manifest
from tidal.store.wal import Damage, decode_frame, file_name, scan, wal_files


@dataclass(frozen=True)
class Replayed:
    """One append read back from the WAL: its events (``_seq``-stamped, maybe none),
    when it was written, and the source position it committed, if any."""

    table: pa.Table
    written_ns: int
    source: str | None = None
    position: int | None = None


@dataclass
class Recovered:
    """What a writer's open found on disk."""

    manifest: Manifest
    frames: list[Replayed]
    next_seq: int
    torn_tail: Damage | None
    current_wal: Path | None  # the last WAL file, to continue appending to
    removed: list[str] = field(default_factory=list)  # orphan files swept


def _in_lost(manifest: Manifest, first: int, last: int) -> bool:
    return any(a <= first and last <= b for a, b in manifest.lost)


class LogReset(Exception):  # noqa: N818 - a signal, not an error for users
    """A WAL file shrank or was replaced under a reader: read everything again."""


class LogTail:
    """Reads WAL frames holding events above a ``_seq``, picking up where it left off.

    Files whose events are all at or below the manifest's ``flushed_seq`` are
    not read at all (a flush may have left them behind). A reader following a
    live writer remembers each file's identity and size: if a file shrinks (the
    writer cut off a write that failed) or is replaced, :meth:`read` raises
    :class:`LogReset`, and the reader starts over with a fresh ``LogTail``.

    Args:
        directory: the ``wal/`` directory.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._read_upto: dict[Path, tuple[int, int]] = {}  # path -> (inode, offset)
        self.next_seq: int | None = None

    def read(self, manifest: Manifest, *, final: bool,
             on_torn: Callable[[Damage], None] | None = None) -> list[Replayed]:
        """New events above what was read before (and above ``manifest.flushed_seq``).

        ``final``: no writer is active, so a damaged end of the last file is a
        torn tail (reported through ``on_torn``) rather than a frame still
        being written. Damage anywhere else raises :class:`CorruptionError`, as
        does a gap in ``_seq`` not recorded in ``manifest.lost`` or a frame
        that repeats ``_seq`` values.
        """
        after = manifest.flushed_seq
        expected = max(self.next_seq if self.next_seq is not None else after + 1, after + 1)
        files = wal_files(self.directory)
        out: list[Replayed] = []
        for i, (_, path) in enumerate(files):
            if i + 1 < len(files) and files[i + 1][0] <= after + 1:
                continue  # every event here is in segments already
            read = self._read_file(path, manifest, expected, last=i == len(files) - 1,
                                   final=final, on_torn=on_torn)
            if read is None:
                continue
            replayed, expected = read
            out += replayed
        self.next_seq = expected
        for gone in set(self._read_upto) - {path for _, path in files}:
            del self._read_upto[gone]
        return out

    def probe(self) -> tuple[object, ...] | None:
        """Cheap evidence of new frames, equal between two calls only if no frame came:
        the identity and size of the last file read, and whether the file a rotation
        would start next (named after the next ``_seq``) exists. None before any
        file was read."""
        if not self._read_upto or self.next_seq is None:
            return None
        last = max(self._read_upto)  # names sort by first _seq (zero-padded)
        try:
            st = os.stat(last)
            size: tuple[int, int] | None = (st.st_ino, st.st_size)
        except FileNotFoundError:
            size = None
        return last, size, os.path.exists(self.directory / file_name(self.next_seq))

    def _read_file(self, path: Path, manifest: Manifest, expected: int, *, last: bool,
                   final: bool, on_torn: Callable[[Damage], None] | None
                   ) -> tuple[list[Replayed], int] | None:
        try:
            with path.open("rb") as fh:
                st = os.fstat(fh.fileno())
                inode, start = self._read_upto.get(path, (st.st_ino, 0))
                if inode != st.st_ino or st.st_size < start:
                    raise LogReset(str(path))
                fh.seek(start)
                data = fh.read()
        except FileNotFoundError:
            return None  # dropped after a flush covered it
        frames, damage = scan(data, path)
        if damage is not None:
            damage = replace(damage, offset=start + damage.offset,
                             file_bytes=start + damage.file_bytes,
                             next_frame=None if damage.next_frame is None
                             else start + damage.next_frame)
            if not last or damage.next_frame is not None:
                where = "with intact frames after it" if last else "in an older WAL file"
                raise CorruptionError(
                    f"WAL damaged ({damage.reason}) {where}; acknowledged events may follow "
                    f"it (open with repair=True or run `tidal repair` to salvage)",
                    path=str(path), offset=damage.offset)
            if final and on_torn is not None:
                on_torn(damage)
        out: list[Replayed] = []
        for ref in frames:
            if ref.last_seq < expected and (ref.rows or ref.first_seq < expected):
                continue  # (a frame of positions only, at ``expected``, is still new)
            if ref.first_seq > expected and not _in_lost(manifest, expected,
                                                          ref.first_seq - 1):
                raise CorruptionError(
                    f"WAL gap: expected _seq {expected}, found {ref.first_seq} "
                    f"(events {expected}..{ref.first_seq - 1} are missing)",
                    path=str(path), offset=start + ref.offset)
            if manifest.flushed_seq < ref.first_seq < expected:
                raise CorruptionError(
                    f"WAL frames repeat _seq {ref.first_seq}..{expected - 1}",
                    path=str(path), offset=start + ref.offset)
            seq = ref.first_seq
            for part in decode_frame(data, ref, path, base=start):
                table, first = part.table, seq
                seq += table.num_rows
                if table.num_rows and seq <= expected:
                    continue  # in segments already (its position is in the manifest)
                skip = max(0, expected - first)
                out.append(Replayed(table.slice(skip) if skip else table, ref.written_ns,
                                    part.source, part.position))
            expected = max(expected, ref.last_seq + 1)
        self._read_upto[path] = (st.st_ino, start + frames[-1].end if frames else start)
        return out, expected


def recover(fs: FileSystem, directory: Path, *, sweep: bool = True) -> Recovered:
    """Open an existing store for writing (the caller holds the store lock)."""
    manifest = manifest_io.load(directory)
    fs.make_dirs(directory / layout.SEGMENTS)
    fs.make_dirs(directory / layout.WAL)
    removed: list[str] = []
    if sweep:
        live = {name for s in manifest.segments for name in (s.data_name, s.index_name)}
        doomed = layout.orphans(directory, live)
        fs.remove(doomed)
        removed = [str(p) for p in doomed]
    torn: list[Damage] = []
    tail = LogTail(directory / layout.WAL)
    frames = tail.read(manifest, final=True, on_torn=torn.append)
    current = None
    files = wal_files(directory / layout.WAL)
    if torn:
        fs.truncate(Path(torn[0].path), torn[0].offset)
    next_seq = tail.next_seq if tail.next_seq is not None else manifest.flushed_seq + 1
    if files:
        first_seq, path = files[-1]
        if first_seq <= next_seq:
            current = path
        elif path.stat().st_size == 0:  # created by a rotation whose events never came
            fs.remove([path])
    return Recovered(manifest, frames, next_seq, torn[0] if torn else None, current, removed)
