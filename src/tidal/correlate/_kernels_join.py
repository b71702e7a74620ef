"""Join matching (Endgame EQL's ``join``): one pending slot per key and stage.
Arrays in, arrays out.

For each event, in time order:

* an event of the ``until`` stage empties every slot of its key first;
* then, stage by stage in the order written, an event that matches stage
  ``s`` fills the key's slot ``s`` if it is empty (an occupied slot keeps its
  first event); when that fills the key's last empty slot, the join is
  complete: it is emitted and the key's slots are emptied, and the later
  stages of the same event start the key anew.

So one event that matches two stages can fill both slots of one join. State
lives in arrays indexed by key code, grown by the caller as codes appear; a
batch is one call.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["advance"]


@numba.njit(cache=True, nogil=True)
def advance(keys: np.ndarray, until_keys: np.ndarray, ids: np.ndarray, filled: np.ndarray,
            refs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Feed one batch of events (in time order) through the slots.

    Args:
        keys: int64 ``[stages, n]``, each event's key code under each stage (-1: the
            event does not match that stage, or its key is null).
        until_keys: int64 ``[n]``, the key code of an ``until`` event (-1: none).
        ids: int64 ``[n]``, the events' ids, recorded in the joins.
        filled: bool ``[keys, stages]``, whether each slot holds an event.
        refs: int64 ``[keys, stages]``, the id of the event in each slot.

    Returns:
        ``(done, taken)``: int64 ``[count, stages]``, the ids of each completed
        join's events in stage order, in the order they completed; and bool
        ``[n]``, whether each event went into a slot.
    """
    stages, n = keys.shape
    capacity = 0
    for s in range(stages):
        for i in range(n):
            if keys[s, i] >= 0:
                capacity += 1
    done = np.empty((capacity, stages), dtype=np.int64)
    taken = np.zeros(n, dtype=np.bool_)
    count = 0
    for i in range(n):
        k = until_keys[i]
        if k >= 0:
            for s in range(stages):
                filled[k, s] = False
        for s in range(stages):
            k = keys[s, i]
            if k < 0 or filled[k, s]:
                continue
            filled[k, s] = True
            refs[k, s] = ids[i]
            taken[i] = True
            complete = True
            for j in range(stages):
                if not filled[k, j]:
                    complete = False
            if complete:
                for j in range(stages):
                    done[count, j] = refs[k, j]
                    filled[k, j] = False
                count += 1
    return done[:count], taken
