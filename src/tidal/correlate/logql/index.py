"""What Loki's index routes answer: how much a stream selector matches in a window.

Loki answers these from its index (``/loki/api/v1/index/stats``,
``/index/volume``, ``/index/volume_range``); Tidal scans the selector's entries
in the window, over whole columns. Only the selector counts: a log query's
pipeline (filters, parsers) is ignored, as Loki's index ignores it. ``bytes``
are the log lines' UTF-8 bytes.

Tidal stores no chunks: ``chunks`` counts one per stream, the unit a Loki
chunk belongs to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.logql.ast import LogQuery
from tidal.correlate.logql.evaluate import read_frame
from tidal.correlate.logql.frame import Frame, label_sets, layout_of, series_ids
from tidal.correlate.logql.parser import parse
from tidal.correlate.logql.run import LogqlOptions, Series
from tidal.errors import QueryError
from tidal.store.readers import Snapshot

__all__ = ["IndexStats", "index_stats", "volume"]

AggregateBy = Literal["series", "labels"]


@dataclass(frozen=True)
class IndexStats:
    """Loki's index statistics of a selector over a window."""

    streams: int
    chunks: int
    bytes: int
    entries: int


def index_stats(snapshot: Snapshot, text: str, *, start_ns: int, end_ns: int,
                options: LogqlOptions | None = None) -> IndexStats:
    """The streams, chunks (one a stream), line bytes and entries that the selector of
    log query ``text`` matches in ``[start_ns, end_ns)``.

    Raises:
        QueryError: bad syntax, or a metric query.
    """
    frame = _frame(snapshot, text, start_ns, end_ns, options)
    if not len(frame):
        return IndexStats(0, 0, 0, 0)
    streams = len(series_ids(frame.labels, len(frame))[1])
    return IndexStats(streams, streams, int(_line_bytes(frame).sum()), len(frame))


def volume(snapshot: Snapshot, text: str, *, start_ns: int, end_ns: int,
           step_ns: int | None = None, target_labels: Sequence[str] | None = None,
           aggregate_by: AggregateBy = "series", limit: int = 100,
           options: LogqlOptions | None = None) -> list[Series]:
    """The line bytes the selector of ``text`` matches, per group, largest first (at
    most ``limit`` groups; ties by labels).

    Groups (as Loki's volume): ``aggregate_by="series"`` groups by the labels
    named in ``target_labels``, or else by those the selector names (entries
    carrying none of them are left out); ``"labels"`` gives one group per label
    name (``{name: ""}``, of ``target_labels`` or every label), its bytes those of
    the entries that carry it. Without ``step_ns``, each group has one point at
    ``end_ns`` over ``[start_ns, end_ns]``; with it, a point at ``start_ns,
    start_ns + step_ns, ... <= end_ns`` each over ``(t - step_ns, t]``, where
    not zero.

    Raises:
        QueryError: bad syntax, a metric query, or bad arguments.
    """
    if limit < 1:
        raise QueryError(f"limit must be positive, not {limit}")
    if aggregate_by not in ("series", "labels"):
        raise QueryError(f"aggregateBy must be series or labels, not {aggregate_by!r}")
    if end_ns < start_ns:
        raise QueryError("end must not be before start")
    if step_ns is None:
        steps = np.array([end_ns], dtype=np.int64)
        frame = _frame(snapshot, text, start_ns, end_ns + 1, options)
        bucket = np.zeros(len(frame), dtype=np.int64)
    else:
        if step_ns <= 0:
            raise QueryError(f"step must be positive, not {step_ns} ns")
        if (end_ns - start_ns) // step_ns > 11_000:
            raise QueryError("too many points: (end - start) / step must be at most 11000")
        steps = np.arange(start_ns, end_ns + 1, step_ns, dtype=np.int64)
        frame = _frame(snapshot, text, start_ns - step_ns + 1, int(steps[-1]) + 1, options)
        bucket = -((start_ns - frame.ts) // step_ns)  # (ceil: (t - step, t] holds ts)
    size = _line_bytes(frame)
    if aggregate_by == "series":
        names = list(target_labels or dict.fromkeys(m.path for m in _query(text).selector))
        sets, sums = _by_series(frame, names, bucket, size, len(steps))
    else:
        names = list(target_labels or sorted(frame.labels))
        sets, sums = _by_label(frame, names, bucket, size, len(steps))
    totals = sums.sum(axis=1)
    order = sorted(range(len(sets)), key=lambda g: (-totals[g], sorted(sets[g].items())))
    picked = [g for g in order[:limit] if totals[g] > 0]
    return [Series(sets[g], [(int(steps[k]), float(sums[g, k]))
                             for k in np.flatnonzero(sums[g])]) for g in picked]


def _by_series(frame: Frame, names: list[str], bucket: np.ndarray, size: np.ndarray,
               n_steps: int) -> tuple[list[dict[str, str]], np.ndarray]:
    """Bytes per (label set of ``names``, step)."""
    labels = {name: frame.labels[name] for name in names if name in frame.labels}
    if not labels or not len(frame):
        return [], np.zeros((0, n_steps))
    carried = np.zeros(len(frame), dtype=np.bool_)
    for values in labels.values():
        carried |= np.asarray(pc.is_valid(values).to_numpy(zero_copy_only=False))
    index = pa.array(np.flatnonzero(carried))
    labels = {name: values.take(index) for name, values in labels.items()}
    ids, first = series_ids(labels, len(index))
    flat = ids * n_steps + bucket[carried]
    sums = np.bincount(flat, weights=size[carried], minlength=len(first) * n_steps)
    return label_sets(labels, first), sums.reshape(len(first), n_steps)


def _by_label(frame: Frame, names: list[str], bucket: np.ndarray, size: np.ndarray,
              n_steps: int) -> tuple[list[dict[str, str]], np.ndarray]:
    """Bytes per (label name, step), of the entries that carry the label."""
    found = [name for name in names if name in frame.labels]
    sums = np.zeros((len(found), n_steps))
    for row, name in enumerate(found):
        carried = np.asarray(pc.is_valid(frame.labels[name]).to_numpy(zero_copy_only=False))
        sums[row] = np.bincount(bucket[carried], weights=size[carried], minlength=n_steps)
    return [{name: ""} for name in found], sums


def _query(text: str) -> LogQuery:
    query = parse(text)
    if not isinstance(query, LogQuery):
        raise QueryError(f"a stream selector is needed here, not a metric query: {text!r}")
    return query


def _frame(snapshot: Snapshot, text: str, start_ns: int, end_ns: int,
           options: LogqlOptions | None) -> Frame:
    """The entries the selector of ``text`` matches in ``[start_ns, end_ns)``."""
    query = LogQuery(_query(text).selector)
    options = options or LogqlOptions()
    if snapshot.ts_field not in snapshot.schema.names:
        return Frame.concat([])
    layout = layout_of(snapshot.schema, snapshot.ts_field, options.line_field,
                       options.label_fields)
    return read_frame(snapshot, query, layout, start_ns, end_ns)


def _line_bytes(frame: Frame) -> np.ndarray:
    """Each entry's line length in UTF-8 bytes (as float64, for sums)."""
    return np.asarray(pc.binary_length(frame.line).to_numpy(zero_copy_only=False),
                      dtype=np.float64)
