"""``pyarrow.json.read_json``, with its bug in lists that open with nulls worked around.

pyarrow 26's JSON reader drops the nulls that open a list before the list's
item type is known: ``[null, 1]`` gets a child of just ``1``, ``[null, null]`` a
child of one null. The offsets are right, so the child is short: the table
fails full validation, and slicing or concatenating it later reads past the end.

:func:`read_json` checks every list column of what the reader built (tables
without lists cost one schema walk). When one is wrong it reads the body again
with the schema the reader inferred, which builds lists with known item types
correctly; lists whose items are all null (``list<null>``, also inside structs
and lists), which it still builds wrongly, are then rebuilt with a child of
that many nulls.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.json as pj

__all__ = ["read_json"]


def read_json(body: pa.Buffer, read_options: pj.ReadOptions) -> pa.Table:
    """``body`` (NDJSON) as a table, as ``pyarrow.json.read_json`` reads it, with valid lists.

    Raises:
        pyarrow.ArrowInvalid: as the reader does; also if a list is still wrong.
    """
    table = pj.read_json(pa.BufferReader(body), read_options=read_options)
    if not any(_holds_list(f.type) for f in table.schema) or _lists_valid(table):
        return table
    options = pj.ParseOptions(explicit_schema=table.schema)
    table = pj.read_json(pa.BufferReader(body), read_options=read_options,
                         parse_options=options)
    columns = [pa.chunked_array([_repair(chunk) for chunk in column.chunks], column.type)
               if _holds_null_list(column.type) else column for column in table.columns]
    table = pa.Table.from_arrays(columns, schema=table.schema)
    _lists_valid(table, check=True)
    return table


def _lists_valid(table: pa.Table, *, check: bool = False) -> bool:
    """Whether every list column validates in full (``check``: raise if not)."""
    for column in table.columns:
        if _holds_list(column.type):
            try:
                column.validate(full=True)
            except pa.ArrowInvalid:
                if check:
                    raise
                return False
    return True


def _holds_list(t: pa.DataType) -> bool:
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return True
    return pa.types.is_struct(t) and any(_holds_list(f.type) for f in t)


def _holds_null_list(t: pa.DataType) -> bool:
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.types.is_null(t.value_type) or _holds_null_list(t.value_type)
    return pa.types.is_struct(t) and any(_holds_null_list(f.type) for f in t)


def _repair(array: pa.Array) -> pa.Array:
    t = array.type
    if not _holds_null_list(t):
        return array
    mask = array.is_null() if array.null_count else None
    if pa.types.is_struct(t):
        children = [_repair(array.field(i)) for i in range(t.num_fields)]
        return pa.StructArray.from_arrays(children, fields=list(t), mask=mask)
    offsets = array.offsets  # (of this array's rows; ``values`` is the whole child)
    if pa.types.is_null(t.value_type):
        values: pa.Array = pa.nulls(offsets[-1].as_py() if len(offsets) else 0)
    else:
        values = _repair(array.values)
    kind = pa.LargeListArray if pa.types.is_large_list(t) else pa.ListArray
    return kind.from_arrays(offsets, values, type=t, mask=mask)
