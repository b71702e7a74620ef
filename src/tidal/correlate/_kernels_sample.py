"""Sample matching: per join key, a few candidates per stage, then distinct-event picks.
Arrays in, arrays out.

:func:`collect` keeps, per key code and stage, the first ``capacity`` events
that match (the caller feeds events in time order). :func:`pick` then walks
each key's candidate lists like Elastic's ``SampleIterator``: stage by stage,
each stage takes its next candidate not already taken by an earlier stage of
the same sample (a backtracking search in list order), and every complete
pick is a sample, until ``max_per_key`` samples or no more picks.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["collect", "pick"]


@numba.njit(cache=True, nogil=True)
def collect(keys: np.ndarray, ids: np.ndarray, counts: np.ndarray, lists: np.ndarray
            ) -> np.ndarray:
    """Add one batch of events (in time order) to the candidate lists.

    Args:
        keys: int64 ``[stages, n]``, each event's key code under each stage (-1: the
            event does not match that stage, or its key is null).
        ids: int64 ``[n]``, the events' ids.
        counts: int64 ``[keys, stages]``, how many candidates each list holds.
        lists: int64 ``[keys, stages, capacity]``, the candidates' ids.

    Returns:
        bool ``[n]``: whether each event became a candidate of some stage.
    """
    stages, n = keys.shape
    capacity = lists.shape[2]
    taken = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        for s in range(stages):
            k = keys[s, i]
            if k < 0:
                continue
            c = counts[k, s]
            if c < capacity:
                lists[k, s, c] = ids[i]
                counts[k, s] = c + 1
                taken[i] = True
    return taken


@numba.njit(cache=True, nogil=True)
def _complete(counts: np.ndarray, k: int) -> bool:
    for s in range(counts.shape[1]):
        if counts[k, s] == 0:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def pick(counts: np.ndarray, lists: np.ndarray, keys: int, max_per_key: int
         ) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``max_per_key`` samples of each key code ``0 .. keys - 1``.

    Returns:
        ``(samples, sample_keys)``: int64 ``[count, stages]``, the ids of each
        sample's events in stage order, and int64 ``[count]``, its key code; by key
        code, then in the order found.
    """
    stages = counts.shape[1]
    complete = 0
    for k in range(keys):
        if _complete(counts, k):
            complete += 1
    out = np.empty((complete * max_per_key, stages), dtype=np.int64)
    out_keys = np.empty(complete * max_per_key, dtype=np.int64)
    count = 0
    position = np.zeros(stages, dtype=np.int64)
    chosen = np.empty(stages, dtype=np.int64)
    for k in range(keys):
        if not _complete(counts, k):
            continue
        found = 0
        s = 0
        position[0] = 0
        while s >= 0 and found < max_per_key:
            if position[s] >= counts[k, s]:  # this stage is out of candidates: back up
                s -= 1
                if s >= 0:
                    position[s] += 1
                continue
            candidate = lists[k, s, position[s]]
            taken = False
            for j in range(s):
                if chosen[j] == candidate:
                    taken = True
            if taken:
                position[s] += 1
                continue
            chosen[s] = candidate
            if s == stages - 1:
                out[count] = chosen
                out_keys[count] = k
                count += 1
                found += 1
                position[s] += 1
            else:
                s += 1
                position[s] = 0
    return out[:count], out_keys[:count]
