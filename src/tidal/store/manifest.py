"""The manifest: which segments are live, committed by atomic rename.

``MANIFEST.json`` is replaced whole: written to a temporary file, fsynced,
renamed over the old one, and the directory fsynced. ``flushed_seq`` is the
highest ``_seq`` stored in segments; the WAL replays everything above it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import msgspec

from tidal.errors import CorruptionError
from tidal.store.segment import SegmentMeta

NAME = "MANIFEST.json"
VERSION = 1


@dataclass(frozen=True)
class Manifest:
    """An immutable version of the store's segment list."""

    segments: tuple[SegmentMeta, ...] = ()
    flushed_seq: int = -1
    next_segment_id: int = 1
    version: int = VERSION
    dropped_segments: int = 0
    dropped_events: int = 0


def load(directory: Path) -> Manifest:
    """Read the manifest, or an empty one for a new store."""
    path = directory / NAME
    if not path.exists():
        return Manifest()
    try:
        raw = msgspec.json.decode(path.read_bytes())
        segments = tuple(SegmentMeta(**s) for s in raw.pop("segments"))
        return Manifest(segments=segments, **raw)
    except (msgspec.DecodeError, TypeError, KeyError) as exc:
        raise CorruptionError(f"manifest unreadable: {exc}", path=str(path)) from exc


def commit(directory: Path, manifest: Manifest) -> None:
    """Durably replace the manifest."""
    path = directory / NAME
    tmp = directory / (NAME + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(msgspec.json.encode(manifest))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
