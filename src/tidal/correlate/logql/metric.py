"""Metric kernels: range aggregations over entries, vector aggregations over series.

Every value is taken at evaluation steps ``t`` over the window ``(t - range, t]``.
A series has a value at a step only where its window holds an entry (Loki
leaves the other steps out), so values are kept as float arrays over the steps
with NaN for "no value".

:func:`range_series` sorts the entries once by (series, time) and answers each
series' windows with two ``searchsorted`` calls over its times and a cumulative
sum of its bytes: no per-entry Python. :func:`aggregate` combines series per
group with numpy reductions over a (series × steps) matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from tidal.correlate.logql.ast import Grouping, RangeFunc, VectorOp
from tidal.correlate.logql.frame import Frame, label_sets, series_ids

__all__ = ["SeriesValues", "aggregate", "range_series"]


@dataclass(frozen=True)
class SeriesValues:
    """One series: its labels and a value per step (NaN: none)."""

    labels: dict[str, str]
    values: np.ndarray


def range_series(frame: Frame, func: RangeFunc, range_ns: int, steps: np.ndarray
                 ) -> list[SeriesValues]:
    """``func`` over each series of ``frame`` at each of ``steps`` (ns, ascending).

    >>> import pyarrow as pa
    >>> f = Frame(np.array([1, 2, 5]), np.arange(3), pa.array(["a", "bb", "c"]),
    ...           {"app": pa.array(["x", "x", "x"])}, frozenset({"app"}))
    >>> [s.values.tolist() for s in range_series(f, "count_over_time", 3, np.array([2, 5]))]
    [[2.0, 1.0]]
    """
    if not len(frame):
        return []
    ids, first = series_ids(frame.labels, len(frame))
    order = np.lexsort((frame.ts, ids))
    ts = frame.ts[order]
    sizes = np.asarray(pc.binary_length(frame.line).to_numpy(zero_copy_only=False),
                       dtype=np.float64)[order]
    bounds = np.searchsorted(ids[order], np.arange(len(first) + 1))
    seconds = range_ns / 1e9
    out = []
    for sid, labels in enumerate(label_sets(frame.labels, first)):
        lo, hi = bounds[sid], bounds[sid + 1]
        times = ts[lo:hi]
        upper = np.searchsorted(times, steps, side="right")
        lower = np.searchsorted(times, steps - range_ns, side="right")
        count = (upper - lower).astype(np.float64)
        if func in ("bytes_over_time", "bytes_rate"):
            total = np.concatenate([[0.0], np.cumsum(sizes[lo:hi])])
            value = total[upper] - total[lower]
        else:
            value = count
        if func in ("rate", "bytes_rate"):
            value = value / seconds
        values = np.where(count > 0, value, np.nan)
        if not np.isnan(values).all():
            out.append(SeriesValues(labels, values))
    return out


def group_labels(labels: dict[str, str], grouping: Grouping | None) -> dict[str, str]:
    """The labels of the group that a series of ``labels`` falls in.

    >>> group_labels({"a": "1", "b": "2"}, Grouping(True, ("b",)))
    {'a': '1'}
    """
    if grouping is None:
        return {}
    if grouping.without:
        return {k: v for k, v in labels.items() if k not in grouping.labels}
    return {k: labels[k] for k in grouping.labels if k in labels}


def aggregate(series: Sequence[SeriesValues], op: VectorOp, grouping: Grouping | None,
              n_steps: int) -> list[SeriesValues]:
    """``op`` over the series of each group, step by step (NaN where no series of
    the group has a value).

    >>> a = SeriesValues({"l": "x"}, np.array([1.0, np.nan]))
    >>> b = SeriesValues({"l": "y"}, np.array([3.0, 4.0]))
    >>> [s.values.tolist() for s in aggregate([a, b], "sum", None, 2)]
    [[4.0, 4.0]]
    """
    if not series:
        return []
    groups: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for i, s in enumerate(series):
        key = tuple(sorted(group_labels(s.labels, grouping).items()))
        groups.setdefault(key, []).append(i)
    matrix = np.vstack([s.values for s in series]).reshape(len(series), n_steps)
    out = []
    for key, members in groups.items():
        values = _reduce(matrix[members], op)
        if not np.isnan(values).all():
            out.append(SeriesValues(dict(key), values))
    return out


def _reduce(rows: np.ndarray, op: VectorOp) -> np.ndarray:
    present = ~np.isnan(rows)
    count = present.sum(axis=0).astype(np.float64)
    if op == "count":
        value = count
    elif op == "max":
        value = np.where(present, rows, -np.inf).max(axis=0)
    elif op == "min":
        value = np.where(present, rows, np.inf).min(axis=0)
    else:
        value = np.where(present, rows, 0.0).sum(axis=0)
        if op == "avg":
            value = value / np.maximum(count, 1.0)
    return np.where(count > 0, value, np.nan)
