"""Running a :class:`~tidal.correlate.plan.Sequence` over a store snapshot (EQL's
``sequence``).

The snapshot is scanned once in (timestamp, ``_seq``) order. For each batch,
every stage's condition (and the ``until`` condition) is evaluated over the
whole batch (only the fields the query reads are scanned); the events that
match something are kept as candidates (only while a pending or completed
sequence may refer to them: a pending one older than ``maxspan`` never
completes), their
join keys (the sequence's ``by`` values followed by the stage's own) become
integer codes (:class:`~tidal.correlate._kernels_keys.KeyCodes`), and
:func:`~tidal.correlate._kernels_sequence.advance` moves the pending sequences
along. A key whose value is null never joins. ``with
runs=N`` is the stage written N times.

Completed sequences come back in the order they completed (by the time of
their last event; a sequence that ends with a missing-event stage completes
when its ``maxspan`` has passed), as :class:`~tidal.correlate.result.Correlation`
objects and as rows of ``Result.events`` with ``_sequence`` (its number) and
``_stage`` (1-based) first, every stored column read back for the found
events alone; a missing-event stage has a row of nulls.
"""

from __future__ import annotations

from contextlib import closing

import numpy as np
import pyarrow as pa

from tidal.correlate._kernels_keys import KeyCodes
from tidal.correlate._kernels_sequence import advance, expired
from tidal.correlate.drive import narrowed
from tidal.correlate.matching import (
    Kept,
    KeyedStages,
    Matched,
    grown,
    matched_batches,
    results,
    times,
)
from tidal.correlate.plan import Sequence
from tidal.correlate.result import Correlation
from tidal.store.readers import Snapshot

__all__ = ["COMPACT_KEYS", "SequenceMatcher", "run_sequence"]

COMPACT_KEYS = 1 << 16
"""Key codes in use before those of keys with no open sequence are forgotten (at
least; then twice what was kept): state follows the open sequences, not every
key ever seen."""


class _State:
    """Pending sequences per key code and stage, grown as codes appear, and the
    sequences found."""

    def __init__(self, stages: int) -> None:
        self.live = np.zeros((0, stages), dtype=np.bool_)
        self.start = np.zeros((0, stages), dtype=np.int64)
        self.refs = np.zeros((0, stages, stages), dtype=np.int64)
        self.done: list[np.ndarray] = []
        self.done_at: list[np.ndarray] = []

    def fit(self, keys: int) -> None:
        self.live, self.start = grown(self.live, keys), grown(self.start, keys)
        self.refs = grown(self.refs, keys)

    def open_keys(self, keys: int, oldest: int | None, trailing: bool) -> np.ndarray:
        """Which of the first ``keys`` codes have a pending sequence that may still
        complete (see :meth:`needed`)."""
        live = self.live[:keys]
        if oldest is not None:
            fresh = self.start[:keys] >= oldest
            if trailing:
                fresh[:, -1] = True
            live = live & fresh
        return np.asarray(live.any(axis=1))

    def keep(self, kept: np.ndarray) -> None:
        """Only the keys ``kept`` says (bool per code), renumbered as the codes are."""
        keys = len(kept)
        self.live, self.start = self.live[:keys][kept], self.start[:keys][kept]
        self.refs = self.refs[:keys][kept]

    def needed(self, oldest: int | None, trailing: bool) -> np.ndarray:
        """The ids of the events of found sequences and of pending ones that may
        still complete: none that started before ``oldest`` (None: all) can, but
        one waiting out a trailing missing-event stage."""
        stages = self.live.shape[1]
        parts = [d.ravel() for d in self.done]
        for s in range(stages):
            live = self.live[:, s]
            if oldest is not None and not (trailing and s == stages - 1):
                live = live & (self.start[:, s] >= oldest)
            parts.append(self.refs[live, s, :s + 1].ravel())
        return np.concatenate(parts)

    def matches(self) -> np.ndarray:
        """The ids of each found sequence's real-stage events, in the order they
        completed (at one time, in the order of their last events)."""
        stages = self.live.shape[1]
        if not self.done:
            return np.zeros((0, stages), dtype=np.int64)
        found = np.concatenate(self.done)  # (ties: by the last event, in scan order)
        return found[np.lexsort((found[:, -1], np.concatenate(self.done_at)))]


class SequenceMatcher:
    """The state of one sequence query, fed batches in time order (over history, or
    live as the watermark releases events)."""

    def __init__(self, node: Sequence) -> None:
        stages = node.stages
        self.node = node
        self.trailing = stages[-1].missing
        self.real = [i for i, stage in enumerate(stages) if not stage.missing]
        self.gap_of = {i: sum(1 for r in self.real if r < i) - 1
                       for i, st in enumerate(stages) if st.missing}
        self.keyed = KeyedStages.of([*stages, *([node.until] if node.until else [])],
                                    node.key_names)
        self.coder = KeyCodes()
        self.state = _State(len(self.real))
        self.maxspan_ns = node.maxspan_ns if node.maxspan_ns is not None else -1
        self.compact_at = COMPACT_KEYS
        self.watermark: int | None = None

    def oldest(self) -> int | None:
        """The earliest start a pending sequence may have and still complete."""
        if self.watermark is None or self.maxspan_ns < 0:
            return None
        return self.watermark - self.maxspan_ns

    def feed(self, batch: Matched, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Move the pending sequences along by one batch (``ts``: its rows' times);
        the sequences it completes (their real-stage event ids) and when each did."""
        self.watermark = batch.last_ns
        rows, stages = batch.rows.num_rows, len(self.node.stages)
        if not rows:
            return np.zeros((0, len(self.real)), np.int64), np.zeros(0, np.int64)
        codes, state = batch.codes, self.state
        kills = np.full((len(self.real), rows), -1, dtype=np.int64)
        for i, gap in self.gap_of.items():
            kills[gap] = np.where(kills[gap] >= 0, kills[gap], codes[i])
        until = (codes[stages] if self.node.until is not None
                 else np.full(rows, -1, dtype=np.int64))
        state.fit(len(self.coder))
        completed, completed_ns, _count = advance(
            codes[self.real], batch.stages[self.real], kills, until, ts, batch.ids,
            self.maxspan_ns, self.trailing, state.live, state.start, state.refs)
        if len(self.coder) >= self.compact_at:  # keys without an open sequence are forgotten
            open_keys = state.open_keys(len(self.coder), self.oldest(), self.trailing)
            self.coder.keep(open_keys)
            state.keep(open_keys)
            self.compact_at = max(COMPACT_KEYS, 2 * len(self.coder))
        return completed, completed_ns

    def expire(self, watermark_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """The sequences that end with a missing-event stage whose ``maxspan`` has
        passed by ``watermark_ns``: complete (and no longer pending)."""
        if not self.trailing:
            return np.zeros((0, len(self.real)), np.int64), np.zeros(0, np.int64)
        keys, state = len(self.coder), self.state
        done, done_ns = expired(state.live, state.start, state.refs, keys, self.maxspan_ns,
                                watermark_ns)
        last = state.live.shape[1] - 1
        state.live[:keys, last] &= watermark_ns - state.start[:keys, last] <= self.maxspan_ns
        return done, done_ns

    def needed(self) -> np.ndarray:
        """The ids of the events pending sequences that may still complete refer to."""
        return self.state.needed(self.oldest(), self.trailing)

    def widen(self, found: np.ndarray) -> np.ndarray:
        """Found sequences with a column per stage (-1 for missing-event stages)."""
        matches = np.full((len(found), len(self.node.stages)), -1, dtype=np.int64)
        matches[:, self.real] = found
        return matches


def run_sequence(snapshot: Snapshot, node: Sequence, text: str
                 ) -> tuple[pa.Table, list[Correlation]]:
    """All the sequences ``node`` finds in the snapshot, in the order they complete."""
    end = node.read.end
    node = narrowed(snapshot, node)
    matcher = SequenceMatcher(node)
    state = matcher.state
    kept = Kept()
    with closing(matched_batches(snapshot, node.read, matcher.keyed, matcher.coder)) as batches:
        for batch in batches:
            ts = times(batch, snapshot.ts_field)
            completed, completed_ns = matcher.feed(batch, ts)
            if len(completed):
                state.done.append(completed)
                state.done_at.append(completed_ns)
            if batch.rows.num_rows:
                kept.add(batch.rows, batch.ids, matcher.needed)
    if matcher.watermark is not None:  # (settled as live at the watermark: the read's end)
        settle = matcher.watermark if end is None else end - 1
        late, late_ns = matcher.expire(settle)
        state.done.append(late)
        state.done_at.append(late_ns)
    matches = matcher.widen(state.matches())
    return results(snapshot, kept, snapshot.schema, matches, matcher.keyed, text)
