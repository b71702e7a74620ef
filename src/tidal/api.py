"""The public facade: ``tidal.open`` and :class:`Store`.

The methods here are thin: they validate arguments, then hand off to the
ingest pipeline (:mod:`tidal.ingest`), the storage engine
(:mod:`tidal.store.engine`) and the readers (:mod:`tidal.query`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import pyarrow as pa

from tidal.config import StoreConfig
from tidal.errors import ConfigError, IngestError
from tidal.ingest import decode
from tidal.ingest.deadletter import write_dead_letter
from tidal.ingest.normalize import normalize
from tidal.model.time import now_ns, parse_instant
from tidal.query import replay
from tidal.query import timeline as timeline_query
from tidal.query.sql import SqlEngine
from tidal.store import settings
from tidal.store.engine import Engine

OnError = Literal["reject", "skip"]


@dataclass(frozen=True)
class Receipt:
    """What an append stored.

    Attributes:
        count: events stored.
        first_seq: ``_seq`` of the first stored event (None if none were).
        last_seq: ``_seq`` of the last stored event.
        rejected: bad lines skipped (``on_error="skip"`` only).
        dead_letter: file the skipped lines were written to, if any.
    """

    count: int
    first_seq: int | None
    last_seq: int | None
    rejected: int = 0
    dead_letter: str | None = None


class Store:
    """An event store: durable ingest, entity timelines and SQL.

    Open one with :func:`tidal.open`. Use it as a context manager, or call
    :meth:`close`. One writer and many concurrent readers may share a store.

    Example:
        >>> import tidal
        >>> with tidal.open() as store:
        ...     r = store.append([{"timestamp": "2026-01-01T00:00:00Z", "entity": "pod-1",
        ...                        "reason": "OOMKilled"}])
        ...     store.timeline("pod-1").column("reason").to_pylist()
        ['OOMKilled']
    """

    def __init__(self, path: str | os.PathLike[str] | None, config: StoreConfig) -> None:
        self.path = Path(path) if path is not None else None
        self.config = config
        self._engine = Engine(self.path, config)
        self._sql = SqlEngine(config.timestamp_field, config.entity_field)

    # -- writing --------------------------------------------------------------
    def append(self, data: object, *, format: str | None = None,
               on_error: OnError = "reject") -> Receipt:
        """Store events; returns once they are durable under the store's policy.

        ``data`` may be a list of dicts, a pyarrow Table or RecordBatch, a pandas
        or polars DataFrame, NDJSON bytes or text, or a file path (NDJSON, JSON
        array, CSV, Parquet, Arrow IPC; optionally ``.gz``/``.zst``).

        With ``on_error="reject"`` (default) the input is stored whole or not at
        all: any bad line raises :class:`~tidal.errors.IngestError` listing every
        bad line and why. With ``on_error="skip"`` the good events are stored and
        the bad lines go, with their reasons, to the dead-letter file.
        """
        if on_error not in ("reject", "skip"):
            raise ConfigError(f"on_error must be 'reject' or 'skip', not {on_error!r}",
                              field="on_error")
        decoded = decode(data, format=format)
        normal = normalize(decoded.table, config=self.config, now_ns=now_ns(),
                           lines=decoded.lines)
        problems = sorted(decoded.problems + normal.problems, key=lambda p: p.line)
        table = normal.table
        if problems and on_error == "reject":
            raise IngestError(f"rejected {decoded.source or 'input'}: {len(problems)} bad "
                              f"line{'s' if len(problems) != 1 else ''}",
                              problems=problems, source=decoded.source)
        dead_letter = None
        if problems:
            if normal.keep is not None:
                table = table.filter(pa.array(normal.keep))
            dead_letter = self._dead_letter_path()
            write_dead_letter(dead_letter, problems, source=decoded.source)
        stored = self._engine.append(table)
        return Receipt(stored.count, stored.first_seq, stored.last_seq, len(problems),
                       str(dead_letter) if dead_letter is not None else None)

    def _dead_letter_path(self) -> Path:
        if self.config.dead_letter_path is not None:
            return Path(self.config.dead_letter_path)
        if self.path is not None:
            return self.path / "dead-letter.ndjson"
        return Path("tidal-dead-letter.ndjson")

    def flush(self) -> None:
        """Write the memtable out to segments now."""
        self._engine.flush()

    def compact(self, *, rewrite: bool = True) -> int:
        """Merge small segments and re-encode freshly flushed ones; returns segments rewritten.

        Flushes favour speed (zstd level 1); compaction favours size (zstd
        level 9, large dictionaries). ``rewrite=False`` only merges small segments.
        """
        return self._engine.compact(rewrite=rewrite)

    # -- reading --------------------------------------------------------------
    def timeline(self, entity: object, start: object = None, end: object = None, *,
                 limit: int | None = None, desc: bool = False) -> pa.Table:
        """One entity's events, ordered by (timestamp, ``_seq``).

        ``start`` (inclusive) and ``end`` (exclusive) accept int nanoseconds,
        timezone-aware datetimes and ISO 8601 strings. ``desc`` gives newest
        first; ``limit`` keeps the first ``limit`` events in that order.
        """
        if limit is not None and limit < 0:
            raise ConfigError("limit must not be negative", field="limit")
        start_ns = None if start is None else parse_instant(start, name="start")
        end_ns = None if end is None else parse_instant(end, name="end")
        return timeline_query.timeline(self._engine.timeline_runs(), entity, start_ns, end_ns,
                                       limit=limit, desc=desc,
                                       ts_field=self.config.timestamp_field)

    def read_from(self, seq: int, limit: int | None = None) -> pa.Table:
        """Events with ``_seq >= seq`` in ``_seq`` order (for replay and live consumers)."""
        return replay.read_from(self._engine.snapshot(), seq, limit)

    def max_seq(self) -> int:
        """The highest ``_seq`` stored so far; -1 when empty."""
        return self._engine.max_seq()

    def sql(self, query: str,
            params: Sequence[Any] | Mapping[str, Any] | None = None) -> pa.Table:
        """Run DuckDB SQL over the view ``events`` (segments and memtable).

        Nested fields are structs: ``kubernetes.pod.name`` works as written.
        Errors raise :class:`~tidal.errors.QueryError`.
        """
        return self._sql.query(self._engine.snapshot(), query, params)

    def stats(self) -> dict[str, Any]:
        """Counts and sizes: events, entities, segments, WAL bytes, bytes per event."""
        snap = self._engine.snapshot(indexed=True)
        seg_rows = sum(s.rows for s in snap.segments)
        seg_bytes = sum(s.bytes for s in snap.segments)
        entities: set[str] = set()
        for run in snap.memtable_runs:
            entities.update(run.index)
        for meta in snap.segments:
            entities.update(snap.segment_entities(meta))
        manifest = self._engine.manifest
        torn = self._engine.torn_tail
        return {
            "path": str(self.path) if self.path is not None else None,
            "events": seg_rows + snap.memtable_rows,
            "entities": len(entities),
            "max_seq": snap.max_seq,
            "segments": len(snap.segments),
            "segment_events": seg_rows,
            "memtable_events": snap.memtable_rows,
            "memtable_bytes": snap.memtable_bytes,
            "segment_bytes": seg_bytes,
            "wal_bytes": self._engine.wal_bytes(),
            "disk_bytes": seg_bytes if self.path is not None else 0,
            "bytes_per_event_disk": (seg_bytes / seg_rows) if seg_rows and self.path else 0.0,
            "bytes_per_event_memory": (snap.memtable_bytes / snap.memtable_rows
                                       if snap.memtable_rows else 0.0),
            "cache_bytes": self._engine.cache_bytes,
            "dropped_segments": manifest.dropped_segments,
            "dropped_events": manifest.dropped_events,
            "torn_tail_bytes": torn.dropped_bytes if torn else 0,
        }

    @property
    def recovery(self) -> str | None:
        """What opening the store repaired (a torn WAL tail), or None."""
        torn = self._engine.torn_tail
        if torn is None:
            return None
        return (f"truncated {torn.dropped_bytes} bytes of torn WAL tail at offset "
                f"{torn.offset} of {torn.path} ({torn.reason})")

    # -- lifecycle ------------------------------------------------------------
    def close(self) -> None:
        """Make everything durable and release the store. Idempotent."""
        self._engine.close()
        self._sql.close()

    @property
    def closed(self) -> bool:
        return self._engine.closed

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "memory"
        return f"<tidal.Store {where} max_seq={self.max_seq()}>"


def open(path: str | os.PathLike[str] | None = None, **config: Any) -> Store:  # noqa: A001
    """Open (or create) a store at ``path``; ``None`` gives an in-memory store.

    Keyword options are :class:`~tidal.config.StoreConfig` fields; ``TIDAL_*``
    environment variables fill in the ones not given. An existing store keeps
    the timestamp and entity settings it was created with.
    """
    if path is not None:
        config = settings.merge(settings.load(Path(path)), config)
    return Store(path, StoreConfig.build(config))


