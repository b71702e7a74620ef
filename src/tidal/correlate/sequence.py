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

import functools
from contextlib import closing

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate._kernels_keys import KeyCodes
from tidal.correlate._kernels_sequence import advance, expired
from tidal.correlate.drive import narrowed
from tidal.correlate.matching import Kept, KeyedStages, grown, matched_batches, results
from tidal.correlate.plan import Sequence
from tidal.correlate.result import Correlation
from tidal.model.paths import get_path
from tidal.store.readers import Snapshot

__all__ = ["COMPACT_KEYS", "run_sequence"]

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


def run_sequence(snapshot: Snapshot, node: Sequence, text: str
                 ) -> tuple[pa.Table, list[Correlation]]:
    """All the sequences ``node`` finds in the snapshot, in the order they complete."""
    node = narrowed(snapshot, node)
    stages = node.stages
    trailing = stages[-1].missing
    real = [i for i, stage in enumerate(stages) if not stage.missing]
    gap_of = {i: sum(1 for r in real if r < i) - 1 for i, st in enumerate(stages) if st.missing}
    keyed = KeyedStages.of([*stages, *([node.until] if node.until else [])], node.key_names)
    coder = KeyCodes()
    state = _State(len(real))
    kept = Kept()
    watermark = None
    compact_at = COMPACT_KEYS
    maxspan_ns = node.maxspan_ns if node.maxspan_ns is not None else -1
    ts_field = snapshot.ts_field
    with closing(matched_batches(snapshot, node.read, keyed, coder)) as batches:
        for batch in batches:
            watermark = batch.last_ns
            sub, matched, codes, ids = batch.rows, batch.stages, batch.codes, batch.ids
            if not sub.num_rows:
                continue
            kills = np.full((len(real), sub.num_rows), -1, dtype=np.int64)
            for i, gap in gap_of.items():
                kills[gap] = np.where(kills[gap] >= 0, kills[gap], codes[i])
            until = (codes[len(stages)] if node.until is not None
                     else np.full(sub.num_rows, -1, dtype=np.int64))
            state.fit(len(coder))
            ts = np.asarray(pc.cast(get_path(sub, ts_field), pa.int64()), dtype=np.int64)
            completed, completed_ns, count = advance(
                codes[real], matched[real], kills, until, ts, ids, maxspan_ns, trailing,
                state.live, state.start, state.refs)
            if count:
                state.done.append(completed)
                state.done_at.append(completed_ns)
            oldest = watermark - maxspan_ns if maxspan_ns >= 0 else None
            kept.add(sub, ids, functools.partial(state.needed, oldest, trailing))
            if len(coder) >= compact_at:  # keys without an open sequence are forgotten
                open_keys = state.open_keys(len(coder), oldest, trailing)
                coder.keep(open_keys)
                state.keep(open_keys)
                compact_at = max(COMPACT_KEYS, 2 * len(coder))
    if trailing and watermark is not None:
        late, late_ns = expired(state.live, state.start, state.refs, len(coder), maxspan_ns,
                                watermark)
        state.done.append(late)
        state.done_at.append(late_ns)
    found = state.matches()
    matches = np.full((len(found), len(stages)), -1, dtype=np.int64)
    matches[:, real] = found
    return results(snapshot, kept, snapshot.schema, matches, keyed, text)
