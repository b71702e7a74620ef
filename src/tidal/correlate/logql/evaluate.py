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
from tidal.correlate.logql.ast import (
    BinaryOp,
    DropKeep,
    Grouping,
    LabelAnd,
    LabelExpr,
    LabelFilter,
    LabelFormat,
    LabelMatch,
    LabelOr,
    LineFormat,
    LogQuery,
    MetricExpr,
    NumberLiteral,
    Parser,
    RangeAggregation,
    Stage,
    Unwrap,
    VectorAggregation,
    VectorLiteral,
)
from tidal.correlate.logql.binary import Value, apply_binary
from tidal.correlate.logql.frame import SEQ, Frame, Layout, label_sets, series_ids
from tidal.correlate.logql.metric import (
    Scalar,
    SeriesValues,
    absent_series,
    aggregate,
    range_series,
)
from tidal.correlate.logql.parse_log import TEMPLATE_FIELD
from tidal.correlate.logql.pipeline import run_pipeline
from tidal.errors import QueryError
from tidal.model.paths import root_at
from tidal.store.readers import Snapshot

__all__ = ["categorized_streams", "log_streams", "metric_series", "read_frame", "read_newest"]

Entries = list[tuple[int, str]]
_FIRST_SLICES = 8  # the first slice read is 1/8 of the window
_MIN_SLICE_NS = 60 * 10**9


def read_frame(snapshot: Snapshot, query: LogQuery, layout: Layout, start_ns: int,
               end_ns: int, labels: frozenset[str] | None = None, with_line: bool = True
               ) -> Frame:
    """The entries of ``query`` whose time is in ``[start_ns, end_ns)``, after its
    pipeline; with ``labels``, only those labels are read, and without ``with_line``
    no line (the caller needs no other)."""
    schema = snapshot.schema
    if layout.ts_field not in schema.names:
        return Frame.concat([])
    if labels is not None:
        layout = replace(layout, labels={k: v for k, v in layout.labels.items() if k in labels})
    matchers = [replace(m, path=layout.path_of(m.path)) for m in query.selector]
    predicate = compile_matchers(matchers)
    columns: list[str] | None = None
    if layout.line_field is not None or not with_line:
        line = [layout.line_field] if with_line and layout.line_field is not None else []
        wanted = [layout.ts_field, *line, *layout.labels.values(), *predicate.columns]
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
            frame = run_pipeline(Frame.read(table.filter(pa.array(mask)), layout, with_line),
                                 query.stages)
            if len(frame):
                frames.append(frame)
    finally:
        reader.close()
    return Frame.concat(frames)


def read_newest(snapshot: Snapshot, query: LogQuery, layout: Layout, start_ns: int,
                end_ns: int, limit: int, direction: Literal["backward", "forward"]) -> Frame:
    """The entries of ``query`` in ``[start_ns, end_ns)`` that may be among the first
    ``limit`` in ``direction``: read a slice of the window at the end it starts from
    (the newest for ``backward``), then slices twice as long, until ``limit`` entries
    are found (as Loki stops at the limit), so a short answer over a long window
    reads little of it."""
    span = max(end_ns - start_ns, 0)
    width = max(span // _FIRST_SLICES, _MIN_SLICE_NS)
    frames: list[Frame] = []
    found = 0
    lo, hi = start_ns, end_ns
    while lo < hi:
        if direction == "backward":
            part = read_frame(snapshot, query, layout, max(lo, hi - width), hi)
            hi = max(lo, hi - width)
        else:
            part = read_frame(snapshot, query, layout, lo, min(hi, lo + width))
            lo = min(hi, lo + width)
        frames.append(part)
        found += len(part)
        if found >= limit:
            break
        width *= 2
    return Frame.concat([f for f in frames if len(f)])


def log_streams(frame: Frame, limit: int, direction: Literal["backward", "forward"]
                ) -> list[tuple[dict[str, str], Entries]]:
    """The first ``limit`` entries in ``direction`` (backward: newest first; ties
    by ``_seq``), grouped into one stream per label set, streams ordered by labels."""
    return [(labels, entries) for labels, entries, _ in
            _streams(frame, limit, direction, categorize=False)]


def categorized_streams(frame: Frame, limit: int, direction: Literal["backward", "forward"]
                        ) -> list[tuple[dict[str, str], Entries, list[dict[str, str]]]]:
    """As :func:`log_streams`, but streams by the labels the entries were read
    with (Loki's indexed labels), each entry with the labels its pipeline added
    (Loki's ``parsed``), as Loki answers a ``categorize-labels`` request."""
    return _streams(frame, limit, direction, categorize=True)


def _streams(frame: Frame, limit: int, direction: Literal["backward", "forward"],
             categorize: bool) -> list[tuple[dict[str, str], Entries, list[dict[str, str]]]]:
    order = np.lexsort((frame.seq, frame.ts))
    if direction == "backward":
        order = order[::-1]
    picked = frame.take(order[:limit])
    if not len(picked):
        return []
    stream_labels = picked.labels
    if categorize:
        stream_labels = {k: v for k, v in picked.labels.items() if k in picked.stream}
    ids, first = series_ids(stream_labels, len(picked))
    sets = label_sets(stream_labels, first)
    by_stream = np.argsort(ids, kind="stable")
    bounds = np.searchsorted(ids[by_stream], np.arange(len(first) + 1))
    times = picked.ts[by_stream].tolist()
    lines = picked.line.take(pa.array(by_stream)).to_pylist()
    added = {k: v for k, v in picked.labels.items() if k not in stream_labels}
    parsed = label_sets(added, by_stream) if categorize else [{}] * len(by_stream)
    streams = [(sets[s], list(zip(times[bounds[s]:bounds[s + 1]],
                                  lines[bounds[s]:bounds[s + 1]], strict=True)),
                parsed[bounds[s]:bounds[s + 1]])
               for s in range(len(first))]
    return sorted(streams, key=lambda stream: sorted(stream[0].items()))


def metric_series(snapshot: Snapshot, expr: MetricExpr, layout: Layout, steps: np.ndarray,
                  grouping: Grouping | None = None) -> Value:
    """``expr``'s value at ``steps`` (ns, ascending): a number per step, or series
    each with a value per step. ``grouping``: a ``sum`` above a range aggregation
    groups its series this way anyway, so they are grouped as they are made."""
    if isinstance(expr, NumberLiteral):
        return Scalar(np.full(len(steps), expr.value))
    if isinstance(expr, VectorLiteral):
        return [SeriesValues({}, np.full(len(steps), expr.value), np.ones(len(steps), bool))]
    if isinstance(expr, BinaryOp):
        return apply_binary(expr, metric_series(snapshot, expr.left, layout, steps),
                            metric_series(snapshot, expr.right, layout, steps))
    if isinstance(expr, RangeAggregation):
        node = expr if grouping is None else replace(expr, grouping=grouping)
        shifted = steps - node.offset_ns
        start_ns = int(shifted[0]) - node.range_ns + 1
        frame = read_frame(snapshot, node.query, layout, start_ns, int(shifted[-1]) + 1,
                           labels=needed_labels(node), with_line=needs_line(node))
        if node.func == "absent_over_time":
            return absent_series(frame, node, shifted)
        return range_series(frame, node, shifted)
    if not isinstance(expr, VectorAggregation):
        raise QueryError(f"cannot evaluate {expr}")
    pushed = None
    inner_node = expr.inner
    if (expr.op == "sum" and isinstance(inner_node, RangeAggregation)
            and inner_node.func in _ADDITIVE and inner_node.grouping is None):
        pushed = expr.grouping or Grouping(False, ())
    inner = metric_series(snapshot, expr.inner, layout, steps, pushed)
    if isinstance(inner, Scalar):
        raise QueryError(f"{expr} aggregates a vector, not a number")
    return aggregate(inner, expr.op, expr.grouping, len(steps), expr.param)


_ADDITIVE = ("count_over_time", "rate", "bytes_over_time", "bytes_rate", "sum_over_time")
"""Range functions whose sum over series is the function over their entries together."""
_PARSERS = (Parser, LabelFormat)
_LINE_FREE = (LabelFilter, DropKeep, Unwrap)


def needed_labels(node: RangeAggregation) -> frozenset[str] | None:
    """The labels a range aggregation grouped ``by`` some labels needs read: those
    and the ones its pipeline names; None (all) when it groups ``without``, or has
    a parser or ``label_format`` (a parsed key is renamed when a label of the
    stream has its name, so every label must be known)."""
    if node.grouping is None or node.grouping.without:
        return None
    if any(isinstance(stage, _PARSERS) for stage in node.query.stages):
        return None
    names = set(node.grouping.labels)
    for stage in node.query.stages:
        names |= stage_labels(stage)
    return frozenset(names)


def needs_line(node: RangeAggregation) -> bool:
    """Whether a range aggregation looks at its entries' lines (its function
    counts bytes, or a stage filters, parses or formats them)."""
    if node.func in ("bytes_over_time", "bytes_rate"):
        return True
    return not all(isinstance(s, _LINE_FREE) for s in node.query.stages)


def stage_labels(stage: Stage) -> set[str]:
    """The labels a pipeline stage reads."""
    if isinstance(stage, LabelFilter):
        return _expr_labels(stage.expr)
    if isinstance(stage, LineFormat):
        return {m.group(1) for m in TEMPLATE_FIELD.finditer(stage.template) if m.group(1)}
    if isinstance(stage, DropKeep):
        return {*stage.names, *(m.path for m in stage.matchers)}
    if isinstance(stage, Unwrap):
        return {stage.label}
    return set()


def _expr_labels(expr: LabelExpr) -> set[str]:
    if isinstance(expr, (LabelAnd, LabelOr)):
        return _expr_labels(expr.left) | _expr_labels(expr.right)
    if isinstance(expr, LabelMatch):
        return {expr.matcher.path}
    return {expr.name}
