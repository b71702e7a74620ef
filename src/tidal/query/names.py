"""The names the SQL view gives event keys, and the SQL and Arrow that apply them.

Keys the view cannot show as written
------------------------------------
An event key becomes a SQL column (or struct field) name as written, except
keys DuckDB cannot show as written: the empty key, keys holding a control
character (U+0000-U+001F, U+007F), keys beginning with a double quote, and
keys that equal another key of the same object but for ASCII letter case
(DuckDB names are case-insensitive: of such a group an all-lowercase key keeps
its name and the others are renamed). A renamed key is shown as its JSON
string literal, quotes included, with ``"`` and ``\\`` escaped, control
characters as ``\\b \\f \\n \\r \\t`` or ``\\u00xx``, and ASCII capitals as
``\\u00xx`` (hex in lowercase), so that renamed names never collide with each
other or with the keys shown as written (in any letter case), and
``json.loads(name)`` gives the key back: ``""`` is shown as ``""``,
``"k\\u0000"`` as ``"k\\u0000"``, and with keys ``a`` and ``A`` both present,
``A`` as ``"\\u0041"`` while ``a`` stays ``a``. In SQL the quotes are doubled:
``SELECT """""" FROM events``, ``SELECT n."""""" FROM events``. The rule
applies at the top level and inside objects (lists of objects included), to
memtable and segments alike, so a key's name is the same before and after a
flush and from call to call; only a case collision depends on the keys
present (``A`` is renamed once an ``a`` appears beside it anywhere in the
store). Values shown as JSON text keep their keys as written, and so do the
keys of Arrow map columns (they are data, not names).

How the names are applied
-------------------------
The renames are worked out once for the unified schema of all sources
(:func:`names_of`) and applied to each source that holds a renamed key
(:func:`touched`): a memtable Arrow table gets a renamed schema over the same
buffers (:func:`renamed_table`), and a Parquet file is read by column position
and its structs are rebuilt under the new names (:func:`projected`), because
DuckDB mangles odd names as it reads them. JSON text made from a Parquet
column keeps its keys as stored (:func:`json_text`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pyarrow as pa

__all__ = ["Names", "ident", "json_text", "names_of", "projected", "renamed_keys",
           "renamed_table", "sql_name", "struct_within", "touched"]

_CONTROL = re.compile("[\x00-\x1f\x7f]")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
            "\t": "\\t"}
_ESCAPES.update({c: f"\\u{ord(c):04x}" for c in map(chr, [*range(0x20), 0x7F])
                 if c not in _ESCAPES})
_ESCAPES.update({c: f"\\u{ord(c):04x}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"})
_ESCAPE_TABLE = str.maketrans(_ESCAPES)


def sql_name(key: str) -> str:
    """The name the SQL view gives a key it cannot show as written.

    >>> sql_name("")
    '""'
    >>> sql_name("k\\x00")
    '"k\\\\u0000"'
    >>> sql_name("Aa")
    '"\\\\u0041a"'
    """
    return '"' + key.translate(_ESCAPE_TABLE) + '"'


def renamed_keys(keys: Iterable[str]) -> dict[str, str]:
    """The keys of one object that the SQL view renames, each with its SQL name.

    >>> renamed_keys(["", "k", "k\\x00", "a", "A", "b"])
    {'': '""', 'k\\x00': '"k\\\\u0000"', 'A': '"\\\\u0041"'}
    """
    keys = list(keys)
    text = "|".join(keys)
    if ("" not in keys and not _CONTROL.search(text) and '|"' not in "|" + text
            and text.count("|") == len(keys) - 1
            and len(set(text.translate(_ASCII_LOWER).split("|"))) == len(keys)):
        return {}  # the common case, decided without a Python loop
    folded = Counter(k.translate(_ASCII_LOWER) for k in keys)
    out = {}
    for key in keys:
        low = key.translate(_ASCII_LOWER)
        if not key or key[0] == '"' or _CONTROL.search(key) or (folded[low] > 1 and key != low):
            out[key] = sql_name(key)
    return out


@dataclass(frozen=True)
class Names:
    """What the view renames at one object level (``renamed``) and below (``below``)."""

    renamed: Mapping[str, str] = field(default_factory=dict)
    below: Mapping[str, Names] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.renamed or self.below)

    def shown(self, key: str) -> str:
        """The name the view shows for ``key`` at this level."""
        return self.renamed.get(key, key)


_AS_WRITTEN = Names()


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def struct_within(t: pa.DataType) -> list[pa.Field] | None:
    """The fields of ``t``, or of the struct its lists hold; None for other types."""
    while _is_list(t):
        t = t.value_type
    return [t.field(i) for i in range(t.num_fields)] if pa.types.is_struct(t) else None


def names_of(fields: list[pa.Field]) -> Names:
    """The renames for an object level of the unified schema, and for those below it."""
    renamed = renamed_keys(f.name for f in fields)
    below = {}
    for f in fields:
        inner = struct_within(f.type)
        if inner is not None and (level := names_of(inner)):
            below[f.name] = level
    return Names(renamed, below) if renamed or below else _AS_WRITTEN


def touched(fields: Iterable[pa.Field], names: Names) -> bool:
    """Whether a source with these fields has a key the view renames."""
    if not names:
        return False
    for f in fields:
        if f.name in names.renamed:
            return True
        level = names.below.get(f.name)
        if level and (inner := struct_within(f.type)) is not None and touched(inner, level):
            return True
    return False


# --------------------------------------------------------------------------- Arrow


def _renamed_field(f: pa.Field, names: Names) -> pa.Field:
    level = names.below.get(f.name)
    return pa.field(names.shown(f.name), _renamed_type(f.type, level) if level else f.type,
                    f.nullable, f.metadata)


def _renamed_type(t: pa.DataType, names: Names) -> pa.DataType:
    if pa.types.is_struct(t):
        return pa.struct([_renamed_field(t.field(i), names) for i in range(t.num_fields)])
    if _is_list(t):
        item = t.value_field
        item = pa.field(item.name, _renamed_type(item.type, names), item.nullable, item.metadata)
        if pa.types.is_large_list(t):
            return pa.large_list(item)
        if pa.types.is_fixed_size_list(t):
            return pa.list_(item, t.list_size)
        return pa.list_(item)
    return t


def renamed_table(table: pa.Table, names: Names) -> pa.Table:
    """``table`` with the view's names; nested columns are zero-copy views."""
    if not names:
        return table
    fields, columns = [], []
    for f, column in zip(table.schema, table.columns, strict=True):
        shown = _renamed_field(f, names)
        if not shown.type.equals(f.type):
            column = pa.chunked_array([c.view(shown.type) for c in column.chunks], shown.type)
        fields.append(shown)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=table.schema.metadata))


# --------------------------------------------------------------------------- SQL


def projected(source: str, schema: pa.Schema, as_json: set[str], names: Names) -> str:
    """SQL reading one Parquet file with the view's names, by position, not by name.

    DuckDB mangles odd names as it reads them (``""`` becomes ``C3``, ``a`` beside
    ``A`` becomes ``a_1``), so columns are renamed by position and structs are
    rebuilt with ``struct_extract_at``.

    Args:
        source: The SQL table function reading the file, ``read_parquet([...])``.
        schema: The file's schema.
        as_json: Top-level columns the view shows as JSON text.
        names: The view's renames.
    """
    aliases = [f"_c{i}" for i in range(len(schema))]
    items = []
    for alias, f in zip(aliases, schema, strict=True):
        level = names.below.get(f.name)
        if f.name in as_json and pa.types.is_nested(f.type):
            expr = json_text(alias, f.type)
        elif level:
            expr = _rebuilt(alias, f.type, level, 0)
        else:
            expr = alias
        items.append(f"{expr} AS {ident(names.shown(f.name))}")
    return f"SELECT {', '.join(items)} FROM {source} AS _t({', '.join(aliases)})"


def _rebuilt(expr: str, t: pa.DataType, names: Names, depth: int) -> str:
    """SQL for the value ``expr`` of Arrow type ``t`` with struct fields renamed."""
    if pa.types.is_struct(t):
        parts = []
        for i in range(t.num_fields):
            f = t.field(i)
            value = f"struct_extract_at({expr}, {i + 1})"
            level = names.below.get(f.name)
            if level:
                value = _rebuilt(value, f.type, level, depth)
            parts.append(f"{ident(names.shown(f.name))} := {value}")
        return f"CASE WHEN {expr} IS NULL THEN NULL ELSE struct_pack({', '.join(parts)}) END"
    if _is_list(t):
        item = f"_x{depth}"
        inner = _rebuilt(item, t.value_type, names, depth + 1)
        return f"list_transform({expr}, lambda {item}: {inner})"
    return expr


def json_text(expr: str, t: pa.DataType) -> str:
    """SQL turning the nested value ``expr`` into JSON text with its keys as stored.

    ``to_json`` would do, but for the keys DuckDB mangles on reading Parquet,
    which are the keys the view renames.
    """
    inner = struct_within(t)
    if inner is None or not names_of(inner):
        return f"to_json({expr})::VARCHAR"
    return f"({_json_value(expr, t, 0)})::VARCHAR"


def _json_value(expr: str, t: pa.DataType, depth: int) -> str:
    if pa.types.is_struct(t):
        parts = []
        for i in range(t.num_fields):
            f = t.field(i)
            parts += [_text(f.name), _json_value(f"struct_extract_at({expr}, {i + 1})", f.type,
                                                 depth)]
        return f"CASE WHEN {expr} IS NULL THEN NULL ELSE json_object({', '.join(parts)}) END"
    if struct_within(t) is not None:  # a list holding structs
        item = f"_x{depth}"
        return f"to_json(list_transform({expr}, lambda {item}: " \
               f"{_json_value(item, t.value_type, depth + 1)}))"
    return expr


def ident(name: str) -> str:
    """``name`` as a quoted SQL identifier.

    >>> ident('a"b')
    '"a""b"'
    """
    return '"' + name.replace('"', '""') + '"'


def _text(value: str) -> str:
    """``value`` as a SQL string expression (control characters through ``chr``)."""
    parts = re.split("([\x00-\x1f\x7f])", value)
    pieces = [f"chr({ord(p)})" if i % 2 else "'" + p.replace("'", "''") + "'"
              for i, p in enumerate(parts) if p or i == 0]
    return pieces[0] if len(pieces) == 1 else "(" + " || ".join(pieces) + ")"
