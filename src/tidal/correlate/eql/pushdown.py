"""What an EQL query asks of the store's scan: the columns it reads, and the parts
of a condition the scan can filter on by itself.

The columns are the stored fields the query names (with the category and
timestamp fields): a scan reads those alone.

Conjuncts of the form ``field == literal`` and ``field in (literals...)`` over a
scalar (not array) text or number field, compared case-sensitively, become
pyarrow expressions for :meth:`~tidal.store.readers.Snapshot.scan`, which
prunes row groups by their statistics. The whole condition is still applied
to every batch afterwards, so pushing less is never wrong.
"""

from __future__ import annotations

from functools import reduce

import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.eql.ast import BoolOp, Compare, Expr, Field, InList, Literal, field_names
from tidal.model.paths import type_at

__all__ = ["pushdown", "read_columns", "simple_conjuncts"]


def read_columns(schema: pa.Schema, node: object, category_field: str, ts_field: str
                 ) -> list[str]:
    """The stored fields a query part reads (with the category and timestamp fields)."""
    names = [*field_names(node), category_field, ts_field]
    return [n for n in dict.fromkeys(names) if type_at(schema, n) is not None]


def pushdown(condition: Expr, schema: pa.Schema, *, case_insensitive: bool,
             category: tuple[str, str] | None = None) -> pc.Expression | None:
    """An expression for the simple conjuncts of ``condition`` (and ``category``, a
    (field, value) pair), or None when there are none."""
    if case_insensitive:
        return None
    found = [e for e in (_simple(item, schema) for item in _conjuncts(condition))
             if e is not None]
    if category is not None:
        cat = _equals(Field(tuple(category[0].split("."))), [category[1]], schema)
        if cat is not None:
            found.append(cat)
    return reduce(lambda a, b: a & b, found) if found else None


def simple_conjuncts(condition: Expr, schema: pa.Schema) -> int:
    """How many conjuncts of ``condition`` a pushdown holds (besides the category)."""
    return sum(1 for item in _conjuncts(condition) if _simple(item, schema) is not None)


def _conjuncts(condition: Expr) -> list[Expr]:
    return list(condition.items) if isinstance(condition, BoolOp) and condition.op == "and" \
        else [condition]


def _simple(node: Expr, schema: pa.Schema) -> pc.Expression | None:
    if isinstance(node, Compare) and node.op == "==":
        for side, other in ((node.left, node.right), (node.right, node.left)):
            if isinstance(side, Field) and isinstance(other, Literal):
                return _equals(side, [other.value], schema)
    if isinstance(node, InList) and not node.negated and not node.insensitive and isinstance(
            node.expr, Field) and all(isinstance(v, Literal) for v in node.values):
        return _equals(node.expr, [v.value for v in node.values  # type: ignore[union-attr]
                                   ], schema)
    return None


def _equals(node: Field, values: list[object], schema: pa.Schema) -> pc.Expression | None:
    found = type_at(schema, node.name)
    if found is None or any(v is None or isinstance(v, bool) for v in values):
        return None
    text = pa.types.is_string(found) or pa.types.is_large_string(found)
    number = pa.types.is_integer(found) or pa.types.is_floating(found)
    if not ((text and all(isinstance(v, str) for v in values)) or (
            number and all(isinstance(v, int | float) for v in values))):
        return None
    if node.name in schema.names:
        ref = pc.field(node.name)
    elif all(part for part in node.path) and _plain_struct_path(schema, node.path):
        ref = pc.field(*node.path)
    else:
        return None
    if len(values) == 1:
        return ref == values[0]
    return ref.isin(values)


def _plain_struct_path(schema: pa.Schema, path: tuple[str, ...]) -> bool:
    """Whether ``path`` walks plain struct children from a top-level column."""
    if path[0] not in schema.names:
        return False
    t = schema.field(path[0]).type
    for part in path[1:]:
        if not pa.types.is_struct(t) or t.get_field_index(part) < 0:
            return False
        t = t.field(t.get_field_index(part)).type
    return True
