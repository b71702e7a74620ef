"""Sequence matching: a state machine over events in time order. Arrays in, arrays out.

For each join key there is at most one pending sequence per stage (the rules
of Elastic's EQL and its reference implementation):

* an event that matches the first stage starts a pending sequence at stage 0,
  replacing the key's pending one there;
* an event that matches stage ``s > 0`` moves the key's pending sequence from
  stage ``s - 1`` to stage ``s`` (replacing the one there), or completes it
  when ``s`` is the last stage, provided the event lies within ``maxspan`` of
  the sequence's first event (inclusive); a pending sequence found too old is
  dropped;
* stages are tried from the last to the first, so one event that matches two
  stages both extends a sequence and starts another, never both within one;
* an event of the ``until`` stage drops every pending sequence of its key
  first.

State lives in arrays indexed by key code, grown by the caller as codes
appear; a batch is one call.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["advance"]


@numba.njit(cache=True, nogil=True)
def advance(keys: np.ndarray, hits: np.ndarray, until_keys: np.ndarray, ts: np.ndarray,
            ids: np.ndarray, maxspan_ns: int, live: np.ndarray, start: np.ndarray,
            refs: np.ndarray) -> tuple[np.ndarray, int]:
    """Feed one batch of events (in time order) through the state machine.

    Args:
        keys: int64 ``[stages, n]``, the event's key code under each stage's keys
            (-1: no key, or the event does not match that stage).
        hits: bool ``[stages, n]``, whether the event matches each stage.
        until_keys: int64 ``[n]``, the key code of an ``until`` event (-1: none).
        ts: int64 ``[n]`` event times (ns), ascending.
        ids: int64 ``[n]`` the events' ids, recorded in the sequences.
        maxspan_ns: the longest span of a sequence (< 0: unbounded).
        live: bool ``[keys, stages - 1]``: a pending sequence sits at that stage.
        start: int64 ``[keys, stages - 1]``: its first event's time.
        refs: int64 ``[keys, stages - 1, stages]``: its events' ids so far.

    Returns:
        ``(done, count)``: ``done[:count]`` holds the ids of each completed
        sequence's events, stage by stage, in the order they completed.
    """
    stages, n = hits.shape
    capacity = 0
    for i in range(n):
        if hits[stages - 1, i]:
            capacity += 1
    done = np.empty((capacity, stages), dtype=np.int64)
    count = 0
    for i in range(n):
        k = until_keys[i]
        if k >= 0:
            for s in range(stages - 1):
                live[k, s] = False
        for s in range(stages - 1, -1, -1):
            if not hits[s, i]:
                continue
            k = keys[s, i]
            if k < 0:
                continue
            if s == 0:
                if stages == 1:
                    done[count, 0] = ids[i]
                    count += 1
                    continue
                live[k, 0] = True
                start[k, 0] = ts[i]
                refs[k, 0, 0] = ids[i]
                continue
            if not live[k, s - 1]:
                continue
            live[k, s - 1] = False
            if maxspan_ns >= 0 and ts[i] - start[k, s - 1] > maxspan_ns:
                continue  # too old: dropped
            if s == stages - 1:
                for j in range(s):
                    done[count, j] = refs[k, s - 1, j]
                done[count, s] = ids[i]
                count += 1
            else:
                live[k, s] = True
                start[k, s] = start[k, s - 1]
                for j in range(s):
                    refs[k, s, j] = refs[k, s - 1, j]
                refs[k, s, s] = ids[i]
    return done, count
