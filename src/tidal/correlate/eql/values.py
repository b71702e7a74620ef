"""What an EQL expression evaluates to over a batch: a column, a constant, or the
elements of a field that holds arrays (:class:`Many`), with helpers over all three,
and the sortable keys of software versions (:func:`version_key`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.plan import Many
from tidal.errors import QueryError

__all__ = ["Many", "Vec", "as_column", "as_text", "binary", "count_true", "each", "flatten",
           "is_in", "like_pattern", "lower", "many_any", "modulo", "negate", "presence", "rows",
           "scalar_type", "version_key", "versions"]


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


def as_text(value: Vec, n: int) -> pa.Array:
    """A value as a string array of ``n`` rows (dictionaries decoded, others cast)."""
    array = as_column(value, n)
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), pa.string())
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = array.cast(pa.string())
    return array


def flatten(array: pa.Array | pa.ChunkedArray) -> Many:
    """The elements of a list column as :class:`Many`; a null list has none.

    (Parents come from the lengths: ``pc.list_parent_indices`` also counts the values
    a null list's slot may still span, which ``pc.list_flatten`` drops.)
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    lengths = np.asarray(pc.fill_null(pc.list_value_length(array), 0), dtype=np.int64)
    return Many(pc.list_flatten(array), np.repeat(np.arange(len(array)), lengths), len(array))


def count_true(many: Many) -> np.ndarray:
    """Per row: how many of its elements' tests are true (null counts as false)."""
    tested = np.asarray(pc.fill_null(many.values, False), dtype=bool)
    return np.bincount(many.parents[tested], minlength=many.rows).astype(np.int64)


def rows(value: Vec, n: int) -> pa.Array:
    """A per-row boolean array from a condition's value."""
    if isinstance(value, Many):
        return many_any(value)
    if isinstance(value, pa.Scalar):
        return pa.array(np.full(n, value.as_py()), pa.bool_()) if value.is_valid else pa.nulls(
            n, pa.bool_())
    return value


def each(value: Vec, function: Callable[[Any], Any]) -> Vec:
    """``function`` over each value (a list field's elements, a column, a scalar)."""
    if isinstance(value, Many):
        return Many(function(value.values), value.parents, value.rows)
    return function(value)


def binary(function: Callable[[Any, Any], Any], a: Vec, b: Vec) -> Vec:
    """``function(a, b)``; with one side a :class:`Many`, per element, the other side
    repeated for each element of its row."""
    if isinstance(a, Many) and isinstance(b, Many):
        raise QueryError("comparing two fields that both hold arrays is not supported")
    if isinstance(a, Many):
        other = b if isinstance(b, pa.Scalar) else pc.take(b, pa.array(a.parents))
        return Many(function(a.values, other), a.parents, a.rows)
    if isinstance(b, Many):
        other = a if isinstance(a, pa.Scalar) else pc.take(a, pa.array(b.parents))
        return Many(function(other, b.values), b.parents, b.rows)
    return function(a, b)


def negate(value: Vec) -> Vec:
    """``not``: of a :class:`Many`, not any element."""
    if isinstance(value, Many):
        value = many_any(value)
    return pc.invert(value)


def presence(value: Vec, valid: bool) -> Vec:
    """``!= null`` (``valid``) or ``== null``; an array is present if an element is."""
    if isinstance(value, Many):
        has = np.zeros(value.rows, dtype=bool)
        ok = np.asarray(pc.is_valid(value.values), dtype=bool)
        has[value.parents[ok]] = True
        return pa.array(has if valid else ~has)
    if isinstance(value, pa.Scalar):
        return pa.scalar(value.is_valid == valid)
    return pc.is_valid(value) if valid else pc.is_null(value)


def is_in(array: pa.Array | pa.Scalar, values: pa.Array) -> pa.Array | pa.Scalar:
    """Whether each value is one of ``values`` (null stays null)."""
    if isinstance(array, pa.Scalar):
        return pa.scalar(array.is_valid and array.as_py() in values.to_pylist())
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), pa.bool_())
    try:
        found = pc.is_in(array, value_set=values.cast(array.type))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        found = pc.is_in(array.cast(values.type), value_set=values)
    return pc.if_else(pc.is_valid(array), found, pa.scalar(None, pa.bool_()))


# -- versions ---------------------------------------------------------------------------
# A version's key is a string whose byte order is version order (see version_key):
#   valid    "\x01" part... ("\x01" id... "\x01" | "\x02") "\x00" text
#   invalid  "\x02" text
# part: "\x03" length digits (leading zeros dropped; the length as one character);
# id: a numeric part, or "\x04" letters "\x00". Every piece delimits itself, so keys
# compare piece by piece; the text at the end makes distinct strings distinct keys.
_VERSION = (r"^(?P<main>[0-9]+(?:\.[0-9]+)*)(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
            r"(?:\+[0-9A-Za-z.-]+)?$")
_MAX_DIGITS = 127
_NUMBER = pa.array(["\x03" + chr(0x40 + n) for n in range(_MAX_DIGITS + 1)])  # by length


def version_key(text: pa.Array) -> pa.Array:
    """Keys of version strings whose (byte) order is version order; null stays null.

    The order is semantic versioning's, as Elastic's ``version`` field has it:
    dot-separated numbers compare numerically, part by part, and a version that
    is the start of another is lower (``1.2 < 1.2.0 < 1.10``); a pre-release is
    lower than its release (``1.0.0-alpha < 1.0.0``), its dot-separated
    identifiers compare numerically when all digits, else in ASCII order, with
    numeric ones lower (``-1 < -alpha < -alpha.1 < -beta``); ``+build`` does not
    order. Text that is no version (``1.2.x``, ``v1``, ``""``, a number group of
    more than 127 digits) sorts after every version, in plain string order.
    Unlike Elastic, leading zeros do not count (``1.01`` sorts with ``1.1``).
    Two keys are equal only when the strings are.

    >>> keys = version_key(pa.array(["1.10", "1.9", "1.0.0-rc.1", "1.0.0", "x", None]))
    >>> pc.array_sort_indices(keys).to_pylist()
    [2, 3, 1, 0, 4, 5]
    """
    n = len(text)
    parts = pc.extract_regex(text, pattern=_VERSION)
    main = pc.split_pattern(pc.fill_null(pc.struct_field(parts, [0]), ""), pattern=".")
    pre = pc.fill_null(pc.struct_field(parts, [1]), "")
    ids = pc.split_pattern(pre, pattern=".")
    main_keys, main_long = _numbers(pc.list_flatten(main))
    flat_ids = pc.list_flatten(ids)
    numeric = pc.match_substring_regex(flat_ids, pattern="^[0-9]+$")
    id_numbers, id_long = _numbers(flat_ids)
    id_keys = pc.if_else(numeric, id_numbers,
                         pc.binary_join_element_wise("\x04", flat_ids, "\x00", ""))
    too_long = (_any(main, np.asarray(main_long, dtype=bool), n)
                | _any(ids, np.asarray(pc.and_(numeric, id_long), dtype=bool), n))
    has_pre = pc.not_equal(pre, "")
    release = pc.if_else(has_pre, pc.binary_join_element_wise(
        "\x01", _joined(ids, id_keys), "\x01", ""), "\x02")
    valid = pc.and_(pc.is_valid(parts), pa.array(~too_long))
    key = pc.binary_join_element_wise("\x01", _joined(main, main_keys), release, "\x00", text, "")
    return pc.if_else(valid, key, pc.binary_join_element_wise("\x02", text, ""))


def versions(value: Vec, insensitive: bool) -> Vec:
    """:func:`version_key` of a value (lower-cased first when ``insensitive``)."""
    def key(array: pa.Array) -> pa.Array:
        text = as_text(array, len(array)).cast(pa.string())
        return version_key(pc.utf8_lower(text) if insensitive else text)

    if isinstance(value, pa.Scalar):
        return key(pa.array([value.as_py()], value.type))[0]
    return each(value, key)


def _numbers(digits: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Digit groups as keys ("\\x03", length, digits without leading zeros), and which
    are too long to key."""
    stripped = pc.ascii_ltrim(digits, characters="0")
    length = pc.binary_length(stripped)
    head = pc.take(_NUMBER, pc.min_element_wise(length, _MAX_DIGITS))
    return pc.binary_join_element_wise(head, stripped, ""), pc.greater(length, _MAX_DIGITS)


def _joined(lists: pa.Array, keys: pa.Array) -> pa.Array:
    """The keys of each list's elements (``keys``, flattened), joined per list."""
    offsets = pc.subtract(lists.offsets, lists.offsets[0])
    return pc.binary_join(pa.ListArray.from_arrays(offsets, keys), "")


def _any(lists: pa.Array, flags: np.ndarray, n: int) -> np.ndarray:
    """Per list: whether any of its elements' ``flags`` is set."""
    lengths = np.asarray(pc.list_value_length(lists), dtype=np.int64)
    return np.bincount(np.repeat(np.arange(n), lengths)[flags], minlength=n) > 0
