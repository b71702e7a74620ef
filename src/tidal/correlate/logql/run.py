"""Running a LogQL query over a store snapshot: the entry point and its results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa

from tidal.correlate.logql.ast import LogQuery, Query, VectorAggregation
from tidal.correlate.logql.evaluate import (
    categorized_streams,
    log_streams,
    metric_series,
    read_newest,
)
from tidal.correlate.logql.frame import Layout, layout_of
from tidal.correlate.logql.metric import Scalar
from tidal.correlate.logql.parser import parse
from tidal.errors import ConfigError, QueryError
from tidal.model.time import now_ns
from tidal.store.readers import Snapshot

__all__ = ["LogqlOptions", "LogqlResult", "Series", "Stream", "is_metric", "parse_logql",
           "run_logql", "stored_span"]

_DEFAULT_POINTS = 250
_SECOND_NS = 10**9


@dataclass(frozen=True)
class LogqlOptions:
    """Which event fields a LogQL query sees as the line and as labels.

    Attributes:
        line_field: the log line's field. None: the first of ``message``,
            ``body``, ``line``, ``msg``, ``log`` in the schema; when there is
            none, the line is the whole event (timestamp and ``_seq`` left out)
            as JSON object text.
        label_fields: the fields that are labels (dotted paths; a label's name
            is its path with ``.`` as ``_``). None: every string field (or
            dictionary of strings) except the timestamp, ``_seq`` and the line,
            struct leaves included (``service.name`` is ``service_name``).
    """

    line_field: str | None = None
    label_fields: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.line_field is not None and not self.line_field:
            raise ConfigError("line_field must be a field name or None", field="line_field")
        if self.label_fields is not None and (
                isinstance(self.label_fields, str) or not all(self.label_fields)):
            raise ConfigError("label_fields must be a tuple of field names",
                              field="label_fields")


@dataclass(frozen=True)
class Stream:
    """One stream of a log query: its labels and entries ``(ts_ns, line)``; when
    categorized, ``parsed`` holds each entry's labels added by the pipeline."""

    labels: dict[str, str]
    entries: list[tuple[int, str]]
    parsed: list[dict[str, str]] | None = None


@dataclass(frozen=True)
class Series:
    """One series of a metric query: its labels and points ``(ts_ns, value)``."""

    labels: dict[str, str]
    points: list[tuple[int, float]]


@dataclass(frozen=True)
class LogqlResult:
    """A query's answer: ``streams`` for a log query, ``series`` for a metric
    (``matrix``: a point per step with a value; ``vector``: one point each;
    ``scalar``: one series with no labels and one point, for a query of
    numbers only at an instant)."""

    kind: Literal["streams", "matrix", "vector", "scalar"]
    streams: list[Stream] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)

    def table(self, *, forward: bool = False, time_name: str = "time") -> pa.Table:
        """The answer as rows: log lines as ``time``, ``labels`` (``{a="x"}`` text) and
        ``line``, newest first (oldest with ``forward``), as logcli prints them; a
        metric's points as ``labels``, ``time`` and ``value``.

        >>> LogqlResult("streams", streams=[Stream({"a": "x"}, [(2, "b"), (1, "a")])]
        ...             ).table().column("line").to_pylist()
        ['b', 'a']
        """
        stamp = pa.timestamp("ns", tz="UTC")
        if self.kind == "streams":
            rows = sorted(((ts, _shown(s.labels), line) for s in self.streams
                           for ts, line in s.entries), key=lambda row: row[0],
                          reverse=not forward)
            return pa.table({time_name: pa.array([r[0] for r in rows], stamp),
                             "labels": pa.array([r[1] for r in rows], pa.string()),
                             "line": pa.array([r[2] for r in rows], pa.string())})
        points = [(_shown(s.labels), ts, value) for s in self.series for ts, value in s.points]
        return pa.table({"labels": pa.array([p[0] for p in points], pa.string()),
                         time_name: pa.array([p[1] for p in points], stamp),
                         "value": pa.array([p[2] for p in points], pa.float64())})


def _shown(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def stored_span(snapshot: Snapshot) -> tuple[int, int] | None:
    """The earliest and latest event time in ``snapshot`` (None: no events): from
    the segments' manifest entries and the memtable's time column."""
    import pyarrow.compute as pc

    lows = [m.min_ts for m in snapshot.segments]
    highs = [m.max_ts for m in snapshot.segments]
    for part in snapshot.memtable_parts:
        if part.num_rows and snapshot.ts_field in part.column_names:
            bounds = pc.min_max(pc.cast(part.column(snapshot.ts_field), pa.int64())).as_py()
            if bounds["min"] is not None:
                lows.append(bounds["min"])
                highs.append(bounds["max"])
    return (min(lows), max(highs)) if lows else None


def parse_logql(text: str) -> Query:
    """The AST of LogQL ``text``.

    Raises:
        QueryError: bad syntax, with line and column.

    >>> str(parse_logql('{app = "api"} |= "x"'))
    '{app="api"} |= "x"'
    """
    return parse(text)


def is_metric(text: str) -> bool:
    """Whether ``text`` is a metric query (else a log query).

    >>> is_metric('rate({app="api"}[1m])'), is_metric('{app="api"}')
    (True, False)
    """
    return not isinstance(parse(text), LogQuery)


def run_logql(snapshot: Snapshot, text: str, *, start_ns: int | None, end_ns: int | None,
              limit: int = 100,
              direction: str = "backward", step_ns: int | None = None,
              instant_ns: int | None = None, options: LogqlOptions | None = None,
              categorize: bool = False) -> LogqlResult:
    """Evaluate LogQL ``text`` over ``snapshot``.

    A log query reads the entries in ``[start_ns, end_ns)`` and returns at most
    ``limit`` of them, the newest (``direction="backward"``, each stream newest
    first) or the oldest (``"forward"``), as streams: one per label set,
    ordered by their labels (``instant_ns`` and ``step_ns`` play no part).

    A metric query is evaluated at ``instant_ns`` when given (a ``vector``),
    else at ``start_ns, start_ns + step_ns, ...`` up to and including ``end_ns``
    (a ``matrix``; ``step_ns`` defaults to the range over 250 points, at least
    a second). Each value covers the window ``(t - range, t]``. A window end left
    None is a log query's epoch or now; a stepped metric's, the stored events'
    earliest or latest time.

    ``categorize`` (log queries): streams by the labels the entries were read
    with, and each entry's labels from the pipeline (parsers, formats) apart in
    :attr:`Stream.parsed`, as Loki answers Grafana's ``categorize-labels``.

    Raises:
        QueryError: bad syntax, bad arguments, or a field in ``options`` the
            store does not have.

    Example:
        >>> import tidal
        >>> store = tidal.open()
        >>> _ = store.append([{"timestamp": "2025-01-01T00:00:01Z", "app": "api",
        ...                    "message": "GET /a 500"}])
        >>> with store.snapshot() as snap:
        ...     out = run_logql(snap, '{app="api"} |= "500"', start_ns=0, end_ns=2**62)
        >>> out.kind, out.streams[0].labels, out.streams[0].entries[0][1]
        ('streams', {'app': 'api'}, 'GET /a 500')
        >>> store.close()
    """
    query = parse(text)
    start_ns, end_ns = _window(snapshot, query, start_ns, end_ns, instant_ns)
    if direction not in ("backward", "forward"):
        raise QueryError(f"direction must be backward or forward, not {direction!r}")
    if limit < 1:
        raise QueryError(f"limit must be a positive number of entries, not {limit}")
    options = options or LogqlOptions()
    schema = snapshot.schema
    if snapshot.ts_field not in schema.names:  # nothing stored yet: numbers still compute
        if isinstance(query, LogQuery):
            return LogqlResult("streams")
        layout = Layout(snapshot.ts_field, None, {})
    else:
        layout = layout_of(schema, snapshot.ts_field, options.line_field, options.label_fields)
    if isinstance(query, LogQuery):
        if end_ns < start_ns:
            raise QueryError("end must not be before start")
        order: Literal["backward", "forward"] = "backward" if direction == "backward" \
            else "forward"
        frame = read_newest(snapshot, query, layout, start_ns, end_ns, limit, order)
        if categorize:
            return LogqlResult("streams", streams=[
                Stream(labels, entries, parsed)
                for labels, entries, parsed in categorized_streams(frame, limit, order)])
        return LogqlResult("streams", streams=[Stream(labels, entries)
                                               for labels, entries in log_streams(frame, limit,
                                                                                  order)])
    steps = _steps(start_ns, end_ns, step_ns, instant_ns)
    found = metric_series(snapshot, query, layout, steps)
    kind: Literal["matrix", "vector", "scalar"] = "vector" if instant_ns is not None \
        else "matrix"
    if isinstance(found, Scalar):
        points = list(zip(steps.tolist(), found.values.tolist(), strict=True))
        return LogqlResult("scalar" if instant_ns is not None else "matrix",
                           series=[Series({}, points)])
    if not (isinstance(query, VectorAggregation) and query.op in ("sort", "sort_desc")):
        found = sorted(found, key=lambda s: sorted(s.labels.items()))
    series = []
    for s in found:
        present = np.flatnonzero(s.present)
        series.append(Series(s.labels, list(zip(steps[present].tolist(),
                                                s.values[present].tolist(), strict=True))))
    return LogqlResult(kind, series=series)


def _window(snapshot: Snapshot, query: Query, start_ns: int | None, end_ns: int | None,
            instant_ns: int | None) -> tuple[int, int]:
    """The window with its defaults: a log query's from the epoch to now; a metric's
    (stepped, not instant) the stored events' span, which its steps need."""
    if start_ns is not None and end_ns is not None:
        return start_ns, end_ns
    first, last = 0, now_ns()
    if instant_ns is None and not isinstance(query, LogQuery):
        first, last = stored_span(snapshot) or (first, last)
    return (first if start_ns is None else start_ns), (last + 1 if end_ns is None else end_ns)


def _steps(start_ns: int, end_ns: int, step_ns: int | None, instant_ns: int | None
           ) -> np.ndarray:
    if instant_ns is not None:
        return np.array([instant_ns], dtype=np.int64)
    if end_ns < start_ns:
        raise QueryError("end must not be before start")
    if step_ns is None:
        step_ns = max(_SECOND_NS, (end_ns - start_ns) // _DEFAULT_POINTS)
    if step_ns <= 0:
        raise QueryError(f"step must be positive, not {step_ns} ns")
    if (end_ns - start_ns) // step_ns > 11_000:
        raise QueryError("too many points: (end - start) / step must be at most 11000, "
                         "as in Loki; raise the step")
    return np.arange(start_ns, end_ns + 1, step_ns, dtype=np.int64)
