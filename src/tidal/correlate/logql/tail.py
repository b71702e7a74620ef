"""Tailing a LogQL log query: its stored history, then each committed batch as it comes.

:class:`TailQuery` runs a parsed log query over one or more record batches at a
time: the stream selector's mask, then the pipeline, over whole columns (the
matchers compiled once per batch schema), and groups the entries left into
streams. :class:`LogqlTail` pairs the history (the newest ``limit`` entries from
``start``, taken from one snapshot) with a :class:`~tidal.store.feed.Follower`
that starts right after that snapshot, so no entry is missed or repeated.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import TypeAlias

import pyarrow as pa

from tidal.correlate.corql.matchers import MatcherPredicate, compile_matchers
from tidal.correlate.logql.ast import LogQuery
from tidal.correlate.logql.evaluate import log_streams
from tidal.correlate.logql.frame import Frame, Layout, layout_of
from tidal.correlate.logql.parser import parse
from tidal.correlate.logql.pipeline import run_pipeline
from tidal.correlate.logql.run import LogqlOptions, Stream, run_logql
from tidal.errors import QueryError
from tidal.model.paths import has_path
from tidal.store.feed import Follower
from tidal.store.readers import Snapshot

__all__ = ["LogqlTail", "TailQuery", "history", "tail_query"]

Batch: TypeAlias = "pa.RecordBatch | pa.Table"
_END_NS = 2**63 - 1


def tail_query(text: str, ts_field: str, options: LogqlOptions | None = None) -> TailQuery:
    """``text`` (a log query) ready to run over batches.

    Raises:
        QueryError: bad syntax, or a metric query.

    >>> q = tail_query('{app="api"} |= "500"', "timestamp")
    >>> t = pa.table({"timestamp": pa.array([2, 1], pa.timestamp("ns")), "_seq": [0, 1],
    ...               "app": ["api", "api"], "message": ["GET /a 500", "GET /b 200"]})
    >>> [(s.labels, s.entries) for s in q.streams([t])]
    [({'app': 'api'}, [(2, 'GET /a 500')])]
    """
    query = parse(text)
    if not isinstance(query, LogQuery):
        raise QueryError("only log queries can be tailed, not a metric query: "
                         f"{text!r}")
    return TailQuery(query, ts_field, options or LogqlOptions())


def history(snapshot: Snapshot, text: str, start_ns: int, limit: int,
            options: LogqlOptions | None = None) -> list[Stream]:
    """The newest ``limit`` entries of log query ``text`` stored in ``snapshot`` from
    ``start_ns`` on (timestamps after now included), each stream oldest first."""
    found = run_logql(snapshot, text, start_ns=start_ns, end_ns=_END_NS, limit=limit,
                      direction="backward", options=options)
    return [Stream(s.labels, s.entries[::-1]) for s in found.streams]


@dataclass(frozen=True)
class TailQuery:
    """A log query run batch by batch (build it with :func:`tail_query`)."""

    query: LogQuery
    ts_field: str
    options: LogqlOptions
    _compiled: dict[pa.Schema, tuple[Layout, MatcherPredicate]] = field(
        default_factory=dict, repr=False, compare=False)

    def streams(self, batches: Sequence[Batch]) -> list[Stream]:
        """The entries of ``batches`` the query keeps, one stream per label set
        (ordered by labels), each oldest first (ties in ``_seq`` order)."""
        frames = [frame for batch in batches if len(frame := self.frame(batch))]
        if not frames:
            return []
        frame = Frame.concat(frames)
        return [Stream(labels, entries)
                for labels, entries in log_streams(frame, len(frame), "forward")]

    def frame(self, batch: Batch) -> Frame:
        """One batch's entries after the selector and the pipeline."""
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        if not table.num_rows or self.ts_field not in table.schema.names:
            return Frame.concat([])
        layout, predicate = self._compile(table.schema)
        mask = predicate.mask(table)
        if not mask.any():
            return Frame.concat([])
        return run_pipeline(Frame.read(table.filter(pa.array(mask)), layout),
                            self.query.stages)

    def _compile(self, schema: pa.Schema) -> tuple[Layout, MatcherPredicate]:
        """The layout and selector for batches of ``schema`` (cached per schema)."""
        key = schema.remove_metadata()
        found = self._compiled.get(key)
        if found is None:
            layout = _layout(key, self.ts_field, self.options)
            matchers = [replace(m, path=layout.path_of(m.path)) for m in self.query.selector]
            found = self._compiled[key] = (layout, compile_matchers(matchers))
        return found


def _layout(schema: pa.Schema, ts_field: str, options: LogqlOptions) -> Layout:
    """The layout of one batch: configured fields a batch lacks read as absent (no
    label, an empty line) instead of failing the tail."""
    labels = options.label_fields
    if labels is not None:
        labels = tuple(f for f in labels if has_path(schema, f))
    line = options.line_field
    present = line if line is None or has_path(schema, line) else None
    layout = layout_of(schema, ts_field, present, labels)
    return layout if line is None else replace(layout, line_field=line)


class LogqlTail:
    """A live log query: ``history`` first, then the streams of each committed batch.

    Made by :meth:`tidal.Store.logql_tail`. Iterating (``for``) blocks until a
    committed batch has entries the query keeps and yields their streams; it ends
    when the tail or the store is closed. An async consumer iterates
    ``follower`` itself and calls ``query.streams`` on what it gets (in a thread).
    """

    def __init__(self, query: TailQuery, history: list[Stream], follower: Follower) -> None:
        self.query, self.history, self.follower = query, history, follower

    def __iter__(self) -> Iterator[list[Stream]]:
        for batch in self.follower:
            streams = self.query.streams([batch])
            if streams:
                yield streams

    def close(self) -> None:
        """Stop following. Idempotent."""
        self.follower.close()

    def __enter__(self) -> LogqlTail:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
