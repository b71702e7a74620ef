"""What a store directory holds, and how a new one is created.

A directory is a store once ``MANIFEST.json`` exists: creation writes
``STORE.json`` (the fixed settings), the ``segments/`` and ``wal/``
directories, and the empty manifest last, each durable before the next. A
directory that is neither a store nor empty is never turned into one, and
only files named as the store names them are ever deleted from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from tidal.config import StoreConfig
from tidal.errors import StorageError
from tidal.store import manifest as manifest_io
from tidal.store import settings
from tidal.store.fs import TMP_SUFFIX, FileSystem
from tidal.store.manifest import Manifest
from tidal.store.segment import NAME_PATTERN
from tidal.store.wal import NAME as WAL_NAME

SEGMENTS = "segments"
WAL = "wal"
LOCK = "LOCK"
DEAD_LETTER = "dead-letter.ndjson"
_SEGMENT_FILE = re.compile(NAME_PATTERN + f"(?:{re.escape(TMP_SUFFIX)})?")
_OWN_TOP = {manifest_io.NAME, settings.NAME, LOCK, SEGMENTS, WAL, DEAD_LETTER,
            manifest_io.NAME + TMP_SUFFIX, settings.NAME + TMP_SUFFIX}


class Kind(Enum):
    """What :func:`inspect` found at a path."""

    MISSING = "missing"  # nothing there yet
    EMPTY = "empty"  # an empty directory, or an interrupted creation with no data
    STORE = "store"  # a store (MANIFEST.json exists)
    HEADLESS = "headless"  # store data (segments or WAL) but no manifest: needs repair
    FOREIGN = "foreign"  # something else: never touched


@dataclass(frozen=True)
class Found:
    """The result of :func:`inspect`: the kind, and a reason for the foreign kinds."""

    kind: Kind
    reason: str = ""


def is_segment_file(name: str) -> bool:
    """Whether ``name`` is a segment file (or its temporary) of the store's own naming."""
    return _SEGMENT_FILE.fullmatch(name) is not None


def inspect(directory: Path) -> Found:
    """Classify ``directory`` without changing anything."""
    if not directory.exists():
        return Found(Kind.MISSING)
    if not directory.is_dir():
        return Found(Kind.FOREIGN, "it is not a directory")
    if (directory / manifest_io.NAME).exists():
        return Found(Kind.STORE)
    entries = {p.name: p for p in directory.iterdir()}
    strangers = sorted(set(entries) - _OWN_TOP)
    if strangers:
        shown = ", ".join(strangers[:3]) + (", ..." if len(strangers) > 3 else "")
        return Found(Kind.FOREIGN, f"it holds files that are not a store's ({shown})")
    segments = entries.get(SEGMENTS)
    if segments is not None and segments.is_dir() and any(
            is_segment_file(p.name) and not p.name.endswith(TMP_SUFFIX)
            for p in segments.iterdir()):
        return Found(Kind.HEADLESS, "segments exist but MANIFEST.json is missing")
    wal = entries.get(WAL)
    if wal is not None and wal.is_dir() and any(
            WAL_NAME.fullmatch(p.name) and p.stat().st_size for p in wal.iterdir()):
        return Found(Kind.HEADLESS, "WAL files exist but MANIFEST.json is missing")
    return Found(Kind.EMPTY)


def create(fs: FileSystem, directory: Path, config: StoreConfig) -> Manifest:
    """Make ``directory`` (missing or empty) a new, empty store; durable step by step."""
    fs.make_dirs(directory / SEGMENTS)
    fs.make_dirs(directory / WAL)
    settings.save(fs, directory, config)
    empty = Manifest()
    manifest_io.commit(fs, directory, empty)
    return empty


def not_a_store(directory: Path, found: Found) -> StorageError:
    """The error for a path that is not a store."""
    if found.kind is Kind.MISSING:
        return StorageError(f"no store at {str(directory)!r}", path=str(directory))
    return StorageError(f"{str(directory)!r} is not a Tidal store: {found.reason}",
                        path=str(directory))


def orphans(directory: Path, live: set[str]) -> list[Path]:
    """Files in ``directory`` named as the store names segments that ``live`` lacks.

    These are left by a flush or compaction that did not commit, or by a
    retired segment whose deletion was cut short: provably the store's own.
    """
    segments = directory / SEGMENTS
    found = [p for p in segments.iterdir() if is_segment_file(p.name) and p.name not in live]
    for name in (manifest_io.NAME + TMP_SUFFIX, settings.NAME + TMP_SUFFIX):
        if (directory / name).exists():
            found.append(directory / name)
    return found
