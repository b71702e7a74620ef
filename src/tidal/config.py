"""One frozen settings object for a store.

``StoreConfig`` validates in ``__post_init__``. :func:`StoreConfig.from_env`
layers ``TIDAL_*`` environment variables under explicit keyword arguments;
nothing below this module reads ``os.environ``. :func:`parse_duration_ns` reads
durations (``"10m"``) for settings that take one.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from tidal.errors import ConfigError

TimestampUnit = Literal["auto", "s", "ms", "us", "ns"]
Durability = Literal["group", "interval", "none"]
MissingTimestamp = Literal["ingest_time", "reject"]

_UNITS = ("auto", "s", "ms", "us", "ns")
_DURABILITY = ("group", "interval", "none")
_MISSING = ("ingest_time", "reject")
UNITS_NS = {"nanos": 1, "ns": 1, "micros": 1_000, "us": 1_000, "ms": 1_000_000,
            "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86_400 * 10**9}
"""Duration units (those of EQL's ``maxspan``)."""
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*")
_MAX_NS = 2**63 - 1


def parse_duration_ns(value: object, *, name: str = "duration") -> int:
    """A duration in nanoseconds: a number and a unit (``"10m"``, ``"1.5s"``,
    ``"250ms"``; units as in EQL's ``maxspan``: ns, us, ms, s, m, h, d), a
    number of seconds (``600``, ``"600"``) or a ``timedelta``.

    Raises:
        ConfigError: not a duration, negative, or past 2**63-1 ns; it names ``name``.

    >>> parse_duration_ns("10m"), parse_duration_ns(1.5), parse_duration_ns("0s")
    (600000000000, 1500000000, 0)
    """
    if isinstance(value, dt.timedelta):
        if value < dt.timedelta(0):
            raise ConfigError(f"{name} must not be negative, not {value}", field=name)
        exact: int = value // dt.timedelta(microseconds=1) * 1000
        if exact >= _MAX_NS:
            raise ConfigError(f"{name} is too long: {value}", field=name)
        return exact
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{name} must be a duration such as '10m' or a number of seconds, "
                          f"not {type(value).__name__}", field=name)
    if isinstance(value, str):
        found = _DURATION.fullmatch(value.lower())
        if found is None or found.group(2) not in ("", *UNITS_NS):
            raise ConfigError(f"{name} must be a number and a unit ({', '.join(UNITS_NS)}), "
                              f"such as '10m', not {value!r}", field=name)
        amount: float = float(found.group(1))
        per = UNITS_NS[found.group(2) or "s"]
    else:
        amount, per = value, UNITS_NS["s"]
        if not math.isfinite(amount) or amount < 0:
            raise ConfigError(f"{name} must be a finite number of seconds, at least 0, "
                              f"not {value!r}", field=name)
    total = amount * per  # (exact for an int)
    if total >= _MAX_NS:
        raise ConfigError(f"{name} is too long: {value!r}", field=name)
    return round(total)


@dataclass(frozen=True)
class StoreConfig:
    """Settings of one store. Sizes are bytes, ages seconds.

    Attributes:
        timestamp_field: dotted path of the event-time field.
        timestamp_unit: unit of numeric timestamps; ``"auto"`` guesses by magnitude
            (below 1e11 seconds, below 1e14 milliseconds, below 1e17 microseconds,
            else nanoseconds) and parses RFC 3339 / ISO 8601 strings.
        entity_field: dotted path of the field whose value names the entity.
        category_field: dotted path of the field EQL's event category reads
            (``event.category`` for ECS data, ``event_type`` for Endgame's schema).
        missing_timestamp: ``"ingest_time"`` stamps events without a timestamp with
            the ingest time; ``"reject"`` refuses them.
        durability: ``"group"`` fsyncs every append before it returns (appends from
            many threads that arrive together share one write and one fsync);
            ``"interval"`` fsyncs at most every ``fsync_interval_s``; ``"none"``
            leaves it to the OS.
        group_commit_max_events: a group of concurrent appends closes at this many events.
        group_commit_max_wait_us: how long a group waits to fill before it is written
            (0: never waits; groups fill while the previous fsync runs).
        memtable_bytes: flush the memtable to a segment past this many bytes.
        memtable_age_s: ... or when its oldest event is this old (0 disables).
        memory_limit_bytes: hard cap on memtables waiting for flushes; past it appends
            wait (up to their ``timeout``) and then raise ``BackpressureError``.
            ``None``: four times ``memtable_bytes``.
        segment_rows: segments hold at most this many events (flushes and
            compactions cut there).
        segment_span_s: ... and cover less than this much event time, so that a
            query over a time window reads only the segments of that window.
        compact_min_rows: segments smaller than this (and than half of
            ``segment_rows``) are merged by ``compact()``.
        compact_chunk_rows: compaction merges segments adjacent in time into chunks of
            up to this many events (and ``segment_span_s``), written as segments of
            at most ``segment_rows`` that split the chunk by entity: a timeline
            reads one slice per chunk, and memory stays bounded by ``segment_rows``.
        retention_age_s: drop segments whose newest event is older than this (0: keep).
        retention_bytes: drop oldest segments while the store exceeds this (0: keep).
        cache_bytes: decoded segment data kept in memory for timelines.
        dead_letter_path: where ``on_error="skip"`` writes bad lines; default
            ``<store>/dead-letter.ndjson`` (in memory: ``./tidal-dead-letter.ndjson``).
        dedup_key: dotted paths of the fields that identify an event (``["request_id"]``,
            ``["host.name", "event.id"]``); with it, an appended event whose key equals
            that of a stored event within ``dedup_window`` of its timestamp is skipped
            and counted (see :mod:`tidal.store.dedup`). ``None``: no deduplication.
            Not stored with the store: give it at every open. ``TIDAL_DEDUP_KEY``
            separates paths with commas.
        dedup_window: how far apart in event time two events with one key may be and
            still be duplicates (``|Δt| <= dedup_window``): a duration (``"10m"``), a
            ``timedelta`` or seconds; required with ``dedup_key``.
    """

    timestamp_field: str = "timestamp"
    timestamp_unit: TimestampUnit = "auto"
    entity_field: str = "entity"
    category_field: str = "event.category"
    missing_timestamp: MissingTimestamp = "ingest_time"
    durability: Durability = "group"
    fsync_interval_s: float = 0.2
    group_commit_max_events: int = 100_000
    group_commit_max_wait_us: int = 0
    memtable_bytes: int = 64 << 20
    memtable_age_s: float = 300.0
    memory_limit_bytes: int | None = None
    segment_rows: int = 1_000_000
    segment_span_s: float = 3600.0
    compact_min_rows: int = 500_000
    compact_chunk_rows: int = 4_000_000
    retention_age_s: float = 0.0
    retention_bytes: int = 0
    cache_bytes: int = 512 << 20
    dead_letter_path: str | None = None
    dedup_key: tuple[str, ...] | None = None
    dedup_window: str | float | dt.timedelta | None = None

    def __post_init__(self) -> None:
        if self.timestamp_unit not in _UNITS:
            raise ConfigError(
                f"timestamp_unit must be one of {_UNITS}, not {self.timestamp_unit!r}",
                field="timestamp_unit",
            )
        if self.durability not in _DURABILITY:
            raise ConfigError(
                f"durability must be one of {_DURABILITY}, not {self.durability!r}",
                field="durability",
            )
        if self.missing_timestamp not in _MISSING:
            raise ConfigError(
                f"missing_timestamp must be one of {_MISSING}, not {self.missing_timestamp!r}",
                field="missing_timestamp",
            )
        for name in ("timestamp_field", "entity_field", "category_field"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or any(not p for p in value.split(".")):
                raise ConfigError(f"{name} must be a dotted field path, not {value!r}", field=name)
        for name in ("memtable_bytes", "segment_rows", "segment_span_s", "compact_min_rows",
                     "compact_chunk_rows", "group_commit_max_events"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive", field=name)
        for name in ("memtable_age_s", "retention_age_s", "retention_bytes", "cache_bytes",
                     "fsync_interval_s", "group_commit_max_wait_us"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative", field=name)
        if self.memory_limit_bytes is not None and self.memory_limit_bytes < self.memtable_bytes:
            raise ConfigError("memory_limit_bytes must be at least memtable_bytes",
                              field="memory_limit_bytes")
        self._check_dedup()

    def _check_dedup(self) -> None:
        key = self.dedup_key
        if key is None:
            if self.dedup_window is not None:
                raise ConfigError("dedup_window needs dedup_key (the fields that identify "
                                  "an event)", field="dedup_window")
            return
        if isinstance(key, str):
            key = (key,)
        if not isinstance(key, (list, tuple)):
            raise ConfigError(f"dedup_key must be a list of field paths, not "
                              f"{type(key).__name__}", field="dedup_key")
        if not key:
            raise ConfigError("dedup_key must name at least one field", field="dedup_key")
        for path in key:
            if not isinstance(path, str) or not path or any(not p for p in path.split(".")):
                raise ConfigError(f"dedup_key must hold dotted field paths, not {path!r}",
                                  field="dedup_key")
        object.__setattr__(self, "dedup_key", tuple(key))
        if self.dedup_window is None:
            raise ConfigError("dedup_window is needed with dedup_key (a duration such as "
                              "'10m')", field="dedup_window")
        parse_duration_ns(self.dedup_window, name="dedup_window")

    @property
    def dedup_window_ns(self) -> int | None:
        """``dedup_window`` in nanoseconds (None without ``dedup_key``)."""
        if self.dedup_key is None or self.dedup_window is None:
            return None
        return parse_duration_ns(self.dedup_window, name="dedup_window")

    @classmethod
    def build(cls, overrides: Mapping[str, Any] | None = None,
              environ: Mapping[str, str] | None = None) -> StoreConfig:
        """Make a config from ``TIDAL_<NAME>`` variables, then ``overrides``.

        Unknown override names raise :class:`ConfigError`.
        """
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        env = os.environ if environ is None else environ
        for name, f in known.items():
            raw = env.get(f"TIDAL_{name.upper()}")
            if raw is not None:
                values[name] = _coerce(name, f.type, raw)
        for name, value in (overrides or {}).items():
            if name not in known:
                raise ConfigError(f"unknown option {name!r}", field=name)
            values[name] = value
        return cls(**values)


def _coerce(name: str, type_name: Any, raw: str) -> Any:
    text = str(type_name)
    if text == "tuple[str, ...] | None":
        return tuple(part.strip() for part in raw.split(",")) if raw.strip() else None
    try:
        if text in ("int", "int | None"):
            return int(raw)
        if text == "float":
            return float(raw)
    except ValueError as exc:
        raise ConfigError(f"TIDAL_{name.upper()}={raw!r} is not a {text}", field=name) from exc
    return raw
