"""The live executor: a plan run over events as they are committed.

Events come in as committed batches, in ``_seq`` order but in any event-time
order. A reorder buffer holds them until the *watermark* (the highest event
time seen minus the allowed lateness; with ``idle_advance``, also the clock
minus that delay while no events come) passes their time, then releases them
in (timestamp, ``_seq``) order to the same matchers the batch executor uses
(:class:`~tidal.correlate.sequence.SequenceMatcher`,
:class:`~tidal.correlate.window.WindowJoiner`), so live and batch give the same
correlations. An event that comes in below the watermark is *late*: it is
counted (it is stored all the same) and not matched. Deadlines (a sequence
that ends with a missing-event stage, CorQL's ``or`` and ``unless``) are
settled when the watermark passes them.

State is bounded: past ``max_keys`` join keys or ``max_state_bytes``, the
oldest held events are evicted, and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.matching import Kept, Matched, results
from tidal.correlate.plan import Filter, Plan, Sequence, WindowJoin
from tidal.correlate.result import Correlation
from tidal.errors import QueryError, UnknownFieldError
from tidal.model.paths import get_path
from tidal.model.schema import concat_tables

__all__ = ["LiveExecutor", "LiveStats", "Planner"]

SEQ = "_seq"
_KEEP_ROWS = 1 << 14
"""Whole events held before those no match needs are forgotten (at least)."""


@dataclass
class LiveStats:
    """What a live query has seen and holds.

    Attributes:
        events: events received.
        released: events matched (released by the watermark).
        late: events that came in below the watermark (stored, not matched).
        correlations: correlations emitted.
        evicted: held events (or pending sequences) dropped to stay within bounds.
        buffered: events waiting for the watermark.
        held: events the matcher holds (for pending matches).
        keys: join keys in use.
        state_bytes: the memory the state holds, about.
        watermark_ns: the watermark (None before the first event).
        lag_ns: commit to delivery of the last batch (set by the subscription).
        behind: times the subscription fell behind the commit feed and read back.
    """

    events: int = 0
    released: int = 0
    late: int = 0
    correlations: int = 0
    evicted: int = 0
    buffered: int = 0
    held: int = 0
    keys: int = 0
    state_bytes: int = 0
    watermark_ns: int | None = None
    lag_ns: int | None = None
    behind: int = 0
    extra: dict[str, int] = field(default_factory=dict)


Planner = Callable[[pa.Schema], Plan]
"""Plans the query for events of a schema (raises :class:`UnknownFieldError` while
a field it names is on no event yet)."""


class LiveExecutor:
    """Runs one query over batches pushed in commit order; each push returns the
    correlations it completed (event queries: one per matching event).

    The query is planned against the store's schema; while it names a field no
    event has yet, it waits for one that has it: events are held (and the
    watermark kept) until the plan can be made, then matched in order.
    """

    def __init__(self, planner: Planner, schema: pa.Schema, *, ts_field: str,
                 allowed_lateness_ns: int = 0, max_keys: int | None = None,
                 max_state_bytes: int | None = None, start_ns: int | None = None,
                 text: str = "") -> None:
        self._planner, self._schema = planner, schema
        self.text, self.ts_field = text, ts_field
        self.lateness_ns = allowed_lateness_ns
        self.start_ns = start_ns
        self.max_keys, self.max_state_bytes = max_keys, max_state_bytes
        self.stats = LiveStats()
        self._buffer: list[pa.Table] = []
        self._max_ns: int | None = None
        self._emitted = 0
        self._kept = Kept(_KEEP_ROWS, growth=4)  # (held rows pruned less often: smaller tails)
        self._matcher: _Matcher | None = None
        self.waiting_for: str | None = None
        """The field the query waits for (None: planned)."""
        self._plan()

    def _plan(self) -> None:
        try:
            plan = self._planner(self._schema)
        except UnknownFieldError as exc:
            self.waiting_for = exc.field
            return
        self.waiting_for = None
        self.text = plan.text or self.text
        self._matcher = _matcher_of(plan, self.ts_field)

    @property
    def watermark_ns(self) -> int | None:
        return self.stats.watermark_ns

    def push(self, table: pa.Table) -> list[Correlation]:
        """Take one committed batch (every column, with ``_seq``)."""
        if not table.num_rows:
            return []
        ts = _times(table, self.ts_field)
        if self.start_ns is not None:  # (replayed history before the start: not asked for)
            after = ts >= self.start_ns
            if not after.all():
                table, ts = table.filter(pa.array(after)), ts[after]
        self.stats.events += table.num_rows
        mark = self.stats.watermark_ns
        if mark is not None:
            late = ts < mark
            if late.any():
                self.stats.late += int(late.sum())
                table, ts = table.filter(pa.array(~late)), ts[~late]
        if self._matcher is None and table.num_rows:
            self._schema = _unified(self._schema, table.schema)
            self._plan()
        if table.num_rows:
            self._buffer.append(table)
            top = int(ts.max())
            self._max_ns = top if self._max_ns is None else max(self._max_ns, top)
            self.stats.buffered += table.num_rows
        if self._max_ns is None:
            return []
        return self.advance(self._max_ns - self.lateness_ns)

    def advance(self, watermark_ns: int) -> list[Correlation]:
        """Move the watermark to ``watermark_ns`` (never back): release the buffered
        events at or below it, in time order, and settle what is due."""
        mark = self.stats.watermark_ns
        moved = mark is None or watermark_ns > mark
        if moved:
            self.stats.watermark_ns = mark = watermark_ns
        assert mark is not None
        out = self._release(mark)  # (an event at the watermark is not late: released now)
        if moved and self._matcher is not None:
            out.extend(self._finish(self._matcher.resolve(mark)))
        self._bound()
        return out

    def _release(self, watermark_ns: int) -> list[Correlation]:
        if not self._buffer or self._matcher is None:
            return []
        table = concat_tables(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        ts = _times(table, self.ts_field)
        ready = ts <= watermark_ns
        if not ready.any():
            self._buffer = [table]
            return []
        rest = ~ready
        self._buffer = [table.filter(pa.array(rest))] if rest.any() else []
        seqs = np.asarray(pc.fill_null(table.column(SEQ), 0), dtype=np.int64)
        if not rest.any() and _in_order(ts, seqs):
            released = table  # (the usual case: a batch in time order, all released)
        else:
            picked = np.flatnonzero(ready)
            order = picked[np.lexsort((seqs[picked], ts[picked]))]
            released = table.take(pa.array(order))
        self.stats.buffered -= released.num_rows
        self.stats.released += released.num_rows
        return self._finish(self._matcher.feed(released, self._kept))

    def _finish(self, found: _Found | None) -> list[Correlation]:
        if found is None or not len(found.ids) or self._matcher is None:
            return []
        out = self._matcher.correlations(found, self._kept, self.text, self._emitted)
        self._emitted += len(out)
        self.stats.correlations += len(out)
        return out

    def _bound(self) -> None:
        """Keep the state within ``max_keys`` and ``max_state_bytes``: first forget
        held rows no match needs, then evict the oldest. (Cheap upper bounds are
        checked first: this runs at every push.)"""
        stats, matcher = self.stats, self._matcher
        if matcher is None:
            stats.state_bytes = self._buffered_bytes()
            return
        stats.state_bytes = self._measure()
        over_bytes = self.max_state_bytes is not None and stats.state_bytes > self.max_state_bytes
        if over_bytes:
            self._kept.prune(matcher.needed())
            stats.state_bytes = self._measure()
            over_bytes = (self.max_state_bytes is not None
                          and stats.state_bytes > self.max_state_bytes)
        over_keys = (self.max_keys is not None and matcher.keys_at_most() > self.max_keys
                     and matcher.keys() > self.max_keys)
        if over_keys or over_bytes:
            keys = (self.max_keys if over_keys and self.max_keys is not None
                    else matcher.keys() // 2)
            stats.evicted += matcher.evict(keys)
            self._kept.prune(matcher.needed())
            stats.state_bytes = self._measure()

    def refresh(self) -> LiveStats:
        """The stats, with the counts that take a look at the whole state."""
        if self._matcher is not None:
            self.stats.keys, self.stats.held = self._matcher.keys(), self._matcher.held()
        return self.stats

    def _buffered_bytes(self) -> int:
        return sum(t.nbytes for t in self._buffer)

    def _measure(self) -> int:
        assert self._matcher is not None
        return self._matcher.nbytes() + self._kept.nbytes + self._buffered_bytes()


def _matcher_of(plan: Plan, ts_field: str) -> _Matcher:
    if plan.pipes:
        raise QueryError("a live query cannot have pipes: they need the whole result "
                         "(run it over history with eql())", query=plan.text)
    root = plan.root
    if isinstance(root, Filter):
        return _Events(root, ts_field)
    if isinstance(root, Sequence):
        return _Sequences(root, ts_field)
    if isinstance(root, WindowJoin):
        return _Windows(root, ts_field)
    raise QueryError("live queries run event queries, sequences and CorQL joins; "
                     "join and sample run over history only", query=plan.text)


def _unified(schema: pa.Schema, other: pa.Schema) -> pa.Schema:
    """``schema`` with the fields of ``other`` it lacks (types as first seen)."""
    try:
        return pa.unify_schemas([schema, other], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        names = set(schema.names)
        return pa.schema([*schema, *(f for f in other if f.name not in names)])


@dataclass(frozen=True)
class _Found:
    ids: np.ndarray
    missing: np.ndarray | None = None


class _Matcher:
    """One plan node's live state: fed released events, in time order."""

    def __init__(self, ts_field: str) -> None:
        self.ts_field = ts_field
        self._next_id = 0

    def _ids(self, rows: int) -> np.ndarray:
        ids = np.arange(self._next_id, self._next_id + rows, dtype=np.int64)
        self._next_id += rows
        return ids

    def feed(self, table: pa.Table, kept: Kept) -> _Found | None:
        raise NotImplementedError

    def resolve(self, watermark_ns: int) -> _Found | None:
        return None

    def correlations(self, found: _Found, kept: Kept, text: str, first_id: int
                     ) -> list[Correlation]:
        raise NotImplementedError

    def needed(self) -> np.ndarray:
        return np.zeros(0, np.int64)

    def keys(self) -> int:
        return 0

    def keys_at_most(self) -> int:
        """An upper bound of :meth:`keys`, at no cost."""
        return self.keys()

    def held(self) -> int:
        return 0

    def nbytes(self) -> int:
        return 0

    def evict(self, keys: int) -> int:
        return 0


class _Events(_Matcher):
    """An event query: every released event that matches, one correlation each."""

    def __init__(self, node: Filter, ts_field: str) -> None:
        super().__init__(ts_field)
        self.node = node

    def feed(self, table: pa.Table, kept: Kept) -> _Found | None:
        hits = np.flatnonzero(self.node.predicate.mask(table))
        if not hits.size:
            return None
        ids = self._ids(hits.size)
        kept.add(table.take(pa.array(hits)), ids)
        return _Found(ids[:, None])

    def correlations(self, found: _Found, kept: Kept, text: str, first_id: int
                     ) -> list[Correlation]:
        rows, _ = kept.all(pa.schema([]))
        kept.clear()
        ts = _times(rows, self.ts_field).tolist()
        return [Correlation(first_id + i, text, {}, rows.slice(i, 1), ts[i], ts[i])
                for i in range(rows.num_rows)]


class _Sequences(_Matcher):
    """A sequence: :class:`~tidal.correlate.sequence.SequenceMatcher` fed live."""

    def __init__(self, node: Sequence, ts_field: str) -> None:
        from tidal.correlate.sequence import SequenceMatcher

        super().__init__(ts_field)
        self.matcher = SequenceMatcher(node)
        self._done = np.zeros(0, np.int64)

    def feed(self, table: pa.Table, kept: Kept) -> _Found | None:
        matcher = self.matcher
        sub, matched, codes = matcher.keyed.codes(matcher.coder, table)
        ids, ts = self._ids(sub.num_rows), _times(sub, self.ts_field)
        last = int(_times(table, self.ts_field)[-1])
        found, found_ns = matcher.feed(Matched(sub, matched, codes, ids, last), ts)
        self._done = found.ravel()
        if sub.num_rows:
            kept.add(sub, ids, self.needed)
        return _Found(matcher.widen(found[np.lexsort((found[:, -1], found_ns))]))

    def resolve(self, watermark_ns: int) -> _Found | None:
        found, found_ns = self.matcher.expire(watermark_ns)
        self._done = found.ravel()
        return _Found(self.matcher.widen(found[np.lexsort((found[:, -1], found_ns))]))

    def needed(self) -> np.ndarray:
        return np.concatenate([self.matcher.needed(), self._done])

    def correlations(self, found: _Found, kept: Kept, text: str, first_id: int
                     ) -> list[Correlation]:
        _, out = results(None, kept, pa.schema([]), found.ids, self.matcher.keyed, text,
                         ts_field=self.ts_field)
        return [c.renumbered(first_id + c.id) for c in out]

    def keys_at_most(self) -> int:
        return len(self.matcher.coder)

    def keys(self) -> int:
        """Keys with a pending sequence that may still complete."""
        m = self.matcher
        return int(m.state.open_keys(len(m.coder), m.oldest(), m.trailing).sum())

    def held(self) -> int:
        return len(self.matcher.needed())

    def nbytes(self) -> int:
        state = self.matcher.state
        return (state.live.nbytes + state.start.nbytes + state.refs.nbytes
                + self.matcher.coder.nbytes)

    def evict(self, keys: int) -> int:
        """Drop the pending sequences of all but the ``keys`` most recently started keys."""
        m = self.matcher
        state, n = m.state, len(m.coder)
        open_keys = state.open_keys(n, m.oldest(), m.trailing)
        state.live[:n][~open_keys] = False  # (too old to complete: not an eviction)
        live = state.live[:n]
        started = np.where(live, state.start[:n], np.iinfo(np.int64).min).max(axis=1)
        if open_keys.sum() <= keys:
            return 0
        cut = np.sort(started[open_keys])[-keys] if keys > 0 else np.iinfo(np.int64).max
        drop = open_keys & (started < cut)
        state.live[:n][drop] = False
        return int(drop.sum())


class _Windows(_Matcher):
    """A CorQL join: :class:`~tidal.correlate.window.WindowJoiner` fed live."""

    def __init__(self, node: WindowJoin, ts_field: str) -> None:
        from tidal.correlate.window import WindowJoiner

        super().__init__(ts_field)
        self.joiner = WindowJoiner(node)
        self._done = np.zeros(0, np.int64)

    def feed(self, table: pa.Table, kept: Kept) -> _Found | None:
        joiner = self.joiner
        sub, matched, codes = joiner.keyed.codes(joiner.coder, table)
        if not sub.num_rows:
            return None
        ids, ts = self._ids(sub.num_rows), _times(sub, self.ts_field)
        found = joiner.feed(Matched(sub, matched, codes, ids, int(ts[-1])), ts)
        self._done = found.ids[found.ids >= 0]
        kept.add(sub, ids, self.needed)
        return _Found(found.ids, found.missing)

    def resolve(self, watermark_ns: int) -> _Found | None:
        found = self.joiner.resolve(watermark_ns)
        self._done = found.ids[found.ids >= 0]
        return _Found(found.ids, found.missing)

    def needed(self) -> np.ndarray:
        return np.concatenate([self.joiner.held(), self._done])

    def correlations(self, found: _Found, kept: Kept, text: str, first_id: int
                     ) -> list[Correlation]:
        from tidal.correlate.window import Found, finish

        missing = found.missing if found.missing is not None else np.zeros(
            len(found.ids), np.int64)
        none = np.zeros(len(found.ids), np.int64)
        _, out = finish(None, self.joiner, kept, Found(found.ids, missing, none), text,
                        first_id=first_id, ts_field=self.ts_field)
        return out

    def keys(self) -> int:
        """Keys that hold an event."""
        j = self.joiner
        keys = min(len(j.coder), j.head.shape[0])
        return int((j.head[:keys] >= 0).any(axis=1).sum())

    def keys_at_most(self) -> int:
        return len(self.joiner.coder)

    def held(self) -> int:
        return len(self.joiner.held())

    def nbytes(self) -> int:
        j = self.joiner
        return j.pool.nbytes + j.head.nbytes + j.tail.nbytes + j.fifo.nbytes + j.coder.nbytes

    def evict(self, keys: int) -> int:
        """Drop the oldest held events, keeping about ``keys`` keys' worth."""
        j = self.joiner
        times_held = j.held_times()
        if not len(times_held):
            return 0
        keep = max(1, len(times_held) * keys // max(1, len(j.coder)))
        if keep >= len(times_held):
            return 0
        cut = int(np.sort(times_held)[-keep])
        j.compact(cut)
        return len(times_held) - len(j.held())


def _in_order(ts: np.ndarray, seqs: np.ndarray) -> bool:
    """Whether rows are in (time, ``_seq``) order."""
    if len(ts) < 2:
        return True
    later = ts[1:] > ts[:-1]
    return bool(np.all(later | ((ts[1:] == ts[:-1]) & (seqs[1:] > seqs[:-1]))))


def _times(table: pa.Table, ts_field: str) -> np.ndarray:
    column = get_path(table, ts_field)
    if column is None:
        return np.zeros(table.num_rows, dtype=np.int64)
    return np.asarray(pc.fill_null(pc.cast(column, pa.int64()), 0), dtype=np.int64)
