"""What sequences, samples and joins share.

* :class:`KeyedStages`: a plan node's stages, each with its join key; per
  batch, the events that match some stage and their key codes (stages with
  the same key expressions share one coding).
* :func:`time_batches`: the snapshot in (timestamp, ``_seq``) order, only the
  fields the node reads (and ``_seq``).
* :class:`Kept`: the rows a pending or found match may refer to.
* :func:`results`: the found matches as ``Result.events`` rows (``_sequence``
  and ``_stage`` first, every stored column read back by ``_seq`` for the
  matched events alone) and :class:`~tidal.correlate.result.Correlation` objects.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate._kernels_keys import KeyCodes
from tidal.correlate.plan import KeyFn, Predicate, Read, Stage
from tidal.correlate.result import Correlation
from tidal.model.paths import get_path
from tidal.model.schema import concat_tables
from tidal.store.readers import Snapshot
from tidal.store.seq_read import read_seqs

__all__ = ["KEEP_ROWS", "Kept", "KeyedStages", "grown", "key_columns", "results",
           "time_batches"]

KEEP_ROWS = 1 << 18
"""Rows held before the ones no match refers to are dropped (at least)."""


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
        rows]``; -1: no match, or a null key)."""
        matched = np.stack([p.mask(table) for p in self.predicates])
        rows = np.flatnonzero(matched.any(axis=0))
        sub = table.take(pa.array(rows)) if len(rows) < table.num_rows else table
        matched = matched[:, rows]
        codes = np.full(matched.shape, -1, dtype=np.int64)
        for group in self.groups:
            coded = _coded(coder, self.keys[group[0]], sub,
                           np.asarray(matched[group].any(axis=0)))
            for s in group:
                codes[s] = np.where(matched[s], coded, -1)
        return sub, matched, codes


def _coded(coder: KeyCodes, keys: tuple[KeyFn, ...], table: pa.Table, rows: np.ndarray
           ) -> np.ndarray:
    """The key codes of ``table``'s rows where ``rows`` is true (-1 elsewhere)."""
    out = np.full(table.num_rows, -1, dtype=np.int64)
    picked = np.flatnonzero(rows)
    if picked.size:
        part = table.take(pa.array(picked)) if picked.size < table.num_rows else table
        out[picked] = coder.codes(key_columns(part, keys), part.num_rows)
    return out


def key_columns(table: pa.Table, keys: tuple[KeyFn, ...]) -> list[pa.Array]:
    """Each key's value for each row of ``table``."""
    return [key(table) for key in keys]


def time_batches(snapshot: Snapshot, read: Read) -> Generator[pa.Table, None, None]:
    """The events ``read`` names in (timestamp, ``_seq``) order, a non-empty table a
    batch, with ``_seq`` and ``read.columns`` only."""
    reader = snapshot.scan(list(read.columns), prune=read.prune, start=read.start,
                           end=read.end, order="time")
    try:
        for batch in reader:
            if batch.num_rows:
                yield pa.Table.from_batches([batch])
    finally:
        reader.close()


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

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        self.ids: list[np.ndarray] = []
        self.rows = 0
        self.limit = KEEP_ROWS

    def add(self, table: pa.Table, ids: np.ndarray,
            needed: Callable[[], np.ndarray] | None = None) -> None:
        self.tables.append(table)
        self.ids.append(ids)
        self.rows += table.num_rows
        if needed is not None and self.rows > self.limit:
            table, ids = self.all(table.schema)
            keep = np.isin(ids, needed())
            self.tables, self.ids = [table.filter(pa.array(keep))], [ids[keep]]
            self.rows = int(keep.sum())
            self.limit = max(KEEP_ROWS, 2 * self.rows)

    def all(self, schema: pa.Schema) -> tuple[pa.Table, np.ndarray]:
        """Every row still held, and its id."""
        if not self.tables:
            return schema.empty_table(), np.zeros(0, dtype=np.int64)
        if len(self.tables) > 1:
            self.tables, self.ids = [concat_tables(self.tables)], [np.concatenate(self.ids)]
        return self.tables[0], self.ids[0]


def results(snapshot: Snapshot, kept: Kept, schema: pa.Schema, matches: np.ndarray,
            stages: KeyedStages, text: str) -> tuple[pa.Table, list[Correlation]]:
    """``matches`` holds, per match, the ids of its events stage by stage (-1: a
    missing-event stage, a row of nulls); the first stage's event is always there."""
    candidates, ids = kept.all(schema)
    count, width = matches.shape
    flat = matches.ravel()
    present = flat >= 0
    rows = np.searchsorted(ids, flat[present])
    seqs = np.asarray(candidates.column(0), dtype=np.int64)[rows]  # (_seq comes first)
    wanted = np.unique(seqs)
    at = np.full(flat.shape, -1, dtype=np.int64)
    at[present] = np.searchsorted(wanted, seqs)
    full = read_seqs(snapshot, wanted)
    events = full.take(pa.array(at, mask=at < 0)) if count else full.slice(0, 0)
    events = events.add_column(0, "_stage", pa.array(
        np.tile(np.arange(1, width + 1, dtype=np.int16), count)))
    events = events.add_column(0, "_sequence", pa.array(np.repeat(np.arange(count),
                                                                  width)))
    ts_column = get_path(candidates, snapshot.ts_field)
    ts = np.full(flat.shape, np.iinfo(np.int64).max, dtype=np.int64)
    if ts_column is not None and count:
        ts[present] = np.asarray(pc.fill_null(pc.cast(ts_column, pa.int64()), 0),
                                 dtype=np.int64)[rows]
    times = ts.reshape(count, width)
    first = times.min(axis=1).tolist() if count else []
    last = np.where(times == np.iinfo(np.int64).max, np.iinfo(np.int64).min, times).max(
        axis=1).tolist() if count else []
    heads = candidates.take(pa.array(np.searchsorted(ids, matches[:, 0]))) if count \
        else candidates.slice(0, 0)
    values = [k.to_pylist() for k in key_columns(heads, stages.keys[0])]
    return events, [
        Correlation(i, text, {n: v[i] for n, v in zip(stages.names, values, strict=True)},
                    events.slice(i * width, width), first[i], last[i])
        for i in range(count)]
