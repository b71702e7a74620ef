"""Window joins (CorQL's ``and``, ``or``, ``unless``): a state machine over events in
time order. Arrays in, arrays out.

Stream 0 is the *anchor* (the first selector); every other stream joins it on
the same key within its own window (``|t - t_anchor| <= win[s]``, inclusive).
Per key and stream, the events not yet used wait in a linked list in time
order (a pool of entries shared by all lists). For each event, in time order:

* first, every anchor whose deadline (its time plus the longest ``or`` /
  ``unless`` window) lies before the event's time is *resolved*: with a partner
  in every ``and`` stream (and no ``unless`` event met) it is emitted, the
  ``or`` streams without a partner marked missing; otherwise it is dropped;
* an anchor event is dropped at once when an ``unless`` event of its key lies
  within that stream's window before it; else it tries to complete;
* an ``and``/``or`` event joins its list, then the anchors of its key within
  its window try to complete, the earliest first;
* an ``unless`` event joins its list and drops the anchors of its key within
  its window (never itself: an event of both selectors).

An anchor *completes* when every ``and`` and ``or`` stream has a partner (the
earliest unused event of that stream within the window, never the anchor
itself) and the query has no ``unless`` stream (those wait for the deadline).
A completion uses up the anchor (unless ``keep_anchor``: ``group_right``, one
correlation per right event) and its partners (unless ``keep_partners``:
``group_left``, one per left event).

A batch is one call; the caller grows the arrays first (see the ``room``
arguments) and calls :func:`resolve` when the watermark moves without events.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["AND", "ANCHOR", "FIELDS", "OR", "UNLESS", "advance", "compact", "resolve"]

ANCHOR, AND, OR, UNLESS = 0, 1, 2, 3
TS, ID, NEXT, KEY, ALIVE, HIT = range(6)
FIELDS = 6
"""The columns of an entry of the pool."""


@numba.njit(cache=True, nogil=True)
def _partner(head: np.ndarray, pool: np.ndarray, k: int, s: int, t_a: int, a_id: int,
             win: int) -> int:
    """The earliest live entry of list ``(k, s)`` within ``win`` of ``t_a`` (not the
    anchor's own event), or -1; dead entries at the head are unlinked."""
    e = head[k, s]
    while e >= 0 and not pool[e, ALIVE]:
        e = pool[e, NEXT]
    head[k, s] = e
    while e >= 0:
        if pool[e, TS] > t_a + win:
            return -1
        if pool[e, ALIVE] and pool[e, TS] >= t_a - win and pool[e, ID] != a_id:
            return e
        e = pool[e, NEXT]
    return -1


@numba.njit(cache=True, nogil=True)
def _complete(a: int, final: bool, ops: np.ndarray, win: np.ndarray, columns: np.ndarray,
              head: np.ndarray, pool: np.ndarray, keep_anchor: bool, keep_partners: bool,
              out: np.ndarray, out_missing: np.ndarray, out_ns: np.ndarray, count: int,
              at_ns: int) -> int:
    """Emit anchor ``a`` if it completes (``final``: its deadline passed, so ``or``
    streams may lack a partner); the new count (unchanged: it does not)."""
    streams = ops.shape[0]
    k = pool[a, KEY]
    found = np.full(streams, -1, dtype=np.int64)
    missing = 0
    for s in range(1, streams):
        if ops[s] == UNLESS:
            if not final:
                return count
            continue
        e = _partner(head, pool, k, s, pool[a, TS], pool[a, ID], win[s])
        if e < 0:
            if ops[s] == AND or not final:
                return count
            missing |= 1 << s
        found[s] = e
    for c in range(out.shape[1]):
        out[count, c] = -1
    out[count, columns[0]] = pool[a, ID]
    for s in range(1, streams):
        if found[s] >= 0:
            out[count, columns[s]] = pool[found[s], ID]
            if not keep_partners:
                pool[found[s], ALIVE] = 0
    out_missing[count] = missing
    out_ns[count] = at_ns
    pool[a, HIT] = 1
    if not keep_anchor:
        pool[a, ALIVE] = 0
    return count + 1


@numba.njit(cache=True, nogil=True)
def _resolve(fifo: np.ndarray, fifo_at: np.ndarray, deadline_ns: int, before_ns: int,
             ops: np.ndarray, win: np.ndarray, columns: np.ndarray, head: np.ndarray,
             pool: np.ndarray, keep_anchor: bool, keep_partners: bool, out: np.ndarray,
             out_missing: np.ndarray, out_ns: np.ndarray, count: int) -> int:
    """Resolve the anchors waiting in ``fifo[fifo_at[0]:fifo_at[1]]`` whose deadline
    lies before ``before_ns``."""
    while fifo_at[0] < fifo_at[1]:
        a = fifo[fifo_at[0]]
        due = pool[a, TS] + deadline_ns
        if due >= before_ns:
            break
        fifo_at[0] += 1
        if not pool[a, ALIVE] or pool[a, HIT]:  # (group_right: one that matched is done)
            pool[a, ALIVE] = 0
            continue
        count = _complete(a, True, ops, win, columns, head, pool, False, keep_partners, out,
                          out_missing, out_ns, count, due)
        pool[a, ALIVE] = 0
    return count


@numba.njit(cache=True, nogil=True)
def _append(k: int, s: int, t: int, event: int, head: np.ndarray, tail: np.ndarray,
            pool: np.ndarray, used: np.ndarray) -> int:
    e = used[0]
    used[0] += 1
    pool[e, TS], pool[e, ID], pool[e, NEXT], pool[e, KEY] = t, event, -1, k
    pool[e, ALIVE], pool[e, HIT] = 1, 0
    if head[k, s] < 0:
        head[k, s] = e
    else:
        pool[tail[k, s], NEXT] = e
    tail[k, s] = e
    return e


@numba.njit(cache=True, nogil=True)
def advance(codes: np.ndarray, ts: np.ndarray, ids: np.ndarray, ops: np.ndarray,
            win: np.ndarray, columns: np.ndarray, deadline_ns: int, keep_anchor: bool,
            keep_partners: bool, head: np.ndarray, tail: np.ndarray, pool: np.ndarray,
            used: np.ndarray, fifo: np.ndarray, fifo_at: np.ndarray, width: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feed one batch of events (in time order) through the joins.

    Args:
        codes: int64 ``[streams, n]``: each event's key code under each stream
            (-1: it is not of that stream, or its key is null).
        ts: int64 ``[n]`` event times (ns), ascending (and after every earlier batch).
        ids: int64 ``[n]`` the events' ids, recorded in the joins.
        ops: int8 ``[streams]``: ``ANCHOR`` then ``AND``, ``OR`` or ``UNLESS`` each.
        win: int64 ``[streams]``: each stream's window (ns).
        columns: int64 ``[streams]``: the output column of each stream's event
            (``unless`` streams have none: -1).
        deadline_ns: the longest ``or``/``unless`` window (-1: there are none).
        head, tail: int64 ``[keys, streams]``: each list's first and last entry (-1).
        pool: int64 ``[entries, 6]``: each entry's time, event id, next entry (-1:
            none), key code, whether it is unused and whether it matched (room for
            ``used[0] + streams * n`` entries).
        used: int64 ``[1]``: entries of the pool in use.
        fifo: int64: the anchors that wait for their deadline, in time order
            (room for ``fifo_at[1] + n``); ``fifo_at``: its live range.
        width: output columns.

    Returns:
        ``(found, missing, found_ns)``: per completed join (in the order they
        completed) its event ids by output column (-1: none), a bitmask of its
        streams without a partner, and the time it completed.
    """
    streams, n = codes.shape
    capacity = n * streams + used[0] + 1
    out = np.empty((capacity, width), dtype=np.int64)
    out_missing = np.zeros(capacity, dtype=np.int64)
    out_ns = np.empty(capacity, dtype=np.int64)
    count = 0
    waits = deadline_ns >= 0
    for i in range(n):
        t = ts[i]
        if waits:
            count = _resolve(fifo, fifo_at, deadline_ns, t, ops, win, columns, head, pool,
                             keep_anchor, keep_partners, out, out_missing, out_ns, count)
        for s in range(streams):
            k = codes[s, i]
            if k < 0:
                continue
            if s == 0:
                killed = 0
                for u in range(1, streams):
                    if ops[u] == UNLESS and _partner(head, pool, k, u, t, ids[i], win[u]) >= 0:
                        killed = 1
                if killed:
                    continue
                a = _append(k, 0, t, ids[i], head, tail, pool, used)
                while pool[a, ALIVE]:
                    before = count
                    count = _complete(a, False, ops, win, columns, head, pool, keep_anchor,
                                      keep_partners, out, out_missing, out_ns, count, t)
                    if count == before:
                        break
                if waits and pool[a, ALIVE]:
                    fifo[fifo_at[1]] = a
                    fifo_at[1] += 1
                continue
            e = _append(k, s, t, ids[i], head, tail, pool, used)
            a = head[k, 0]
            while a >= 0 and pool[e, ALIVE]:
                if pool[a, ALIVE] and pool[a, TS] >= t - win[s]:
                    if ops[s] == UNLESS:
                        if pool[a, ID] != ids[i]:  # (an event never drops itself)
                            pool[a, ALIVE] = 0
                    else:
                        count = _complete(a, False, ops, win, columns, head, pool, keep_anchor,
                                          keep_partners, out, out_missing, out_ns, count, t)
                a = pool[a, NEXT]
    return out[:count], out_missing[:count], out_ns[:count]


@numba.njit(cache=True, nogil=True)
def resolve(before_ns: int, ops: np.ndarray, win: np.ndarray, columns: np.ndarray,
            deadline_ns: int, keep_partners: bool, head: np.ndarray, pool: np.ndarray,
            fifo: np.ndarray, fifo_at: np.ndarray, width: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The anchors whose deadline lies before ``before_ns`` (the watermark moved),
    resolved as :func:`advance` resolves them; same returns."""
    capacity = fifo_at[1] - fifo_at[0] + 1
    out = np.empty((capacity, width), dtype=np.int64)
    out_missing = np.zeros(capacity, dtype=np.int64)
    out_ns = np.empty(capacity, dtype=np.int64)
    count = 0
    if deadline_ns >= 0:
        count = _resolve(fifo, fifo_at, deadline_ns, before_ns, ops, win, columns, head,
                         pool, False, keep_partners, out, out_missing, out_ns, 0)
    return out[:count], out_missing[:count], out_ns[:count]


@numba.njit(cache=True, nogil=True)
def compact(oldest_ns: np.ndarray, head: np.ndarray, tail: np.ndarray, pool: np.ndarray,
            used: np.ndarray, fifo: np.ndarray, fifo_at: np.ndarray, keys: int) -> int:
    """Drop the entries that are used up or older than their stream's ``oldest_ns``,
    packing the pool (and the fifo) in place; the number of live entries. Entries
    keep their list order; the fifo keeps the anchors still waiting."""
    streams = head.shape[1]
    total = used[0]
    keep = np.zeros(total, dtype=np.bool_)
    new_next = np.full(total, -1, dtype=np.int64)
    for k in range(keys):
        for s in range(streams):
            e = head[k, s]
            head[k, s] = -1
            prev = -1
            while e >= 0:
                if pool[e, ALIVE] and pool[e, TS] >= oldest_ns[s]:
                    keep[e] = 1
                    if prev < 0:
                        head[k, s] = e
                    else:
                        new_next[prev] = e
                    prev = e
                e = pool[e, NEXT]
            tail[k, s] = prev
    moved = np.full(total, -1, dtype=np.int64)
    fresh = 0
    for e in range(total):
        if keep[e]:
            moved[e] = fresh
            fresh += 1
    for e in range(total):  # ascending: an entry only moves down, onto one already read
        f = moved[e]
        if f < 0:
            continue
        for c in range(FIELDS):
            pool[f, c] = pool[e, c]
        pool[f, NEXT] = moved[new_next[e]] if new_next[e] >= 0 else -1
    for k in range(keys):
        for s in range(streams):
            if head[k, s] >= 0:
                head[k, s] = moved[head[k, s]]
                tail[k, s] = moved[tail[k, s]]
    used[0] = fresh
    waiting = 0
    for j in range(fifo_at[0], fifo_at[1]):
        a = fifo[j]
        if moved[a] >= 0:
            fifo[waiting] = moved[a]
            waiting += 1
    fifo_at[0], fifo_at[1] = 0, waiting
    return fresh
