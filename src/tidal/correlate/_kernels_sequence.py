"""Sequence matching: a state machine over events in time order. Arrays in, arrays out.

For each join key there is at most one pending sequence per stage (the rules
of Elastic's EQL and its reference implementation). Only the stages that
must occur (*real* stages) hold sequences; missing-event stages (``![...]``)
only end them:

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
  first;
* an event of a missing-event stage that lies between real stages ``r`` and
  ``r + 1`` drops the key's sequence pending at ``r`` (when within
  ``maxspan``); with a missing-event stage at the end (``trailing``), a
  sequence that reached the last real stage completes once ``maxspan`` has
  passed without such an event: when a later event of its key shows the time
  has passed, or when the caller finishes (:func:`expired`).

State lives in arrays indexed by key code, grown by the caller as codes
appear; a batch is one call.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["advance", "expired"]


@numba.njit(cache=True, nogil=True)
def _emit(done: np.ndarray, done_ns: np.ndarray, count: int, refs: np.ndarray, k: int,
          column: int, width: int, at_ns: int) -> int:
    for j in range(width):
        done[count, j] = refs[k, column, j]
    done_ns[count] = at_ns
    return count + 1


@numba.njit(cache=True, nogil=True)
def advance(keys: np.ndarray, hits: np.ndarray, kill_keys: np.ndarray, until_keys: np.ndarray,
            ts: np.ndarray, ids: np.ndarray, maxspan_ns: int, trailing: bool,
            live: np.ndarray, start: np.ndarray, refs: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, int]:
    """Feed one batch of events (in time order) through the state machine.

    Args:
        keys: int64 ``[stages, n]``, each event's key code under each real stage's
            keys (-1: no key, or the event does not match that stage).
        hits: bool ``[stages, n]``, whether the event matches each real stage.
        kill_keys: int64 ``[stages, n]``: the key code of an event matching a
            missing-event stage right after real stage ``r`` (-1: none).
        until_keys: int64 ``[n]``, the key code of an ``until`` event (-1: none).
        ts: int64 ``[n]`` event times (ns), ascending.
        ids: int64 ``[n]`` the events' ids, recorded in the sequences.
        maxspan_ns: the longest span of a sequence (< 0: unbounded).
        trailing: the sequence ends with a missing-event stage (needs maxspan).
        live: bool ``[keys, stages]``: a pending sequence sits at that stage.
        start: int64 ``[keys, stages]``: its first event's time.
        refs: int64 ``[keys, stages, stages]``: its events' ids so far.

    Returns:
        ``(done, done_ns, count)``: ``done[:count]`` holds the ids of each
        completed sequence's real-stage events, in the order they completed, and
        ``done_ns`` when each completed.
    """
    stages, n = hits.shape
    last = stages - 1
    capacity = 0
    for i in range(n):
        if hits[last, i] or (trailing and (hits[0, i] or until_keys[i] >= 0
                                           or kill_keys[last, i] >= 0)):
            capacity += 1
    done = np.empty((capacity, stages), dtype=np.int64)
    done_ns = np.empty(capacity, dtype=np.int64)
    count = 0
    for i in range(n):
        now = ts[i]
        k = until_keys[i]
        if k >= 0:
            if trailing and live[k, last] and now - start[k, last] > maxspan_ns:
                count = _emit(done, done_ns, count, refs, k, last, stages,
                              start[k, last] + maxspan_ns)
            for s in range(stages):
                live[k, s] = False
        for r in range(stages):
            k = kill_keys[r, i]
            if k < 0 or not live[k, r]:
                continue
            live[k, r] = False
            if trailing and r == last and now - start[k, r] > maxspan_ns:
                count = _emit(done, done_ns, count, refs, k, r, stages, start[k, r] + maxspan_ns)
        for s in range(last, -1, -1):
            if not hits[s, i]:
                continue
            k = keys[s, i]
            if k < 0:
                continue
            if s == 0 and stages == 1 and not trailing:
                done[count, 0] = ids[i]
                done_ns[count] = now
                count += 1
                continue
            if s > 0:
                if not live[k, s - 1]:
                    continue
                live[k, s - 1] = False
                if maxspan_ns >= 0 and now - start[k, s - 1] > maxspan_ns:
                    continue  # too old: dropped
                if s == last and not trailing:
                    for j in range(s):
                        done[count, j] = refs[k, s - 1, j]
                    done[count, s] = ids[i]
                    done_ns[count] = now
                    count += 1
                    continue
            if trailing and s == last and live[k, s] and now - start[k, s] > maxspan_ns:
                count = _emit(done, done_ns, count, refs, k, s, stages, start[k, s] + maxspan_ns)
            live[k, s] = True
            if s == 0:
                start[k, 0] = now
            else:
                start[k, s] = start[k, s - 1]
                for j in range(s):
                    refs[k, s, j] = refs[k, s - 1, j]
            refs[k, s, s] = ids[i]
    return done[:count], done_ns[:count], count


@numba.njit(cache=True, nogil=True)
def expired(live: np.ndarray, start: np.ndarray, refs: np.ndarray, keys: int,
            maxspan_ns: int, watermark_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """The sequences waiting at the last real stage of a sequence that ends with a
    missing-event stage whose ``maxspan`` has passed by ``watermark_ns`` (the
    latest event time seen): complete, with the time each completed."""
    stages = live.shape[1]
    last = stages - 1
    count = 0
    for k in range(keys):
        if live[k, last] and watermark_ns - start[k, last] > maxspan_ns:
            count += 1
    done = np.empty((count, stages), dtype=np.int64)
    done_ns = np.empty(count, dtype=np.int64)
    c = 0
    for k in range(keys):
        if live[k, last] and watermark_ns - start[k, last] > maxspan_ns:
            for j in range(stages):
                done[c, j] = refs[k, last, j]
            done_ns[c] = start[k, last] + maxspan_ns
            c += 1
    return done, done_ns
