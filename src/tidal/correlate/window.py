"""Running a :class:`~tidal.correlate.plan.WindowJoin` (CorQL's ``and``, ``or`` and
``unless``), over history or live.

The first stream is the *anchor*; every other stream joins it on the same key
within its window. :class:`WindowJoiner` holds the state and is fed batches in
time order (the batch executor scans the snapshot in (timestamp, ``_seq``)
order; the live executor releases events in that order once the watermark
passes them), so both give the same joins (the rules are in
:mod:`tidal.correlate._kernels_window`):

* ``A and on(k) within(w) B``: an anchor event and the earliest unused ``B``
  event of its key within ``w`` of it: one correlation, emitted as soon as the
  second of them arrives; both are used up (``group_left``: the ``B`` event
  may serve every ``A`` event; ``group_right``: the ``A`` event every ``B``).
* ``or``: the same, but an anchor without a partner once the watermark has
  passed its time plus ``w`` gives a *partial* correlation (``completeness``
  names the streams it lacks).
* ``unless``: an anchor with no event of that stream within ``w`` either side,
  emitted once the watermark has passed its time plus ``w``.

Chains join every stream to the anchor; the correlation is emitted when all
its streams are settled. A stream's ``[range]`` bounds how long its events are
held.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate import _kernels_window as kw
from tidal.correlate._kernels_keys import KeyCodes
from tidal.correlate.matching import (
    Kept,
    KeyedStages,
    Matched,
    correlations_of,
    grown,
    match_rows,
    matched_batches,
    times,
)
from tidal.correlate.plan import WindowJoin
from tidal.correlate.result import Correlation
from tidal.model.paths import get_path
from tidal.store.readers import Snapshot

__all__ = ["Found", "WindowJoiner", "finish", "run_window"]

_ANY_NS = 1 << 61
"""The window of a stream without ``within``: any time difference."""
_OPS = {"anchor": kw.ANCHOR, "and": kw.AND, "or": kw.OR, "unless": kw.UNLESS}
_COMPACT_ENTRIES = 1 << 16


@dataclass(frozen=True)
class Found:
    """Completed joins: per join, its event ids by output column (-1: none), a
    bitmask of the streams it lacks, and when it completed (ns)."""

    ids: np.ndarray
    missing: np.ndarray
    at_ns: np.ndarray

    @classmethod
    def concat(cls, parts: list[Found], width: int) -> Found:
        if not parts:
            return cls(np.zeros((0, width), np.int64), np.zeros(0, np.int64),
                       np.zeros(0, np.int64))
        return cls(np.concatenate([p.ids for p in parts]),
                   np.concatenate([p.missing for p in parts]),
                   np.concatenate([p.at_ns for p in parts]))


class WindowJoiner:
    """The state of one window join: the unused events per key and stream, and the
    anchors waiting for their deadline."""

    def __init__(self, node: WindowJoin) -> None:
        streams = node.streams
        self.node = node
        self.keyed = KeyedStages.of([s.stage for s in streams], node.key_names)
        self.coder = KeyCodes()
        self.ops = np.array([_OPS[s.op] for s in streams], dtype=np.int8)
        self.win = np.array([_ANY_NS if s.within_ns is None else s.within_ns
                             for s in streams], dtype=np.int64)
        shown = [i for i, s in enumerate(streams) if s.op != "unless"]
        self.columns = np.full(len(streams), -1, dtype=np.int64)
        self.columns[shown] = np.arange(len(shown))
        self.width = len(shown)
        self.names = [streams[i].name for i in shown]
        waits = [int(self.win[i]) for i, s in enumerate(streams) if s.op in ("or", "unless")]
        self.deadline_ns = max(waits) if waits else -1
        longest = int(self.win[1:].max()) if len(streams) > 1 else 0
        # held while a pending or future anchor may use it (and within its range)
        keep = [longest, *(min(longest + int(w), _ANY_NS) for w in self.win[1:])]
        self.hold_ns = np.array([min(h, s.range_ns) if s.range_ns is not None else h
                                 for h, s in zip(keep, streams, strict=True)], np.int64)
        self.keep_anchor = node.group == "right"
        self.keep_partners = node.group == "left"
        self.head = np.full((0, len(streams)), -1, dtype=np.int64)
        self.tail = np.full((0, len(streams)), -1, dtype=np.int64)
        self.pool = np.zeros((0, kw.FIELDS), np.int64)
        self.used = np.zeros(1, np.int64)
        self.fifo = np.zeros(0, np.int64)
        self.fifo_at = np.zeros(2, np.int64)
        self.compact_at = _COMPACT_ENTRIES
        self.compact_keys_at = _COMPACT_ENTRIES
        self.now_ns: int | None = None

    def _room(self, entries: int) -> None:
        keys = len(self.coder)
        if keys > self.head.shape[0]:
            have = self.head.shape[0]
            self.head, self.tail = grown(self.head, keys), grown(self.tail, keys)
            self.head[have:], self.tail[have:] = -1, -1
        need = int(self.used[0]) + entries
        if need > len(self.pool):
            self.pool = grown(self.pool, need)
        need = int(self.fifo_at[1]) + entries
        if need > len(self.fifo):
            self.fifo = grown(self.fifo, need)

    def feed(self, batch: Matched, ts: np.ndarray) -> Found:
        """Join one batch of matched events (``ts``: their times, ascending)."""
        codes = batch.codes
        if not len(ts):
            return Found.concat([], self.width)
        self._room(codes.shape[0] * codes.shape[1])
        found = Found(*kw.advance(
            codes, ts, batch.ids, self.ops, self.win, self.columns, self.deadline_ns,
            self.keep_anchor, self.keep_partners, self.head, self.tail, self.pool, self.used,
            self.fifo, self.fifo_at, self.width))
        self.now_ns = int(ts[-1])
        if self.used[0] >= self.compact_at:
            self.compact()
        return found

    def resolve(self, watermark_ns: int) -> Found:
        """The anchors whose deadline lies before ``watermark_ns``, settled."""
        return Found(*kw.resolve(watermark_ns, self.ops, self.win, self.columns,
                                 self.deadline_ns, self.keep_partners, self.head, self.pool,
                                 self.fifo, self.fifo_at, self.width))

    def compact(self, before_ns: int | None = None) -> None:
        """Forget the events no join can use any more (used up, or too old), and
        those older than ``before_ns`` (evicted)."""
        now = self.now_ns if self.now_ns is not None else 0
        oldest = np.maximum(now - self.hold_ns, np.iinfo(np.int64).min // 2)
        if before_ns is not None:
            oldest = np.maximum(oldest, before_ns)
        keys = min(len(self.coder), self.head.shape[0])
        live = kw.compact(oldest, self.head, self.tail, self.pool, self.used, self.fifo,
                          self.fifo_at, keys)
        self.compact_at = max(_COMPACT_ENTRIES, 2 * live)
        if keys >= self.compact_keys_at:  # keys that hold no event are forgotten
            in_use = np.asarray((self.head[:keys] >= 0).any(axis=1))
            renumbered = np.cumsum(in_use) - 1
            pool = self.pool[:live]
            pool[:, kw.KEY] = renumbered[pool[:, kw.KEY]]
            kept = int(in_use.sum())
            self.head[:kept], self.tail[:kept] = self.head[:keys][in_use], self.tail[:keys][in_use]
            self.head[kept:keys], self.tail[kept:keys] = -1, -1
            self.coder.keep(in_use)
            self.compact_keys_at = max(_COMPACT_ENTRIES, 2 * kept)

    def held(self) -> np.ndarray:
        """The ids of the events the state still holds."""
        pool = self.pool[:int(self.used[0])]
        return pool[pool[:, kw.ALIVE] != 0, kw.ID]

    def held_times(self) -> np.ndarray:
        """The times of the events the state still holds."""
        pool = self.pool[:int(self.used[0])]
        return pool[pool[:, kw.ALIVE] != 0, kw.TS]

    @property
    def entries(self) -> int:
        """Events held (live or not yet compacted away)."""
        return int(self.used[0])


def run_window(snapshot: Snapshot, node: WindowJoin, text: str
               ) -> tuple[pa.Table, list[Correlation]]:
    """Every join ``node`` finds in the snapshot before its read's end (then the
    watermark: the anchors whose deadline lies before it are settled; without an
    end, every one)."""
    # (the read's end is exclusive: the watermark is the last time it can hold)
    end_ns = node.read.end - 1 if node.read.end is not None else np.iinfo(np.int64).max
    joiner = WindowJoiner(node)
    kept = Kept()
    parts: list[Found] = []
    ranged = [(i, node.read.end - s.range_ns) for i, s in enumerate(node.streams)
              if s.range_ns is not None and node.read.end is not None]  # (as the planner)
    done_ids: list[np.ndarray] = []

    def needed() -> np.ndarray:
        return np.concatenate([joiner.held(), *done_ids])

    with closing(matched_batches(snapshot, node.read, joiner.keyed, joiner.coder)) as batches:
        for batch in batches:
            if not batch.rows.num_rows:
                continue
            ts = times(batch, snapshot.ts_field)
            for i, oldest in ranged:
                batch.codes[i][ts < oldest] = -1
            found = joiner.feed(batch, ts)
            parts.append(found)
            done_ids.append(found.ids[found.ids >= 0])
            kept.add(batch.rows, batch.ids, needed)
    parts.append(joiner.resolve(end_ns))
    return finish(snapshot, joiner, kept, Found.concat(parts, joiner.width), text)


def finish(snapshot: Snapshot | None, joiner: WindowJoiner, kept: Kept, found: Found,
           text: str, *, first_id: int = 0, ts_field: str = "timestamp"
           ) -> tuple[pa.Table, list[Correlation]]:
    """The found joins as ``Result.events`` rows and correlations (partial ones
    name the streams they lack), those without an event that matches the
    query's post filter left out, numbered from ``first_id``."""
    node = joiner.node
    schema = kept.tables[0].schema if snapshot is None and kept.tables else (
        snapshot.schema if snapshot is not None else pa.schema([]))
    rows = match_rows(snapshot, kept, schema, found.ids, joiner.keyed, ts_field=ts_field)
    count, width = len(rows.keys), joiner.width
    completeness = [
        "complete" if not lacks else tuple(
            node.streams[s].name for s in range(len(node.streams)) if lacks >> s & 1)
        for lacks in found.missing.tolist()]
    labels = None
    if node.group_fields and count:
        side = 0 if node.group == "right" else 1  # the other side's event carries them
        carried = rows.events.filter(pc.equal(rows.events.column("_stage"), side + 1))
        values = {name: _values(carried, name) for name in node.group_fields}
        labels = [{n: v[i] for n, v in values.items()} for i in range(count)]
    picked = None
    if node.post is not None and count:
        present = np.asarray(pc.is_valid(rows.events.column("_seq")), dtype=bool)
        hits = node.post.mask(rows.events) & present
        picked = np.flatnonzero(hits.reshape(-1, width).any(axis=1))
    return correlations_of(rows, text, picked=picked, first_id=first_id,
                           completeness=completeness, labels=labels)


def _values(rows: pa.Table, path: str) -> list[object]:
    column = get_path(rows, path)
    return column.to_pylist() if column is not None else [None] * rows.num_rows
