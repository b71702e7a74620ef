"""Dead letters: bad input lines kept beside their reasons.

``write_dead_letter`` appends one JSON object per problem to an NDJSON file::

    {"line": 3, "reason": "invalid JSON: ...", "field": null, "source": "x.ndjson",
     "raw": "{oops"}

and fsyncs it (and, when it created the file, its directory) before returning.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import msgspec

from tidal.errors import Problem, StorageError
from tidal.ingest.ndjson import MAX_RAW_BYTES

__all__ = ["write_dead_letter"]

_encoder = msgspec.json.Encoder()


def write_dead_letter(
    path: str | os.PathLike[str], problems: Sequence[Problem], *, source: str | None
) -> int:
    """Append ``problems`` to the dead-letter file at ``path``; return how many.

    Parent directories are created. Nothing is written for no problems.

    Raises:
        StorageError: the file cannot be written.
    """
    if not problems:
        return 0
    name = os.fspath(path)
    lines = b"".join(
        _encoder.encode(
            {
                "line": p.line,
                "reason": p.reason,
                "field": p.field,
                "source": source,
                "raw": _cut(p.raw),
            }
        )
        + b"\n"
        for p in problems
    )
    try:
        parent = os.path.dirname(os.path.abspath(name))
        os.makedirs(parent, exist_ok=True)
        created = not os.path.exists(name)
        with open(name, "ab") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())
        if created:
            _fsync_dir(parent)
    except OSError as exc:
        raise StorageError(f"cannot write dead letters to {name}: {exc}", path=name) from exc
    return len(problems)


def _cut(raw: str | None) -> str | None:
    """``raw`` cut to at most :data:`MAX_RAW_BYTES` of UTF-8."""
    if raw is None or len(raw) <= MAX_RAW_BYTES // 4:
        return raw
    data = raw.encode("utf-8")
    if len(data) <= MAX_RAW_BYTES:
        return raw
    return data[:MAX_RAW_BYTES].decode("utf-8", errors="ignore")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
