"""EQL to the logical plan (:mod:`tidal.correlate.plan`).

The planner checks a parsed query against the store's schema, compiles its
conditions and keys, and decides what each node reads:

* the columns: the stored fields the query names (with the category and
  timestamp fields); nothing else is scanned;
* the pushdown: an event query's simple conjuncts (``field == literal``,
  ``field in (...)``, the category) prune row groups by their statistics; a
  sequence, join or sample pushes the ``or`` of its stages' (when every stage
  has one, and no missing-event stage ends it: a trailing absence is timed by
  every event);
* the time bounds.

Errors a language user can fix (a sequence that starts with a missing-event
stage, a sample without keys, an array field where one value is needed) name
the position in the query.
"""

from __future__ import annotations

from functools import reduce

import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate import plan
from tidal.correlate.eql import ast
from tidal.correlate.eql.evaluate import (
    Eval,
    Options,
    compile_condition,
    compile_event_query,
    compile_value,
)
from tidal.correlate.eql.lexer import syntax_error
from tidal.correlate.eql.pushdown import pushdown, read_columns, simple_conjuncts
from tidal.correlate.eql.values import Many, as_column, flatten
from tidal.model.paths import type_at

__all__ = ["plan_query"]


def plan_query(query: ast.Query, schema: pa.Schema, options: Options, *, ts_field: str,
               start: int | None = None, end: int | None = None, size: int | None = None,
               max_samples_per_key: int = 1) -> plan.Plan:
    """The plan of ``query`` over a store of ``schema``."""
    body = query.body
    text = query.text
    read = plan.Read(tuple(read_columns(schema, body, options.category_field, ts_field)),
                     None, start, end)
    root: plan.Filter | plan.Sequence | plan.Join | plan.Sample
    if isinstance(body, ast.EventQuery):
        where = _event_pushdown(body, schema, options)
        columns = read_columns(schema, body, options.category_field, "")  # (no time: the
        root = plan.Filter(compile_event_query(body, schema, options, text),  # matches are
                           plan.Read(tuple(columns), where, start, end),  # ordered once read)
                           _scan_limit(query.pipes, size))
        pipes_schema = schema
    else:
        root = _correlation(body, schema, options, text, read, ts_field, max_samples_per_key)
        pipes_schema = plan.match_schema(schema, len(root.stages))
    _check_after_count(query.pipes, text)
    pipes = tuple(_pipe(p, pipes_schema, options, text) for p in query.pipes)
    return plan.Plan(root, pipes, size, text)


def _correlation(body: ast.Sequence | ast.Sample | ast.Join, schema: pa.Schema,
                 options: Options, text: str, read: plan.Read, ts_field: str,
                 max_samples_per_key: int) -> plan.Sequence | plan.Join | plan.Sample:
    stages = [s for s in body.stages for _ in range(s.runs)]
    until = body.until if isinstance(body, ast.Sequence | ast.Join) else None
    if isinstance(body, ast.Sequence):
        _check_sequence(body, stages, text)
    if isinstance(body, ast.Sample) and not body.by and not stages[0].by:
        raise syntax_error(text, body.pos, "a sample needs join keys: write 'sample by "
                           "field ...' or 'by field' after every stage")
    planned = tuple(_stage(s, body.by, schema, options, text, ts_field) for s in stages)
    planned_until = _stage(until, body.by, schema, options, text, ts_field) if until else None
    names = tuple(e.name if isinstance(e, ast.Field) else f"key{i}"
                  for i, e in enumerate((*body.by, *stages[0].by)))
    trailing = stages[-1].missing
    where = None if trailing else _any_stage(
        [*stages, *([until] if until else [])], schema, options)
    read = plan.Read(read.columns, where, read.start, read.end)
    if isinstance(body, ast.Sequence):
        return plan.Sequence(planned, read, names, body.maxspan_ns, planned_until,
                             None if trailing else _driver(stages, planned, body.maxspan_ns,
                                                           schema))
    if isinstance(body, ast.Join):
        return plan.Join(planned, read, names, planned_until)
    return plan.Sample(planned, read, names, max_samples_per_key)


def _check_sequence(body: ast.Sequence, stages: list[ast.Stage], text: str) -> None:
    if stages[0].missing:
        raise syntax_error(text, stages[0].pos, "a sequence cannot start with a missing-event "
                           "stage; put a stage that must occur first")
    if stages[-1].missing and body.maxspan_ns is None:
        raise syntax_error(text, stages[-1].pos, "a sequence that ends with a missing-event "
                           "stage needs 'with maxspan=...' (how long to wait for it)")


def _stage(stage: ast.Stage, by: tuple[ast.Expr, ...], schema: pa.Schema, options: Options,
           text: str, ts_field: str) -> plan.Stage:
    exprs = (*by, *stage.by)
    key_fields: list[str | None] = []
    for expr in exprs:
        if not isinstance(expr, ast.Field):
            key_fields.append(None)
            continue
        found = type_at(schema, expr.name)
        arrays = found is not None and (pa.types.is_list(found) or pa.types.is_large_list(found))
        if found is not None and pa.types.is_nested(found) and not arrays:
            raise syntax_error(text, expr.pos, f"a join key must be one value, not an object "
                               f"({expr.name!r} holds {found}); name a field inside it")
        typed = expr.name in options.field_types  # (a date read from text: not as stored)
        key_fields.append(expr.name if found is not None and not arrays and not typed else None)
    keys = tuple(_column_of(compile_value(e, schema, options, text), arrays=True)
                 for e in exprs)
    columns = read_columns(schema, (stage.query, exprs), options.category_field, ts_field)
    return plan.Stage(compile_event_query(stage.query, schema, options, text), keys, exprs,
                      stage.missing, tuple(columns), tuple(key_fields),
                      _event_pushdown(stage.query, schema, options))


def _driver(stages: list[ast.Stage], planned: tuple[plan.Stage, ...], maxspan_ns: int | None,
            schema: pa.Schema) -> int | None:
    """The stage that may drive a sequence's scan: of those that must occur, the one
    whose condition has the most simple conjuncts besides the category (a cheap
    guess at the most selective); None when none has one, or when neither its
    keys (stored fields) nor a ``maxspan`` could narrow the scan."""
    keyed = all(f is not None for s in planned for f in s.key_fields) and planned[0].keys
    if not keyed and maxspan_ns is None:
        return None
    scores = [(simple_conjuncts(s.query.condition, schema), -i) for i, s in enumerate(stages)
              if not s.missing and planned[i].prune is not None]
    best = max(scores, default=(0, 0))
    return -best[1] if best[0] > 0 else None


def _column_of(evaluate: Eval, *, arrays: bool = False) -> plan.KeyFn:
    """``evaluate`` giving one plain array per batch (a constant repeated); with
    ``arrays`` (a join key), a value that holds arrays gives its elements as a
    :class:`~tidal.correlate.plan.Many` (the key joins on each), else it is
    refused."""
    def column(table: pa.Table) -> pa.Array | Many:
        value = evaluate(table)
        if arrays and isinstance(value, Many):
            return value
        if arrays and isinstance(value, pa.Array | pa.ChunkedArray) and (
                pa.types.is_list(value.type) or pa.types.is_large_list(value.type)):
            return flatten(value)  # (a list column read whole, e.g. absent from a batch)
        value = as_column(value, table.num_rows)
        return value.combine_chunks() if isinstance(value, pa.ChunkedArray) else value
    return column


def _event_pushdown(query: ast.EventQuery, schema: pa.Schema, options: Options
                    ) -> pc.Expression | None:
    return pushdown(query.condition, schema, case_insensitive=options.case_insensitive,
                    category=(options.category_field, query.category)
                    if query.category is not None else None)


def _any_stage(stages: list[ast.Stage], schema: pa.Schema, options: Options
               ) -> pc.Expression | None:
    """The ``or`` of the stages' pushdowns; None when one of them has none."""
    parts = [_event_pushdown(s.query, schema, options) for s in stages]
    found = [p for p in parts if p is not None]
    if len(found) < len(parts):
        return None
    return reduce(lambda a, b: a | b, found)


def _pipe(pipe: ast.Pipe, schema: pa.Schema, options: Options, text: str) -> plan.Pipe:
    if pipe.name in ("head", "tail"):
        count = pipe.args[0]
        assert isinstance(count, ast.Literal) and isinstance(count.value, int)
        return plan.Pipe(pipe.name, count=count.value)
    if pipe.name == "filter":
        return plan.Pipe("filter", predicate=compile_condition(pipe.args[0], schema, options,
                                                               text))
    for arg in pipe.args:
        if not isinstance(arg, ast.Field):
            continue
        found = type_at(schema, arg.name)
        if found is not None and pa.types.is_nested(found):
            what = ("a field that holds an array" if pa.types.is_list(found)
                    or pa.types.is_large_list(found) else "an object")
            raise syntax_error(text, arg.pos, f"a '{pipe.name}' key must be one value, not "
                               f"{what} ({arg.name!r} holds {found})")
    keys = tuple(_column_of(compile_value(a, schema, options, text)) for a in pipe.args)
    names = tuple(a.name if isinstance(a, ast.Field) else f"key{i}"
                  for i, a in enumerate(pipe.args))
    return plan.Pipe(pipe.name, keys=keys, key_names=names)


def _check_after_count(pipes: tuple[ast.Pipe, ...], text: str) -> None:
    """A ``count`` gives a table of counts: only ``head`` and ``tail`` may follow it."""
    counted = False
    for pipe in pipes:
        if counted and pipe.name not in ("head", "tail"):
            raise syntax_error(text, pipe.pos, f"'{pipe.name}' cannot follow 'count' (it "
                               "gives a table of counts; 'head' and 'tail' may follow)")
        counted = counted or pipe.name == "count"


def _scan_limit(pipes: tuple[ast.Pipe, ...], size: int | None) -> int | None:
    """How many matches an event query's scan needs at most (a leading ``head``, or
    ``size`` when there are no pipes)."""
    limits = [size] if size is not None and not pipes else []
    if pipes and pipes[0].name == "head":
        count = pipes[0].args[0]
        assert isinstance(count, ast.Literal) and isinstance(count.value, int)
        limits.append(count.value)
    return min(limits) if limits else None
