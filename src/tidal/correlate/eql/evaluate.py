"""EQL conditions compiled once against a schema, then evaluated over whole batches.

:func:`compile_condition` checks an expression against the store's schema (an
unknown field, function or argument count, or a comparison of text with a
number is a :class:`~tidal.errors.QueryError` that says which) and returns a
:class:`Condition`: ``condition.mask(batch)`` is a numpy bool array, one
entry per row. Everything runs as Arrow compute over columns; no Python runs
per event.

Semantics (Elastic's EQL):

* A field missing from an event reads as null. A comparison with null is null,
  ``not`` keeps null, and a row whose condition is null does not match.
  ``== null`` and ``!= null`` test presence.
* A field that holds an array matches when any element matches.
* Strings compare case-sensitively, except ``:``, ``in~``, ``like~``,
  ``regex~`` and the ``~`` forms of functions; ``case_insensitive=True`` makes
  every string comparison case-insensitive (the Endgame behaviour).
* ``:`` and ``like`` take wildcards ``*`` (any run) and ``?`` (one character);
  ``regex`` is a full match.
* A timestamp field compares with an ISO 8601 string or with int nanoseconds;
  ``field_types={"f": "date"}`` reads a text or number field ``f`` as one.
* ``field_types={"f": "version"}``: ``< <= > >=`` compare the text field ``f`` (and
  what it is compared with) as software versions, in the order of
  :func:`~tidal.correlate.eql.values.version_key` (``1.9 < 1.10``,
  ``1.0.0-rc.1 < 1.0.0``); a literal there must be a version. ``==``, ``!=`` and
  ``in`` compare the text.
* ``arraySearch(array, x, condition)`` is true when ``condition`` holds for an
  element of the array field ``array``, ``x`` naming the element (``x.name``: a
  field of a struct element); ``arrayCount`` counts those elements. The condition
  may read the event's fields too (``x`` hides a field of that name), and nest.
  A missing or null array: false and 0 (as the ``eql`` package has it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.eql.ast import (
    Arith,
    BoolOp,
    Call,
    Compare,
    EventQuery,
    Expr,
    Field,
    InList,
    Literal,
    Match,
    Neg,
    Not,
)
from tidal.correlate.eql.functions import FUNCTIONS, Spec
from tidal.correlate.eql.lexer import syntax_error
from tidal.correlate.eql.values import (
    Many,
    Vec,
    binary,
    each,
    flatten,
    is_in,
    like_pattern,
    lower,
    many_any,
    modulo,
    negate,
    presence,
    rows,
    scalar_type,
    versions,
)
from tidal.errors import QueryError, UnknownFieldError
from tidal.model.paths import get_path, root_at, type_at
from tidal.model.time import TIMESTAMP_TYPE, parse_instant, to_timestamp_array

__all__ = ["Condition", "Options", "compile_condition", "compile_event_query", "compile_value"]

Eval = Callable[[pa.Table], Vec]
_COMPARE = {"==": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
            ">": pc.greater, ">=": pc.greater_equal}
_ARITH = {"+": pc.add, "-": pc.subtract, "*": pc.multiply, "/": pc.divide}


@dataclass(frozen=True)
class Options:
    """How a query reads the data: case, the category field, declared field types."""

    case_insensitive: bool = False
    category_field: str = "event.category"
    field_types: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Condition:
    """A compiled condition; ``mask(batch)`` is true where a row matches."""

    evaluate: Eval

    def mask(self, batch: pa.Table) -> np.ndarray:
        out = self.evaluate(batch)
        if isinstance(out, Many):
            out = many_any(out)
        if isinstance(out, pa.Scalar):
            return np.full(batch.num_rows, bool(out.as_py()))
        return np.asarray(pc.fill_null(out, False), dtype=bool)


def compile_condition(expr: Expr, schema: pa.Schema, options: Options, query: str
                      ) -> Condition:
    """Compile ``expr`` (a condition) for batches of ``schema``."""
    compiler = _Compiler(schema, options, query)
    evaluate = compiler.value(expr)
    if compiler.kind(expr) not in ("bool", "null"):
        raise compiler.error(expr, "a condition must be true or false, not a "
                             f"{compiler.kind(expr)} value")
    return Condition(evaluate)


def compile_event_query(query: EventQuery, schema: pa.Schema, options: Options, text: str
                        ) -> Condition:
    """The condition of ``category where condition``: the category test (on
    ``options.category_field``; an array matches if it holds the category) and the
    condition."""
    condition: Expr = query.condition
    if query.category is not None:
        if type_at(schema, options.category_field) is None:
            raise syntax_error(text, query.pos,
                               f"the category field {options.category_field!r} is in no "
                               f"event of the store: use 'any where', or name the field "
                               f"that holds the category with category_field=")
        category = Compare("==", Field(tuple(options.category_field.split(".")), query.pos),
                           Literal(query.category, query.pos), query.pos)
        condition = BoolOp("and", (category, condition), query.pos)
    return compile_condition(condition, schema, options, text)


def compile_value(expr: Expr, schema: pa.Schema, options: Options, query: str) -> Eval:
    """Compile ``expr`` (any value: a field, a call) for batches of ``schema``."""
    return _Compiler(schema, options, query).value(expr)


class _Compiler:
    def __init__(self, schema: pa.Schema, options: Options, query: str) -> None:
        self.schema = schema
        self.options = options
        self.query = query

    def error(self, node: Any, message: str) -> QueryError:
        return syntax_error(self.query, getattr(node, "pos", 0), message)

    # -- types -------------------------------------------------------------------------
    def field_type(self, node: Field) -> pa.DataType | None:
        found = type_at(self.schema, node.name)
        if found is None and not node.optional:
            error = self.error(node, f"unknown field {node.name!r}: no event in the store has "
                               f"it (write ?{node.name} if it may be absent)")
            raise UnknownFieldError(str(error), field=node.name, query=error.query,
                                    position=error.position, line=error.line,
                                    column=error.column)
        return found

    def kind(self, node: Expr) -> str:
        """``text``, ``number``, ``bool``, ``time``, ``null`` or ``other``: what a value is."""
        if isinstance(node, Literal):
            return _literal_kind(node.value)
        if isinstance(node, Field):
            found = self.field_type(node)
            if found is not None and self.options.field_types.get(node.name) == "date":
                return "time"
            return "null" if found is None else _type_kind(found)
        if isinstance(node, Compare | InList | Match | Not | BoolOp):
            return "bool"
        if isinstance(node, Arith | Neg):
            return "number"
        if isinstance(node, Call):
            return FUNCTIONS[node.name].returns if node.name in FUNCTIONS else "other"
        return "other"

    # -- values ------------------------------------------------------------------------
    def value(self, node: Expr) -> Eval:
        if isinstance(node, Literal):
            value = pa.scalar(node.value)
            return lambda batch: value
        if isinstance(node, Field):
            return self.field(node)
        if isinstance(node, Compare):
            return self.compare(node)
        if isinstance(node, InList):
            return self.in_list(node)
        if isinstance(node, Match):
            return self.match(node)
        if isinstance(node, Not):
            inner = self.boolean(node.expr)
            return lambda batch: negate(inner(batch))
        if isinstance(node, BoolOp):
            return self.bool_op(node)
        if isinstance(node, Arith):
            return self.arith(node)
        if isinstance(node, Neg):
            self.numeric(node.expr, "'-'")
            inner = self.value(node.expr)
            return lambda batch: each(inner(batch), pc.negate)
        if isinstance(node, Call):
            return self.call(node)
        raise self.error(node, f"cannot evaluate {type(node).__name__}")

    def field(self, node: Field) -> Eval:
        found = self.field_type(node)
        name = node.name
        if found is None:
            return lambda batch: pa.nulls(batch.num_rows)
        is_list = _is_list(found)
        as_date = self.options.field_types.get(name) == "date" and not is_list

        def read(batch: pa.Table) -> Vec:
            column = get_path(batch, name)
            if column is None:
                return pa.nulls(batch.num_rows, TIMESTAMP_TYPE if as_date else found)
            array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
            if as_date:  # declared a date: text (ISO 8601) or numbers, as event times are read
                stamps, bad = to_timestamp_array(array)
                return pc.if_else(pa.array(bad), pa.scalar(None, TIMESTAMP_TYPE), stamps)
            if is_list and _is_list(array.type):
                return flatten(array)
            return array

        return read

    def boolean(self, node: Expr) -> Eval:
        if self.kind(node) not in ("bool", "null"):
            raise self.error(node, f"expected a condition, found a {self.kind(node)} value")
        return self.value(node)

    def numeric(self, node: Expr, what: str) -> None:
        if self.kind(node) not in ("number", "null", "other"):
            raise self.error(node, f"{what} needs numbers, found a {self.kind(node)} value")

    def text_case(self, insensitive: bool) -> bool:
        return insensitive or self.options.case_insensitive

    def comparable(self, left: Expr, right: Expr, node: Expr) -> tuple[Eval, Eval]:
        """Both sides, checked to be of comparable kinds; a string or number compared
        with a timestamp field becomes a timestamp."""
        lk, rk = self.kind(left), self.kind(right)
        if "time" in (lk, rk) and {lk, rk} <= {"time", "text", "number", "null"}:
            return self.as_time(left), self.as_time(right)
        if lk != rk and "null" not in (lk, rk) and "other" not in (lk, rk):
            raise self.error(node, f"cannot compare {_describe(left, lk)} with "
                             f"{_describe(right, rk)}")
        return self.value(left), self.value(right)

    def as_time(self, node: Expr) -> Eval:
        if isinstance(node, Literal) and isinstance(node.value, str | int) and not isinstance(
                node.value, bool):
            value = pa.scalar(self.instant(node), pa.timestamp("ns", "UTC"))
            return lambda batch: value
        return self.value(node)

    def instant(self, node: Expr) -> int:
        """A literal date (ISO 8601 text or int ns) as int ns."""
        value = node.value if isinstance(node, Literal) else None
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise self.error(node, "expected a date (ISO 8601 text or nanoseconds)")
        try:
            ns = parse_instant(value, name="date")
        except Exception as exc:  # noqa: BLE001 - any parse failure names the literal
            raise self.error(node, f"not a date: {value!r} ({exc})") from None
        assert ns is not None  # (only None gives None)
        return ns

    def is_version(self, node: Expr) -> bool:
        return isinstance(node, Field) and self.options.field_types.get(node.name) == "version"

    def as_version(self, node: Expr, evaluate: Eval) -> Eval:
        """A text value as version keys (a literal must be a version)."""
        insensitive = self.options.case_insensitive
        if isinstance(node, Literal):
            key = versions(pa.scalar(node.value), insensitive)
            assert isinstance(key, pa.Scalar)
            if not str(key.as_py()).startswith("\x01"):
                raise self.error(node, f"not a version: {node.value!r} (a version is dotted "
                                 "numbers, then -pre.release and +build parts: 1.2.3-rc.1)")
            return lambda batch: key
        return lambda batch: versions(evaluate(batch), insensitive)

    def compare(self, node: Compare) -> Eval:
        left, right = node.left, node.right
        for side, other in ((left, right), (right, left)):
            if isinstance(other, Literal) and other.value is None:
                present = self.value(side)
                want_valid = node.op == "!="
                return lambda batch: presence(present(batch), want_valid)
        lhs, rhs = self.comparable(left, right, node)
        function = _COMPARE[node.op]
        if node.op not in ("==", "!=") and (self.is_version(left) or self.is_version(right)) \
                and {self.kind(left), self.kind(right)} <= {"text", "null", "other"}:
            lhs, rhs = self.as_version(left, lhs), self.as_version(right, rhs)
            return lambda batch: binary(function, lhs(batch), rhs(batch))
        insensitive = self.options.case_insensitive and "text" in (self.kind(left),
                                                                   self.kind(right))

        def run(batch: pa.Table) -> Vec:
            a, b = lhs(batch), rhs(batch)
            if insensitive:
                a, b = lower(a), lower(b)
            return binary(function, a, b)

        return run

    def in_list(self, node: InList) -> Eval:
        for value in node.values:
            self.comparable(node.expr, value, value)
        subject = self.value(node.expr)
        insensitive = self.text_case(node.insensitive)
        literals = [v.value for v in node.values if isinstance(v, Literal)]
        if len(literals) == len(node.values) and None not in literals:
            kind = self.kind(node.expr)
            if kind == "time":
                values = pa.array([self.instant(v) for v in node.values],
                                  pa.timestamp("ns", "UTC"))
            else:
                values = pa.array([v.lower() if insensitive and isinstance(v, str) else v
                                   for v in literals])
            negated = node.negated

            def run(batch: pa.Table) -> Vec:
                a = subject(batch)
                if insensitive:
                    a = lower(a)
                found = each(a, lambda arr: is_in(arr, values))
                return negate(found) if negated else found

            return run
        items = [Compare("==", node.expr, v, node.pos) for v in node.values]
        either = self.bool_op(BoolOp("or", tuple(items), node.pos))
        return (lambda batch: negate(either(batch))) if node.negated else either

    def match(self, node: Match) -> Eval:
        if self.kind(node.expr) not in ("text", "null", "other"):
            raise self.error(node, f"'{'like' if node.kind == 'like' else node.kind}' matches "
                             f"text, not a {self.kind(node.expr)} value")
        subject = self.value(node.expr)
        ignore_case = self.text_case(node.insensitive)
        if node.kind == "regex":
            patterns = [f"^(?:{p})$" for p in node.patterns]
            matcher = pc.match_substring_regex
        else:
            patterns = [like_pattern(p) for p in node.patterns]
            matcher = pc.match_like
        for pattern in patterns:
            if node.kind == "regex":
                try:
                    pc.match_substring_regex(pa.array([""]), pattern=pattern)
                except pa.ArrowInvalid as exc:
                    raise self.error(node, f"bad regular expression: {exc}") from None

        def run(batch: pa.Table) -> Vec:
            values = subject(batch)

            def test(arr: pa.Array) -> pa.Array:
                if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
                    arr = arr.cast(pa.string()) if not pa.types.is_null(arr.type) else pa.nulls(
                        len(arr), pa.string())
                out = matcher(arr, pattern=patterns[0], ignore_case=ignore_case)
                for pattern in patterns[1:]:
                    out = pc.or_kleene(out, matcher(arr, pattern=pattern,
                                                    ignore_case=ignore_case))
                return out

            return each(values, test)

        return run

    def bool_op(self, node: BoolOp) -> Eval:
        parts = [self.boolean(item) for item in node.items]
        join = pc.and_kleene if node.op == "and" else pc.or_kleene

        def run(batch: pa.Table) -> Vec:
            out = rows(parts[0](batch), batch.num_rows)
            for part in parts[1:]:
                out = join(out, rows(part(batch), batch.num_rows))
            return out

        return run

    def arith(self, node: Arith) -> Eval:
        self.numeric(node.left, f"'{node.op}'")
        self.numeric(node.right, f"'{node.op}'")
        lhs, rhs = self.value(node.left), self.value(node.right)
        if node.op == "%":
            return lambda batch: modulo(lhs(batch), rhs(batch), batch.num_rows)
        function = _ARITH[node.op]
        return lambda batch: binary(function, lhs(batch), rhs(batch))

    def call(self, node: Call) -> Eval:
        spec = FUNCTIONS.get(node.name)
        if spec is None:
            raise self.error(node, f"unknown function {node.name!r}")
        if not spec.min_args <= len(node.args) <= (spec.max_args or 1 << 30):
            want = (f"{spec.min_args}" if spec.min_args == spec.max_args
                    else f"{spec.min_args} or more" if spec.max_args is None
                    else f"{spec.min_args} to {spec.max_args}")
            raise self.error(node, f"{node.name}() takes {want} arguments, "
                             f"got {len(node.args)}")
        if node.insensitive and not spec.tilde:
            raise self.error(node, f"{node.name}() has no case-insensitive '~' form")
        if spec.binds:
            return self.bound_call(node, spec)
        for i, (arg, want_kind) in enumerate(zip(node.args, spec.arg_kinds(len(node.args)),
                                                 strict=True)):
            got = self.kind(arg)
            if want_kind != "any" and got not in (want_kind, "null", "other"):
                raise self.error(arg, f"argument {i + 1} of {node.name}() must be "
                                 f"{want_kind}, found a {got} value")
        args = [self.value(a) for a in node.args]
        literal = [a.value if isinstance(a, Literal) else None for a in node.args]
        insensitive = self.text_case(node.insensitive)
        try:
            run = spec.build(literal, insensitive)
        except QueryError as exc:
            raise self.error(node, str(exc)) from None
        return lambda batch: run([a(batch) for a in args], batch.num_rows)

    def bound_call(self, node: Call, spec: Spec) -> Eval:
        """``arraySearch(array, x, condition)`` and ``arrayCount``: the condition is
        compiled once for a table of the array's elements (column ``x``) with the event
        columns it reads repeated per element, and its test is reduced per event."""
        array, var, body = node.args
        if not isinstance(array, Field):
            raise self.error(array, f"argument 1 of {node.name}() must be a field that holds "
                             "an array")
        if not isinstance(var, Field) or len(var.path) != 1 or var.optional:
            raise self.error(var, f"argument 2 of {node.name}() must be a name for the "
                             f"element, as x in {node.name}(array, x, x == 1)")
        found = self.field_type(array)
        if found is not None and not _is_list(found):
            raise self.error(array, f"argument 1 of {node.name}() must be a field that holds "
                             f"an array, and {array.name!r} holds {found}")
        x = var.path[0]
        element = found.value_type if found is not None else pa.null()
        outer = [self.schema.field(r) for r in sorted(_roots(body, frozenset({x}), self.schema))
                 if r != x]
        fields = [*outer, pa.field(x, element)]
        types = {k: v for k, v in self.options.field_types.items() if k.split(".")[0] != x}
        for k, v in self.options.field_types.items():  # the array's declared types: x's
            if k == array.name or k.startswith(array.name + "."):
                types[x + k[len(array.name):]] = v
        inner = _Compiler(pa.schema(fields), replace(self.options, field_types=types),
                          self.query)
        if inner.kind(body) not in ("bool", "null"):
            raise self.error(body, f"argument 3 of {node.name}() must be a condition, not a "
                             f"{inner.kind(body)} value")
        test = inner.value(body)
        elements = self.value(array)
        reduce = spec.build([], False)

        def run(batch: pa.Table) -> Vec:
            many = _elements(elements(batch), batch.num_rows, element)
            parents = pa.array(many.parents)
            columns = [batch.column(f.name).take(parents) if f.name in batch.schema.names
                       else pa.nulls(len(parents), f.type) for f in outer]
            table = pa.Table.from_arrays([*columns, many.values], names=[f.name for f in fields])
            tested = rows(test(table), table.num_rows)
            return reduce([Many(tested, many.parents, many.rows)], batch.num_rows)

        return run


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def _elements(value: Vec, n: int, element: pa.DataType) -> Many:
    """The elements of an array field's value (none for null or a missing field)."""
    if isinstance(value, Many):
        return value
    if isinstance(value, pa.Array) and _is_list(value.type):
        return flatten(value)
    return Many(pa.array([], element), np.zeros(0, np.int64), n)


def _children(node: Expr) -> tuple[Expr, ...]:
    if isinstance(node, Compare | Arith):
        return (node.left, node.right)
    if isinstance(node, InList):
        return (node.expr, *node.values)
    if isinstance(node, Match | Not | Neg):
        return (node.expr,)
    if isinstance(node, BoolOp):
        return node.items
    if isinstance(node, Call):
        return node.args
    return ()


def _roots(node: Expr, bound: frozenset[str], schema: pa.Schema) -> set[str]:
    """The top-level columns of ``schema`` that ``node`` reads; a field whose first
    name is in ``bound`` is a variable of an enclosing ``arraySearch``."""
    if isinstance(node, Field):
        root = None if node.path[0] in bound else root_at(schema, node.name)
        return {root} if root is not None else set()
    spec = FUNCTIONS.get(node.name) if isinstance(node, Call) else None
    if isinstance(node, Call) and spec is not None and spec.binds and len(node.args) == 3 \
            and isinstance(node.args[1], Field):
        inner = bound | {node.args[1].path[0]}
        return _roots(node.args[0], bound, schema) | _roots(node.args[2], inner, schema)
    return set().union(*(_roots(child, bound, schema) for child in _children(node)))


def _literal_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "text"


def _type_kind(t: pa.DataType) -> str:
    t = scalar_type(t)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return "text"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "time"
    if pa.types.is_null(t):
        return "null"
    return "other"


def _describe(node: Expr, kind: str) -> str:
    if isinstance(node, Field):
        return f"field {node.name!r} ({kind})"
    if isinstance(node, Literal):
        return f"{node.value!r} ({kind})"
    return f"a {kind} value"
