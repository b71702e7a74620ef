"""The public facade: ``tidal.open`` and :class:`Store`.

The methods here are thin: they validate arguments, then hand off to the
ingest pipeline (:mod:`tidal.ingest`), the storage engine
(:mod:`tidal.store.engine`) and the readers (:mod:`tidal.query`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from tidal.config import StoreConfig
from tidal.errors import ConfigError
from tidal.ingest.pipeline import (
    OnError,
    Prepared,
    PreparedBlocks,
    expected_events,
    prepare_blocks,
)
from tidal.model.time import now_ns, parse_instant
from tidal.query import replay
from tidal.query import timeline as timeline_query
from tidal.query.stats import store_stats
from tidal.store import settings
from tidal.store.clock import SYSTEM_CLOCK, Clock
from tidal.store.engine import Engine
from tidal.store.feed import Follower
from tidal.store.fs import OS_FILES, FileSystem
from tidal.store.readers import Snapshot
from tidal.store.repair import RepairReport
from tidal.store.scan import Order

if TYPE_CHECKING:
    from tidal.correlate.result import Result
    from tidal.query.sql import SqlEngine


@dataclass(frozen=True)
class Receipt:
    """What an append stored.

    Attributes:
        count: events stored.
        first_seq: ``_seq`` of the first stored event (None if none were).
        last_seq: ``_seq`` of the last stored event.
        rejected: bad lines skipped (``on_error="skip"`` only).
        dead_letter: file the skipped lines were written to, if any.
        source: the source the append was made for, if any.
        position: that source's committed position after this append.
        duplicate: the position was at or below the committed one: nothing was stored.
    """

    count: int
    first_seq: int | None
    last_seq: int | None
    rejected: int = 0
    dead_letter: str | None = None
    source: str | None = None
    position: int | None = None
    duplicate: bool = False


class Store:
    """An event store: durable ingest, entity timelines, SQL and a commit feed.

    Open one with :func:`tidal.open`. Use it as a context manager, or call
    :meth:`close`. Any number of threads may append and read concurrently;
    one process writes a store, others may open it ``read_only``.

    Example:
        >>> import tidal
        >>> with tidal.open() as store:
        ...     r = store.append([{"timestamp": "2026-01-01T00:00:00Z", "entity": "pod-1",
        ...                        "reason": "OOMKilled"}])
        ...     store.timeline("pod-1").column("reason").to_pylist()
        ['OOMKilled']
    """

    def __init__(self, path: str | os.PathLike[str] | None, config: StoreConfig, *,
                 read_only: bool = False, repair: bool = False, fs: FileSystem = OS_FILES,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.path = Path(path) if path is not None else None
        self.config = config
        self._engine = Engine(self.path, config, fs=fs, clock=clock, read_only=read_only,
                              repair=repair)
        self._sql: SqlEngine | None = None  # DuckDB is loaded on the first SQL query
        self._sql_lock = threading.Lock()
        self._dead_letter = (Path(config.dead_letter_path) if config.dead_letter_path
                             else self.path / "dead-letter.ndjson" if self.path is not None
                             else Path("tidal-dead-letter.ndjson"))

    # -- writing --------------------------------------------------------------
    def append(self, data: object, *, format: str | None = None,
               on_error: OnError = "reject", source: str | None = None,
               position: int | None = None, timeout: float | None = None) -> Receipt:
        """Store events; returns once they are durable under the store's policy.

        ``data`` may be a list of dicts, a pyarrow Table or RecordBatch, a pandas
        or polars DataFrame, NDJSON bytes or text, or a file path (NDJSON, JSON
        array, CSV, Parquet, Arrow IPC; optionally ``.gz``/``.zst``).

        With ``on_error="reject"`` (default) the input is stored whole or not at
        all: any bad line raises :class:`~tidal.errors.IngestError` listing every
        bad line and why. With ``on_error="skip"`` the good events are stored and
        the bad lines go, with their reasons, to the dead-letter file.

        Appends from many threads that arrive together share one WAL write and
        one fsync. NDJSON of 64 MiB or more (a file, decompressed, or bytes) is
        decoded in 32 MiB blocks, each written to the WAL while the next is
        decoded; it still commits whole or not at all. When the memtables waiting for flushes reach
        ``memory_limit_bytes``, an append waits for a flush, up to ``timeout``
        seconds (None: as long as it takes), then raises
        :class:`~tidal.errors.BackpressureError` with ``retry_after_s``.

        Exactly once from sources that retry: with ``source`` (a name) and
        ``position`` (an integer, 0 to 2**63-1: a stream sequence, an offset),
        the events and the source's new position commit together, in one WAL
        frame. Positions of a source must increase (gaps are fine); an append at
        or below the committed position stores nothing and returns a receipt
        with ``duplicate=True`` and the committed ``position``. Appends of one
        source from several threads are taken in arrival order, except that
        those written in the same commit group are taken in order of position;
        so give each producer thread its own source, or serialise its appends.
        """
        _check_position(source, position)
        prepared: list[Prepared | PreparedBlocks] = []

        def decode_and_normalize() -> pa.Table | PreparedBlocks:  # run by the group's leader
            prepared.append(prepare_blocks(data, config=self.config, now_ns=now_ns(),
                                           format=format, on_error=on_error,
                                           dead_letter_path=self._dead_letter))
            done = prepared[0]
            return done.table if isinstance(done, Prepared) else done  # blocks: a large file

        stored = self._engine.append(decode_and_normalize, weight=expected_events(data),
                                     source=source, position=position, timeout_s=timeout)
        done = prepared[0] if prepared else None  # a duplicate was never decoded
        return Receipt(stored.count, stored.first_seq, stored.last_seq,
                       done.rejected if done else 0, done.dead_letter if done else None,
                       source, stored.position, stored.duplicate)

    def positions(self) -> dict[str, int]:
        """The committed position of every source (see :meth:`append`).

        Restored on open from the manifest and the WAL tail, without reading
        segment data; kept through flush, compaction and retention, also when
        every event of a source has expired.
        """
        return self._engine.positions()


    def flush(self) -> None:
        """Write the memtable out to segments now."""
        self._engine.flush()

    def compact(self, *, rewrite: bool = True) -> int:
        """Merge small segments and re-encode freshly flushed ones; returns segments rewritten.

        Flushes cut the memtable into segments quickly; compaction merges them
        into fewer segments of up to ``segment_rows`` events and
        ``segment_span_s`` of time each, so a timeline probes fewer files.
        ``rewrite=False`` only merges segments below ``compact_min_rows``.
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
        return self._engine.read_sources(lambda sources: timeline_query.timeline(
            sources, entity, start_ns, end_ns, limit=limit, desc=desc))

    def eql(self, query: str, *, start: object = None, end: object = None,
            size: int | None = None, case_insensitive: bool = False,
            category_field: str | None = None,
            field_types: Mapping[str, str] | None = None,
            max_samples_per_key: int = 1) -> Result:
        """Run an EQL query (Elastic's Event Query Language) over the store.

        ``process where process.name == "cmd.exe" | head 10`` finds events;
        ``start`` (inclusive) and ``end`` (exclusive) bound their time, ``size``
        the number returned (None: all). Strings compare case-sensitively except
        through ``:``, ``in~``, ``like~``, ``regex~`` and the ``~`` functions;
        ``case_insensitive=True`` makes every comparison so (Endgame's EQL). The
        category is read from ``category_field`` (the store's setting, default
        ``event.category``). ``field_types={"f": "date"}`` declares a field a date
        (``"version"``: a software version). ``max_samples_per_key``: how many
        samples a ``sample`` query returns per key. Returns a
        :class:`~tidal.correlate.result.Result`: an event query's events in
        timestamp order, or a sequence's, sample's or join's matches as
        ``correlations`` (see the README, "EQL", for the matching rules).

        Raises:
            QueryError: the query is malformed (the message names line and column)
                or does not fit the data (an unknown field or function, a
                comparison of text with a number).
        """
        from tidal.correlate.eql.run import run_eql  # (numba loads on first use, not on open)

        with self.snapshot() as snap:
            return run_eql(snap, query, start=start, end=end, size=size,
                           case_insensitive=case_insensitive,
                           category_field=category_field or self.config.category_field,
                           field_types=field_types, max_samples_per_key=max_samples_per_key)

    def snapshot(self) -> Snapshot:
        """A consistent view of the store as it is now, until closed.

        The snapshot pins its segments and memtable view (compaction cannot
        delete them) until :meth:`~tidal.store.readers.Snapshot.close`; use it
        as a context manager. It has ``max_seq``, ``schema`` and ``scan(...)``;
        several scans of one snapshot see the same events.
        """
        return self._engine.snapshot()

    def scan(self, columns: Sequence[str] | None = None, where: pc.Expression | None = None,
             *, start: object = None, end: object = None, from_seq: int | None = None,
             to_seq: int | None = None, order: Order = "seq") -> pa.RecordBatchReader:
        """Stream the matching events as Arrow record batches, without loading the store.

        ``columns``: names to read (``_seq`` always comes first; dotted paths
        name nested fields; None reads all). ``where``: a pyarrow compute
        expression, e.g. ``pc.field("service") == "api"`` or
        ``pc.field("kubernetes", "pod", "name") == "p1"``; its simple parts go
        into the Parquet read. ``start``/``end`` (instants) and
        ``from_seq``/``to_seq`` bound the scan: the first of each pair is
        inclusive, the second exclusive. ``order="seq"`` yields ``_seq``
        order, ``order="time"`` (timestamp, ``_seq``) order, ``order=None``
        the order events are stored in (the fastest, in bounded memory; ordered
        scans sort one compacted time chunk at a time).

        The scan reads its own snapshot, released when the reader is read to
        the end or closed.
        """
        snap = self._engine.snapshot()
        try:
            reader = snap.scan(columns, where, start=start, end=end, from_seq=from_seq,
                               to_seq=to_seq, order=order)
        except BaseException:
            snap.close()
            raise
        return pa.RecordBatchReader.from_batches(reader.schema, _releasing(reader, snap))

    def read_from(self, seq: int, limit: int | None = None) -> pa.Table:
        """Events with ``_seq >= seq`` in ``_seq`` order (for replay and live consumers)."""
        if limit is not None and limit < 0:
            raise ConfigError("limit must not be negative", field="limit")
        return replay.read_from(self._engine.read_seq, seq, limit)

    def follow(self, from_seq: int | None = None) -> Follower:
        """Every committed batch, in ``_seq`` order, as it is committed.

        Returns a :class:`~tidal.store.feed.Follower`: iterate it (``for``, or
        ``async for``) for Arrow record batches that carry ``_seq``; ``close()``
        it (or use it as a context manager) to stop. ``from_seq=None`` starts
        with the next event appended; a number starts there, reading the
        stored history first and then continuing live, without a gap or a
        repeat. A follower that falls behind never holds up appends: it reads
        what it missed back from the store.
        """
        return self._engine.follow(from_seq)

    def max_seq(self) -> int:
        """The highest ``_seq`` stored so far; -1 when empty."""
        return self._engine.max_seq()

    def sql(self, query: str,
            params: Sequence[Any] | Mapping[str, Any] | None = None) -> pa.Table:
        """Run DuckDB SQL over the view ``events`` (segments and memtable).

        Nested fields are structs: ``kubernetes.pod.name`` works as written.
        Read-only and confined to the store's own files: one statement per
        call, reads only; anything else, and bad SQL, raise
        :class:`~tidal.errors.QueryError`. Keys SQL cannot show as written
        (``""``, control characters, case twins) appear under their JSON
        string literal (see the README).
        """
        engine = self._sql_engine()

        def run() -> pa.Table:
            with self._engine.snapshot() as snap:
                return engine.query(snap, query, params)
        return self._engine.retrying(run)

    def _sql_engine(self) -> SqlEngine:
        with self._sql_lock:
            if self._sql is None:
                from tidal.query.sql import SqlEngine

                self._sql = SqlEngine(self.config.timestamp_field, self.config.entity_field)
            return self._sql

    def stats(self) -> dict[str, Any]:
        """Counts and sizes: events, entities, segments, WAL, memory, background errors."""
        return store_stats(self._engine, self.path)

    @property
    def dead_letter_path(self) -> Path:
        """Where ``on_error="skip"`` writes bad lines (with their reasons)."""
        return self._dead_letter

    @property
    def repair_report(self) -> RepairReport | None:
        """What ``repair=True`` salvaged and lost (None without ``repair``)."""
        return self._engine.repair_report

    @property
    def read_only(self) -> bool:
        return self._engine.read_only

    @property
    def recovery(self) -> str | None:
        """What opening the store tidied up (a torn WAL tail, orphan files), or None."""
        torn, swept = self._engine.torn_tail, self._engine.swept
        done = []
        if torn is not None:
            done.append(f"truncated {torn.dropped_bytes} bytes of torn WAL tail at offset "
                        f"{torn.offset} of {torn.path} ({torn.reason})")
        if swept:
            done.append(f"deleted {len(swept)} orphan file(s) left by an interrupted "
                        f"flush or compaction: {', '.join(Path(p).name for p in swept[:5])}")
        return "; ".join(done) or None

    # -- lifecycle ------------------------------------------------------------
    def close(self) -> None:
        """Make everything durable and release the store. Idempotent."""
        self._engine.close()
        with self._sql_lock:
            if self._sql is not None:
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


def _releasing(reader: pa.RecordBatchReader, snap: Snapshot) -> Iterator[pa.RecordBatch]:
    """``reader``'s batches; ``snap`` is closed when they end or the reader is dropped."""
    try:
        yield from reader
    finally:
        snap.close()


MAX_SOURCE_BYTES = 1024
MAX_POSITION = (1 << 63) - 1


def _check_position(source: object, position: object) -> None:
    """Refuse a source or position that cannot be stored, naming the problem."""
    if source is None and position is None:
        return
    if source is None or position is None:
        raise ConfigError("source and position go together: give both or neither",
                          field="position" if source is not None else "source")
    if not isinstance(source, str):
        raise ConfigError(f"source must be a string, not {type(source).__name__}",
                          field="source")
    try:
        size = len(source.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ConfigError(f"source is not valid UTF-8 text: {exc.reason} at {exc.start}",
                          field="source") from exc
    if not 0 < size <= MAX_SOURCE_BYTES:
        raise ConfigError(f"source must be 1 to {MAX_SOURCE_BYTES} bytes of UTF-8, "
                          f"not {size}", field="source")
    if isinstance(position, bool) or not isinstance(position, int):
        raise ConfigError(f"position must be an integer, not {type(position).__name__}",
                          field="position")
    if not 0 <= position <= MAX_POSITION:
        raise ConfigError(f"position must be between 0 and 2**63-1, not {position}",
                          field="position")


def open(path: str | os.PathLike[str] | None = None, *,  # noqa: A001
         read_only: bool = False, repair: bool = False, **config: Any) -> Store:
    """Open (or create) a store at ``path``; ``None`` gives an in-memory store.

    Keyword options are :class:`~tidal.config.StoreConfig` fields; ``TIDAL_*``
    environment variables fill in the ones not given. An existing store keeps
    the timestamp and entity settings it was created with.

    ``read_only=True`` opens an existing store without taking the writer's
    lock or changing any file (it works on read-only media, and next to a
    writer in another process, whose commits it sees). ``repair=True``
    salvages a damaged store before opening it (see ``Store.repair_report``).
    """
    if path is not None:
        config = settings.merge(settings.load(Path(path)), config)
    return Store(path, StoreConfig.build(config), read_only=read_only, repair=repair)
