"""Running a :class:`~tidal.correlate.plan.Join` over a store snapshot (EQL's
``join``, from Endgame's EQL).

``join [by k, ...] [stage] [stage] ... [until [stage]]`` finds, per join key,
one event of each stage, in any order. The snapshot is scanned once in
(timestamp, ``_seq``) order; every stage's condition (and ``until``'s) is
evaluated over whole batches, the join keys (the join's ``by`` values followed
by the stage's own) become integer codes
(:class:`~tidal.correlate._kernels_keys.KeyCodes`; a null key never joins), and
:func:`~tidal.correlate._kernels_join.advance` fills each key's slots, the
rules of the ``eql`` package's PythonEngine:

* each key has one slot per stage; an event of stage ``s`` fills the key's
  empty slot ``s`` (a filled slot keeps its first event), stages tried in the
  order written, so one event may fill several slots of one join;
* when every slot of a key is filled the join is emitted and the key starts
  over empty;
* an ``until`` event empties its key's slots first.

Joins come back in the order they completed, as rows of ``Result.events``
(``_sequence``, the join's number, and ``_stage``, 1-based, first; one row per
stage, in stage order) and as :class:`~tidal.correlate.result.Correlation`
objects whose ``key`` holds the first stage's key values and whose
``start``/``end`` are the earliest and latest of their events' times. Only the
events that fill a slot are kept, and those of slots emptied by ``until`` are
dropped as the scan goes.
"""

from __future__ import annotations

from contextlib import closing

import numpy as np
import pyarrow as pa

from tidal.correlate._kernels_join import advance
from tidal.correlate._kernels_keys import KeyCodes
from tidal.correlate.matching import Kept, KeyedStages, grown, matched_batches, results
from tidal.correlate.plan import Join
from tidal.correlate.result import Correlation
from tidal.store.readers import Snapshot

__all__ = ["run_join"]


class _Slots:
    """Each key's slots (filled, and the event id in each), and the joins done."""

    def __init__(self, width: int) -> None:
        self.filled = np.zeros((0, width), dtype=np.bool_)
        self.refs = np.zeros((0, width), dtype=np.int64)
        self.done: list[np.ndarray] = []

    def fit(self, keys: int) -> None:
        self.filled, self.refs = grown(self.filled, keys), grown(self.refs, keys)

    def needed(self) -> np.ndarray:
        """The ids of the events in a slot or in a completed join."""
        return np.concatenate([self.refs[self.filled], *(d.ravel() for d in self.done)])

    def matches(self) -> np.ndarray:
        width = self.refs.shape[1]
        return np.concatenate(self.done) if self.done else np.zeros((0, width), np.int64)


def run_join(snapshot: Snapshot, node: Join, text: str) -> tuple[pa.Table, list[Correlation]]:
    """All the joins ``node`` finds in the snapshot, in the order they complete."""
    width = len(node.stages)
    keyed = KeyedStages.of([*node.stages, *([node.until] if node.until else [])],
                           node.key_names)
    coder = KeyCodes()
    slots = _Slots(width)
    kept = Kept()
    with closing(matched_batches(snapshot, node.read, keyed, coder)) as batches:
        for batch in batches:
            if not batch.rows.num_rows:
                continue
            slots.fit(len(coder))
            codes = batch.codes
            until = codes[width] if node.until else np.full(len(batch.ids), -1, np.int64)
            completed, taken = advance(codes[:width], until, batch.ids, slots.filled, slots.refs)
            if len(completed):
                slots.done.append(completed)
            if taken.any():
                kept.add(batch.rows.filter(pa.array(taken)), batch.ids[taken], slots.needed)
    return results(snapshot, kept, snapshot.schema, slots.matches(), keyed, text)
