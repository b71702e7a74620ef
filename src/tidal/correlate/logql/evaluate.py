"""Evaluating a parsed LogQL query over a snapshot.

:func:`read_frame` scans the snapshot's events in a time window, keeps those
the stream selector matches (CorQL's matchers, with row-group pruning on ``=``
matchers) and runs the pipeline on each scanned batch. :func:`log_streams`
orders and limits the entries and groups them into streams;
:func:`metric_series` evaluates range and vector aggregations at steps.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
import pyarrow as pa

from tidal.correlate.corql.matchers import compile_matchers, prune
from tidal.correlate.logql.ast import LogQuery, MetricExpr, RangeAggregation
from tidal.correlate.logql.frame import SEQ, Frame, Layout, label_sets, series_ids
from tidal.correlate.logql.metric import SeriesValues, aggregate, range_series
from tidal.correlate.logql.pipeline import run_pipeline
from tidal.model.paths import root_at
from tidal.store.readers import Snapshot

__all__ = ["log_streams", "metric_series", "read_frame"]

Entries = list[tuple[int, str]]


def read_frame(snapshot: Snapshot, query: LogQuery, layout: Layout, start_ns: int,
               end_ns: int) -> Frame:
    """The entries of ``query`` whose time is in ``[start_ns, end_ns)``, after its pipeline."""
    schema = snapshot.schema
    matchers = [replace(m, path=layout.path_of(m.path)) for m in query.selector]
    predicate = compile_matchers(matchers)
    columns: list[str] | None = None
    if layout.line_field is not None:
        wanted = [layout.ts_field, layout.line_field, *layout.labels.values(),
                  *predicate.columns]
        roots = (root_at(schema, path) for path in wanted)
        columns = list(dict.fromkeys(r for r in roots if r is not None and r != SEQ))
    reader = snapshot.scan(columns, start=start_ns, end=end_ns, order=None,
                           prune=prune(matchers, schema))
    frames = []
    try:
        for batch in reader:
            table = pa.Table.from_batches([batch])
            mask = predicate.mask(table)
            if not mask.any():
                continue
            frame = run_pipeline(Frame.read(table.filter(pa.array(mask)), layout),
                                 query.stages)
            if len(frame):
                frames.append(frame)
    finally:
        reader.close()
    return Frame.concat(frames)


def log_streams(frame: Frame, limit: int, direction: Literal["backward", "forward"]
                ) -> list[tuple[dict[str, str], Entries]]:
    """The first ``limit`` entries in ``direction`` (backward: newest first; ties
    by ``_seq``), grouped into one stream per label set, streams ordered by labels."""
    order = np.lexsort((frame.seq, frame.ts))
    if direction == "backward":
        order = order[::-1]
    picked = frame.take(order[:limit])
    if not len(picked):
        return []
    ids, first = series_ids(picked.labels, len(picked))
    sets = label_sets(picked.labels, first)
    by_stream = np.argsort(ids, kind="stable")
    bounds = np.searchsorted(ids[by_stream], np.arange(len(first) + 1))
    times = picked.ts[by_stream].tolist()
    lines = picked.line.take(pa.array(by_stream)).to_pylist()
    streams = [(sets[s], list(zip(times[bounds[s]:bounds[s + 1]],
                                  lines[bounds[s]:bounds[s + 1]], strict=True)))
               for s in range(len(first))]
    return sorted(streams, key=lambda stream: sorted(stream[0].items()))


def metric_series(snapshot: Snapshot, expr: MetricExpr, layout: Layout, steps: np.ndarray
                  ) -> list[SeriesValues]:
    """``expr``'s series at ``steps`` (ns, ascending), each with a value per step."""
    if isinstance(expr, RangeAggregation):
        start_ns = int(steps[0]) - expr.range_ns + 1
        frame = read_frame(snapshot, expr.query, layout, start_ns, int(steps[-1]) + 1)
        return range_series(frame, expr.func, expr.range_ns, steps)
    inner = metric_series(snapshot, expr.inner, layout, steps)
    return aggregate(inner, expr.op, expr.grouping, len(steps))
