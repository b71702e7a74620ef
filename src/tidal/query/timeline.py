"""Entity timelines: an entity's slices from each source, joined in time order.

Segments cover bounded spans of time and are sorted by (entity, timestamp,
``_seq``) inside, so each source gives one ordered slice of the entity's
events. Slices that do not overlap in time are concatenated in order (no
copy); only slices that overlap (late events) are merged. With a ``limit``,
sources are probed in time order and the probing stops once no later source
can change the first ``limit`` events.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from tidal.model.schema import concat_tables
from tidal.store.run import SEQ, Slice, SliceSource, SourceSet, seq_array

READ_THREADS = 2  # row groups of different segments decoded side by side


@functools.cache
def _empty() -> pa.Table:
    """No events (made on first use: building a table at import loads pandas)."""
    return pa.schema([(SEQ, pa.int64())]).empty_table()


def timeline(sources: SourceSet, entity: object, start: int | None,
             end: int | None, *, limit: int | None, desc: bool) -> pa.Table:
    """Events of ``entity`` with ``start <= timestamp < end``.

    Ordered by (timestamp, ``_seq``), newest first when ``desc``; at most
    ``limit`` rows (the first ones in that order).
    """
    key = entity if isinstance(entity, str) else str(entity)
    slices = _probe(sources, key, start, end, limit=limit, desc=desc)
    if not slices:
        return _empty()
    result = _join(slices)
    if desc:
        result = result.take(pa.array(np.arange(result.num_rows - 1, -1, -1)))
    if limit is not None:
        result = result.slice(0, limit)
    return result


def _probe(sources: SourceSet, key: str, start: int | None, end: int | None,
           *, limit: int | None, desc: bool) -> list[Slice]:
    """The entity's slices from the sources that hold it and meet ``[start, end)``."""
    meeting = sources.meeting(start, end)
    if len(meeting) == 1 and limit is None:  # the hot path: one source (a whole memtable)
        found = meeting[0].entity_slice(key, start, end)
        return [found] if found is not None else []
    wanted = [s for s in meeting if s.holds(key)]
    if limit is None:
        if len(wanted) > 1:
            _prefetch([s for s in wanted if not s.cached(key)], key)
        return [found for s in wanted if (found := s.entity_slice(key, start, end)) is not None]
    # newest-first probes by latest time; oldest-first by earliest
    wanted.sort(key=(lambda s: -s.time_range[1]) if desc else (lambda s: s.time_range[0]))
    if len(wanted) > 1:  # the first ones are likely needed
        _prefetch([s for s in wanted[:READ_THREADS] if not s.cached(key)], key)
    slices: list[Slice] = []
    rows = 0
    edge = 0
    for source in wanted:
        low, high = source.time_range
        if rows >= limit and (high < edge if desc else low > edge):
            break  # this source (and every later one) lies beyond the first ``limit``
        found = source.entity_slice(key, start, end)
        if found is None:
            continue
        # edge: the earliest (desc) or latest (asc) time among the rows found so far
        near = int(found.ts[0]) if desc else int(found.ts[-1])
        edge = near if not slices else min(edge, near) if desc else max(edge, near)
        slices.append(found)
        rows += len(found.ts)
    return slices


def _prefetch(missing: list[SliceSource], key: str) -> None:
    """Read the entity's rows of several segments at once (decoding releases the GIL),
    so a cold timeline waits for about one row group read per reader thread."""
    if len(missing) < 2:
        return
    list(_readers().map(lambda source: source.entity_slice(key, None, None), missing))


@functools.cache
def _readers() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(READ_THREADS, thread_name_prefix="tidal-timeline")


# a forked child inherits the pool but not its threads: it starts a pool of its own
os.register_at_fork(after_in_child=_readers.cache_clear)


def _join(slices: list[Slice]) -> pa.Table:
    """One table of the slices in (timestamp, ``_seq``) order.

    Slices are taken in order of their first time; where one reaches back into
    time already covered (late events), only the rows in the overlap are merged,
    and the rest is concatenated as it is.
    """
    if len(slices) == 1:
        return slices[0].table
    out: list[Slice] = []
    for part in sorted(slices, key=lambda s: int(s.ts[0])):
        first = int(part.ts[0])
        if not out or first > int(out[-1].ts[-1]):
            out.append(part)
            continue
        tail: list[Slice] = []
        while out and int(out[-1].ts[-1]) >= first:  # joined pieces reaching past ``first``
            tail.append(out.pop())
        tail.reverse()
        cut = int(tail[0].ts.searchsorted(first, "left"))  # only the earliest starts before
        if cut:
            out.append(tail[0].part(0, cut))
            tail[0] = tail[0].part(cut, len(tail[0].ts))
        top = int(tail[-1].ts[-1])
        reach = int(part.ts.searchsorted(top, "right"))
        out.append(_merge([*tail, part.part(0, reach)]))
        if reach < len(part.ts):
            out.append(part.part(reach, len(part.ts)))
    tables = [p.table for p in out]
    return tables[0] if len(tables) == 1 else concat_tables(tables)


def _merge(parts: list[Slice]) -> Slice:
    """Slices that overlap in time, merged into one in (timestamp, ``_seq``) order."""
    table = concat_tables([p.table for p in parts])
    ts = np.concatenate([p.ts for p in parts])
    order = np.lexsort((seq_array(table), ts))
    return Slice(table.take(pa.array(order)), ts[order])
