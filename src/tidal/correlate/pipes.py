"""Pipes: what a query does with its result, over a table of rows.

An event query's rows are its events; a sequence's, sample's or join's are its
matches, one row each (see :func:`~tidal.correlate.plan.match_schema`).
Every pipe is whole-column work:

* ``head N`` / ``tail N``: the first / last N rows;
* ``filter``: the rows its predicate holds for;
* ``sort k, ...``: ordered by the keys (nulls last; stable);
* ``unique k, ...``: the first row of each distinct key;
* ``unique_count k, ...``: the same, with ``count`` (rows sharing the key) and
  ``percent`` (of all rows) columns;
* ``count``: the number of rows (a one-row table); ``count k, ...``: one row per
  distinct key with ``count`` and ``percent``, fewest first (as the ``eql``
  package orders them), ties by key.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.plan import Pipe

__all__ = ["apply_pipes", "sort_ranks"]


def apply_pipes(rows: pa.Table, pipes: tuple[Pipe, ...]) -> pa.Table:
    """``rows`` after each pipe in turn."""
    for pipe in pipes:
        rows = _apply(rows, pipe)
    return rows


def _apply(rows: pa.Table, pipe: Pipe) -> pa.Table:
    name = pipe.name
    if name == "head":
        return rows.slice(0, pipe.count)
    if name == "tail":
        n = pipe.count or 0
        return rows.slice(max(0, rows.num_rows - n)) if n else rows.slice(0, 0)
    if name == "filter":
        assert pipe.predicate is not None
        return rows.filter(pa.array(pipe.predicate.mask(rows)))
    keys = [key(rows) for key in pipe.keys]
    if name == "sort":
        if not rows.num_rows:
            return rows
        return rows.take(pa.array(np.lexsort([sort_ranks(k) for k in reversed(keys)])))
    if name == "count":
        return _count(rows.num_rows, keys, list(pipe.key_names))
    first, counts = _first_per_key(keys, rows.num_rows)
    if name == "unique":
        return rows.take(pa.array(first))
    total = rows.num_rows or 1  # unique_count (its columns replace fields of their names)
    kept = rows.take(pa.array(first)).drop_columns(
        [name for name in ("count", "percent") if name in rows.column_names])
    return kept.append_column("count", pa.array(counts)).append_column(
        "percent", pa.array(counts / total))


def _codes(key: pa.Array) -> np.ndarray:
    """Integer codes of a key column (equal values, equal codes; null its own code)."""
    encoded = pc.dictionary_encode(key.cast(pa.string()) if pa.types.is_null(key.type)
                                   else key, null_encoding="encode")
    return np.asarray(encoded.indices, dtype=np.int64)


def sort_ranks(key: pa.Array) -> np.ndarray:
    """Ranks of a column for sorting (dense, nulls last; a type without an order by its
    text)."""
    if pa.types.is_dictionary(key.type):
        key = key.cast(key.type.value_type)
    try:
        ranks = pc.rank(key, sort_keys="ascending", tiebreaker="dense")
    except pa.ArrowNotImplementedError:  # (a type without an order: by its text)
        ranks = pc.rank(key.cast(pa.string()), sort_keys="ascending", tiebreaker="dense")
    return np.asarray(ranks, dtype=np.int64)


def _first_per_key(keys: list[pa.Array], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row of the first row of each distinct key (in order) and how many share it."""
    if not n:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    codes = np.stack([_codes(k) for k in keys], axis=1) if keys else np.zeros((n, 1), np.int64)
    _, first, counts = np.unique(codes, axis=0, return_index=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    return first[order], counts[order]


def _count(total: int, keys: list[pa.Array], names: list[str]) -> pa.Table:
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
    order = np.lexsort([sort_ranks(table.column(n).combine_chunks()) for n in reversed(names)]
                       + [counts])
    return table.take(pa.array(order))
