"""What an EQL expression evaluates to over a batch: a column, a constant, or the
elements of a field that holds arrays (:class:`Many`), with helpers over all three."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.errors import QueryError

__all__ = ["Many", "Vec", "as_column", "like_pattern", "lower", "many_any", "modulo",
           "scalar_type"]


@dataclass(frozen=True)
class Many:
    """The elements of an array field, flattened: ``values[i]`` belongs to row
    ``parents[i]`` of ``rows``. A test over them holds for a row when it holds for
    any of its elements."""

    values: pa.Array
    parents: np.ndarray
    rows: int


Vec: TypeAlias = "pa.Array | pa.Scalar | Many"


def many_any(many: Many) -> pa.Array:
    """Per row: true if any element's test is true, else false if one is false, else null
    (no elements, or only nulls)."""
    tested = np.asarray(pc.fill_null(many.values, False), dtype=bool)
    known = np.asarray(pc.is_valid(many.values), dtype=bool)
    hit = np.zeros(many.rows, dtype=bool)
    hit[many.parents[tested]] = True
    seen = np.zeros(many.rows, dtype=bool)
    seen[many.parents[known]] = True
    return pa.array(hit, mask=~seen)


def lower(value: Vec) -> Vec:
    """Text lower-cased for case-insensitive comparison (other values unchanged)."""
    if isinstance(value, Many):
        return Many(_lower_array(value.values), value.parents, value.rows)
    if isinstance(value, pa.Scalar):
        text = value.as_py()
        return pa.scalar(text.lower()) if isinstance(text, str) else value
    return _lower_array(value)


def _lower_array(array: pa.Array) -> pa.Array:
    t = array.type
    if pa.types.is_dictionary(t):
        array, t = array.cast(t.value_type), t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pc.utf8_lower(array)
    return array


def scalar_type(t: pa.DataType) -> pa.DataType:
    """The element type of a list type (else ``t``)."""
    while pa.types.is_list(t) or pa.types.is_large_list(t):
        t = t.value_type
    return t


def like_pattern(pattern: str) -> str:
    """An EQL wildcard pattern (``*``, ``?``) as a SQL LIKE pattern."""
    out = []
    for char in pattern:
        if char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        elif char in "%_\\":
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def modulo(a: Vec, b: Vec, n: int) -> Vec:
    """``a % b`` (the sign follows the dividend, as in Java and Elastic); null on zero."""
    x, y = as_column(a, n), as_column(b, n)
    quotient = pc.divide(pc.cast(x, pa.float64()), pc.cast(y, pa.float64()))
    truncated = pc.trunc(quotient)
    out = pc.subtract(pc.cast(x, pa.float64()), pc.multiply(truncated, pc.cast(y, pa.float64())))
    zero = pc.equal(y, 0)
    out = pc.if_else(zero, pa.scalar(None, pa.float64()), out)
    if pa.types.is_integer(x.type) and pa.types.is_integer(y.type):
        return pc.cast(out, pa.int64())
    return out


def as_column(value: Vec, n: int) -> pa.Array:
    """A value as one array of ``n`` rows (a field that holds arrays is refused)."""
    if isinstance(value, Many):
        raise QueryError("this takes one value per event, not a field that holds an array")
    if isinstance(value, pa.Scalar):
        return pa.array([value.as_py()] * n, value.type if value.is_valid else pa.null())
    return value
