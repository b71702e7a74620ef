"""What sequences, samples and joins share.

* :class:`KeyedStages`: a plan node's stages, each with its join key; per
  batch, the events that match some stage and their key codes (stages with
  the same key expressions share one coding). A key that holds arrays joins
  on each of its values: the event becomes one row (an *entry*) per key it
  takes part under, each with an id of its own; per key code an event has at
  most one entry, and the kernels work per key code, so no match holds two
  entries of one event, and the event is read back by its ``_seq``.
* :func:`time_batches`: the snapshot in (timestamp, ``_seq``) order, only the
  fields the node reads (and ``_seq``).
* :class:`Kept`: the rows a pending or found match may refer to.
* :func:`results`: the found matches as ``Result.events`` rows (``_sequence``
  and ``_stage`` first, every stored column read back by ``_seq`` for the
  matched events alone) and :class:`~tidal.correlate.result.Correlation` objects.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.plan import KeyFn, Many, Predicate, Read, Stage
from tidal.correlate.result import Correlation
from tidal.model.paths import get_path
from tidal.model.schema import concat_tables
from tidal.store.readers import Snapshot
from tidal.store.run import ROW, SEGMENT, SEQ, int_column
from tidal.store.seq_read import read_placed, read_seqs

if TYPE_CHECKING:
    from tidal.correlate._kernels_keys import KeyCodes

__all__ = ["KEEP_ROWS", "KEY_COMBINATIONS", "Kept", "KeyedStages", "MatchRows", "Matched",
           "correlations_of", "grown", "key_columns", "key_values", "match_rows",
           "matched_batches", "results", "time_batches", "times"]

KEEP_ROWS = 1 << 18
"""Rows held before the ones no match refers to are dropped (at least)."""
KEY_COMBINATIONS = 1024
"""The most keys one event takes part under when its keys hold arrays (the first ones
of the cross product of their values; the rest are dropped)."""
_MANY_TABLES = 256
"""Held tables past which a prune joins them into one (chunked) table."""
_JOINED = "\x00joined"
"""The prefix of the columns in which an entry carries the first stage's key values."""


@dataclass(frozen=True)
class KeyedStages:
    """A node's stages (and ``until``), with their join keys."""

    predicates: list[Predicate]
    keys: list[tuple[KeyFn, ...]]
    groups: list[list[int]]
    """Stages whose keys are the same expressions, coded together."""
    names: tuple[str, ...]
    """The names of the first stage's keys."""

    @classmethod
    def of(cls, stages: Sequence[Stage], names: tuple[str, ...]) -> KeyedStages:
        groups: dict[object, list[int]] = {}
        for i, stage in enumerate(stages):
            groups.setdefault(stage.key_id, []).append(i)
        return cls([s.predicate for s in stages], [s.keys for s in stages],
                   list(groups.values()), names)

    def codes(self, coder: KeyCodes, table: pa.Table
              ) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        """The rows of ``table`` that match some stage, which stages each matches
        (bool ``[stages, rows]``) and its key code under each (int64 ``[stages,
        rows]``; -1: no match, or a null key).

        When a key holds arrays (its key function gives a
        :class:`~tidal.correlate.plan.Many`), a returned row is an *entry*
        instead: one per event and distinct key it takes part under, as if the
        event were written once per key value (same fields, same time). Its keys
        are the cross product of its key values (the first
        :data:`KEY_COMBINATIONS`, the last key varying fastest); an empty or null
        array gives none (the event never joins), a null element is skipped. An
        entry matches the stages whose keys give it its code, so per key code an
        event has at most one entry. An event's entries are adjacent, in the
        order its key values first appear; events without a key are left out.
        Entries carry the first stage's key values they stand for (read by
        :func:`key_columns`).
        """
        matched = np.stack([p.mask(table) for p in self.predicates])
        rows = np.flatnonzero(matched.any(axis=0))
        sub = table.take(pa.array(rows)) if len(rows) < table.num_rows else table
        matched = matched[:, rows]
        evaluated = []
        for group in self.groups:
            picked = np.flatnonzero(matched[group].any(axis=0))
            part = sub.take(pa.array(picked)) if picked.size < sub.num_rows else sub
            evaluated.append((picked, key_values(part, self.keys[group[0]])))
        if any(isinstance(v, Many) for _, values in evaluated for v in values):
            return self._entries(coder, sub, matched, evaluated)
        codes = np.full(matched.shape, -1, dtype=np.int64)
        for group, (picked, values) in zip(self.groups, evaluated, strict=True):
            coded = np.full(sub.num_rows, -1, dtype=np.int64)
            if picked.size:
                coded[picked] = coder.codes(values, picked.size)
            for s in group:
                codes[s] = np.where(matched[s], coded, -1)
        return sub, matched, codes

    def _entries(self, coder: KeyCodes, sub: pa.Table, matched: np.ndarray,
                 evaluated: list[tuple[np.ndarray, list[pa.Array | Many]]]
                 ) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        """:meth:`codes` with a key that holds arrays: a row per (event, key code)."""
        events, codes, heads = [], [], []
        for picked, values in evaluated:
            at, coded, columns = _combined(coder, values, picked.size)
            ok = coded >= 0
            events.append(picked[at[ok]])
            codes.append(coded[ok])
            heads.append([c.filter(pa.array(ok)) for c in columns])
        event, code = np.concatenate(events), np.concatenate(codes)
        # distinct (event, code) pairs, each at its first position; entries by event, then
        # by that position
        order = np.lexsort((np.arange(len(event)), code, event))
        first = np.ones(len(order), dtype=bool)
        first[1:] = (np.diff(event[order]) != 0) | (np.diff(code[order]) != 0)
        pair = np.empty(len(order), dtype=np.int64)
        pair[order] = np.cumsum(first) - 1
        firsts = order[first]
        by = np.lexsort((firsts, event[firsts]))
        entry_of = np.empty(len(by), dtype=np.int64)
        entry_of[by] = np.arange(len(by))
        entry = entry_of[pair]  # each pair's entry
        entry_event, entry_code = event[firsts[by]], code[firsts[by]]
        out = np.full((len(matched), len(by)), -1, dtype=np.int64)
        bounds = np.cumsum([0, *(len(e) for e in events)])
        for g, group in enumerate(self.groups):
            member = np.zeros(len(by), dtype=bool)
            member[entry[bounds[g]:bounds[g + 1]]] = True
            for s in group:
                out[s] = np.where(member & matched[s, entry_event], entry_code, -1)
        rows = sub.take(pa.array(entry_event))
        first_stage = np.full(len(by), -1, dtype=np.int64)  # (group 0 holds stage 0)
        first_stage[entry[bounds[0]:bounds[1]]] = np.arange(bounds[1])
        taken = pa.array(first_stage, mask=first_stage < 0)
        for i, column in enumerate(heads[0]):
            rows = rows.append_column(f"{_JOINED}{i}", column.take(taken))
        return rows, matched[:, entry_event] & (out >= 0), out


def _combined(coder: KeyCodes, values: list[pa.Array | Many], rows: int
              ) -> tuple[np.ndarray, np.ndarray, list[pa.Array]]:
    """The key combinations of ``rows`` rows whose keys are ``values``: the row of
    each, its code, and its value of each key."""
    lengths: list[np.ndarray | None] = []
    arrays: list[pa.Array] = []
    for value in values:
        if isinstance(value, Many):
            items = value.values
            if len(value.parents) > 1 and np.any(np.diff(value.parents) < 0):
                items = items.take(pa.array(np.argsort(value.parents, kind="stable")))
            lengths.append(np.bincount(value.parents, minlength=rows).astype(np.int64))
            arrays.append(items)
        else:
            lengths.append(None)
            arrays.append(value)
    from tidal.correlate._kernels_keys import combinations  # (numba loads on first use)

    at, gathers = combinations(lengths, rows, KEY_COMBINATIONS)
    columns = [a.take(pa.array(g)) for a, g in zip(arrays, gathers, strict=True)]
    return at, coder.codes(columns, len(at)), columns


def key_values(table: pa.Table, keys: tuple[KeyFn, ...]) -> list[pa.Array | Many]:
    """Each key's value for each row of ``table`` (a :class:`Many` for a key that holds
    arrays)."""
    return [key(table) for key in keys]


def key_columns(table: pa.Table, keys: tuple[KeyFn, ...]) -> list[pa.Array]:
    """The first stage's ``keys``' value for each row of ``table``: for a key that holds
    arrays, the value the row (an entry of :meth:`KeyedStages.codes`) joined on."""
    out = []
    for i, value in enumerate(key_values(table, keys)):
        if isinstance(value, Many):
            name = f"{_JOINED}{i}"
            value = table.column(name).combine_chunks() if name in table.column_names \
                else _first(value)  # (no entries: nothing was kept)
        out.append(value)
    return out


def _first(many: Many) -> pa.Array:
    """Each row's first value (null when it has none)."""
    at = np.full(many.rows, -1, dtype=np.int64)
    at[many.parents[::-1]] = np.arange(len(many.parents))[::-1]
    return many.values.take(pa.array(at, mask=at < 0))


def time_batches(snapshot: Snapshot, read: Read) -> Generator[pa.Table, None, None]:
    """The events ``read`` names in (timestamp, ``_seq``) order, a non-empty table a
    batch, with ``_seq``, ``read.columns`` and where each is stored (``_segment``,
    ``_row``) only. Rows the prune rules out (they match no stage) are filtered
    out as they are read, before the sort."""
    reader = snapshot.scan(list(read.columns), read.prune, prune=read.prune,
                           start=read.start, end=read.end, order="time", positions=True)
    try:
        for batch in reader:
            if batch.num_rows:
                yield pa.Table.from_batches([batch])
    finally:
        reader.close()


@dataclass(frozen=True)
class Matched:
    """One batch, in time order: its events that match some stage, which stages each
    matches (bool ``[stages, n]``), their key codes (int64 ``[stages, n]``), their ids
    (numbered across batches) and the batch's latest time (ns)."""

    rows: pa.Table
    stages: np.ndarray
    codes: np.ndarray
    ids: np.ndarray
    last_ns: int


def matched_batches(snapshot: Snapshot, read: Read, keyed: KeyedStages, coder: KeyCodes
                    ) -> Generator[Matched, None, None]:
    """Every batch of the scan ``read`` names, matched against ``keyed``'s stages (a
    batch with no match too: its time still passes)."""
    offset = 0
    with closing(time_batches(snapshot, read)) as batches:
        for table in batches:
            sub, matched, codes = keyed.codes(coder, table)
            ids = np.arange(offset, offset + sub.num_rows, dtype=np.int64)
            offset += sub.num_rows
            last = pc.max(pc.cast(get_path(table, snapshot.ts_field), pa.int64())).as_py()
            yield Matched(sub, matched, codes, ids, int(last or 0))


def times(batch: Matched, ts_field: str) -> np.ndarray:
    """The event times (ns) of a matched batch's rows."""
    column = get_path(batch.rows, ts_field)
    if column is None:
        return np.zeros(batch.rows.num_rows, dtype=np.int64)
    return np.asarray(pc.fill_null(pc.cast(column, pa.int64()), 0), dtype=np.int64)


def grown(array: np.ndarray, keys: int) -> np.ndarray:
    """``array`` (indexed by key code first) with room for ``keys`` codes."""
    have = array.shape[0]
    if keys <= have:
        return array
    out = np.zeros((max(keys, 2 * have, 1024), *array.shape[1:]), dtype=array.dtype)
    out[:have] = array
    return out


class Kept:
    """The events a match may refer to, with their ids (ascending).

    Once the rows held outgrow twice what was needed at the last look,
    ``needed()`` (the ids still referred to) says which to keep: memory follows
    the pending and found matches, not the events scanned.
    """

    def __init__(self, min_rows: int | None = None, growth: int = 2) -> None:
        self.growth = growth
        self.tables: list[pa.Table] = []
        self.ids: list[np.ndarray] = []
        self.rows = 0
        self.min_rows = KEEP_ROWS if min_rows is None else min_rows
        self.limit = self.min_rows
        self.nbytes = 0

    def add(self, table: pa.Table, ids: np.ndarray,
            needed: Callable[[], np.ndarray] | None = None) -> None:
        self.tables.append(table)
        self.ids.append(ids)
        self.rows += table.num_rows
        self.nbytes += table.nbytes
        if needed is not None and self.rows > self.limit:
            self.prune(needed())

    def clear(self) -> None:
        """Hold nothing."""
        self.tables, self.ids, self.rows, self.nbytes = [], [], 0, 0

    def prune(self, needed: np.ndarray) -> None:
        """Keep only the rows whose id is in ``needed`` (table by table: no more memory
        than one table's worth on top of what is held)."""
        needed = np.unique(needed)
        tables, ids = [], []
        for table, held in zip(self.tables, self.ids, strict=True):
            at = np.searchsorted(needed, held)
            keep = (at < len(needed)) & (needed[np.minimum(at, len(needed) - 1)] == held) \
                if len(needed) else np.zeros(len(held), dtype=bool)
            if keep.all():
                tables.append(table)
                ids.append(held)
            elif keep.any():
                tables.append(table.filter(pa.array(keep)))
                ids.append(held[keep])
        if len(tables) > _MANY_TABLES:  # (zero-copy: the chunks stay as they are)
            tables, ids = [concat_tables(tables)], [np.concatenate(ids)]
        self.tables, self.ids = tables, ids
        self.rows = sum(len(i) for i in ids)
        self.limit = max(self.min_rows, self.growth * self.rows)
        self.nbytes = sum(t.nbytes for t in tables)

    def take(self, ids: np.ndarray, schema: pa.Schema) -> pa.Table:
        """The held rows of ``ids`` (each held), in that order; only the tables that
        hold them are touched."""
        if not self.tables or not len(ids):
            return (self.tables[0] if self.tables else schema.empty_table()).slice(0, 0)
        held = [t for t, i in enumerate(self.ids) if len(i)]
        firsts = np.array([self.ids[t][0] for t in held], dtype=np.int64)
        where = np.searchsorted(firsts, ids, side="right") - 1
        parts, order = [], []
        for w in np.unique(where).tolist():
            mine = np.flatnonzero(where == w)
            t = held[w]
            rows = np.searchsorted(self.ids[t], ids[mine])
            parts.append(self.tables[t].take(pa.array(rows)))
            order.append(mine)
        table = parts[0] if len(parts) == 1 else concat_tables(parts)
        positions = np.concatenate(order)
        if len(parts) == 1 and np.all(positions[1:] >= positions[:-1]):
            return table
        back = np.empty(len(positions), dtype=np.int64)
        back[positions] = np.arange(len(positions))
        return table.take(pa.array(back))

    def all(self, schema: pa.Schema) -> tuple[pa.Table, np.ndarray]:
        """Every row still held, and its id."""
        if not self.tables:
            return schema.empty_table(), np.zeros(0, dtype=np.int64)
        if len(self.tables) > 1:
            self.tables, self.ids = [concat_tables(self.tables)], [np.concatenate(self.ids)]
        return self.tables[0], self.ids[0]


@dataclass(frozen=True)
class MatchRows:
    """Found matches read back: ``events`` (``width`` rows a match: ``_sequence``,
    ``_stage`` and every stored column) and per match its key, first and last time."""

    events: pa.Table
    width: int
    keys: list[dict[str, object]]
    start: list[int]
    end: list[int]


def match_rows(snapshot: Snapshot | None, kept: Kept, schema: pa.Schema, matches: np.ndarray,
               stages: KeyedStages, *, ts_field: str = "timestamp") -> MatchRows:
    """``matches`` holds, per match, the ids of its events stage by stage (-1: a
    missing-event stage, a row of nulls); the first stage's event is always there.
    A match's key is the first stage's key values it joined on (for a key that
    holds arrays, the one value, not the array). Events are read back whole from
    ``snapshot``; without one (live), ``kept`` holds them whole."""
    count, width = matches.shape
    flat = matches.ravel()
    present = flat >= 0
    picked = kept.take(flat[present], schema)  # (the held rows, in match order)
    at = np.full(flat.shape, -1, dtype=np.int64)
    if snapshot is None:
        full = picked.drop_columns([c for c in picked.column_names
                                    if c.startswith(_JOINED) or c in (SEGMENT, ROW)])
        at[present] = np.arange(picked.num_rows)
    elif count:
        seqs = int_column(picked, SEQ)
        full = read_placed(snapshot, int_column(picked, SEGMENT), int_column(picked, ROW),
                           seqs)  # (in _seq order)
        at[present] = np.searchsorted(np.unique(seqs), seqs)
    else:
        full = read_seqs(snapshot, np.zeros(0, np.int64))
    if not count:
        events = full.slice(0, 0)
    elif snapshot is None and present.all():
        events = full  # (every match whole: the rows are in match order already)
    else:
        events = full.take(pa.array(at, mask=at < 0))
    events = events.add_column(0, "_stage", pa.array(
        np.tile(np.arange(1, width + 1, dtype=np.int16), count)))
    events = events.add_column(0, "_sequence", pa.array(np.repeat(np.arange(count),
                                                                  width)))
    ts_column = get_path(picked, snapshot.ts_field if snapshot is not None else ts_field)
    ts = np.full(flat.shape, np.iinfo(np.int64).max, dtype=np.int64)
    if ts_column is not None and count:
        ts[present] = np.asarray(pc.fill_null(pc.cast(ts_column, pa.int64()), 0),
                                 dtype=np.int64)
    times = ts.reshape(count, width)
    first = times.min(axis=1).tolist() if count else []
    last = np.where(times == np.iinfo(np.int64).max, np.iinfo(np.int64).min, times).max(
        axis=1).tolist() if count else []
    heads = pa.array(np.cumsum(present)[::width] - 1)  # (every match's first event is there)
    values = [k.take(heads).to_pylist() for k in key_columns(picked, stages.keys[0])]
    keys = [{n: v[i] for n, v in zip(stages.names, values, strict=True)} for i in range(count)]
    return MatchRows(events, width, keys, first, last)


def correlations_of(rows: MatchRows, text: str, *, picked: np.ndarray | None = None,
                    first_id: int = 0,
                    completeness: Sequence[str | tuple[str, ...]] | None = None,
                    labels: Sequence[dict[str, object]] | None = None
                    ) -> tuple[pa.Table, list[Correlation]]:
    """The matches ``picked`` (default: all) as ``Result.events`` rows and
    correlations, numbered from ``first_id``."""
    width, events = rows.width, rows.events
    count = len(rows.keys)
    if picked is not None or first_id:
        picked = np.arange(count) if picked is None else picked
        take = (picked[:, None] * width + np.arange(width)).ravel()
        if len(picked) < count:
            events = events.take(pa.array(take))
        events = events.set_column(0, "_sequence", pa.array(
            np.repeat(np.arange(len(picked)) + first_id, width)))
        which = picked.tolist()
    else:
        which = list(range(count))
    return events, [
        Correlation(first_id + n, text, rows.keys[i], events, rows.start[i], rows.end[i],
                    "complete" if completeness is None else completeness[i],
                    None if labels is None else labels[i], at=n * width, width=width)
        for n, i in enumerate(which)]


def results(snapshot: Snapshot | None, kept: Kept, schema: pa.Schema, matches: np.ndarray,
            stages: KeyedStages, text: str, *, ts_field: str = "timestamp"
            ) -> tuple[pa.Table, list[Correlation]]:
    """The found ``matches`` (see :func:`match_rows`) as ``Result.events`` rows and
    correlations."""
    return correlations_of(match_rows(snapshot, kept, schema, matches, stages,
                                      ts_field=ts_field), text)
