"""Schema evolution that never loses a value (invariant 4).

Events are arbitrary JSON objects, so the same field may arrive as an int in
one batch and a float, a string or an object in the next. :func:`widen` picks
the one Arrow type that holds both, :func:`unify` does it for whole schemas,
:func:`conform` converts a table to a (wider) schema, and
:func:`concat_tables` puts it together.

Widening rules (symmetric except where noted):

======================================  =====================================
a, b                                    widen(a, b)
======================================  =====================================
null, x                                 x
x, x                                    x
two integer types (any sign, width)     int64 (see below for uint64)
bool, integer                           int64
bool or integer, float                  float64
two float types                         float64
timestamp, timestamp                    timestamp[ns], tz of ``a``; UTC if only ``b`` has one
string, large_string, dictionary<str>   string (large_string if either is large)
struct, struct                          struct: union of fields, each widened
list, list                              list of the widened item type
anything else                           string (complex values as JSON text)
======================================  =====================================

uint64 meets another integer type as int64. A uint64 value beyond int64 cannot
be converted to that: :func:`conform` raises :class:`SchemaError` naming the
field, while :func:`concat_tables`, which sees the values, makes such a
top-level column float64 instead (the big values round, nothing is refused).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from tidal.errors import SchemaError

__all__ = ["concat_tables", "conform", "unify", "widen"]

# --------------------------------------------------------------------------- types


def _is_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _is_text(t.value_type)
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_large_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _is_large_text(t.value_type)
    return pa.types.is_large_string(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_floating(t)


def _is_nested(t: pa.DataType) -> bool:
    return pa.types.is_nested(t) or pa.types.is_map(t)


def _struct_fields(t: pa.DataType) -> list[pa.Field]:
    return [t.field(i) for i in range(t.num_fields)]


def widen(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """The narrowest type that holds every value of ``a`` and of ``b``.

    >>> widen(pa.int64(), pa.float64())
    DataType(double)
    >>> widen(pa.int64(), pa.string())
    DataType(string)
    """
    if a.equals(b):
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    if pa.types.is_dictionary(a) and not _is_text(a):
        return widen(a.value_type, b)
    if pa.types.is_dictionary(b) and not _is_text(b):
        return widen(a, b.value_type)
    if _is_number(a) and _is_number(b):
        if pa.types.is_floating(a) or pa.types.is_floating(b):
            return pa.float64()
        return pa.int64()
    if pa.types.is_timestamp(a) and pa.types.is_timestamp(b):
        return pa.timestamp("ns", a.tz or ("UTC" if b.tz else None))
    if _is_text(a) and _is_text(b):
        return pa.large_string() if _is_large_text(a) or _is_large_text(b) else pa.string()
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        return pa.struct(_union_fields([_struct_fields(a), _struct_fields(b)]))
    if _is_list(a) and _is_list(b):
        item = pa.field(a.value_field.name, widen(a.value_type, b.value_type))
        large = pa.types.is_large_list(a) or pa.types.is_large_list(b)
        return pa.large_list(item) if large else pa.list_(item)
    return pa.large_string() if _is_large_text(a) or _is_large_text(b) else pa.string()


def _nullable(t: pa.DataType) -> pa.DataType:
    """``t`` with every nested field nullable and without field metadata."""
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _nullable(f.type)) for f in _struct_fields(t)])
    if pa.types.is_list(t):
        return pa.list_(pa.field(t.value_field.name, _nullable(t.value_type)))
    if pa.types.is_large_list(t):
        return pa.large_list(pa.field(t.value_field.name, _nullable(t.value_type)))
    return t


def _union_fields(groups: Sequence[Sequence[pa.Field]]) -> list[pa.Field]:
    types: dict[str, pa.DataType] = {}
    for fields in groups:
        for f in fields:
            types[f.name] = widen(types[f.name], f.type) if f.name in types else f.type
    return [pa.field(name, _nullable(t)) for name, t in types.items()]


def unify(schemas: Sequence[pa.Schema]) -> pa.Schema:
    """One schema holding every field of ``schemas``, in order of first appearance.

    Types are widened, field metadata is dropped and every field is nullable.

    >>> unify([pa.schema([("a", pa.int8())]), pa.schema([("b", pa.string()), ("a", pa.float32())])])
    a: double
    b: string
    """
    return pa.schema(_union_fields([list(s) for s in schemas]))


# --------------------------------------------------------------------------- values


def _refuse(path: str, src: pa.DataType, target: pa.DataType, why: str = "") -> SchemaError:
    detail = f": {why}" if why else ""
    return SchemaError(f"field {path!r}: cannot convert {src} to {target}{detail}", field=path)


def _plain_temporal(arr: pa.Array) -> pa.Array:
    """``arr`` with nested temporal/decimal leaves as strings, ready for ``to_pylist``."""
    t = arr.type
    if pa.types.is_struct(t) and t.num_fields:  # (rebuilt from no children, it would be empty)
        children = [_plain_temporal(arr.field(i)) for i in range(t.num_fields)]
        fields = [
            pa.field(f.name, c.type) for f, c in zip(_struct_fields(t), children, strict=True)
        ]
        mask = arr.is_null() if arr.null_count else None
        return pa.StructArray.from_arrays(children, fields=fields, mask=mask)
    if _is_list(t):
        values = _plain_temporal(_list_parts(arr)[1])
        item = pa.field(t.value_field.name, values.type)
        large = pa.types.is_large_list(t)
        return _rebuild_list(arr, values, pa.large_list(item) if large else pa.list_(item), "")
    if pa.types.is_temporal(t) or pa.types.is_decimal(t):
        return pc.cast(arr, pa.string())
    return arr


def _json_hook(value: Any) -> Any:
    return str(value)


_ENCODER = msgspec.json.Encoder(enc_hook=_json_hook)


def _to_text(arr: pa.Array, target: pa.DataType, path: str) -> pa.Array:
    """Any array → strings: scalars through Arrow casts, complex values as JSON text."""
    t = arr.type
    if not _is_nested(t) and not pa.types.is_binary(t) and not pa.types.is_large_binary(t):
        try:
            return pc.cast(arr, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # fall through to the per-value path
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        try:
            return pc.cast(arr, target)
        except pa.ArrowInvalid:  # not UTF-8: keep the bytes as base64 text
            texts = [None if v is None else base64.b64encode(v).decode() for v in arr.to_pylist()]
            return pa.array(texts, target)
    try:
        values = _plain_temporal(arr).to_pylist()
        texts = [None if v is None else _ENCODER.encode(v).decode() for v in values]
    except (pa.ArrowException, msgspec.EncodeError, ValueError) as exc:
        raise _refuse(path, t, target, str(exc)) from exc
    return pa.array(texts, target)


def _to_struct(arr: pa.StructArray, target: pa.DataType, path: str) -> pa.Array:
    src_fields = _struct_fields(arr.type)
    names = [f.name for f in src_fields]
    targets = _struct_fields(target)
    wanted = {f.name for f in targets}
    for i, name in enumerate(names):
        if name not in wanted and arr.field(i).null_count < len(arr):
            raise _refuse(f"{path}.{name}", src_fields[i].type, target, "field not in the schema")
    children = []
    for f in targets:
        if f.name in names:
            child = arr.field(names.index(f.name))
            children.append(_convert_array(child, f.type, f"{path}.{f.name}"))
        else:
            children.append(pa.nulls(len(arr), f.type))
    mask = arr.is_null() if arr.null_count else None
    return pa.StructArray.from_arrays(children, fields=targets, mask=mask)


def _list_parts(arr: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(offsets from 0, the values they index) of a list array, slices included."""
    if pa.types.is_fixed_size_list(arr.type):
        arr = arr.cast(pa.list_(arr.type.value_field))
    offsets = arr.offsets
    if len(offsets) == 0:
        return pa.array([0], offsets.type), arr.values.slice(0, 0)
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    return pc.subtract(offsets, start), arr.values.slice(start, end - start)


def _rebuild_list(arr: pa.Array, values: pa.Array, target: pa.DataType, path: str) -> pa.Array:
    """A list array shaped like ``arr`` (offsets, nulls) over new ``values``."""
    offsets, _ = _list_parts(arr)
    cls: Callable[..., pa.Array]
    if pa.types.is_large_list(target):
        cls, offsets = pa.LargeListArray.from_arrays, offsets.cast(pa.int64())
    else:
        if len(values) > 2**31 - 1:
            raise _refuse(path, arr.type, target, "too many items for 32-bit offsets")
        cls, offsets = pa.ListArray.from_arrays, offsets.cast(pa.int32())
    mask = arr.is_null() if arr.null_count else None
    return cls(offsets, values, type=target, mask=mask)


def _to_list(arr: pa.Array, target: pa.DataType, path: str) -> pa.Array:
    _, values = _list_parts(arr)
    converted = _convert_array(values, target.value_type, f"{path}[]")
    return _rebuild_list(arr, converted, target, path)


def _convert_array(arr: pa.Array, target: pa.DataType, path: str) -> pa.Array:
    """``arr`` as ``target`` without losing a value, or SchemaError."""
    src = arr.type
    if src.equals(target):
        return arr
    if pa.types.is_null(src) or arr.null_count == len(arr):
        return pa.nulls(len(arr), target)
    if pa.types.is_struct(target) and pa.types.is_struct(src):
        return _to_struct(arr, target, path)
    if (pa.types.is_list(target) or pa.types.is_large_list(target)) and _is_list(src):
        return _to_list(arr, target, path)
    if _is_text(target) and not pa.types.is_dictionary(target):
        return _to_text(arr, target, path)
    int_to_float = pa.types.is_floating(target) and (
        pa.types.is_integer(src) or pa.types.is_boolean(src)
    )
    try:
        return pc.cast(arr, target, safe=not int_to_float)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise _refuse(path, src, target, str(exc)) from exc


def _convert(column: pa.ChunkedArray, target: pa.DataType, path: str) -> pa.ChunkedArray:
    if column.type.equals(target):
        return column
    chunks = [_convert_array(c, target, path) for c in column.chunks]
    return pa.chunked_array(chunks, type=target)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` converted to ``schema``: its columns, order and types.

    Missing columns (and struct children) become all-null; present ones are
    converted by the widening rules. A column (or child) that ``schema`` lacks
    is dropped only if it holds no value at all.

    Raises:
        SchemaError: a value cannot be converted without loss (``field`` names it).

    >>> t = pa.table({"b": [1, 2]})
    >>> conform(t, pa.schema([("a", pa.string()), ("b", pa.float64())])).to_pylist()
    [{'a': None, 'b': 1.0}, {'a': None, 'b': 2.0}]
    """
    if table.schema.equals(schema):
        return table
    names = table.column_names
    wanted = set(schema.names)
    for i, name in enumerate(names):
        if name not in wanted and table.column(i).null_count < table.num_rows:
            raise SchemaError(f"field {name!r} is not in the schema", field=name)
    columns = []
    for field in schema:
        if field.name in names:
            columns.append(_convert(table.column(names.index(field.name)), field.type, field.name))
        else:
            columns.append(pa.chunked_array([pa.nulls(table.num_rows, field.type)]))
    return pa.Table.from_arrays(columns, schema=schema)


def concat_tables(tables: Sequence[pa.Table]) -> pa.Table:
    """Concatenate tables whose schemas may differ, widening as needed.

    >>> a, b = pa.table({"x": [1]}), pa.table({"x": ["two"], "y": [{"z": 3}]})
    >>> concat_tables([a, b]).to_pylist()
    [{'x': '1', 'y': None}, {'x': 'two', 'y': {'z': 3}}]
    """
    if not tables:
        return pa.schema([]).empty_table()
    first = tables[0].schema
    if all(t.schema.equals(first) for t in tables[1:]):
        return pa.concat_tables(tables)
    schema = _fit_big_unsigned(unify([t.schema for t in tables]), tables)
    return pa.concat_tables([conform(t, schema) for t in tables])


def _fit_big_unsigned(schema: pa.Schema, tables: Sequence[pa.Table]) -> pa.Schema:
    """``schema`` with int64 columns that must hold uint64 values beyond int64 as float64."""
    limit = pa.scalar(2**63 - 1, pa.uint64())
    for i, field in enumerate(schema):
        if not pa.types.is_int64(field.type):
            continue
        for t in tables:
            column = t.column(field.name) if field.name in t.column_names else None
            if column is not None and pa.types.is_uint64(column.type):
                if pc.any(pc.greater(column, limit)).as_py():
                    schema = schema.set(i, pa.field(field.name, pa.float64()))
                    break
    return schema
