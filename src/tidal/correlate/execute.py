"""Running a plan (:mod:`tidal.correlate.plan`) over a store snapshot.

A :class:`~tidal.correlate.plan.Filter` streams through the snapshot's
``scan`` reading only the fields its predicate needs, with its pushdown and
time bounds, as stored; it keeps where each match is stored (the scan's
positions), then reads the matches whole from just the row groups that hold
them (:func:`~tidal.store.seq_read.read_rows`) and puts them in (timestamp,
``_seq``) order. With a limit it scans in time order, stops early and reads
the matches back by ``_seq``.

Sequences, joins and samples run in their own modules (they load numba, so
only when a query needs them). Their pipes see one row per match (the first
event's fields, and each event's as ``events[N]``); what the pipes keep, in
the order they leave it, is the result, renumbered.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tidal.correlate.pipes import apply_pipes
from tidal.correlate.plan import (
    MATCH,
    Filter,
    Join,
    Plan,
    Sample,
    Sequence,
    WindowJoin,
    event_column,
)
from tidal.correlate.result import Correlation, Result
from tidal.store.readers import Snapshot
from tidal.store.run import ROW, SEGMENT, SEQ, int_column
from tidal.store.scan import sort_by
from tidal.store.seq_read import read_placed, read_seqs

__all__ = ["execute", "run_filter"]


def execute(snapshot: Snapshot, plan: Plan) -> Result:
    """The result of ``plan`` over ``snapshot``."""
    root = plan.root
    if isinstance(root, Filter):
        events = apply_pipes(run_filter(snapshot, root), plan.pipes)
        if plan.size is not None:
            events = events.slice(0, plan.size)
        return Result(events, [], plan.text)
    events, found = _correlate(snapshot, root, plan.text)
    if isinstance(root, WindowJoin):  # (CorQL has no pipes)
        return Result(events, found, plan.text)
    if not plan.pipes and (plan.size is None or plan.size >= len(found)):
        return Result(events, found, plan.text)
    width = len(root.stages)
    if not plan.pipes:
        return _kept(events, found, np.arange(plan.size or 0), width, None, plan.text)
    rows = apply_pipes(_match_rows(events, len(found), width), plan.pipes)
    if MATCH not in rows.column_names:  # a count: its table is the answer
        return Result(rows, [], plan.text)
    keep = np.asarray(rows.column(MATCH), dtype=np.int64)
    if plan.size is not None:
        keep, rows = keep[:plan.size], rows.slice(0, plan.size)
    counted = any(pipe.name == "unique_count" for pipe in plan.pipes)
    return _kept(events, found, keep, width, rows if counted else None, plan.text)


def _correlate(snapshot: Snapshot, root: Sequence | Join | Sample | WindowJoin, text: str
               ) -> tuple[pa.Table, list[Correlation]]:
    if isinstance(root, WindowJoin):
        from tidal.correlate.window import run_window

        return run_window(snapshot, root, text)
    if isinstance(root, Sequence):
        from tidal.correlate.sequence import run_sequence

        return run_sequence(snapshot, root, text)
    if isinstance(root, Join):
        from tidal.correlate.join import run_join

        return run_join(snapshot, root, text)
    from tidal.correlate.sample import run_sample

    return run_sample(snapshot, root, text)


def run_filter(snapshot: Snapshot, node: Filter) -> pa.Table:
    """The events that match ``node``, in (timestamp, ``_seq``) order."""
    read, limit = node.read, node.limit
    stored = limit is None  # (else in time order, to stop early: no positions)
    matched: list[pa.Table] = []
    found = 0
    reader = snapshot.scan(list(read.columns), prune=read.prune, start=read.start,
                           end=read.end, order=None if stored else "time", positions=stored)
    try:
        names = [SEQ, SEGMENT, ROW] if stored else [SEQ]
        for batch in reader:
            table = pa.Table.from_batches([batch])
            picked = np.flatnonzero(node.predicate.mask(table))
            if not picked.size:
                continue
            matched.append(table.select(names).take(pa.array(picked)))
            found += picked.size
            if limit is not None and found >= limit:
                break
    finally:
        reader.close()
    if stored:
        return sort_by(_read_whole(snapshot, matched), [snapshot.ts_field, SEQ])
    seqs = (np.concatenate([int_column(t, SEQ) for t in matched]) if matched
            else np.zeros(0, np.int64))
    return sort_by(read_seqs(snapshot, np.sort(seqs[:limit])), [snapshot.ts_field, SEQ])


def _read_whole(snapshot: Snapshot, matched: list[pa.Table]) -> pa.Table:
    """Every column of the matches, read from where the scan found them stored."""
    if not matched:
        return read_seqs(snapshot, np.zeros(0, dtype=np.int64))
    return read_placed(snapshot, *(np.concatenate([int_column(t, name) for t in matched])
                                   for name in (SEGMENT, ROW, SEQ)))


def _match_rows(events: pa.Table, count: int, width: int) -> pa.Table:
    """One row per match: ``_match`` (its number), the first event's fields, and each
    event's as a struct column ``events[N]``."""
    fields = events.drop_columns(["_sequence", "_stage"])
    stages = [fields.take(pa.array(np.arange(count) * width + i)) for i in range(width)]
    rows = stages[0].add_column(0, MATCH, pa.array(np.arange(count)))
    for i, stage in enumerate(stages):
        struct = pa.StructArray.from_arrays([c.combine_chunks() for c in stage.columns],
                                            names=stage.column_names)
        rows = rows.append_column(event_column(i), struct)
    return rows


def _kept(events: pa.Table, found: list[Correlation], keep: np.ndarray, width: int,
          counted: pa.Table | None, text: str) -> Result:
    """The matches ``keep`` names, in its order, renumbered; the ``count`` and
    ``percent`` of ``counted`` (a ``unique_count``'s rows) go with each match's
    events."""
    take = (keep[:, None] * width + np.arange(width)).ravel()
    kept = events.take(pa.array(take)).set_column(
        0, "_sequence", pa.array(np.repeat(np.arange(len(keep)), width)))
    if counted is not None:  # (they replace stored fields of their names)
        for name in ("count", "percent"):
            values = np.repeat(np.asarray(counted.column(name)), width)
            if name in kept.column_names:
                kept = kept.drop_columns([name])
            kept = kept.append_column(name, pa.array(values))
    picked = [found[i].renumbered(n, kept.slice(n * width, width))
              for n, i in enumerate(keep.tolist())]
    return Result(kept, picked, text)
