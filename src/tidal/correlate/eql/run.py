"""Running an EQL query over a store snapshot (the batch executor).

An event query streams through the snapshot's ``scan`` in (timestamp,
``_seq``) order, with its simple conditions and time bounds pushed into the
scan; each batch is filtered by the compiled condition, and the pipes run on
what matched. A leading ``head`` (or ``size``) stops the scan once enough
events matched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.eql.ast import EventQuery, Field, Literal, Pipe, Query, Sequence
from tidal.correlate.eql.evaluate import (
    Options,
    compile_condition,
    compile_event_query,
    compile_value,
)
from tidal.correlate.eql.lexer import syntax_error
from tidal.correlate.eql.parser import parse
from tidal.correlate.eql.pushdown import pushdown
from tidal.correlate.result import Result
from tidal.errors import ConfigError, QueryError
from tidal.model.paths import get_path
from tidal.model.schema import concat_tables
from tidal.store.readers import Snapshot

__all__ = ["run_eql"]

FIELD_TYPES = ("date",)


def run_eql(snapshot: Snapshot, text: str, *, start: object = None, end: object = None,
            size: int | None = None, case_insensitive: bool = False,
            category_field: str = "event.category",
            field_types: Mapping[str, str] | None = None) -> Result:
    """Parse ``text``, check it against the snapshot's schema and run it."""
    if size is not None and (not isinstance(size, int) or size < 0):
        raise ConfigError("size must be a whole number >= 0 or None", field="size")
    for name, kind in (field_types or {}).items():
        if kind not in FIELD_TYPES:
            raise ConfigError(f"field_types[{name!r}] must be one of {FIELD_TYPES}, not "
                              f"{kind!r}", field="field_types")
    query = parse(text)
    options = Options(case_insensitive, category_field, dict(field_types or {}))
    if isinstance(query.body, Sequence):
        return _sequence(snapshot, query, query.body, options, start, end, size)
    if not isinstance(query.body, EventQuery):
        kind = type(query.body).__name__.lower()
        raise syntax_error(text, query.body.pos, f"{kind} queries are not supported yet; "
                           "event queries and sequences are")
    events = _event_query(snapshot, query, query.body, options, start, end,
                          _scan_limit(query.pipes, size))
    for pipe in query.pipes:
        events = _pipe(events, pipe, options, text)
    if size is not None:
        events = events.slice(0, size)
    return Result(events, [], text)


def _sequence(snapshot: Snapshot, query: Query, body: Sequence, options: Options,
              start: object, end: object, size: int | None) -> Result:
    from tidal.correlate.eql.sequence import run_sequence  # (loads numba: only when needed)

    events, found = run_sequence(snapshot, query.text, body, options, start, end)
    keep = np.arange(len(found))
    for pipe in query.pipes:
        if pipe.name == "head":
            keep = keep[:_count_arg(pipe)]
        elif pipe.name == "tail":
            n = _count_arg(pipe)
            keep = keep[max(0, len(keep) - n):] if n else keep[:0]
        else:
            raise syntax_error(query.text, pipe.pos, f"the '{pipe.name}' pipe on sequences "
                               "is not supported yet ('head' and 'tail' are)")
    if size is not None:
        keep = keep[:size]
    if len(keep) == len(found):
        return Result(events, found, query.text)
    width = events.num_rows // len(found) if found else 0
    rows = (keep[:, None] * width + np.arange(width)).ravel()
    events = events.take(pa.array(rows)).set_column(  # renumbered: 0, 1, ... as returned
        0, "_sequence", pa.array(np.repeat(np.arange(len(keep)), width)))
    picked = [replace(found[i], id=n, events=events.slice(n * width, width))
              for n, i in enumerate(keep.tolist())]
    return Result(events, picked, query.text)


def _scan_limit(pipes: tuple[Pipe, ...], size: int | None) -> int | None:
    """How many matches the scan needs at most (a leading ``head``, or ``size``)."""
    limits = [size] if size is not None and not pipes else []
    if pipes and pipes[0].name == "head":
        limits.append(_count_arg(pipes[0]))
    return min(limits) if limits else None


def _event_query(snapshot: Snapshot, query: Query, body: EventQuery, options: Options,
                 start: object, end: object, limit: int | None) -> pa.Table:
    schema = snapshot.schema
    condition = compile_event_query(body, schema, options, query.text)
    where = pushdown(body.condition, schema, case_insensitive=options.case_insensitive,
                     category=(options.category_field, body.category)
                     if body.category is not None else None)
    matched: list[pa.Table] = []
    found = 0
    # With a limit, read in time order and stop early; else read as stored (cheaper:
    # no merge of every column) and order only the matches.
    ordered = limit is not None
    reader = snapshot.scan(where=where, start=start, end=end,
                           order="time" if ordered else None)
    try:
        for batch in reader:
            table = pa.Table.from_batches([batch])
            mask = condition.mask(table)
            if not mask.any():
                continue
            kept = table.filter(pa.array(mask))
            matched.append(kept)
            found += kept.num_rows
            if limit is not None and found >= limit:
                break
    finally:
        reader.close()
    if not matched:
        return schema.empty_table()
    events = concat_tables(matched)
    return events if ordered else _in_time_order(events, snapshot.ts_field)


def _in_time_order(events: pa.Table, ts_field: str) -> pa.Table:
    """``events`` sorted by (timestamp, ``_seq``)."""
    ts = np.asarray(pc.cast(get_path(events, ts_field), pa.int64()), dtype=np.int64)
    seq = np.asarray(events.column("_seq"), dtype=np.int64)
    order = np.lexsort((seq, ts))
    if np.array_equal(order, np.arange(len(order))):
        return events
    return events.take(pa.array(order))


def _pipe(events: pa.Table, pipe: Pipe, options: Options, text: str) -> pa.Table:
    name = pipe.name
    if name == "head":
        return events.slice(0, _count_arg(pipe))
    if name == "tail":
        n = _count_arg(pipe)
        return events.slice(max(0, events.num_rows - n)) if n else events.slice(0, 0)
    if name == "filter":
        condition = compile_condition(pipe.args[0], events.schema, options, text)
        return events.filter(pa.array(condition.mask(events)))
    keys = [_key_column(events, arg, options, text) for arg in pipe.args]
    names = [_key_name(arg, i) for i, arg in enumerate(pipe.args)]
    if name == "sort":
        if not events.num_rows:
            return events
        order = np.lexsort([_sort_key(k) for k in reversed(keys)])
        return events.take(pa.array(order))
    if name == "count":
        return _count(events, keys, names)
    first, counts = _first_per_key(keys, events.num_rows)
    if name == "unique":
        return events.take(pa.array(first))
    total = events.num_rows or 1  # unique_count
    kept = events.take(pa.array(first))
    return kept.append_column("count", pa.array(counts)).append_column(
        "percent", pa.array(counts / total))


def _count_arg(pipe: Pipe) -> int:
    value = pipe.args[0]
    assert isinstance(value, Literal) and isinstance(value.value, int)
    return value.value


def _key_column(events: pa.Table, arg: object, options: Options, text: str) -> pa.Array:
    evaluate = compile_value(arg, events.schema, options, text)  # type: ignore[arg-type]
    value = evaluate(events)
    if isinstance(value, pa.Scalar):
        return pa.array([value.as_py()] * events.num_rows)
    if not isinstance(value, pa.Array):
        raise QueryError("a pipe's key cannot be a field that holds an array")
    return value


def _key_name(arg: object, i: int) -> str:
    return arg.name if isinstance(arg, Field) else f"key{i}"


def _codes(key: pa.Array) -> np.ndarray:
    """Integer codes of a key column (equal values, equal codes; null its own code)."""
    encoded = pc.dictionary_encode(key.cast(pa.string()) if pa.types.is_null(key.type)
                                   else key, null_encoding="encode")
    return np.asarray(encoded.indices, dtype=np.int64)


def _sort_key(key: pa.Array) -> np.ndarray:
    """Ranks of a column for sorting: nulls last."""
    ranks = pc.rank(key, sort_keys="ascending", tiebreaker="dense")  # nulls rank last
    return np.asarray(ranks, dtype=np.int64)


def _first_per_key(keys: list[pa.Array], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row of the first event of each distinct key (in order) and how many share it."""
    if not n:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    codes = np.stack([_codes(k) for k in keys], axis=1) if keys else np.zeros((n, 1), np.int64)
    _, first, inverse, counts = np.unique(codes, axis=0, return_index=True,
                                          return_inverse=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    return first[order], counts[order]


def _count(events: pa.Table, keys: list[pa.Array], names: list[str]) -> pa.Table:
    total = events.num_rows
    if not keys:
        return pa.table({"count": pa.array([total], pa.int64())})
    if not total:
        return pa.table({**{n: pa.array([], k.type) for n, k in zip(names, keys, strict=True)},
                         "count": pa.array([], pa.int64()),
                         "percent": pa.array([], pa.float64())})
    first, counts = _first_per_key(keys, total)
    table = pa.table({n: k.take(pa.array(first)) for n, k in zip(names, keys, strict=True)})
    table = table.append_column("count", pa.array(counts)).append_column(
        "percent", pa.array(counts / total))
    order = np.lexsort([_sort_key(table.column(n).combine_chunks()) for n in reversed(names)]
                       + [counts])
    return table.take(pa.array(order))
