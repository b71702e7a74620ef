"""Tables that Parquet can store and give back without losing a value.

JSON events decode to Arrow types that Arrow IPC (the WAL) takes but the
Parquet writer refuses, so a segment holding them could never be written:

* **An empty object** ``{}`` decodes as ``struct<>``, a struct with no fields,
  at the top level, inside structs (``{"a": {}}``), in lists (``[{}]``) or as
  map values. Parquet has no empty group ("Cannot write struct type 'x' with no
  child field to Parquet").
* **A dictionary of nulls** (``dictionary<int8, null>``, e.g. an all-null
  pandas category) ("Writing DictionaryArray with null encoded in dictionary
  type not yet supported").

:func:`storable` rewrites just those types with whole-column Arrow casts:

======================================  ========================================
type                                    stored as
======================================  ========================================
``struct<>``                            ``struct<_empty: null>``
``dictionary<..., null>``               ``null``
======================================  ========================================

Every value survives: ``{}`` stays a present (non-null) struct whose only
field, :data:`PLACEHOLDER`, is null, so ``{}`` and ``null`` stay apart; a
dictionary of nulls holds only nulls. Plain Parquet readers (DuckDB, pyarrow)
show ``{}`` as ``{"_empty": null}``; :func:`restored` turns it back into ``{}``.
Under Tidal's struct semantics (a missing field reads as null, see
:mod:`tidal.model.schema`) the two are the same event.

Null-typed columns (a field that was null in every event) and lists of nulls
need nothing: Parquet stores them and reads them back as ``null``.

Not handled (Parquet refuses them and no cast keeps their values): unions,
``month_day_nano_interval``, run-end encoded arrays, list views and
dictionaries of structs that contain an empty struct. JSON never produces them;
only Arrow input can.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

__all__ = ["PLACEHOLDER", "restored", "restored_schema", "storable"]

PLACEHOLDER = "_empty"
_PLACEHOLDER_FIELD = pa.field(PLACEHOLDER, pa.null())

TypeRule = Callable[[pa.DataType], pa.DataType | None]


def _is_placeholder_struct(t: pa.DataType) -> bool:
    return (pa.types.is_struct(t) and t.num_fields == 1 and t.field(0).name == PLACEHOLDER
            and pa.types.is_null(t.field(0).type))


def _for_parquet(t: pa.DataType) -> pa.DataType | None:
    """The stored type of ``t`` itself, or None to keep it (children are walked apart)."""
    if pa.types.is_struct(t) and t.num_fields == 0:
        return pa.struct([_PLACEHOLDER_FIELD])
    if pa.types.is_dictionary(t) and pa.types.is_null(t.value_type):
        return pa.null()
    return None


def _from_parquet(t: pa.DataType) -> pa.DataType | None:
    return pa.struct([]) if _is_placeholder_struct(t) else None


def _rewrite(t: pa.DataType, rule: TypeRule) -> pa.DataType | None:
    """``t`` with ``rule`` applied at every level, or None when nothing changes."""
    replaced = rule(t)
    if replaced is not None:
        return replaced
    if pa.types.is_struct(t):
        fields = [t.field(i) for i in range(t.num_fields)]
        types = [_rewrite(f.type, rule) for f in fields]
        if all(n is None for n in types):
            return None
        return pa.struct([f if n is None else f.with_type(n)
                          for f, n in zip(fields, types, strict=True)])
    if pa.types.is_map(t):
        key, item = t.key_field, t.item_field
        new_key, new_item = _rewrite(key.type, rule), _rewrite(item.type, rule)
        if new_key is None and new_item is None:
            return None
        return pa.map_(key if new_key is None else key.with_type(new_key),
                       item if new_item is None else item.with_type(new_item),
                       keys_sorted=t.keys_sorted)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        new_value = _rewrite(t.value_type, rule)
        if new_value is None:
            return None
        item = t.value_field.with_type(new_value)
        if pa.types.is_fixed_size_list(t):
            return pa.list_(item, t.list_size)
        return pa.large_list(item) if pa.types.is_large_list(t) else pa.list_(item)
    return None


def _apply(table: pa.Table, rule: TypeRule) -> pa.Table:
    """``table`` with ``rule`` applied to every column type; ``table`` itself if none changes."""
    out = table
    for i, field in enumerate(table.schema):
        new_type = _rewrite(field.type, rule)
        if new_type is not None:
            column = table.column(i)
            chunks = [_cast(chunk, new_type) for chunk in column.chunks]
            out = out.set_column(i, field.with_type(new_type),
                                 pa.chunked_array(chunks, type=new_type))
    return out


def _cast(array: pa.Array, new_type: pa.DataType) -> pa.Array:
    """``array`` as ``new_type``, struct by struct: pyarrow's own cast of a struct whose
    children change can build an invalid list child (list<null> beside an empty struct)."""
    if array.type == new_type:
        return array
    if pa.types.is_struct(array.type) and pa.types.is_struct(new_type):
        n = len(array)
        mask = array.is_null() if array.null_count else None
        old = {array.type.field(i).name: i for i in range(array.type.num_fields)}
        children = []
        for j in range(new_type.num_fields):
            target = new_type.field(j)
            if target.name in old:
                children.append(_cast(array.field(old[target.name]), target.type))
            else:  # a placeholder for an empty struct
                children.append(pa.nulls(n, target.type))
        if not children:
            return array.cast(new_type)
        return pa.StructArray.from_arrays(children, fields=list(new_type), mask=mask)
    return array.cast(new_type)


def storable(table: pa.Table) -> pa.Table:
    """``table`` with every type Parquet cannot write replaced (see the module docstring).

    Returns ``table`` itself, at no cost beyond a walk of its schema, when every
    column is writable already. Otherwise only the affected columns are cast.

    Example:
        >>> t = pa.table({"x": pa.array([{}, None], pa.struct([]))})
        >>> storable(t).column("x").to_pylist()
        [{'_empty': None}, None]
        >>> plain = pa.table({"a": [1]})
        >>> storable(plain) is plain
        True
    """
    return _apply(table, _for_parquet)


def restored(table: pa.Table) -> pa.Table:
    """Undo :func:`storable` for a table read back from Parquet: placeholders become ``{}``.

    A struct whose only field is a null-typed :data:`PLACEHOLDER` turns back into
    ``struct<>``. Returns ``table`` itself when it holds no such struct.

    Example:
        >>> t = pa.table({"x": pa.array([{}, None], pa.struct([]))})
        >>> restored(storable(t)).column("x").to_pylist()
        [{}, None]
    """
    return _apply(table, _from_parquet)


def restored_schema(schema: pa.Schema) -> pa.Schema:
    """The schema :func:`restored` gives for a table of ``schema``."""
    fields = []
    for field in schema:
        new_type = _rewrite(field.type, _from_parquet)
        fields.append(field if new_type is None else field.with_type(new_type))
    return pa.schema(fields, metadata=schema.metadata)
