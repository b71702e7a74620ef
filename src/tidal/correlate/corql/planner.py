"""CorQL query → the logical plan: a :class:`~tidal.correlate.plan.WindowJoin`.

The first selector is the anchor; each ``and``/``or``/``unless`` link joins its
selector to the anchor on the link's key (``on(a, b)``, ``on(a=b)`` mapping the
anchor's ``a`` to this selector's ``b``, or ``ignoring(..)``: every field either
selector's matchers name but those listed) within ``within(d)`` (an ``or`` or
``unless`` without one uses its selector's ``[range]``). Every link of a chain
joins the anchor on the same fields of the anchor. ``group_left(..)`` and
``group_right(..)`` join two selectors.

Over history, a selector's ``[range]`` reads back from the query's end; the
scan reads from the earliest of them when every selector has one.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable

import pyarrow as pa

from tidal.correlate.corql.ast import Link, Query, Selector
from tidal.correlate.corql.matchers import compile_matchers, prune
from tidal.correlate.plan import Plan, Read, Stage, Stream, WindowJoin
from tidal.correlate.syntax import syntax_error
from tidal.errors import UnknownFieldError
from tidal.model.paths import get_path, type_at

__all__ = ["plan_corql"]


def plan_corql(query: Query, schema: pa.Schema, *, ts_field: str, start: int | None = None,
               end: int | None = None, check_fields: bool = True) -> Plan:
    """The plan of ``query`` over a store of ``schema``; ``check_fields=False`` (a
    live query, whose fields may come later) leaves the key fields unchecked."""
    text = query.text
    if not query.links:
        raise syntax_error(text, len(text), "a correlation joins two or more selectors: "
                           "expected `and`, `or` or `unless` and another selector")
    anchor_fields: tuple[str, ...] | None = None
    links: list[tuple[Link, tuple[str, ...]]] = []
    for link in query.links:
        left, right = _key(query, link)
        if anchor_fields is None:
            anchor_fields = left
        elif left != anchor_fields:
            raise syntax_error(text, link.pos, "every link of a chain joins the first selector "
                               f"on the same fields: on({', '.join(anchor_fields)}) before, "
                               f"on({', '.join(left)}) here")
        if link.group is not None and len(query.links) > 1:
            raise syntax_error(text, link.pos, f"group_{link.group} joins two selectors, "
                               "not a chain")
        links.append((link, right))
    assert anchor_fields is not None
    for field in {*anchor_fields, *(f for _link, right in links for f in right)}:
        if check_fields and type_at(schema, field) is None:
            error = syntax_error(text, _key_pos(query), f"unknown key field {field!r}: no "
                                 "event in the store has it")
            raise UnknownFieldError(str(error), field=field, query=text,
                                    position=error.position, line=error.line,
                                    column=error.column)
    streams = [_stream(query.first, anchor_fields, "anchor", None, ts_field, schema)]
    for link, right in links:
        within = link.within_ns
        if within is None and link.op in ("or", "unless"):
            within = link.right.range_ns
            if within is None:
                raise syntax_error(text, link.pos, f"`{link.op}` needs within(..) (or a [range] "
                                   "on its selector) to know when a partner is missing")
        streams.append(_stream(link.right, right, link.op, within, ts_field, schema))
    group = next((link.group for link, _ in links if link.group is not None), None)
    group_fields = next((link.group_fields for link, _ in links if link.group is not None), ())
    columns = sorted({c for s in streams for c in s.stage.columns})
    ranges = [s.range_ns for s in streams]
    read_start = start
    if end is not None and all(r is not None for r in ranges):
        earliest = end - max(r for r in ranges if r is not None)
        read_start = earliest if start is None else max(start, earliest)
    prunes = [s.stage.prune for s in streams if s.stage.prune is not None]
    either = functools.reduce(operator.or_, prunes) if len(prunes) == len(streams) else None
    node = WindowJoin(tuple(streams), Read(tuple(columns), either, read_start, end),
                      anchor_fields, group, tuple(group_fields),
                      compile_matchers(query.post_filter) if query.post_filter else None)
    return Plan(node, text=text)


def _key(query: Query, link: Link) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The anchor's key fields and the link's selector's, in order."""
    if link.on is not None:
        return tuple(p.left for p in link.on), tuple(p.right for p in link.on)
    if link.ignoring is not None:
        named = sorted({m.path for m in (*query.first.matchers, *link.right.matchers)}
                       - set(link.ignoring))
        return tuple(named), tuple(named)
    raise syntax_error(query.text, link.pos, f"`{link.op}` needs on(..) or ignoring(..): the "
                       "fields that join the two sides (on() joins on none)")


def _key_pos(query: Query) -> int:
    return query.links[0].pos


def _stream(selector: Selector, key_fields: tuple[str, ...], op: str, within_ns: int | None,
            ts_field: str, schema: pa.Schema) -> Stream:
    predicate = compile_matchers(selector.matchers)
    columns = tuple(sorted({*predicate.columns, *key_fields, ts_field}))
    stage = Stage(predicate, tuple(_key_fn(f) for f in key_fields), key_fields,
                  columns=columns, key_fields=key_fields,
                  prune=prune(selector.matchers, schema))
    return Stream(stage, op, within_ns, selector.range_ns, str(selector))


def _key_fn(path: str) -> Callable[[pa.Table], pa.Array]:
    def key(table: pa.Table) -> pa.Array:
        column = get_path(table, path)
        if column is None:
            return pa.nulls(table.num_rows)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        return column

    return key
