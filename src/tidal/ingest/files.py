"""Opening paths: the format a name says, decompression, the bytes.

A path's format comes from its extension (``.ndjson .jsonl .json .csv .parquet
.arrow .ipc .feather``, each optionally followed by ``.gz`` or ``.zst``) or,
failing that, from its first bytes (see :func:`~tidal.ingest.formats.detect_format`).
``.json`` (and ``format="json"``) holds a JSON array of objects or NDJSON, told
apart by the first non-blank byte. Decompression uses pyarrow's codecs. Files
are read whole into memory (not mapped: a mapped file truncated later would
crash readers of zero-copy tables). Every failure to open or read is a
:class:`~tidal.errors.DecodeError` naming the path.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa

from tidal.errors import DecodeError

__all__ = ["open_raw", "path_kind", "read_head", "read_path", "reading"]

_EXTENSIONS = {
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".ipc": "arrow",
    ".feather": "arrow",
}
_COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_MAGIC_COMPRESSION = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}


def read_path(path: str | os.PathLike[str], format: str | None) -> tuple[pa.Buffer, str | None]:
    """The decompressed bytes of the file at ``path`` and its format: ``format``
    if given, else the one its extension names (None: to be told by its content)."""
    name = os.fspath(path)
    compression, fmt = path_kind(name, format)
    with _opening(name):  # pyarrow reads a file several times faster than f.read()
        with pa.input_stream(name, compression=compression) as stream:
            return stream.read_buffer(), fmt


def path_kind(name: str, format: str | None) -> tuple[str | None, str | None]:
    """How the file ``name`` is compressed (None: it is not) and its format (``format``
    if given, else what the extension says; None: to be told by its content)."""
    stem, suffix = os.path.splitext(name.lower())
    compression = _COMPRESSIONS.get(suffix)
    if compression:
        stem, suffix = os.path.splitext(stem)
    fmt = format or _EXTENSIONS.get(suffix)
    if compression is None and fmt is None:
        magic = read_head(name, 4)
        compression = next((c for m, c in _MAGIC_COMPRESSION.items() if magic.startswith(m)), None)
    return compression, fmt


def read_head(name: str, size: int) -> bytes:
    """The first ``size`` bytes of the file ``name`` (fewer if it is shorter)."""
    with _opening(name):
        with open(name, "rb") as f:
            return f.read(size)


def open_raw(name: str) -> io.RawIOBase:
    """The file ``name`` opened for unbuffered reading (the caller closes it)."""
    with _opening(name):
        return open(name, "rb", buffering=0)


@contextmanager
def reading(name: str) -> Iterator[None]:
    """Translate a failure to read ``name`` (mid-way too) into a DecodeError."""
    with _opening(name):
        yield


@contextmanager
def _opening(name: str) -> Iterator[None]:
    """Translate a failure to open or decompress ``name`` into a DecodeError."""
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        raise DecodeError(f"cannot read {name}: {exc}", source=name) from exc
