"""The most selective stage drives a sequence's scan.

Every sequence holds an event of each stage that must occur, with the same
join key and within ``maxspan`` of the others. So when one stage (the plan's
*driver*, the one whose condition the planner guesses most selective) matches
few events, a first, cheap scan of just its fields finds them, and the
sequence's own scan narrows to what could join them:

* the join keys: each key field holds one of the values the driver's events
  have (a superset of the real tuples, so nothing that could match is lost);
* the time: within ``maxspan`` of a driver event (windows merged, at most
  :data:`WINDOWS` of them; beyond that, their overall span).

The narrowing is an expression the scan prunes row groups with (each stage's
own pushdown, and its keys, ``or``-ed; the windows) and tighter
``start``/``end``: segments outside the windows' overall span are not opened,
and row groups outside every window are skipped. Rows that survive are still
tested by the stages, so the result is the same. When the driver matches more
than :data:`EVENTS` events the first scan stops early and the sequence scans
as planned.
"""

from __future__ import annotations

from dataclasses import replace
from functools import reduce

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.plan import Read, Sequence, Stage
from tidal.model.paths import get_path, nested_column, type_at
from tidal.model.time import TIMESTAMP_TYPE
from tidal.store.readers import Snapshot

__all__ = ["EVENTS", "WINDOWS", "narrowed"]

EVENTS = 10_000
"""Driver events beyond which narrowing is given up (it would barely narrow)."""
WINDOWS = 64
"""Time windows the narrowed scan names at most."""


def narrowed(snapshot: Snapshot, node: Sequence) -> Sequence:
    """``node`` with its scan narrowed by its driver's events (itself when it has no
    driver, or the driver matches too many)."""
    if node.driver is None:
        return node
    driver = node.stages[node.driver]
    found = _driver_events(snapshot, node, driver)
    if found is None:
        return node
    keys, times = found
    if not len(times):  # nothing drives: no sequence can complete
        return replace(node, read=replace(node.read, start=0, end=0))
    stages = [*node.stages, *([node.until] if node.until else [])]
    keyed = all(f is not None for s in stages for f in s.key_fields) and bool(keys)
    parts = [_stage_part(s, keys if keyed else None, snapshot.schema) for s in stages]
    prune = None if any(p is None for p in parts) else reduce(
        lambda a, b: a | b, [p for p in parts if p is not None])
    start, end = node.read.start, node.read.end
    if node.maxspan_ns is not None:
        windows = _windows(times, node.maxspan_ns)
        start = max(windows[0][0], start) if start is not None else windows[0][0]
        end = min(windows[-1][1], end) if end is not None else windows[-1][1]
        ts = _field(snapshot.ts_field, snapshot.schema)
        if ts is not None and len(windows) > 1:
            within = reduce(lambda a, b: a | b, [
                (ts >= pa.scalar(lo, TIMESTAMP_TYPE)) & (ts < pa.scalar(hi, TIMESTAMP_TYPE))
                for lo, hi in windows])
            prune = within if prune is None else prune & within
    if prune is None and (start, end) == (node.read.start, node.read.end):
        return node
    return replace(node, read=Read(node.read.columns, prune, start, end))


def _driver_events(snapshot: Snapshot, node: Sequence, driver: Stage
                   ) -> tuple[list[pa.Array], np.ndarray] | None:
    """The driver's events' key values (one array per key, nulls dropped; none when
    a key is not a stored field) and times; None when they are more than
    :data:`EVENTS`."""
    keyed = all(f is not None for f in driver.key_fields)  # (stored, not arrays)
    keys: list[list[pa.Array]] = [[] for _ in driver.keys] if keyed else []
    times: list[np.ndarray] = []
    count = 0
    reader = snapshot.scan(list(driver.columns), prune=driver.prune, start=node.read.start,
                           end=node.read.end, order=None)
    try:
        for batch in reader:
            table = pa.Table.from_batches([batch])
            picked = np.flatnonzero(driver.predicate.mask(table))
            if not picked.size:
                continue
            count += picked.size
            if count > EVENTS:
                return None
            rows = table.take(pa.array(picked))
            values = [key(rows) for key in driver.keys] if keyed else []
            valid = np.ones(rows.num_rows, dtype=bool)
            for value in values:
                valid &= np.asarray(value.is_valid(), dtype=bool)
            for i, value in enumerate(values):
                keys[i].append(value.filter(pa.array(valid)))
            ts = get_path(rows, snapshot.ts_field)
            if ts is not None:
                times.append(np.asarray(pc.cast(ts, pa.int64()).filter(pa.array(valid)),
                                        dtype=np.int64))
    finally:
        reader.close()
    distinct = [pc.unique(pa.chunked_array(k).combine_chunks()) if k else pa.array([])
                for k in keys]
    return distinct, np.sort(np.concatenate(times)) if times else np.zeros(0, np.int64)


def _field(name: str, schema: pa.Schema) -> pc.Expression | None:
    """An expression reading stored field ``name`` (None when no plain path reads it)."""
    if name in schema.names:
        return pc.field(name)
    path = nested_column(schema, name)
    return None if path is None or path == name.split(".")[0] else pc.field(*path.split("."))


def _stage_part(stage: Stage, keys: list[pa.Array] | None, schema: pa.Schema
                ) -> pc.Expression | None:
    """What a stage's events satisfy: its pushdown, and (``keys``: the driver's key
    values) each key field holding one of them. None: nothing known."""
    parts = [] if stage.prune is None else [stage.prune]
    for name, values in zip(stage.key_fields, keys or [], strict=False):
        assert name is not None
        field = _field(name, schema)
        found = type_at(schema, name)
        if field is None or found is None:
            continue  # (a field no plain path reads: not narrowed by this key)
        try:
            parts.append(field.isin(values.cast(found)))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue  # (values of another type: not narrowed by this key)
    return reduce(lambda a, b: a & b, parts) if parts else None


def _windows(times: np.ndarray, maxspan_ns: int) -> list[tuple[int, int]]:
    """``[t - maxspan, t + maxspan]`` around each time, as merged ``[lo, hi)`` windows,
    at most :data:`WINDOWS` (the closest merged first)."""
    lo, hi = times - maxspan_ns, times + maxspan_ns + 1  # (hi rises with lo)
    gaps = lo[1:] - hi[:-1]
    apart = np.flatnonzero(gaps > 0)
    if len(apart) >= WINDOWS:  # keep the widest gaps apart
        apart = np.sort(apart[np.argsort(gaps[apart], kind="stable")[-(WINDOWS - 1):]])
    starts = np.r_[0, apart + 1]
    ends = np.r_[apart, len(times) - 1]
    return list(zip(lo[starts].tolist(), hi[ends].tolist(), strict=True))
