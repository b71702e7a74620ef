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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from tidal.errors import IngestError

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
        """The store source of this file (read at ``path``)."""
        shown = str(path)
        if len(shown.encode("utf-8", "replace")) > MAX_PATH_IN_SOURCE:
            shown = "..." + shown[-MAX_PATH_IN_SOURCE // 4:]
        return (f"{_PREFIX}{self.device}:{self.inode}:{self.head_bytes}:{self.head_hash}:"
                f"{self.generation}:{shown}")

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
    """Where to go on in a file: its identity, the offset to read from, and why."""

    identity: Identity
    offset: int
    note: str | None = None


def resume(positions: dict[str, int], path: Path, fh: BinaryIO, *, whole: bool) -> Resume:
    """Find ``fh``'s identity among the store's ``positions`` and where to go on.

    ``whole``: the file is positioned as a whole (its identity hashes all of it).
    """
    st = os.fstat(fh.fileno())
    mine = f"{_PREFIX}{st.st_dev}:{st.st_ino}:"
    known = sorted(((parsed[0], pos) for source, pos in positions.items()
                    if source.startswith(mine) and (parsed := Identity.parse(source))),
                   key=lambda item: -item[0].generation)
    for identity, offset in known:
        if identity.head_bytes <= st.st_size and _hash(fh, identity.head_bytes) == (
                identity.head_hash) and (not whole or identity.head_bytes == st.st_size):
            if offset <= st.st_size:
                return Resume(identity, offset)
            newer = replace(identity, generation=identity.generation + 1)
            return Resume(newer, 0, "was truncated: ingesting it again from the top")
    head = st.st_size if whole else min(HEAD_BYTES, st.st_size)
    generation = known[0][0].generation + 1 if known else 0
    identity = Identity(st.st_dev, st.st_ino, head, _hash(fh, head), generation)
    note = None
    if known:
        note = ("changed: ingesting it again" if whole
                else "was truncated or rewritten: ingesting it again from the top")
    elif any(parsed[1] == str(path) for source in positions
             if (parsed := Identity.parse(source)) is not None):
        note = "is a new file at this path (rotated): ingesting it from the top"
    return Resume(identity, 0, note)


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
        source = where.identity.source(path)
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
        result.waiting_bytes = size - done
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


class FileTail:
    """One followed path: the file open at it, and how far it is stored.

    :meth:`poll` stores the whole lines added since the last call; when the
    path's file is replaced (rotated), it first stores the rest of the old one;
    when the file shrinks (truncated), it starts again from the top.
    """

    def __init__(self, store: Store, path: Path, *, on_error: OnError = "reject",
                 chunk_bytes: int = CHUNK_BYTES, report: Callable[[str], None] = print) -> None:
        self.store = store
        self.path = path
        self.on_error = on_error
        self.chunk_bytes = chunk_bytes
        self.report = report
        self._fh: BinaryIO | None = None
        self._identity: Identity | None = None
        self._offset = 0
        self.result = FileResult()

    def poll(self) -> bool:
        """Store what is new; True when something was read (more may be waiting)."""
        try:
            st: os.stat_result | None = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if self._fh is None:
            return self._open() if st is not None and st.st_size else False
        current = os.fstat(self._fh.fileno())
        if st is None or (st.st_dev, st.st_ino) != (current.st_dev, current.st_ino):
            read = self._read(until_end=True)  # the old file's last lines
            self._close()
            if st is not None:
                self.report(f"{self.path} was rotated: following the new file from the top")
            return True if read else st is not None
        if current.st_size < self._offset:
            self.report(f"{self.path} was truncated: following it again from the top")
            self._close()
            return self._open()
        return self._read(until_end=False)

    def _open(self) -> bool:
        self._fh = self.path.open("rb")
        where = resume(self.store.positions(), self.path, self._fh, whole=False)
        self._identity, self._offset = where.identity, where.offset
        if where.note:
            self.report(f"{self.path} {where.note}")
        return self._read(until_end=False) or True

    def _read(self, *, until_end: bool) -> bool:
        assert self._fh is not None and self._identity is not None
        source = self._identity.source(self.path)
        read = False
        for chunk, offset in whole_lines(self._fh, self._offset, self.chunk_bytes):
            self.result.add(self.store.append(chunk, format="ndjson", on_error=self.on_error,
                                              source=source, position=offset))
            self._offset, read = offset, True
            if not until_end:
                break  # one chunk per poll: the other files get their turn
        return read

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def close(self) -> None:
        """Stop following (nothing is lost: the position is in the store)."""
        self._close()


def follow_files(store: Store, paths: list[Path], *, stop: threading.Event,
                 on_error: OnError = "reject", poll_s: float = 0.25,
                 report: Callable[[str], None] = print,
                 progress: Callable[[FileResult], None] = lambda r: None) -> FileResult:
    """Follow ``paths`` until ``stop`` is set; every line stored once. Returns the totals."""
    tails = [FileTail(store, p, on_error=on_error, report=report) for p in paths]
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
