"""How often one kind of event is followed by another of the same key, and how soon.

``a`` and ``b`` are EQL conditions (``event.outcome == "failure"``) or event queries
(``authentication where ...``), compiled by the EQL front end (errors name the line
and column of the text given). One scan reads only the fields they and the key need,
skipping the row groups neither pushdown allows; per batch, the rows that match
either keep their key code (:class:`~tidal.correlate._kernels_keys.KeyCodes`),
timestamp, ``_seq`` and which conditions they match. Then numpy alone: the kept
events in (key, timestamp, ``_seq``) order, a reverse running minimum gives each the
next ``b`` event after it; an ``a`` event is followed when that one has its key and
comes within the window. An event that matches both is one position, so it never
follows itself.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate import plan
from tidal.correlate.eql import ast
from tidal.correlate.eql.evaluate import Options
from tidal.correlate.eql.lexer import syntax_error, tokenize
from tidal.correlate.eql.parser import UNITS_NS, _Parser, parse
from tidal.correlate.eql.planner import plan_query
from tidal.errors import ConfigError
from tidal.model.paths import get_path, type_at
from tidal.model.time import parse_instant
from tidal.store.readers import Snapshot
from tidal.store.run import SEQ, int_column

__all__ = ["FollowedBy", "Pair", "followed_by", "within_ns"]

_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]+)\s*")


@dataclass(frozen=True)
class Pair:
    """An ``a`` event and the first ``b`` event that followed it: their ``_seq``, the
    key they share (field path → value) and the time between them."""

    a_seq: int
    b_seq: int
    key: dict[str, Any]
    gap_ns: int


@dataclass(frozen=True)
class FollowedBy:
    """What :func:`followed_by` found.

    ``total``: the ``a`` events with a key (no key value null); ``followed``: those a
    ``b`` event of their key followed within ``within_ns``; ``ratio``: ``followed /
    total`` (0.0 when ``total`` is 0). The gaps (to each followed ``a``'s first ``b``):
    mean, median and 99th percentile (numpy's linear interpolation), rounded to whole
    ns; None when none followed. ``examples``: the first followed ``a`` events in
    (timestamp, ``_seq``) order with their ``b``; ``within_ns``, ``by``: as asked.
    """

    total: int
    followed: int
    ratio: float
    gap_mean_ns: int | None
    gap_p50_ns: int | None
    gap_p99_ns: int | None
    examples: tuple[Pair, ...]
    within_ns: int
    by: tuple[str, ...]


@dataclass(frozen=True)
class _Events:
    """The keyed events that match ``a`` or ``b`` (scan order); key values by batch."""

    codes: np.ndarray
    ts: np.ndarray
    seqs: np.ndarray
    is_a: np.ndarray
    is_b: np.ndarray
    keys: list[list[pa.Array]]
    offsets: np.ndarray


def followed_by(snapshot: Snapshot, a: object, b: object, *, within: object,
                by: str | Sequence[str], start: object = None, end: object = None,
                examples: int = 5, category_field: str = "event.category") -> FollowedBy:
    """How often events matching ``a`` are followed by an event matching ``b`` of the
    same ``by`` key within ``within``, among the events of ``snapshot`` in
    [``start``, ``end``) (see :meth:`tidal.api.Store.followed_by`)."""
    window = within_ns(within)
    keys = _key_paths(by, snapshot.schema)
    if type(examples) is not int or examples < 0:
        raise ConfigError("examples must be a whole number >= 0", field="examples")
    options = Options(category_field=category_field)
    first, then = (_condition(text, name, snapshot, options) for text, name in ((a, "a"), (b, "b")))
    events = _scan(snapshot, first, then, keys, parse_instant(start, name="start"),
                   parse_instant(end, name="end"))
    return _summary(events, window, keys, examples)


def within_ns(value: object) -> int:
    """A window as ns: a duration text (``"30s"``, ``"250ms"``, ``"5m"``, ``"1h"``,
    ``"2d"``; EQL's units), an int (ns) or a ``datetime.timedelta``.

    >>> within_ns("5m"), within_ns("1.5s"), within_ns(dt.timedelta(milliseconds=250))
    (300000000000, 1500000000, 250000000)
    """
    if isinstance(value, dt.timedelta):
        ns = (value.days * 86_400 + value.seconds) * 10**9 + value.microseconds * 1_000
    elif isinstance(value, int | np.integer) and not isinstance(value, bool):
        ns = int(value)
    elif (isinstance(value, str) and (found := _DURATION.fullmatch(value))
          and found.group(2).lower() in UNITS_NS):
        ns = round(Decimal(found.group(1)) * UNITS_NS[found.group(2).lower()])
    else:
        raise ConfigError(f"within must be a duration such as '30s', '250ms' or '5m' (units: "
                          f"{', '.join(UNITS_NS)}), int ns or a timedelta, not {value!r}",
                          field="within")
    if ns < 0:
        raise ConfigError(f"within must not be negative, not {value!r}", field="within")
    return ns


def _key_paths(by: object, schema: pa.Schema) -> tuple[str, ...]:
    paths = (by,) if isinstance(by, str) else tuple(by) if isinstance(by, Sequence) else ()
    if not paths or not all(isinstance(p, str) and p for p in paths):
        raise ConfigError(f"by must be a field path or a list of them, not {by!r}", field="by")
    for path in paths:
        found = type_at(schema, path)
        if found is None:
            raise ConfigError(f"unknown key field {path!r}: no event in the store has it",
                              field="by")
        if pa.types.is_nested(found):
            raise ConfigError(f"a key must be one value, not {found} ({path!r} holds it)",
                              field="by")
    return tuple(dict.fromkeys(paths))


def _condition(text: object, name: str, snapshot: Snapshot, options: Options) -> plan.Filter:
    """``text`` compiled: an event query (``category where condition``, ``any where
    ...``) as it is, else a bare condition as ``any where`` it; errors point into
    ``text``."""
    if not isinstance(text, str):
        raise ConfigError(f"{name} must be an EQL condition, not {type(text).__name__}",
                          field=name)
    tokens = tokenize(text)
    if tokens[0].kind == "end":
        raise syntax_error(text, 0, "empty condition")
    if tokens[0].is_word("sequence", "sample", "join") or tokens[1].is_word("where"):
        query = parse(text)
        if not isinstance(query.body, ast.EventQuery):
            raise syntax_error(text, query.body.pos, "expected a condition or an event query "
                               "('category where condition'), not a sequence, sample or join")
        if query.pipes:
            raise syntax_error(text, query.pipes[0].pos, "a condition takes no pipes")
    else:
        parser = _Parser(text)
        condition = parser.expr()
        if parser.tok.kind != "end":
            hint = "; did you mean 'and' or 'or'?" if parser.tok.kind != "op" else ""
            raise parser.error(f"unexpected {parser.found()} after the condition{hint}")
        query = ast.Query(ast.EventQuery(None, condition, 0), (), text)
    root = plan_query(query, snapshot.schema, options, ts_field=snapshot.ts_field).root
    assert isinstance(root, plan.Filter)
    return root


def _scan(snapshot: Snapshot, a: plan.Filter, b: plan.Filter, keys: tuple[str, ...],
          start: int | None, end: int | None) -> _Events:
    from tidal.correlate._kernels_keys import KeyCodes  # (numba loads on first use)

    columns = list(dict.fromkeys([*a.read.columns, *b.read.columns, *keys, snapshot.ts_field]))
    prune = (a.read.prune | b.read.prune if a.read.prune is not None
             and b.read.prune is not None else None)
    coder = KeyCodes()
    parts: list[tuple[np.ndarray, ...]] = []
    values: list[list[pa.Array]] = []
    reader = snapshot.scan(columns, prune=prune, start=start, end=end, order=None)
    try:
        for batch in reader:
            table = pa.Table.from_batches([batch])
            is_a, is_b = a.predicate.mask(table), b.predicate.mask(table)
            rows = np.flatnonzero(is_a | is_b)
            if not rows.size:
                continue
            sub = table.take(pa.array(rows))
            key = [_values(sub, path) for path in keys]
            codes = coder.codes(key, len(rows))
            kept = np.flatnonzero(codes >= 0)
            if not kept.size:
                continue
            ts = pc.fill_null(pc.cast(_values(sub, snapshot.ts_field), pa.int64()), 0)
            parts.append((codes[kept], np.asarray(ts, dtype=np.int64)[kept],
                          int_column(sub, SEQ)[kept], is_a[rows[kept]], is_b[rows[kept]]))
            values.append([column.take(pa.array(kept)) for column in key])
    finally:
        reader.close()
    if not parts:
        none = np.zeros(0, dtype=np.int64)
        return _Events(none, none, none, none > 0, none > 0, [], np.zeros(1, np.int64))
    codes, ts, seqs, is_a, is_b = (np.concatenate(p) for p in zip(*parts, strict=True))
    offsets = np.cumsum([0, *(len(p[0]) for p in parts)])
    return _Events(codes, ts, seqs, is_a, is_b, values, offsets)


def _values(table: pa.Table, path: str) -> pa.Array:
    """The values at ``path`` as one array (nulls when the batch lacks the field)."""
    found = get_path(table, path)
    return pa.nulls(table.num_rows) if found is None else found.combine_chunks()


def _summary(events: _Events, window: int, keys: tuple[str, ...], examples: int
             ) -> FollowedBy:
    n = len(events.codes)
    order = np.lexsort((events.seqs, events.ts, events.codes))
    codes = np.append(events.codes[order], -1)  # (a last position no key has)
    ts = np.append(events.ts[order], 0)
    seqs = events.seqs[order]
    # the first b position after each position (n: none), by a reverse running minimum
    b_at = np.where(events.is_b[order], np.arange(n), n)
    next_b = np.append(np.minimum.accumulate(b_at[::-1])[::-1][1:], n)
    a_rows = np.flatnonzero(events.is_a[order])
    gaps = ts[after := next_b[a_rows]] - ts[a_rows]
    hit = (codes[after] == codes[a_rows]) & (gaps <= window)
    a_hit, b_hit, gaps = a_rows[hit], after[hit], gaps[hit]
    total, followed = len(a_rows), len(a_hit)
    mean = p50 = p99 = None
    if followed:
        mean = round(float(gaps.mean()))
        p50, p99 = (round(float(v)) for v in np.percentile(gaps, [50, 99]))
    first = np.lexsort((seqs[a_hit], ts[a_hit]))[:examples]
    pairs = tuple(Pair(int(seqs[a_hit[i]]), int(seqs[b_hit[i]]),
                       _key_of(events, keys, int(order[a_hit[i]])), int(gaps[i])) for i in first)
    return FollowedBy(total, followed, followed / total if total else 0.0, mean, p50, p99,
                      pairs, window, keys)


def _key_of(events: _Events, keys: tuple[str, ...], at: int) -> dict[str, Any]:
    """The key values of the kept event at scan position ``at``."""
    part = int(np.searchsorted(events.offsets, at, side="right")) - 1
    row = at - int(events.offsets[part])
    return {path: column[row].as_py() for path, column in zip(keys, events.keys[part], strict=True)}
