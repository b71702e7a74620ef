"""Running an EQL ``sequence`` over a store snapshot.

The snapshot is scanned once in (timestamp, ``_seq``) order. For each batch,
every stage's condition (and the ``until`` condition) is evaluated over the
whole batch; the events that match something are kept as candidates (only
while a pending or completed sequence may refer to them), their
join keys (the sequence's ``by`` values followed by the stage's own) become
integer codes (:class:`~tidal.correlate._kernels_keys.KeyCodes`), and
:func:`~tidal.correlate._kernels_sequence.advance` moves the pending sequences
along. A key whose value is null never joins. ``with
runs=N`` is the stage written N times.

Completed sequences come back in the order they completed (by the time of
their last event; a sequence that ends with a missing-event stage completes
when its ``maxspan`` has passed), as :class:`~tidal.correlate.result.Correlation`
objects and as rows of ``Result.events`` with ``_sequence`` (its number) and
``_stage`` (1-based) first; a missing-event stage has a row of nulls.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate._kernels_keys import KeyCodes
from tidal.correlate._kernels_sequence import advance, expired
from tidal.correlate.eql.ast import (
    Expr,
    Field,
    Sequence,
    Stage,
)
from tidal.correlate.eql.evaluate import (
    Eval,
    Options,
    compile_event_query,
    compile_value,
)
from tidal.correlate.eql.lexer import syntax_error
from tidal.correlate.eql.values import as_column
from tidal.correlate.result import Correlation
from tidal.model.paths import get_path, type_at
from tidal.model.schema import concat_tables
from tidal.store.readers import Snapshot

__all__ = ["run_sequence"]

_SEPARATOR = "\x1f"
KEEP_ROWS = 1 << 16
"""Candidate rows held before the ones no sequence needs are dropped (at least)."""


class _State:
    """Pending sequences per key code and stage, grown as codes appear."""

    def __init__(self, stages: int) -> None:
        self.stages = stages
        self.live = np.zeros((0, stages), dtype=np.bool_)
        self.start = np.zeros((0, stages), dtype=np.int64)
        self.refs = np.zeros((0, stages, stages), dtype=np.int64)

    def fit(self, keys: int) -> None:
        have = self.live.shape[0]
        if keys <= have:
            return
        size = max(keys, 2 * have, 1024)
        for name in ("live", "start", "refs"):
            old = getattr(self, name)
            new = np.zeros((size, *old.shape[1:]), dtype=old.dtype)
            new[:have] = old
            setattr(self, name, new)


class _Candidates:
    """The events a sequence may still need: those of pending and completed sequences.

    Each batch's matching events are added with their ids; once the rows held
    outgrow twice what was needed at the last look, the rows no pending or
    completed sequence refers to are dropped (no later event can refer back to
    them), so memory follows the open and found sequences, not the matches.
    """

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        self.ids: list[np.ndarray] = []
        self.rows = 0
        self.limit = KEEP_ROWS

    def add(self, table: pa.Table, ids: np.ndarray, state: _State,
            done: list[np.ndarray]) -> None:
        self.tables.append(table)
        self.ids.append(ids)
        self.rows += table.num_rows
        if self.rows > self.limit:
            self._drop_unneeded(state, done)

    def _drop_unneeded(self, state: _State, done: list[np.ndarray]) -> None:
        pending = [state.refs[state.live[:, s], s, :s + 1].ravel()
                   for s in range(state.live.shape[1])]
        needed = np.unique(np.concatenate([*pending, *(d.ravel() for d in done)]))
        ids = np.concatenate(self.ids)
        keep = np.isin(ids, needed, assume_unique=True)
        table = concat_tables(self.tables).filter(pa.array(keep))
        self.tables, self.ids = [table], [ids[keep]]
        self.rows = table.num_rows
        self.limit = max(KEEP_ROWS, 2 * self.rows)

    def all(self, schema: pa.Schema) -> tuple[pa.Table, np.ndarray]:
        """Every row still held, and its id (ascending)."""
        if not self.tables:
            return schema.empty_table(), np.zeros(0, dtype=np.int64)
        return concat_tables(self.tables), np.concatenate(self.ids)


def run_sequence(snapshot: Snapshot, text: str, body: Sequence, options: Options,
                 start: object, end: object) -> tuple[pa.Table, list[Correlation]]:
    """All the sequences ``body`` finds in the snapshot, in the order they complete."""
    stages = [s for s in body.stages for _ in range(s.runs)]
    if stages[0].missing:
        raise syntax_error(text, stages[0].pos, "a sequence cannot start with a missing-event "
                           "stage; put a stage that must occur first")
    trailing = stages[-1].missing
    if trailing and body.maxspan_ns is None:
        raise syntax_error(text, stages[-1].pos, "a sequence that ends with a missing-event "
                           "stage needs 'with maxspan=...' (how long to wait for it)")
    real = [i for i, stage in enumerate(stages) if not stage.missing]
    gap_of = {i: sum(1 for r in real if r < i) - 1 for i, st in enumerate(stages) if st.missing}
    schema = snapshot.schema
    for stage in (*stages, *([body.until] if body.until else [])):
        _check_keys((*body.by, *stage.by), schema, text)
    matchers = [compile_event_query(s.query, schema, options, text) for s in stages]
    keys = [[compile_value(e, schema, options, text) for e in (*body.by, *s.by)]
            for s in stages]
    until = compile_event_query(body.until.query, schema, options, text) if body.until else None
    until_keys = ([compile_value(e, schema, options, text) for e in (*body.by, *body.until.by)]
                  if body.until else [])
    coder = KeyCodes()
    state = _State(len(real))
    kept = _Candidates()
    done: list[np.ndarray] = []
    done_at: list[np.ndarray] = []
    offset = 0
    watermark = None
    maxspan_ns = body.maxspan_ns if body.maxspan_ns is not None else -1
    ts_field = snapshot.ts_field
    reader = snapshot.scan(start=start, end=end, order="time")
    try:
        for batch in reader:
            table = pa.Table.from_batches([batch])
            if not table.num_rows:
                continue
            matched = np.stack([m.mask(table) for m in matchers])
            stops = until.mask(table) if until is not None else np.zeros(table.num_rows, bool)
            rows = np.flatnonzero(matched.any(axis=0) | stops)
            watermark = _last_ns(table, ts_field)
            if not rows.size:
                continue
            sub = table.take(pa.array(rows))
            matched, stops = matched[:, rows], stops[rows]
            hits = matched[real]
            codes = np.stack([_coded(coder, keys[i], sub, matched[i]) for i in real])
            kills = np.full(hits.shape, -1, dtype=np.int64)
            for i, gap in gap_of.items():
                found = _coded(coder, keys[i], sub, matched[i])
                kills[gap] = np.where(kills[gap] >= 0, kills[gap], found)
            until_codes = (_coded(coder, until_keys, sub, stops) if until is not None
                           else np.full(len(rows), -1, dtype=np.int64))
            state.fit(len(coder))
            ts = np.asarray(pc.cast(get_path(sub, ts_field), pa.int64()), dtype=np.int64)
            ids = np.arange(offset, offset + len(rows), dtype=np.int64)
            completed, completed_ns, count = advance(
                codes, hits, kills, until_codes, ts, ids, maxspan_ns, trailing,
                state.live, state.start, state.refs)
            offset += len(rows)
            if count:
                done.append(completed)
                done_at.append(completed_ns)
            kept.add(sub, ids, state, done)
    finally:
        reader.close()
    if trailing and watermark is not None:
        late, late_ns = expired(state.live, state.start, state.refs, len(coder), maxspan_ns,
                                watermark)
        done.append(late)
        done_at.append(late_ns)
    matches = np.concatenate(done) if done else np.zeros((0, len(real)), dtype=np.int64)
    if done_at:
        matches = matches[np.argsort(np.concatenate(done_at), kind="stable")]
    candidates, candidate_ids = kept.all(schema)
    return _results(candidates, np.searchsorted(candidate_ids, matches), stages, real, body,
                    ts_field, text)


def _last_ns(table: pa.Table, ts_field: str) -> int:
    column = get_path(table, ts_field)
    return int(pc.cast(pc.max(column), pa.int64()).as_py())


def _check_keys(exprs: tuple[Expr, ...], schema: pa.Schema, text: str) -> None:
    for expr in exprs:
        if isinstance(expr, Field):
            found = type_at(schema, expr.name)
            if found is not None and (pa.types.is_list(found) or pa.types.is_large_list(found)):
                raise syntax_error(text, expr.pos, f"join keys that hold arrays ({expr.name!r})"
                                   " are not supported yet")


def _coded(coder: KeyCodes, compiled: list[Eval], table: pa.Table, rows: np.ndarray
           ) -> np.ndarray:
    """The key codes of ``table``'s rows where ``rows`` is true (-1 elsewhere)."""
    out = np.full(table.num_rows, -1, dtype=np.int64)
    picked = np.flatnonzero(rows)
    if picked.size:
        out[picked] = coder.codes(_key_strings(compiled, table.take(pa.array(picked))))
    return out


def _key_strings(compiled: list[Eval], table: pa.Table) -> pa.Array:
    """One text key per row: the key values joined (null if any is null)."""
    n = table.num_rows
    if not compiled:
        return pa.array([""] * n, pa.string())
    parts = []
    for evaluate in compiled:
        value = as_column(evaluate(table), n)  # (array keys were refused when compiled)
        if pa.types.is_dictionary(value.type):
            value = value.cast(value.type.value_type)
        parts.append(value if pa.types.is_string(value.type) else value.cast(pa.string()))
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, _SEPARATOR)


def _results(candidates: pa.Table, matches: np.ndarray, stages: list[Stage], real: list[int],
             body: Sequence, ts_field: str, text: str
             ) -> tuple[pa.Table, list[Correlation]]:
    """``matches`` holds, per sequence, the rows of ``candidates`` of its real stages."""
    width = len(stages)
    count = len(matches)
    rows = np.full((count, width), -1, dtype=np.int64)
    rows[:, real] = matches
    flat = rows.ravel()
    index = pa.array(flat, mask=flat < 0)  # a missing-event stage: a row of nulls
    events = candidates.take(index) if count else candidates.slice(0, 0)
    events = events.add_column(0, "_stage", pa.array(np.tile(np.arange(1, width + 1,
                                                                       dtype=np.int16), count)))
    events = events.add_column(0, "_sequence", pa.array(np.repeat(np.arange(count), width)))
    ts = (np.asarray(pc.fill_null(pc.cast(get_path(events, ts_field), pa.int64()), 0),
                     dtype=np.int64).reshape(count, width) if count
          else np.zeros((0, width), np.int64))
    first, last = real[0], real[-1]
    names = [e.name if isinstance(e, Field) else f"key{i}"
             for i, e in enumerate((*body.by, *stages[0].by))]
    key_values = _first_stage_keys(events, body, stages[0], names, width)
    correlations = [  # (a missing-event stage that did not occur is part of a full match)
        Correlation(i, text, key_values[i], events.slice(i * width, width),
                    int(ts[i, first]), int(ts[i, last]))
        for i in range(count)]
    return events, correlations


def _first_stage_keys(events: pa.Table, body: Sequence, first: Stage, names: list[str],
                      width: int) -> list[dict[str, object]]:
    """Each sequence's key: its by values, read from its first event."""
    count = events.num_rows // width if width else 0
    if not count or not names:
        return [{} for _ in range(count)]
    heads = events.take(pa.array(np.arange(count) * width))
    columns = []
    for expr in (*body.by, *first.by):
        if isinstance(expr, Field):
            column = get_path(heads, expr.name)
            columns.append(column.to_pylist() if column is not None else [None] * count)
        else:
            columns.append([None] * count)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
