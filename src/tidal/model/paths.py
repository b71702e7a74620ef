"""Dotted field paths over Arrow tables.

Events are JSON objects; nested objects decode as struct columns, so the field
``kubernetes.pod.name`` lives in column ``kubernetes``, struct child ``pod``,
struct child ``name``. These helpers read, replace and add such fields without
leaving the columnar world.

Resolution rule: a top-level column whose name is exactly ``path`` wins (so a
flat column literally named ``"a.b"`` is found). Otherwise the path is split on
``"."`` and each step descends into a struct; a step may also match a child
whose own name contains dots (the longest such name is tried first).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from tidal.errors import SchemaError

__all__ = ["get_path", "has_path", "nested_column", "outermost", "root_at", "set_path", "type_at"]


def _index(fields: Sequence[pa.Field], name: str) -> int:
    """Index of the first field called ``name``, or -1."""
    for i, f in enumerate(fields):
        if f.name == name:
            return i
    return -1


def _struct_fields(t: pa.DataType) -> list[pa.Field] | None:
    if pa.types.is_struct(t):
        return [t.field(i) for i in range(t.num_fields)]
    return None


def _resolve(fields: Sequence[pa.Field], parts: Sequence[str]) -> list[int] | None:
    """Field indices from ``fields`` down to ``parts``' leaf, or None if absent."""
    for k in range(len(parts), 0, -1):
        i = _index(fields, ".".join(parts[:k]))
        if i < 0:
            continue
        if k == len(parts):
            return [i]
        children = _struct_fields(fields[i].type)
        if children is not None:
            rest = _resolve(children, parts[k:])
            if rest is not None:
                return [i, *rest]
    return None


def _resolve_schema(schema: pa.Schema, path: str) -> list[int] | None:
    fields = list(schema)
    i = _index(fields, path)
    if i >= 0:
        return [i]
    return _resolve(fields, path.split("."))


def root_at(schema: pa.Schema, path: str) -> str | None:
    """The top-level column that holds ``path``, or None when there is none.

    >>> root_at(pa.schema([("k8s", pa.struct([("pod", pa.string())]))]), "k8s.pod")
    'k8s'
    """
    steps = _resolve_schema(schema, path)
    return None if steps is None else schema.field(steps[0]).name


def nested_column(schema: pa.Schema, path: str) -> str | None:
    """The column path that reads just ``path`` from a Parquet file of ``schema``:
    its top-level column, or its struct leaf (``"k8s.pod"``) when every step is a
    struct child whose name has no dot; None when ``schema`` has no ``path``.

    >>> nested_column(pa.schema([("k8s", pa.struct([("pod", pa.string())]))]), "k8s.pod")
    'k8s.pod'
    """
    steps = _resolve_schema(schema, path)
    if steps is None:
        return None
    names = []
    fields: Sequence[pa.Field] = list(schema)
    for i in steps:
        names.append(fields[i].name)
        fields = _struct_fields(fields[i].type) or []
    if len(names) > 1 and any("." in name for name in names):
        return names[0]
    return ".".join(names)


def outermost(paths: Sequence[str], top: Collection[str] = ()) -> list[str]:
    """``paths`` once each, without those inside another (``"a.b"`` when ``"a"`` is
    there), but for the names in ``top`` (top-level columns: a flat ``"a.b"`` beside
    ``"a"`` is a column of its own).

    >>> outermost(["a.b", "c", "a", "c"])
    ['c', 'a']
    >>> outermost(["a.b", "a"], top=["a", "a.b"])
    ['a.b', 'a']
    """
    found = dict.fromkeys(paths)
    return [p for p in found
            if p in top or not any(p.startswith(other + ".") for other in found)]


def type_at(schema: pa.Schema, path: str) -> pa.DataType | None:
    """The Arrow type of the field at ``path``, or None when there is none.

    >>> s = pa.schema([("k8s", pa.struct([("pod", pa.string())]))])
    >>> type_at(s, "k8s.pod")
    DataType(string)
    """
    steps = _resolve_schema(schema, path)
    if steps is None:
        return None
    t: pa.DataType = schema.field(steps[0]).type
    for i in steps[1:]:
        t = t.field(i).type
    return t


def has_path(schema: pa.Schema, path: str) -> bool:
    """Whether ``schema`` has a field at ``path``."""
    return _resolve_schema(schema, path) is not None


def get_path(table: pa.Table, path: str) -> pa.ChunkedArray | None:
    """The values at ``path``, or None when the path does not exist.

    A null parent struct gives a null value. No values are copied; only the
    validity bitmaps of null parents are combined.

    >>> t = pa.table({"k8s": [{"pod": "a"}, None]})
    >>> get_path(t, "k8s.pod").to_pylist()
    ['a', None]
    """
    steps = _resolve_schema(table.schema, path)
    if steps is None:
        return None
    column = table.column(steps[0])
    if len(steps) == 1:
        return column
    result: pa.ChunkedArray = pc.struct_field(column, steps[1:])
    return result


def _as_chunked(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    if isinstance(values, pa.ChunkedArray):
        return values
    return pa.chunked_array([values])


def _align(values: pa.ChunkedArray, like: pa.ChunkedArray) -> list[pa.Array]:
    """Slices of ``values`` matching the chunk boundaries of ``like``."""
    chunk_lengths = [len(c) for c in like.chunks]
    if [len(c) for c in values.chunks] == chunk_lengths:
        return list(values.chunks)
    flat = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    out: list[pa.Array] = []
    start = 0
    for n in chunk_lengths:
        out.append(flat.slice(start, n))
        start += n
    return out


def _nest(values: pa.Array, names: Sequence[str]) -> pa.Array:
    """Wrap ``values`` in always-valid structs, innermost name last."""
    out = values
    for name in reversed(names):
        out = pa.StructArray.from_arrays([out], fields=[pa.field(name, out.type)])
    return out


def _replace_in_struct(
    chunk: pa.StructArray, steps: Sequence[int], rest: Sequence[str], values: pa.Array, path: str
) -> pa.StructArray:
    """A copy of ``chunk`` with the field at ``steps`` (+ new ``rest``) set to ``values``.

    The struct's validity bitmap and all other children are kept as they are.
    """
    fields = [chunk.type.field(i) for i in range(chunk.type.num_fields)]
    children = [chunk.field(i) for i in range(len(fields))]
    if steps:
        i = steps[0]
        child = children[i]
        if len(steps) == 1 and not rest:
            new = values
        elif isinstance(child, pa.StructArray):
            new = _replace_in_struct(child, steps[1:], rest, values, path)
        else:
            raise SchemaError(
                f"cannot set {path!r}: {fields[i].name!r} is {child.type}, not a struct",
                field=path,
            )
        children[i] = new
        fields[i] = pa.field(fields[i].name, new.type, metadata=fields[i].metadata)
    else:
        new = _nest(values, rest[1:])
        children.append(new)
        fields.append(pa.field(rest[0], new.type))
    mask = chunk.is_null() if chunk.null_count else None
    return pa.StructArray.from_arrays(children, fields=fields, mask=mask)


def _prefix_steps(fields: Sequence[pa.Field], parts: Sequence[str]) -> tuple[list[int], list[str]]:
    """The existing struct steps along ``parts`` and the names still missing."""
    steps: list[int] = []
    current: Sequence[pa.Field] | None = fields
    k = 0
    while k < len(parts) and current is not None:
        i = _index(current, parts[k])
        if i < 0:
            break
        steps.append(i)
        k += 1
        current = _struct_fields(current[i].type)
        if current is None and k < len(parts):
            raise SchemaError(
                f"cannot set {'.'.join(parts)!r}: {parts[k - 1]!r} is not a struct",
                field=".".join(parts),
            )
    return steps, list(parts[k:])


def set_path(table: pa.Table, path: str, values: pa.ChunkedArray | pa.Array) -> pa.Table:
    """Return ``table`` with the field at ``path`` replaced by (or set to) ``values``.

    An existing field keeps its position; parent structs are rebuilt around the
    new child with their validity bitmaps and other children untouched. A
    missing top-level field is appended as the last column; a missing nested
    field is added to (or creates) the struct(s) along the path. Rows whose
    parent struct is null stay null, so values set there are not visible.

    >>> t = pa.table({"k8s": [{"pod": "a", "ns": "x"}]})
    >>> set_path(t, "k8s.pod", pa.array(["b"])).column("k8s").to_pylist()
    [{'pod': 'b', 'ns': 'x'}]
    """
    chunked = _as_chunked(values)
    if len(chunked) != table.num_rows:
        raise ValueError(f"set_path({path!r}): {len(chunked)} values for {table.num_rows} rows")
    steps = _resolve_schema(table.schema, path)
    if steps is not None:
        rest: list[str] = []
    else:
        steps, rest = _prefix_steps(list(table.schema), path.split("."))
    if not steps:
        if rest and len(rest) > 1:
            top = pa.chunked_array(
                [_nest(c, rest[1:]) for c in chunked.chunks],
                type=_nest_type(chunked.type, rest[1:]),
            )
            return table.append_column(rest[0], top)
        return table.append_column(path, chunked)
    position = steps[0]
    old_field = table.schema.field(position)
    if len(steps) == 1 and not rest:
        return table.set_column(position, pa.field(old_field.name, chunked.type), chunked)
    column = table.column(position)
    if column.num_chunks == 0:
        column = pa.chunked_array([column.combine_chunks()])
    pieces = _align(chunked, column)
    new_chunks = [
        _replace_in_struct(chunk, steps[1:], rest, piece, path)
        for chunk, piece in zip(column.chunks, pieces, strict=True)
    ]
    new_column = pa.chunked_array(new_chunks)
    field = pa.field(old_field.name, new_column.type, metadata=old_field.metadata)
    return table.set_column(position, field, new_column)


def _nest_type(t: pa.DataType, names: Sequence[str]) -> pa.DataType:
    for name in reversed(names):
        t = pa.struct([pa.field(name, t)])
    return t
