"""Files ingested once: each file's identity and position live in the store.

A file is known by its *identity*: device, inode, and a hash of its first
bytes (1 KiB, or the whole file when it was smaller). That identity (with the
path, for people reading ``tidal stats``) is the append's ``source``, and the
byte offset just after the last whole line stored is its ``position``, so a
line and the position past it commit together. Running ``tidal ingest`` again
on a file that grew stores only the new lines; a file whose head changed
(rotated: a new file at the path; or truncated and rewritten) starts from the
top, and the result says so. A line is only taken once it ends with a newline:
an unfinished last line waits for the next run.

Compressed files and formats that are not line by line (JSON arrays, CSV,
Parquet, Arrow) are positioned per whole file: their identity hashes all of
it, so an unchanged file is skipped and a changed one is ingested anew.

:class:`FileTail` follows one path as ``tail -F`` does (rotation, truncation,
a file that appears later); :func:`follow_files` drives a set of them.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from tidal.errors import ConfigError, IngestError

if TYPE_CHECKING:
    from tidal.api import Receipt, Store
    from tidal.ingest.pipeline import OnError

HEAD_BYTES = 1024
WHOLE_FILE_BYTES = 256 << 20
"""Line-by-line files below this size are appended whole (one all-or-nothing append)."""
CHUNK_BYTES = 64 << 20
"""Larger ones go in chunks of about this size, cut at line ends, one append each."""
MAX_PATH_IN_SOURCE = 800
_PREFIX = "file:"
ROTATED_IDLE_S = 5.0
"""A rotated file is read until it has not grown for this long (or is gone)."""
_COMPRESSED = (".gz", ".zst", ".zstd")
_KNOWN = (".json", ".csv", ".parquet", ".arrow", ".ipc", ".feather", ".arrows")


@dataclass(frozen=True)
class Identity:
    """What makes a file the same file: where it lives on disk and how it begins.

    ``generation`` tells apart the lives of one file truncated and written
    again with the same first bytes.
    """

    device: int
    inode: int
    head_bytes: int
    head_hash: str
    generation: int = 0

    def source(self, path: Path) -> str:
        """The store source of this file, first read at ``path`` (the path is there for
        people reading ``tidal stats``; a file is found again by its identity alone)."""
        return (f"{_PREFIX}{self.device}:{self.inode}:{self.head_bytes}:{self.head_hash}:"
                f"{self.generation}:{_shown(path)}")

    @classmethod
    def parse(cls, source: str) -> tuple[Identity, str] | None:
        """The identity and path of a file source; None for other sources."""
        if not source.startswith(_PREFIX):
            return None
        parts = source[len(_PREFIX):].split(":", 5)
        if len(parts) != 6:
            return None
        try:
            device, inode, head, generation = (int(parts[i]) for i in (0, 1, 2, 4))
        except ValueError:
            return None
        return cls(device, inode, head, parts[3], generation), parts[5]


def _shown(path: Path) -> str:
    """``path`` as text for a source name: any bytes, bounded length."""
    shown = os.fsencode(path).decode("utf-8", "backslashreplace")
    if len(shown.encode("utf-8")) > MAX_PATH_IN_SOURCE:
        shown = "..." + shown[-MAX_PATH_IN_SOURCE // 4:]
    return shown


def _hash(fh: BinaryIO, nbytes: int) -> str:
    """Hash of the first ``nbytes`` bytes of ``fh`` (which it reads from the start)."""
    digest = hashlib.blake2b(digest_size=8)
    fh.seek(0)
    left = nbytes
    while left > 0 and (block := fh.read(min(left, 1 << 20))):
        digest.update(block)
        left -= len(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Resume:
    """Where to go on in a file: the source to append under, the offset to read
    from, and what happened to the file, if anything worth saying."""

    source: str
    offset: int
    note: str | None = None


def resume(positions: dict[str, int], path: Path, fh: BinaryIO, *, whole: bool) -> Resume:
    """Find ``fh``'s identity among the store's ``positions`` and where to go on.

    The file is recognised by device, inode and the hash of its first bytes,
    whatever path it is read at (a rotated ``app.log.1``, a symlink, a relative
    spelling); the furthest position recorded for it wins. A line-by-line file
    must still end a line where its position stands, or it was rewritten.
    ``whole``: the file is positioned as a whole (its identity hashes all of it).
    """
    st = os.fstat(fh.fileno())
    mine = f"{_PREFIX}{st.st_dev}:{st.st_ino}:"
    known: dict[Identity, tuple[int, str]] = {}
    for source, offset in positions.items():
        parsed = Identity.parse(source) if source.startswith(mine) else None
        if parsed is not None and offset >= known.get(parsed[0], (-1, ""))[0]:
            known[parsed[0]] = (offset, source)
    newest = max((i.generation for i in known), default=-1)
    for identity in sorted(known, key=lambda i: -i.generation):
        offset, source = known[identity]
        if identity.head_bytes > st.st_size or _hash(fh, identity.head_bytes) != (
                identity.head_hash) or (whole and identity.head_bytes != st.st_size):
            continue
        if offset <= st.st_size and (whole or offset == 0 or _byte_at(fh, offset - 1) == b"\n"):
            return Resume(source, offset)
        return _fresh(fh, path, st, whole, newest + 1,
                      "was truncated or rewritten: ingesting it again from the top")
    note = None
    if known:
        note = ("changed: ingesting it again" if whole
                else "was truncated or rewritten: ingesting it again from the top")
    elif any(parsed[1] == _shown(path) for source in positions
             if (parsed := Identity.parse(source)) is not None):
        note = "is a new file at this path (rotated): ingesting it from the top"
    return _fresh(fh, path, st, whole, newest + 1, note)


def _fresh(fh: BinaryIO, path: Path, st: os.stat_result, whole: bool, generation: int,
           note: str | None) -> Resume:
    """A new identity for ``fh``, read from the top."""
    head = st.st_size if whole else min(HEAD_BYTES, st.st_size)
    identity = Identity(st.st_dev, st.st_ino, head, _hash(fh, head), max(generation, 0))
    return Resume(identity.source(path), 0, note)


def _byte_at(fh: BinaryIO, offset: int) -> bytes:
    fh.seek(offset)
    return fh.read(1)


# ------------------------------------------------------------------ one pass


@dataclass
class FileResult:
    """What ingesting one file did.

    Attributes:
        count: events stored.
        rejected: bad lines skipped (``on_error="skip"``).
        dead_letter: where they went.
        skipped_bytes: bytes already stored by an earlier run, not read again.
        waiting_bytes: an unfinished last line (no newline yet), left for later.
        notes: what happened to the file (rotated, truncated, already ingested).
    """

    count: int = 0
    rejected: int = 0
    dead_letter: str | None = None
    skipped_bytes: int = 0
    waiting_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, receipt: Receipt | FileResult) -> None:
        """Add one append's receipt (or another result)."""
        self.count += receipt.count
        self.rejected += receipt.rejected
        self.dead_letter = self.dead_letter or receipt.dead_letter
        if isinstance(receipt, FileResult):
            self.skipped_bytes += receipt.skipped_bytes
            self.waiting_bytes += receipt.waiting_bytes
            self.notes += receipt.notes


def _may_be_lines(path: Path) -> bool:
    """Whether ``path``'s name allows NDJSON (unknown names are looked at when opened)."""
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1][1:].isdigit():
        suffixes.pop()
    return not (suffixes and suffixes[-1] in _COMPRESSED + _KNOWN)


def line_by_line(path: Path, fmt: str | None, fh: BinaryIO | None = None) -> bool:
    """Whether ``path`` is ingested line by line (uncompressed NDJSON).

    Rotation suffixes (``app.ndjson.1``) are looked through; a file named in
    no known format (``app.log``) is NDJSON when it starts with ``{``.
    """
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1][1:].isdigit():
        suffixes.pop()
    if suffixes and suffixes[-1] in _COMPRESSED:
        return False
    if fmt is not None:
        return fmt.lower() in ("ndjson", "jsonl")
    if suffixes and suffixes[-1] in (".ndjson", ".jsonl"):
        return True
    if suffixes and suffixes[-1] in _KNOWN:
        return False
    if fh is None:
        return False
    fh.seek(0)
    return fh.read(4096).lstrip().startswith(b"{")


def whole_lines(fh: BinaryIO, start: int, chunk_bytes: int) -> Iterator[tuple[bytes, int]]:
    """``(chunk, offset after it)`` for the whole lines of ``fh`` from ``start``.

    Each chunk holds about ``chunk_bytes`` and ends at a newline (a longer line
    stays whole); bytes after the last newline are not returned.
    """
    fh.seek(start)
    carry, offset = b"", start
    while block := fh.read(chunk_bytes):
        data = carry + block
        cut = data.rfind(b"\n") + 1
        if cut:
            offset += cut
            yield data[:cut], offset
        carry = data[cut:]


def ingest_file(store: Store, path: Path, *, fmt: str | None = None,
                on_error: OnError = "reject", advance: Callable[[int], None] = lambda n: None,
                whole_below: int = WHOLE_FILE_BYTES, chunk_bytes: int = CHUNK_BYTES
                ) -> FileResult:
    """Append what ``path`` holds beyond what the store has of it; see the module docstring.

    ``advance(nbytes)`` reports progress. A line-by-line file below
    ``whole_below`` bytes of new lines is one all-or-nothing append; a larger
    one goes in chunks of about ``chunk_bytes``, each committing its lines and
    the position after them, so a bad line (``on_error="reject"``) refuses its
    own chunk while earlier chunks stay stored, and the error says how many
    events were. Line numbers in errors count from the start of the file.
    """
    result = FileResult()
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        whole = not line_by_line(path, fmt, fh)
        if size == 0:
            return result
        where = resume(store.positions(), path, fh, whole=whole)
        source = where.source
        if where.note:
            result.notes.append(f"{path} {where.note}")
        result.skipped_bytes = where.offset
        advance(where.offset)
        if whole:
            if where.offset == size:
                result.notes.append(f"{path} was ingested already")
                return result
            try:
                result.add(store.append(path, format=fmt, on_error=on_error, source=source,
                                        position=size))
            except IngestError as exc:
                exc.source = exc.source or str(path)
                raise
            advance(size)
            return result
        step = max(chunk_bytes, size) if size - where.offset < whole_below else chunk_bytes
        done = where.offset
        for chunk, offset in whole_lines(fh, where.offset, step):
            try:
                result.add(store.append(chunk, format="ndjson", on_error=on_error,
                                        source=source, position=offset))
            except IngestError as exc:
                raise _shifted(exc, fh, path, done, result.count) from exc
            advance(offset - done)
            done = offset
        result.waiting_bytes = max(0, size - done)
    return result


def _shifted(exc: IngestError, fh: BinaryIO, path: Path, offset: int,
             stored: int) -> IngestError:
    """``exc`` with line numbers counted from the file's start, and what was stored."""
    lines_before = _lines_before(fh, offset)
    problems = [replace(p, line=p.line + lines_before) for p in exc.problems]
    error = type(exc)(f"{path}: rejected", problems=problems, source=str(path))
    if stored:
        error.add_note(f"lines {lines_before + 1} on were not stored, "
                       f"but the {stored:,} events before them were")
    return error


def _lines_before(fh: BinaryIO, offset: int) -> int:
    """How many newlines ``fh`` holds before ``offset``."""
    fh.seek(0)
    count, left = 0, offset
    while left > 0 and (block := fh.read(min(left, 1 << 20))):
        count += block.count(b"\n")
        left -= len(block)
    return count


# ------------------------------------------------------------------ following


@dataclass
class _Reading:
    """A file open for following: where it stands, and when it last grew."""

    fh: BinaryIO
    source: str
    offset: int
    grew_at: float


class FileTail:
    """One followed path: the file open at it, and how far it is stored.

    :meth:`poll` stores the whole lines added since the last call. When the
    path's file is replaced (rotated), the new file is followed from the top
    while the old one is still read until it stops growing for
    ``rotated_idle_s`` (a program writes to its old file until it reopens its
    log) or disappears. When the file shrinks (truncated), it is followed again
    from the top once it holds data.
    """

    def __init__(self, store: Store, path: Path, *, on_error: OnError = "reject",
                 chunk_bytes: int = CHUNK_BYTES, rotated_idle_s: float = ROTATED_IDLE_S,
                 report: Callable[[str], None] = print,
                 claimed: set[tuple[int, int]] | None = None) -> None:
        self.store = store
        self.claimed = claimed if claimed is not None else set()  # (device, inode) being read
        self.path = path
        self.on_error = on_error
        self.chunk_bytes = chunk_bytes
        self.rotated_idle_s = rotated_idle_s
        self.report = report
        self._current: _Reading | None = None
        self._rotated: list[_Reading] = []
        self.result = FileResult()

    def poll(self) -> bool:
        """Store what is new; True when something was read (more may be waiting)."""
        busy = self._poll_rotated()
        try:
            st: os.stat_result | None = os.stat(self.path)
        except FileNotFoundError:
            st = None
        current = self._current
        if current is None:
            return self._open() or busy if st is not None and st.st_size else busy
        mine = os.fstat(current.fh.fileno())
        if st is None or (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino):
            self._rotated.append(current)  # read on until it goes quiet
            self._current = None
            if st is not None:
                self.report(f"{self.path} was rotated: following the new file from the top")
            return True
        if mine.st_size < current.offset:
            self.report(f"{self.path} was truncated: following it again from the top")
            self._release(current)
            self._current = None
            return True
        return self._read(current, until_end=False) or busy

    def _poll_rotated(self) -> bool:
        busy = False
        for old in list(self._rotated):
            if self._read(old, until_end=True):
                busy = True
            elif time.monotonic() - old.grew_at >= self.rotated_idle_s:
                self._release(old)
                self._rotated.remove(old)
        return busy

    def _open(self) -> bool:
        fh = self.path.open("rb")
        st = os.fstat(fh.fileno())
        if (st.st_dev, st.st_ino) in self.claimed:  # another path of the set reads it
            fh.close()
            return False
        if not line_by_line(self.path, None, fh):
            fh.close()
            raise ConfigError(f"{self.path}: --follow reads NDJSON line by line; this file is "
                              "not (ingest it without --follow)", field="paths")
        where = resume(self.store.positions(), self.path, fh, whole=False)
        if where.note:
            self.report(f"{self.path} {where.note}")
        self._current = _Reading(fh, where.source, where.offset, time.monotonic())
        self.claimed.add((st.st_dev, st.st_ino))
        self._read(self._current, until_end=False)
        return True

    def _release(self, reading: _Reading) -> None:
        st = os.fstat(reading.fh.fileno())
        self.claimed.discard((st.st_dev, st.st_ino))
        reading.fh.close()

    def _read(self, reading: _Reading, *, until_end: bool) -> bool:
        read = False
        for chunk, offset in whole_lines(reading.fh, reading.offset, self.chunk_bytes):
            self.result.add(self.store.append(chunk, format="ndjson", on_error=self.on_error,
                                              source=reading.source, position=offset))
            reading.offset, reading.grew_at, read = offset, time.monotonic(), True
            if not until_end:
                break  # one chunk per poll: the other files get their turn
        return read

    def close(self) -> None:
        """Stop following (nothing is lost: the positions are in the store)."""
        for reading in ([self._current] if self._current else []) + self._rotated:
            self._release(reading)
        self._current, self._rotated = None, []


def follow_files(store: Store, paths: list[Path], *, stop: threading.Event,
                 on_error: OnError = "reject", poll_s: float = 0.25,
                 report: Callable[[str], None] = print,
                 progress: Callable[[FileResult], None] = lambda r: None) -> FileResult:
    """Follow ``paths`` until ``stop`` is set; every line stored once. Returns the totals.

    Paths that are compressed or in a format that is not line by line are
    refused at once; two spellings of one path are followed once.
    """
    unique: dict[Path, None] = {}
    for path in paths:
        if not _may_be_lines(path):
            raise ConfigError(f"{path}: --follow reads NDJSON line by line; this file is not "
                              "(ingest it without --follow)", field="paths")
        unique[Path(os.path.abspath(path))] = None
    claimed: set[tuple[int, int]] = set()
    tails = [FileTail(store, p, on_error=on_error, report=report, claimed=claimed)
             for p in unique]
    try:
        while not stop.is_set():
            busy = False
            for tail in tails:
                busy = tail.poll() or busy
                if stop.is_set():
                    break
            total = FileResult()
            for tail in tails:
                total.add(tail.result)
            progress(total)
            if not busy:
                stop.wait(poll_s)
    finally:
        for tail in tails:
            tail.close()
    total = FileResult()
    for tail in tails:
        total.add(tail.result)
    return total
