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
    from tidal.correlate.followed import FollowedBy
    from tidal.correlate.logql import LogqlResult, Series
    from tidal.correlate.logql.detected import DetectedField
    from tidal.correlate.logql.index import IndexStats
    from tidal.correlate.logql.mining import LogPattern
    from tidal.correlate.logql.tail import LogqlTail
    from tidal.correlate.result import Correlation, Result
    from tidal.correlate.ruleset import RuleInfo, RuleSet
    from tidal.correlate.subscription import Subscription
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
        duplicates: events skipped as duplicates of stored ones (``dedup_key``; see
            :func:`open`); ``count`` does not include them.
    """

    count: int
    first_seq: int | None
    last_seq: int | None
    rejected: int = 0
    dead_letter: str | None = None
    source: str | None = None
    position: int | None = None
    duplicate: bool = False
    duplicates: int = 0


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
        self._fs = fs
        self._rule_set: RuleSet | None = None
        self._rules_lock = threading.Lock()
        if self.path is not None and (self.path / "rules.json").exists():
            self._ruleset()  # (rules run live from open on)

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

        # NDJSON (and other) bytes decode in pyarrow, mostly without the GIL: in this
        # thread, once admitted, side by side with other appenders and the leader's fsync.
        stored = self._engine.append(decode_and_normalize, weight=expected_events(data),
                                     source=source, position=position, timeout_s=timeout,
                                     own_thread=isinstance(data, bytes | bytearray | memoryview))
        done = prepared[0] if prepared else None  # a duplicate was never decoded
        return Receipt(stored.count, stored.first_seq, stored.last_seq,
                       done.rejected if done else 0, done.dead_letter if done else None,
                       source, stored.position, stored.duplicate, stored.duplicates)

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
            max_samples_per_key: int = 1, where: str | None = None) -> Result:
        """Run an EQL query (Elastic's Event Query Language) over the store.

        ``process where process.name == "cmd.exe" | head 10`` finds events;
        ``start`` (inclusive) and ``end`` (exclusive) bound their time, ``size``
        the number returned (None: all). Strings compare case-sensitively except
        through ``:``, ``in~``, ``like~``, ``regex~`` and the ``~`` functions;
        ``case_insensitive=True`` makes every comparison so (Endgame's EQL). The
        category is read from ``category_field`` (the store's setting, default
        ``event.category``). ``field_types={"f": "date"}`` declares a field a date
        (``"version"``: a software version). ``max_samples_per_key``: how many
        samples a ``sample`` query returns per key. ``where``: an EQL condition
        (``host.name == "a" and level != "debug"``) that every event the query
        considers must meet, missing and ``until`` stages included (Elasticsearch's
        ``filter``). Returns a
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
                           field_types=field_types, max_samples_per_key=max_samples_per_key,
                           where=where)

    def logql(self, query: str, *, start: object = None, end: object = None,
              limit: int = 100, direction: str = "backward", step_ns: int | None = None,
              instant_ns: int | None = None, line_field: str | None = None,
              label_fields: Sequence[str] | None = None, categorize: bool = False
              ) -> LogqlResult:
        """Run a LogQL query (Grafana Loki's language) over the store.

        ``{app="api"} |= "error" | json | status >= 500`` gives streams (a label
        set and its ``(ns, line)`` entries): at most ``limit``, the newest
        (``direction="backward"``) or the oldest, in ``[start, end)``.
        ``sum by (level) (count_over_time({app="api"}[1m]))`` gives series, at
        ``start``, ``start + step_ns``, ... ``end`` (a matrix) or at
        ``instant_ns`` (a vector). The log line is ``line_field`` (default: the
        first of ``message``, ``body``, ``line``, ``msg``, ``log``) and the labels
        ``label_fields`` (default: every text field; ``service.name`` is the label
        ``service_name``). ``categorize`` keeps the labels a query's pipeline
        adds apart, per entry (Loki's ``categorize-labels``). Without ``start``
        and ``end``, a log query reads everything up to now, and a metric query
        (with neither ``instant_ns``) steps over the stored events' time span.
        See :func:`tidal.correlate.logql.run_logql`.
        """
        from tidal.correlate.logql import LogqlOptions, run_logql

        options = LogqlOptions(line_field, tuple(label_fields) if label_fields else None)
        with self.snapshot() as snap:
            return run_logql(snap, query, start_ns=parse_instant(start, name="start"),
                             end_ns=parse_instant(end, name="end"), limit=limit,
                             direction=direction, step_ns=step_ns, instant_ns=instant_ns,
                             options=options, categorize=categorize)

    def logql_labels(self, *, start: object = None, end: object = None,
                     selector: str | None = None, line_field: str | None = None,
                     label_fields: Sequence[str] | None = None) -> list[str]:
        """The LogQL label names some event in ``[start, end)`` carries (among the
        entries of ``selector``, a log query, when given; see :meth:`logql`)."""
        from tidal.correlate.logql import LogqlOptions
        from tidal.correlate.logql.labels import label_names

        options = LogqlOptions(line_field, tuple(label_fields) if label_fields else None)
        with self.snapshot() as snap:
            return label_names(snap, start_ns=_ns(start, "start", 0),
                               end_ns=_ns(end, "end", now_ns() + 1), selector=selector,
                               options=options)

    def logql_label_values(self, name: str, *, start: object = None, end: object = None,
                           selector: str | None = None, line_field: str | None = None,
                           label_fields: Sequence[str] | None = None) -> list[str]:
        """The values LogQL label ``name`` takes in ``[start, end)`` (among the entries
        of ``selector``, a log query, when given)."""
        from tidal.correlate.logql import LogqlOptions
        from tidal.correlate.logql.labels import label_values

        options = LogqlOptions(line_field, tuple(label_fields) if label_fields else None)
        with self.snapshot() as snap:
            return label_values(snap, name, start_ns=_ns(start, "start", 0),
                                end_ns=_ns(end, "end", now_ns() + 1), selector=selector,
                                options=options)

    def logql_series(self, selectors: Sequence[str], *, start: object = None,
                     end: object = None, line_field: str | None = None,
                     label_fields: Sequence[str] | None = None) -> list[dict[str, str]]:
        """The label sets of the LogQL streams ``selectors`` match in ``[start, end)``."""
        from tidal.correlate.logql import LogqlOptions
        from tidal.correlate.logql.labels import series

        options = LogqlOptions(line_field, tuple(label_fields) if label_fields else None)
        with self.snapshot() as snap:
            return series(snap, selectors, start_ns=_ns(start, "start", 0),
                          end_ns=_ns(end, "end", now_ns() + 1), options=options)

    def logql_index_stats(self, query: str, *, start: object = None, end: object = None,
                          line_field: str | None = None,
                          label_fields: Sequence[str] | None = None) -> IndexStats:
        """Loki's index statistics of ``query``'s stream selector in ``[start, end)``: its
        streams, chunks (Tidal has none: one a stream), line bytes and entries. See
        :func:`tidal.correlate.logql.index.index_stats`."""
        from tidal.correlate.logql import LogqlOptions
        from tidal.correlate.logql.index import index_stats

        options = LogqlOptions(line_field, tuple(label_fields) if label_fields else None)
        with self.snapshot() as snap:
            return index_stats(snap, query, start_ns=_ns(start, "start", 0),
                               end_ns=_ns(end, "end", now_ns() + 1), options=options)

    def logql_volume(self, query: str, *, start: object = None, end: object = None,
                     step_ns: int | None = None, target_labels: Sequence[str] | None = None,
                     aggregate_by: str = "series", limit: int = 100,
                     line_field: str | None = None,
                     label_fields: Sequence[str] | None = None) -> list[Series]:
        """The line bytes of ``query``'s stream selector in ``[start, end]``, grouped as
        Loki's ``/index/volume`` groups them (by the selector's labels, ``target_labels``,
        or per label name with ``aggregate_by="labels"``), largest first: one point at
        ``end``, or one per ``step_ns``. See :func:`tidal.correlate.logql.index.volume`."""
        from tidal.correlate.logql import LogqlOptions
        from tidal.correlate.logql.index import volume

        if aggregate_by not in ("series", "labels"):
            raise ConfigError(f"aggregate_by must be series or labels, not {aggregate_by!r}",
                              field="aggregate_by")
        options = LogqlOptions(line_field, tuple(label_fields) if label_fields else None)
        with self.snapshot() as snap:
            return volume(snap, query, start_ns=_ns(start, "start", 0),
                          end_ns=_ns(end, "end", now_ns()), step_ns=step_ns,
                          target_labels=target_labels,
                          aggregate_by="series" if aggregate_by == "series" else "labels",
                          limit=limit, options=options)

    def logql_detected_fields(self, query: str, *, start: object = None, end: object = None,
                              line_limit: int = 100, line_field: str | None = None,
                              label_fields: Sequence[str] | None = None
                              ) -> list[DetectedField]:
        """The fields (JSON or logfmt keys) of the newest ``line_limit`` lines of log
        query ``query`` in ``[start, end)``: Loki's ``detected_fields``. See
        :func:`tidal.correlate.logql.detected.detected_fields`."""
        from tidal.correlate.logql import LogqlOptions
        from tidal.correlate.logql.detected import detected_fields

        options = LogqlOptions(line_field, tuple(label_fields) if label_fields else None)
        with self.snapshot() as snap:
            return detected_fields(snap, query, start_ns=_ns(start, "start", 0),
                                   end_ns=_ns(end, "end", now_ns() + 1),
                                   line_limit=line_limit, options=options)

    def logql_detected_labels(self, *, start: object = None, end: object = None,
                              selector: str | None = None, line_field: str | None = None,
                              label_fields: Sequence[str] | None = None) -> dict[str, int]:
        """Each LogQL label's number of distinct values in ``[start, end)`` (among the
        entries of ``selector``, a log query, when given): Loki's ``detected_labels``."""
        from tidal.correlate.logql import LogqlOptions
        from tidal.correlate.logql.labels import label_cardinalities

        options = LogqlOptions(line_field, tuple(label_fields) if label_fields else None)
        with self.snapshot() as snap:
            return label_cardinalities(snap, start_ns=_ns(start, "start", 0),
                                       end_ns=_ns(end, "end", now_ns() + 1),
                                       selector=selector, options=options)

    def logql_patterns(self, query: str, *, start: object = None, end: object = None,
                       step_ns: int = 60 * 10**9, limit: int = 50,
                       line_field: str | None = None,
                       label_fields: Sequence[str] | None = None) -> list[LogPattern]:
        """The ``limit`` most frequent patterns of the lines of log query ``query`` in
        ``[start, end)`` (a line with its digit-bearing tokens as ``<_>``), counted
        per ``step_ns``: Loki's ``patterns``. See :mod:`tidal.correlate.logql.mining`."""
        from tidal.correlate.logql import LogqlOptions
        from tidal.correlate.logql.mining import log_patterns

        options = LogqlOptions(line_field, tuple(label_fields) if label_fields else None)
        with self.snapshot() as snap:
            return log_patterns(snap, query, start_ns=_ns(start, "start", 0),
                                end_ns=_ns(end, "end", now_ns() + 1), step_ns=step_ns,
                                limit=limit, options=options)

    def logql_tail(self, query: str, *, start: object = None, limit: int = 100,
                   line_field: str | None = None,
                   label_fields: Sequence[str] | None = None) -> LogqlTail:
        """Tail a LogQL log query: what Loki's ``/loki/api/v1/tail`` streams.

        The tail's ``history`` holds the newest ``limit`` stored entries from
        ``start`` on (default: an hour ago), each stream oldest first; iterating
        it then yields the streams of every batch committed after that history
        was read, without a gap or a repeat (the selector and pipeline run over
        each batch as columns). ``close()`` it to stop. See :meth:`logql`.

        Raises:
            QueryError: bad syntax, or a metric query.
        """
        from tidal.correlate.logql import LogqlOptions
        from tidal.correlate.logql.tail import LogqlTail, history, tail_query

        if limit < 1:
            raise ConfigError(f"limit must be a positive number of entries, not {limit}",
                              field="limit")
        options = LogqlOptions(line_field, tuple(label_fields) if label_fields else None)
        with self.snapshot() as snap:
            tail = tail_query(query, snap.ts_field, options)
            past = history(snap, query, _ns(start, "start", now_ns() - 3600 * 10**9),
                           limit, options)
            follower = self.follow(snap.max_seq + 1)
        return LogqlTail(tail, past, follower)

    def correlate(self, query: str, *, start: object = None, end: object = None
                  ) -> Iterator[Correlation]:
        """Run a CorQL join over the store: the correlations, in the order they complete.

        ``events({service="frontend"})[5m] and on(request_id) within(30s)
        events({service="backend"}) {status=~"5.."}``: an event of the first
        selector (the anchor) and the earliest unused event of the other within
        30 s of it, with the same ``request_id``, make one correlation (both are
        used up; ``group_left(..)`` gives one per anchor event, ``group_right(..)``
        one per other event). ``or`` keeps an anchor without a partner as a
        partial correlation, ``unless`` keeps only those without one. ``end``
        (default: now) is where each selector's ``[range]`` looks back from; the
        README, "CorQL", has the whole language.

        Raises:
            QueryError: the query is malformed (the message names line and column),
                names an unknown source or key field.
        """
        from tidal.correlate.corql.run import run_corql  # (numba loads on first use)

        with self.snapshot() as snap:
            found = run_corql(snap, query, start=start, end=end).correlations
        return iter(found)

    def subscribe(self, query: str, *, language: str = "eql", allowed_lateness: object = "0s",
                  idle_advance: object = None, max_keys: int | None = 1_000_000,
                  max_state_bytes: int | None = 256 << 20, clock: Any = None,
                  callback: Any = None, from_seq: int | None = None, start: object = None
                  ) -> Subscription:
        """Run a query live: its correlations as the events that complete them are
        committed.

        ``language``: ``"eql"`` (event queries and sequences) or ``"corql"``. Event
        time drives everything: the watermark is the highest event time seen
        minus ``allowed_lateness``; events are matched in time order once it
        passes them, so the answers are those of :meth:`eql` / :meth:`correlate`
        over the same events, however they were split into appends and in
        whatever order they came within the lateness. An event below the
        watermark is late: counted in ``stats().late`` (and stored) but not
        matched. Absence (a missing-event stage at the end of a sequence, an
        ``or`` or ``unless``) fires when the watermark passes its deadline; with
        ``idle_advance="30s"`` the watermark also follows ``clock`` (default: the
        system clock, int ns) minus that when no event has come for that long.
        Past ``max_keys`` keys or ``max_state_bytes`` of state, the oldest held
        events are evicted and counted. ``from_seq`` (or ``start``, an event
        time) starts in the past: history is replayed through the same executor,
        then it goes on live, with no gap and no repeat.

        Returns a :class:`~tidal.correlate.subscription.Subscription`: iterate it
        (``for`` or ``async for``), or pass ``callback``; ``close()`` ends it.

        Raises:
            QueryError: the query is malformed, or cannot run live (pipes, EQL
                ``join`` and ``sample``).
            ConfigError: a bad option.
        """
        from tidal.config import parse_duration_ns
        from tidal.correlate.live import LiveExecutor
        from tidal.correlate.subscription import Subscription

        if language not in ("eql", "corql"):
            raise ConfigError(f"language must be 'eql' or 'corql', not {language!r}",
                              field="language")
        lateness_ns = parse_duration_ns(allowed_lateness, name="allowed_lateness")
        idle_ns = None if idle_advance is None else parse_duration_ns(
            idle_advance, name="idle_advance")
        for name, bound in (("max_keys", max_keys), ("max_state_bytes", max_state_bytes)):
            if bound is not None and (not isinstance(bound, int) or bound < 1):
                raise ConfigError(f"{name} must be a whole number >= 1 or None", field=name)
        start_ns = parse_instant(start, name="start")
        with self.snapshot() as snap:
            schema, ts_field = snap.schema, snap.ts_field
        if language == "corql":
            from tidal.correlate.corql.run import live_planner as corql_planner

            planner = corql_planner(query, ts_field=ts_field)
        else:
            from tidal.correlate.eql.run import live_planner

            planner = live_planner(query, ts_field=ts_field,
                                   category_field=self.config.category_field)
        executor = LiveExecutor(planner, schema, ts_field=ts_field,
                                allowed_lateness_ns=lateness_ns, max_keys=max_keys,
                                max_state_bytes=max_state_bytes, start_ns=start_ns, text=query)
        if start_ns is not None and from_seq is None:
            from_seq = 0
        return Subscription(self.follow(from_seq), executor, idle_advance_ns=idle_ns,
                            clock=clock, callback=callback)

    def followed_by(self, a: str, b: str, *, within: object, by: str | Sequence[str],
                    start: object = None, end: object = None, examples: int = 5
                    ) -> FollowedBy:
        """How often events matching ``a`` are followed by one matching ``b`` for the
        same key within ``within``, how soon, with example pairs.

        ``a`` and ``b`` are EQL conditions (``event.action == "logon"``) or event
        queries (``authentication where ...``). ``by``: the key, a field path or a
        list of them; an event with a null key value never pairs. ``within``: a
        duration (``"30s"``, ``"250ms"``, ``"5m"``, ``"1h"``, ``"2d"``), int ns or a
        ``timedelta``. Only events in [``start``, ``end``) take part, as ``a`` or
        ``b``.

        How it works: an ``a`` event is followed when a ``b`` event of its key comes
        after it in (timestamp, ``_seq``) order, no more than ``within`` later
        (inclusive); an event that matches both never follows itself. Its gap is
        the time to the first such ``b`` (several ``a`` events may share one
        ``b``). One scan reads only the fields the conditions and key need; the
        pairing is columnar (:mod:`tidal.correlate.followed`).

        Returns:
            A :class:`~tidal.correlate.followed.FollowedBy`: ``total`` (``a`` events
            with a key), ``followed``, ``ratio``, the gaps' mean, p50 and p99 (ns,
            None when nothing followed), ``examples`` (the first followed ``a``
            events in time, each a ``Pair(a_seq, b_seq, key, gap_ns)``),
            ``within_ns`` and ``by``.

        Raises:
            QueryError: a condition is malformed (the message names its line and
                column) or does not fit the data.
            ConfigError: a bad ``within``, ``by`` (an unknown or nested field) or
                ``examples``.

        Example:
            >>> import tidal
            >>> store = tidal.open()
            >>> _ = store.append([
            ...     {"timestamp": f"2026-01-01T00:{m:02d}:00Z", "user": u,
            ...      "event": {"action": act}}
            ...     for m, u, act in [(0, "ann", "fail"), (2, "ann", "logon"),
            ...                       (3, "bob", "fail"), (30, "bob", "logon")]])
            >>> seen = store.followed_by('event.action == "fail"', 'event.action == "logon"',
            ...                          within="5m", by="user")
            >>> seen.total, seen.followed, seen.ratio, seen.gap_p50_ns
            (2, 1, 0.5, 120000000000)
            >>> seen.examples[0].key
            {'user': 'ann'}
            >>> store.close()
        """
        from tidal.correlate.followed import followed_by  # (numba loads on first use)

        with self.snapshot() as snap:
            return followed_by(snap, a, b, within=within, by=by, start=start, end=end,
                               examples=examples, category_field=self.config.category_field)

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

        Nested fields are structs: ``kubernetes.pod.name`` works as written. The
        view ``correlations`` holds the rules' stored correlations.
        Read-only and confined to the store's own files: one statement per
        call, reads only; anything else, and bad SQL, raise
        :class:`~tidal.errors.QueryError`. Keys SQL cannot show as written
        (``""``, control characters, case twins) appear under their JSON
        string literal (see the README).
        """
        engine = self._sql_engine()
        views = {"correlations": self._rule_set.table() if self._rule_set is not None
                 else _no_correlations()}

        def run() -> pa.Table:
            with self._engine.snapshot() as snap:
                return engine.query(snap, query, params, views=views)
        return self._engine.retrying(run)

    # -- rules ----------------------------------------------------------------
    def add_rule(self, name: str, query: str, *, language: str = "eql") -> None:
        """Add a rule: a named live query whose correlations are stored durably.

        The rule persists in the store directory and runs live from the next
        event on (and from every later :func:`open` on). Its correlations are
        kept in ``correlations.log``: read them with :meth:`correlations` or the
        SQL view ``correlations``. After a crash, reopening replays the stored
        events through the rules, so no correlation of an acknowledged event is
        lost and none is stored twice.

        Raises:
            QueryError: the query is malformed or cannot run live.
            ConfigError: the name is taken, or not 1 to 200 characters.
        """
        self._ruleset().add(name, query, language, self.max_seq() + 1)

    def remove_rule(self, name: str) -> None:
        """Stop and forget the rule ``name`` (its stored correlations stay).

        Raises:
            ConfigError: there is no such rule.
        """
        self._ruleset().remove(name)

    def rules(self) -> list[RuleInfo]:
        """The rules, each with its query, language, first ``_seq`` and live stats."""
        return self._ruleset().infos()

    def correlations(self, rule: str | None = None, start: object = None, end: object = None
                     ) -> pa.Table:
        """The stored correlations of the rules (of ``rule``; starting in [``start``,
        ``end``)), as the SQL view ``correlations`` has them: ``rule``, ``id``,
        ``key`` (JSON), ``start``, ``end``, ``completeness`` and the ``seqs`` of
        their events."""
        return self._ruleset().table(rule, parse_instant(start, name="start"),
                                     parse_instant(end, name="end"))

    def _ruleset(self) -> RuleSet:
        with self._rules_lock:
            if self._rule_set is None:
                from tidal.correlate.ruleset import RuleSet

                def start(query: str, language: str, from_seq: int, callback: Any
                          ) -> Subscription:
                    return self.subscribe(query, language=language, from_seq=from_seq,
                                          callback=callback)

                self._rule_set = RuleSet(self.path, self._fs, start, run=not self.read_only)
            return self._rule_set

    def _sql_engine(self) -> SqlEngine:
        with self._sql_lock:
            if self._sql is None:
                from tidal.query.sql import SqlEngine

                self._sql = SqlEngine(self.config.timestamp_field, self.config.entity_field)
            return self._sql

    def stats(self) -> dict[str, Any]:
        """Counts and sizes: events, entities, segments, WAL, memory, background errors;
        ``dedup``: the key, the window, duplicates skipped since open and events
        tracked (None without ``dedup_key``)."""
        return {**store_stats(self._engine, self.path), "dedup": self._engine.dedup_stats()}

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
        with self._rules_lock:
            rules, self._rule_set = self._rule_set, None
        if rules is not None:
            rules.close()
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


def _ns(value: object, name: str, default: int) -> int:
    """A time argument in ns (``default`` for None)."""
    found = parse_instant(value, name=name)
    return default if found is None else found


def _no_correlations() -> pa.Table:
    from tidal.correlate.ruleset import CORRELATIONS_SCHEMA

    return CORRELATIONS_SCHEMA.empty_table()


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

    ``dedup_key=["request_id"]`` (dotted field paths) with ``dedup_window="10m"``
    skips an appended event whose key equals that of a stored event (or of one
    earlier in the same append) within the window of its timestamp; receipts and
    ``stats()["dedup"]`` count what was skipped. Events with a null or absent key
    field are never duplicates. The store does not remember these settings: give
    them at every open (opening rebuilds the index from the last window stored).
    See :mod:`tidal.store.dedup`.
    """
    if path is not None:
        config = settings.merge(settings.load(Path(path)), config)
    return Store(path, StoreConfig.build(config), read_only=read_only, repair=repair)
