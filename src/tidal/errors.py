"""The one error tree of Tidal.

Every error Tidal raises derives from :class:`TidalError` and carries data, not
just a message::

    TidalError
    ├── ConfigError          bad option value (``field``)
    ├── IngestError          rejected input (``problems``: every bad line and why)
    │   └── DecodeError      input that could not be decoded at all (``source``)
    ├── SchemaError          a field whose values cannot be reconciled (``field``)
    ├── QueryError           bad query or failure (``query``, ``position``, ``line``, ``column``)
    │   └── UnknownFieldError  a field no stored event has (``field``)
    ├── StorageError         WAL, segment or manifest trouble (``path``)
    │   ├── CorruptionError  damaged on-disk data (``path``, ``offset``)
    │   └── ReadOnlyError    a write to a store opened read-only
    ├── BackpressureError    memory limit reached; try again later (``retry_after_s``)
    ├── SourceError          a feed (a stream, a file) is not what the store remembers
    └── ClosedError          use of a closed store

Driver errors (pyarrow, DuckDB, OS) are translated at one choke point per
boundary with ``raise X(...) from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass


class TidalError(Exception):
    """Root of every error Tidal raises."""


class ConfigError(TidalError, ValueError):
    """An option has a bad value."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Problem:
    """One bad input line (or record) and why it was refused.

    ``line`` is 1-based for line-oriented input (NDJSON, CSV) and the 1-based
    record number otherwise; ``field`` names the offending field when known.
    """

    line: int
    reason: str
    field: str | None = None
    raw: str | None = None

    def __str__(self) -> str:
        where = f"line {self.line}"
        if self.field:
            where += f", field {self.field!r}"
        return f"{where}: {self.reason}"


class IngestError(TidalError):
    """Input was rejected; nothing of it was stored.

    ``problems`` lists every bad line with its reason.
    """

    def __init__(
        self, message: str, *, problems: list[Problem] | None = None, source: str | None = None
    ) -> None:
        self.problems: list[Problem] = list(problems or [])
        self.source = source
        shown = "; ".join(str(p) for p in self.problems[:5])
        more = len(self.problems) - 5
        if shown:
            message = f"{message}: {shown}" + (f" (and {more} more)" if more > 0 else "")
        super().__init__(message)

    @property
    def line(self) -> int | None:
        """The first bad line, if any."""
        return self.problems[0].line if self.problems else None


class DecodeError(IngestError):
    """Input could not be decoded at all (unknown format, unreadable file)."""


class SchemaError(TidalError):
    """A field's values cannot be reconciled with the store's schema."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class QueryError(TidalError):
    """A query is malformed or failed to run.

    ``position`` is the 0-based offset in ``query`` where the trouble starts,
    ``line`` and ``column`` the same place 1-based, when known.
    """

    def __init__(
        self, message: str, *, query: str | None = None, position: int | None = None,
        line: int | None = None, column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.query = query
        self.position = position
        self.line = line
        self.column = column


class UnknownFieldError(QueryError):
    """A query names a field that no stored event has (``field``). A live query
    waits for it; over history it is an error."""

    def __init__(self, message: str, *, field: str, query: str | None = None,
                 position: int | None = None, line: int | None = None,
                 column: int | None = None) -> None:
        super().__init__(message, query=query, position=position, line=line, column=column)
        self.field = field


class StorageError(TidalError):
    """The write-ahead log, a segment or the manifest could not be used.

    The message names ``path`` (and ``offset``, for damage inside a file).
    """

    def __init__(self, message: str, *, path: str | None = None, offset: int | None = None
                 ) -> None:
        where = ", ".join(p for p in (path if path and path not in message else None,
                                      f"offset {offset}" if offset is not None else None) if p)
        super().__init__(f"{message} ({where})" if where else message)
        self.path = path
        self.offset = offset


class CorruptionError(StorageError):
    """On-disk data is damaged: a checksum, size or structure does not match."""


class ReadOnlyError(StorageError):
    """A write was attempted on a store opened with ``read_only=True``."""


class BackpressureError(TidalError):
    """The store cannot take more events now: its memtables are at their memory limit.

    ``retry_after_s`` estimates when a flush will have freed memory.
    """

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(f"{message} (retry after {retry_after_s:.3g} s)")
        self.retry_after_s = retry_after_s


class SourceError(TidalError):
    """A feed is not what the store remembers of it (a stream missing or made anew)."""


class ClosedError(TidalError):
    """The store was used after ``close()``."""


__all__ = [
    "BackpressureError",
    "ClosedError",
    "ConfigError",
    "CorruptionError",
    "DecodeError",
    "IngestError",
    "Problem",
    "QueryError",
    "ReadOnlyError",
    "SchemaError",
    "SourceError",
    "StorageError",
    "TidalError",
]
