"""Metric kernels: range aggregations over entries, vector aggregations over series.

Every value is taken at evaluation steps ``t`` over the window ``(t - range, t]``.
A series has a value at a step only where its window holds an entry (Loki
leaves the other steps out), so a series is a float array over the steps and a
mask of the steps where it has a value.

:func:`range_series` sorts the entries once by (series, time) and answers each
series' windows with two ``searchsorted`` calls over its times and cumulative
sums (or ``reduceat`` for min and max) of its sizes or samples: no per-entry
Python. :func:`aggregate` combines series per group with numpy reductions over
a (series × steps) matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from tidal.correlate.logql.ast import Grouping, RangeAggregation, VectorOp
from tidal.correlate.logql.frame import Frame, label_sets, series_ids
from tidal.errors import QueryError

__all__ = ["MAX_SERIES", "MAX_VALUES", "Scalar", "SeriesValues", "absent_series", "aggregate",
           "check_size", "group_labels", "range_series"]

ERROR_LABEL = "__error__"
MAX_SERIES = 100_000
"""The most series one range aggregation may make (Loki's default is 500)."""
MAX_VALUES = 20_000_000
"""The most values (series × steps) one range aggregation may hold (160 MB)."""


@dataclass(frozen=True)
class SeriesValues:
    """One series: its labels, a value per step and whether it has one there."""

    labels: dict[str, str]
    values: np.ndarray
    present: np.ndarray


@dataclass(frozen=True)
class Scalar:
    """A number per step (a literal, or arithmetic of literals)."""

    values: np.ndarray


def range_series(frame: Frame, node: RangeAggregation, steps: np.ndarray
                 ) -> list[SeriesValues]:
    """``node``'s function over each series of ``frame`` at each of ``steps``
    (ns, ascending; the windows already shifted by any offset).

    Raises:
        QueryError: an entry carries ``__error__`` (a parser or unwrap failed),
            as Loki refuses such a metric query; filter it out or drop it.

    >>> import pyarrow as pa
    >>> from tidal.correlate.logql.parser import parse
    >>> f = Frame(np.array([1, 2, 5]), np.arange(3), pa.array(["a", "bb", "c"]),
    ...           {"app": pa.array(["x", "x", "x"])}, frozenset({"app"}))
    >>> from dataclasses import replace
    >>> node = replace(parse('count_over_time({app="x"}[1s])'), range_ns=3)
    >>> [s.values.tolist() for s in range_series(f, node, np.array([2, 5]))]
    [[2.0, 1.0]]
    """
    if not len(frame):
        return []
    _check_errors(frame)
    labels = frame.labels
    if node.grouping is not None:
        kept = {name: group_labels({name: ""}, node.grouping) for name in labels}
        labels = {name: values for name, values in labels.items() if kept[name]}
    ids, first = series_ids(labels, len(frame))
    check_size(len(first), len(steps))
    order = np.lexsort((frame.ts, ids))
    ts = frame.ts[order]
    if frame.sample is not None:
        samples = frame.sample[order]
    elif node.func in ("bytes_over_time", "bytes_rate"):
        sizes = pc.binary_length(frame.line).to_numpy(zero_copy_only=False)
        samples = np.asarray(sizes, dtype=np.float64)[order]
    else:  # counts: no sample
        samples = np.zeros(0)
    bounds = np.searchsorted(ids[order], np.arange(len(first) + 1))
    out = []
    for sid, series_labels in enumerate(label_sets(labels, first)):
        lo, hi = bounds[sid], bounds[sid + 1]
        times = ts[lo:hi]
        upper = np.searchsorted(times, steps, side="right")
        lower = np.searchsorted(times, steps - node.range_ns, side="right")
        present = upper > lower
        if present.any():
            values = _over_window(node, samples[lo:hi], lower, upper, present)
            out.append(SeriesValues(series_labels, values, present))
    return out


def check_size(n_series: int, n_steps: int) -> None:
    """Refuse a metric that would hold too many series (as Loki's ``max_query_series``
    does) or too many values in memory.

    Raises:
        QueryError: over :data:`MAX_SERIES` series or :data:`MAX_VALUES` values.
    """
    if n_series > MAX_SERIES:
        raise QueryError(
            f"maximum of series ({MAX_SERIES}) reached for a single query: {n_series} "
            "label sets; aggregate them (sum by (...)) or narrow the selector")
    if n_series * n_steps > MAX_VALUES:
        raise QueryError(
            f"{n_series} series × {n_steps} steps is too many values (at most "
            f"{MAX_VALUES:,}): raise the step, aggregate (sum by (...)) or narrow the selector")


def _over_window(node: RangeAggregation, samples: np.ndarray, lower: np.ndarray,
                 upper: np.ndarray, present: np.ndarray) -> np.ndarray:
    """``node.func`` over ``samples[lower:upper]`` for each step (garbage where absent)."""
    func = node.func
    count = (upper - lower).astype(np.float64)
    if func == "count_over_time" or (func == "rate" and node.unwrap is None):
        value = count
    elif func in ("first_over_time", "last_over_time"):
        at = lower if func == "first_over_time" else upper - 1
        value = samples[np.clip(at, 0, len(samples) - 1)]
    elif func in ("max_over_time", "min_over_time"):
        value = _window_extreme(samples, lower, upper, present, func == "max_over_time")
    elif func == "quantile_over_time":
        value = np.array([np.quantile(samples[a:b], node.param or 0.0) if b > a else np.nan
                          for a, b in zip(lower.tolist(), upper.tolist(), strict=True)])
    else:
        total = np.concatenate([[0.0], np.cumsum(samples)])
        value = total[upper] - total[lower]
        if func in ("avg_over_time", "stdvar_over_time", "stddev_over_time"):
            mean = value / np.maximum(count, 1.0)
            value = mean
            if func != "avg_over_time":
                centred = samples - samples.mean()  # shifted sums keep the variance exact
                square = np.concatenate([[0.0], np.cumsum(centred * centred)])
                shifted = np.concatenate([[0.0], np.cumsum(centred)])
                n = np.maximum(count, 1.0)
                m1 = (shifted[upper] - shifted[lower]) / n
                variance = np.maximum((square[upper] - square[lower]) / n - m1 * m1, 0.0)
                value = np.sqrt(variance) if func == "stddev_over_time" else variance
    if func in ("rate", "bytes_rate"):
        value = value / (node.range_ns / 1e9)
    return np.asarray(value, dtype=np.float64)


def _window_extreme(samples: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                    present: np.ndarray, is_max: bool) -> np.ndarray:
    """The max (or min) of each window ``samples[lower:upper]``, one ``reduceat``."""
    padded = np.append(samples, np.nan)  # reduceat needs an index past the last window
    starts = np.where(present, lower, len(samples))
    stops = np.where(present, upper, len(samples) + 1)
    pairs = np.stack([starts, np.minimum(stops, len(samples))], axis=1).reshape(-1)
    ufunc = np.fmax if is_max else np.fmin
    reduced = ufunc.reduceat(padded, pairs)[::2]
    return np.where(present, reduced, np.nan)


def _check_errors(frame: Frame) -> None:
    errors = frame.labels.get(ERROR_LABEL)
    if errors is None:
        return
    first = pc.index(pc.is_valid(errors), True).as_py()
    if first < 0:
        return
    error = errors[first].as_py()
    labels = label_sets(frame.labels, np.array([first]))[0]
    shown = "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    raise QueryError(
        f"pipeline error: '{error}' for series: '{shown}'. Use a label filter to "
        f'intentionally skip this error. (e.g | __error__!="{error}"). To skip all potential '
        'errors you can match empty errors.(e.g __error__="") The label filter can also be '
        'specified after unwrap. (e.g | unwrap latency | __error__="" )')


def absent_series(frame: Frame, node: RangeAggregation, steps: np.ndarray
                  ) -> list[SeriesValues]:
    """``absent_over_time``: 1 at the steps whose window holds no entry at all,
    labelled with the selector's ``=`` matchers (as Loki labels it)."""
    times = np.sort(frame.ts)
    upper = np.searchsorted(times, steps, side="right")
    lower = np.searchsorted(times, steps - node.range_ns, side="right")
    present = upper == lower
    if not present.any():
        return []
    labels = {m.path: m.value for m in node.query.selector if m.op == "="}
    return [SeriesValues(labels, np.ones(len(steps)), present)]


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
              n_steps: int, param: float | None = None) -> list[SeriesValues]:
    """``op`` over the series of each group, step by step (no value where no
    series of the group has one). ``topk``/``bottomk`` keep the ``param``
    largest/smallest series of each group at each step with their own labels;
    ``sort``/``sort_desc`` order the series by their last value.

    >>> a = SeriesValues({"l": "x"}, np.array([1.0, 0.0]), np.array([True, False]))
    >>> b = SeriesValues({"l": "y"}, np.array([3.0, 4.0]), np.array([True, True]))
    >>> [s.values.tolist() for s in aggregate([a, b], "sum", None, 2)]
    [[4.0, 4.0]]
    >>> [s.labels for s in aggregate([a, b], "topk", None, 2, 1)]
    [{'l': 'y'}]
    """
    if not series:
        return []
    if op in ("sort", "sort_desc"):
        return _sorted(series, descending=op == "sort_desc")
    groups: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for i, s in enumerate(series):
        key = tuple(sorted(group_labels(s.labels, grouping).items()))
        groups.setdefault(key, []).append(i)
    values = np.vstack([s.values for s in series]).reshape(len(series), n_steps)
    present = np.vstack([s.present for s in series]).reshape(len(series), n_steps)
    out: list[SeriesValues] = []
    if op in ("topk", "bottomk"):
        keep = np.zeros_like(present)
        for members in groups.values():
            keep[members] = _top(values[members], present[members], int(param or 1),
                                 op == "topk")
        return [SeriesValues(s.labels, s.values, keep[i]) for i, s in enumerate(series)
                if keep[i].any()]
    for key, members in groups.items():
        value, has = _reduce(values[members], present[members], op)
        if has.any():
            out.append(SeriesValues(dict(key), value, has))
    return out


def _top(values: np.ndarray, present: np.ndarray, k: int, largest: bool) -> np.ndarray:
    """Which series are among the ``k`` largest (smallest) at each step."""
    fill = -np.inf if largest else np.inf
    keyed = np.where(present, values, fill)
    if largest:
        keyed = -keyed
    rank = np.argsort(np.argsort(keyed, axis=0, kind="stable"), axis=0, kind="stable")
    return present & (rank < k)


def _sorted(series: Sequence[SeriesValues], descending: bool) -> list[SeriesValues]:
    def last(s: SeriesValues) -> float:
        where = np.flatnonzero(s.present)
        return float(s.values[where[-1]]) if len(where) else np.nan

    sign = -1.0 if descending else 1.0
    return sorted(series, key=lambda s: (np.isnan(last(s)), sign * last(s)))


def _reduce(rows: np.ndarray, present: np.ndarray, op: VectorOp
            ) -> tuple[np.ndarray, np.ndarray]:
    count = present.sum(axis=0).astype(np.float64)
    has = count > 0
    if op == "count":
        return count, has
    if op == "max":
        return np.where(present, rows, -np.inf).max(axis=0), has
    if op == "min":
        return np.where(present, rows, np.inf).min(axis=0), has
    total = np.where(present, rows, 0.0).sum(axis=0)
    if op == "sum":
        return total, has
    mean = total / np.maximum(count, 1.0)
    if op == "avg":
        return mean, has
    deviation = np.where(present, rows - mean, 0.0)
    variance = (deviation * deviation).sum(axis=0) / np.maximum(count, 1.0)
    return (np.sqrt(variance) if op == "stddev" else variance), has
