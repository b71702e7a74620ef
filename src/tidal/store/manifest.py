"""The manifest: which segments are live, with their checksums.

``MANIFEST.json`` is replaced whole through :meth:`FileSystem.write_atomic`
(temp file, fsync, rename, directory fsync), and only after the segment files
it lists are durable. Its content is checksummed::

    {"format": 2, "crc32": <crc32 of the manifest object's bytes>, "manifest": {...}}

so an edit or a flipped bit is a :class:`CorruptionError`, never a silently
different store. ``flushed_seq`` is the highest ``_seq`` stored in segments;
the WAL replays everything above it. ``positions`` holds the committed position
of every source as of ``flushed_seq`` (the WAL tail holds any later ones), kept
whatever happens to the segments. ``lost`` lists ``_seq`` ranges that a repair
could not salvage, so recovery accepts exactly those gaps.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import msgspec

from tidal.errors import CorruptionError
from tidal.store.fs import FileSystem
from tidal.store.segment import SegmentMeta

NAME = "MANIFEST.json"
FORMAT = 2


@dataclass(frozen=True)
class Manifest:
    """An immutable version of the store's segment list."""

    segments: tuple[SegmentMeta, ...] = ()
    flushed_seq: int = -1
    next_segment_id: int = 1
    dropped_segments: int = 0
    dropped_events: int = 0
    lost: tuple[tuple[int, int], ...] = ()  # inclusive _seq ranges given up by a repair
    positions: Mapping[str, int] = field(default_factory=dict)  # source -> position in segments


class _File(msgspec.Struct):
    format: int
    crc32: int
    manifest: msgspec.Raw


def encode(manifest: Manifest) -> bytes:
    """The bytes of ``MANIFEST.json`` for ``manifest``."""
    body = msgspec.json.encode(asdict(manifest))
    return msgspec.json.encode(_File(FORMAT, zlib.crc32(body), msgspec.Raw(body)))


def decode(data: bytes, path: Path) -> Manifest:
    """Parse and verify ``MANIFEST.json`` bytes; damage raises :class:`CorruptionError`."""
    try:
        wrapper = msgspec.json.decode(data, type=_File)
    except msgspec.DecodeError as exc:
        raise CorruptionError(f"manifest unreadable: {exc}", path=str(path)) from exc
    if wrapper.format != FORMAT:
        raise CorruptionError(f"manifest format {wrapper.format} is not {FORMAT} (written by "
                              "another version of Tidal)", path=str(path))
    body = bytes(wrapper.manifest)
    if zlib.crc32(body) != wrapper.crc32:
        raise CorruptionError("manifest checksum mismatch (damaged or edited)", path=str(path))
    try:
        raw = msgspec.json.decode(body)
        segments = tuple(SegmentMeta(**s) for s in raw.pop("segments"))
        lost = tuple((int(a), int(b)) for a, b in raw.pop("lost", ()))
        positions = {str(k): int(v) for k, v in raw.pop("positions", {}).items()}
        return Manifest(segments=segments, lost=lost, positions=positions, **raw)
    except (msgspec.DecodeError, TypeError, KeyError, ValueError) as exc:
        raise CorruptionError(f"manifest unreadable: {exc}", path=str(path)) from exc


def load(directory: Path) -> Manifest:
    """Read and verify the manifest of the store at ``directory``."""
    path = directory / NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise CorruptionError("MANIFEST.json is missing", path=str(path)) from exc
    return decode(data, path)


def commit(fs: FileSystem, directory: Path, manifest: Manifest) -> None:
    """Durably replace the manifest (its segment files must already be durable)."""
    fs.write_atomic(directory / NAME, encode(manifest))
