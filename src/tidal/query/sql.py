"""SQL through DuckDB over a view named ``events``: segments plus the memtable.

Each query runs on its own cursor of one DuckDB database per store, over a
temporary view ``events`` built for the query's snapshot: the segment files
(read by DuckDB straight from Parquet; an in-memory store hands over Arrow
tables) and the memtable (an Arrow table), united by column name. Columns
whose type differs between sources widen as everywhere in Tidal; an object in
one source and a scalar in another becomes JSON text.

Read-only sandbox
-----------------
``Store.sql`` may read the store and nothing else, so that a server can expose it:

* A query is ONE statement, and a read: ``SELECT`` (also ``WITH``, ``VALUES``,
  ``FROM``-first, ``TABLE``, ``DESCRIBE``, ``SUMMARIZE``, ``SHOW``, ``PIVOT ...
  IN (...)``), or ``EXPLAIN`` / ``EXPLAIN ANALYZE`` of one. DuckDB's parser
  classifies it. Anything else (``COPY``, ``ATTACH``, ``INSTALL``, ``LOAD``,
  ``SET``, ``PRAGMA``, ``CREATE``, ``INSERT``, ``CALL``, ...) raises
  :class:`~tidal.errors.QueryError` naming what was refused. Several
  statements in one string are refused too, even if each is a read: one
  call, one answer, and nothing depends on how DuckDB splits the text.
* Functions that run SQL given as text (``query``,
  ``json_execute_serialized_sql``) or change database-wide state from a
  ``SELECT`` (logging, profiling, checkpoints, external resources, grammar
  extensions) are refused by name.
* Before any query, the database is locked down: no file access outside the
  store's segment directory (``enable_external_access = false``,
  ``allowed_directories``), no loading or installing extensions, no lookup of
  Python variables, a private spill directory, time zone UTC, and then
  ``lock_configuration = true`` so that no statement can undo any of it.
* The view (and anything temporary) lives on the query's own cursor and is
  gone after the call; no statement that passes the checks creates a lasting
  object.

One locked database serves every query of a store (a cursor costs ~0.4 ms, a
new database ~11 ms). DuckDB fixes ``allowed_directories`` when the
configuration is locked, so the database is made on first use and made once
more when the first segment file appears (an in-memory store never reads files).

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
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from tidal.errors import ClosedError, QueryError
from tidal.model.schema import concat_tables, conform, unify
from tidal.store.engine import Snapshot

__all__ = ["VIEW", "SqlEngine", "renamed_keys", "sql_name"]

VIEW = "events"
_MEMORY = "_tidal_memory"
_READS = ("SELECT, WITH, VALUES, FROM, TABLE, DESCRIBE, SUMMARIZE, SHOW, "
          "or EXPLAIN of one of those")
_REFUSED_FUNCTIONS = {
    "query": "it runs SQL given as text",
    "json_execute_serialized_sql": "it runs SQL given as text",
    "checkpoint": "it changes the database",
    "force_checkpoint": "it changes the database",
    "enable_logging": "it changes database settings",
    "disable_logging": "it changes database settings",
    "truncate_duckdb_logs": "it changes the database",
    "enable_profiling": "it changes database settings",
    "disable_profiling": "it changes database settings",
    "add_grammar_extension": "it changes database settings",
    "remove_grammar_extension": "it changes database settings",
    "register_external_resource_type": "it changes the database",
    "register_external_resource": "it changes the database",
    "deregister_external_resource": "it changes the database",
    "create_external_resource": "it changes the database",
    "destroy_external_resource": "it changes the database",
    "arrow_scan": "it is internal",
    "arrow_scan_dumb": "it is internal",
    "python_arrow_scan": "it is internal",
    "pandas_scan": "it is internal",
    "python_map_function": "it is internal",
}


class SqlEngine:
    """One locked-down DuckDB database per store; each query runs on its own cursor.

    See the module docstring for the sandbox and for how odd keys are named.
    """

    def __init__(self, ts_field: str, entity_field: str) -> None:
        self._lock = threading.Lock()
        self._db: duckdb.DuckDBPyConnection | None = None
        self._db_dir: str | None = None  # the directory self._db may read
        self._old: list[duckdb.DuckDBPyConnection] = []  # replaced, closed with the engine
        self._closed = False
        self._files: dict[str, _File] = {}
        self._last_names: tuple[pa.Schema, _Names] | None = None
        self._empty = _empty_view(ts_field, entity_field)

    def query(self, snapshot: Snapshot, query: str,
              params: Sequence[Any] | Mapping[str, Any] | None = None) -> pa.Table:
        """Run one read-only statement against ``snapshot``.

        A string holding several statements is refused whole, reads included:
        checking each statement would make the answer depend on how DuckDB
        splits the text, and a caller gets one table back anyway. Refused
        statements and DuckDB errors raise :class:`QueryError`.
        """
        paths = snapshot.segment_paths()
        if paths is not None:
            paths = [os.path.abspath(p) for p in paths]
        cursor = self._cursor(_directory_of(paths, query))
        try:
            _check_read_only(cursor, query)
            body = self._view(cursor, snapshot, paths)
            cursor.execute(f"CREATE OR REPLACE TEMP VIEW {VIEW} AS {body}")
            relation = cursor.sql(query, params=params)
            return relation.to_arrow_table() if relation is not None else pa.table({})
        except duckdb.Error as exc:
            raise _query_error(exc, query) from exc
        except (OSError, pa.ArrowException) as exc:  # pyarrow reading a segment's schema or rows
            raise QueryError(f"could not read a segment: {exc}", query=query) from exc
        finally:
            cursor.close()

    def _cursor(self, directory: str | None) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._closed:
                raise ClosedError("the store is closed")
            if self._db is None or (directory is not None and directory != self._db_dir):
                if self._db is not None:
                    self._old.append(self._db)  # queries may still run on it
                self._db = _locked_database(directory)
                self._db_dir = directory
            return self._db.cursor()

    def _view(self, cursor: duckdb.DuckDBPyConnection, snapshot: Snapshot,
              paths: list[str] | None) -> str:
        in_memory: list[pa.Table] = []
        if paths is None:
            in_memory = [snapshot.segment_table(m) for m in snapshot.segments]
            paths = []
        in_memory.extend(snapshot.memtable_parts)
        memory = concat_tables(in_memory) if in_memory else None
        files = [self._file(p) for p in paths]
        if len(self._files) > 2 * len(paths) + 16:  # forget compacted-away segments
            self._files = dict(zip(paths, files, strict=True))
        every = [f.schema for f in files] + ([memory.schema] if memory is not None else [])
        unified = unify(every)
        as_json = _json_columns(unified, every)
        names = self._names(unified)
        plain: list[str] = []
        sources: list[str] = []
        tables = [memory] if memory is not None else []
        for path, file in zip(paths, files, strict=True):
            if file.misread:
                tables.append(pq.read_table(path))
            elif _touched(file.schema, names):
                sources.append(_projected(path, file.schema, as_json, names))
            elif nested := _nested_among(file.schema, as_json):
                replaced = ", ".join(f"{_json_text(_ident(c), file.schema.field(c).type)} AS "
                                     f"{_ident(c)}" for c in nested)
                sources.append(f"SELECT * REPLACE ({replaced}) FROM "
                               f"read_parquet([{_listed([path])}])")
            else:
                plain.append(path)
        if plain:
            sources.insert(0, f"SELECT * FROM read_parquet([{_listed(plain)}], "
                              "union_by_name = true)")
        for i, table in enumerate(tables):
            if as_json:
                target = pa.schema([pa.field(f.name, pa.string()) if f.name in as_json else f
                                    for f in table.schema])
                table = conform(table, target)
            name = f"{_MEMORY}{i or ''}"
            cursor.register(name, _unsliced_nested(_renamed_table(table, names)))
            sources.append(f"SELECT * FROM {name}")
        return " UNION ALL BY NAME ".join(sources) if sources else self._empty

    def _names(self, unified: pa.Schema) -> _Names:
        """The renames for ``unified``; the last answer is kept, as schemas rarely change."""
        last = self._last_names
        if last is not None and last[0].equals(unified):
            return last[1]
        names = _names_of(list(unified))
        self._last_names = (unified, names)
        return names

    def _file(self, path: str) -> _File:
        file = self._files.get(path)
        if file is None:
            schema = pq.read_schema(path)
            file = self._files[path] = _File(schema, _misread_by_duckdb(schema))
        return file

    def close(self) -> None:
        """Release the DuckDB database. Idempotent."""
        with self._lock:
            self._closed = True
            for db in [*self._old, *([self._db] if self._db is not None else [])]:
                db.close()
            self._old, self._db = [], None


@dataclass(frozen=True)
class _File:
    """What the engine keeps of a segment file: its schema, and whether DuckDB misreads it."""

    schema: pa.Schema
    misread: bool


# --------------------------------------------------------------------------- sandbox


def _locked_database(directory: str | None) -> duckdb.DuckDBPyConnection:
    """An in-memory database that may read only ``directory`` and cannot be reconfigured."""
    spill = os.path.join(tempfile.gettempdir(), f"tidal-sql-{secrets.token_hex(8)}")
    db = duckdb.connect(":memory:", config={"temp_directory": spill})
    try:
        db.execute("SET GLOBAL TimeZone = 'UTC'")
        db.execute("SET python_enable_replacements = false")
        db.execute("SET autoinstall_known_extensions = false")
        db.execute("SET autoload_known_extensions = false")
        if directory is not None:
            db.execute("SET allowed_directories = ?", [[directory]])
        db.execute("SET enable_external_access = false")
        db.execute("SET lock_configuration = true")
    except BaseException:
        db.close()
        raise
    return db


def _directory_of(paths: list[str] | None, query: str) -> str | None:
    """The one directory holding the segment files (None if there are none)."""
    directories = {os.path.dirname(p) for p in paths or ()}
    if len(directories) > 1:
        raise QueryError(f"segments in several directories: {sorted(directories)}", query=query)
    return directories.pop() if directories else None


def _check_read_only(cursor: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse anything but one read-only statement that calls no refused function."""
    statements = cursor.extract_statements(query)
    if not statements:
        raise QueryError("refused: the query holds no SQL statement", query=query)
    if len(statements) > 1:
        raise QueryError(f"refused: {len(statements)} statements; store.sql runs one "
                         "statement per call", query=query)
    statement = statements[0]
    if statement.type == duckdb.StatementType.EXPLAIN:
        explained = _explained(cursor, statement.query)
        if explained is None or explained.type != duckdb.StatementType.SELECT:
            what = "EXPLAIN of " + (_label(explained) if explained else "this statement")
            raise QueryError(f"refused: {what}; store.sql is read-only ({_READS})", query=query)
    elif statement.type != duckdb.StatementType.SELECT:
        hint = ""
        if statement.type == duckdb.StatementType.MULTI:
            hint = "; a PIVOT is a read once its values are listed: PIVOT ... ON col IN (...)"
        raise QueryError(f"refused: {_label(statement)}; store.sql is read-only "
                         f"({_READS}){hint}", query=query)
    words = _words(query)
    for (word, kind), (following, _) in zip(words, words[1:], strict=False):
        name = _unquoted(word).lower()
        if following.startswith("(") and kind != duckdb.token_type.string_const \
                and name in _REFUSED_FUNCTIONS:
            raise QueryError(f"refused: function {name}() is not allowed in store.sql "
                             f"({_REFUSED_FUNCTIONS[name]})", query=query)


def _label(statement: duckdb.Statement) -> str:
    """``COPY``, or ``INSTALL (a LOAD statement)`` where the first word differs."""
    kind = statement.type.name
    words = _words(statement.query)
    first = words[0][0].upper() if words else kind
    return kind if first == kind else f"{first} (a {kind} statement)"


def _explained(cursor: duckdb.DuckDBPyConnection, text: str) -> duckdb.Statement | None:
    """The statement an ``EXPLAIN [ANALYZE] [(options)]`` statement explains, if clear."""
    tokens = [(start, text[start:end].strip()) for start, end, kind in _spans(text)
              if kind != duckdb.token_type.comment]
    if not tokens or tokens[0][1].upper() != "EXPLAIN":
        return None
    i = 1
    if i < len(tokens) and tokens[i][1].upper() in ("ANALYZE", "ANALYSE"):
        i += 1
    starts = [i]
    if i < len(tokens) and tokens[i][1].startswith("("):  # options, or a (SELECT ...)
        depth = 0
        for j in range(i, len(tokens)):
            depth += tokens[j][1].count("(") - tokens[j][1].count(")")
            if depth <= 0:
                starts.append(j + 1)
                break
    for k in starts:
        if k >= len(tokens):
            continue
        try:
            inner = cursor.extract_statements(text[tokens[k][0]:])
        except duckdb.Error:
            continue
        if len(inner) == 1:
            return inner[0]
    return None


def _spans(text: str) -> list[tuple[int, int, duckdb.token_type]]:
    tokens = duckdb.tokenize(text)
    ends = [start for start, _ in tokens[1:]] + [len(text)]
    return [(start, end, kind) for (start, kind), end in zip(tokens, ends, strict=True)]


def _words(text: str) -> list[tuple[str, duckdb.token_type]]:
    """The tokens of ``text`` as (text, kind), comments left out."""
    return [(text[start:end].strip(), kind) for start, end, kind in _spans(text)
            if kind != duckdb.token_type.comment]


def _unquoted(word: str) -> str:
    if len(word) >= 2 and word[0] == word[-1] == '"':
        return word[1:-1].replace('""', '"')
    return word


def _query_error(exc: duckdb.Error, query: str) -> QueryError:
    message = str(exc)
    first = message.splitlines()[0]
    if isinstance(exc, duckdb.PermissionException):
        first = f"refused: {first} (store.sql reads only the store's segment files)"
    return QueryError(first, query=query, position=_caret_position(message))


# --------------------------------------------------------------------------- odd keys

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
class _Names:
    """What the view renames at one object level (``renamed``) and below (``below``)."""

    renamed: Mapping[str, str] = field(default_factory=dict)
    below: Mapping[str, _Names] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.renamed or self.below)

    def shown(self, key: str) -> str:
        return self.renamed.get(key, key)


_AS_WRITTEN = _Names()


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _struct_within(t: pa.DataType) -> list[pa.Field] | None:
    """The fields of ``t``, or of the struct its lists hold; None for other types."""
    while _is_list(t):
        t = t.value_type
    return [t.field(i) for i in range(t.num_fields)] if pa.types.is_struct(t) else None


def _names_of(fields: list[pa.Field]) -> _Names:
    """The renames for an object level of the unified schema, and for those below it."""
    renamed = renamed_keys(f.name for f in fields)
    below = {}
    for f in fields:
        inner = _struct_within(f.type)
        if inner is not None and (level := _names_of(inner)):
            below[f.name] = level
    return _Names(renamed, below) if renamed or below else _AS_WRITTEN


def _touched(fields: Iterable[pa.Field], names: _Names) -> bool:
    """Whether a source with these fields has a key the view renames."""
    if not names:
        return False
    for f in fields:
        if f.name in names.renamed:
            return True
        level = names.below.get(f.name)
        inner = _struct_within(f.type) if level else None
        if level and inner is not None and _touched(inner, level):
            return True
    return False


def _misread_by_duckdb(schema: pa.Schema) -> bool:
    """Whether DuckDB 2.0 cannot read this Parquet file's columns whole.

    It fails ("Can't remap type TUPLE(...)") on a struct column holding, below
    its top, a struct whose keys are all empty, like ``{"a": {"": 1}}``. Such a
    file is read by pyarrow and handed to DuckDB as an Arrow table instead.
    """
    return any(_holds_keyless_struct(f.type, inside=False) for f in schema)


def _holds_keyless_struct(t: pa.DataType, *, inside: bool) -> bool:
    while _is_list(t):
        t = t.value_type
    if not pa.types.is_struct(t):
        return False
    fields = [t.field(i) for i in range(t.num_fields)]
    if inside and fields and all(f.name == "" for f in fields):
        return True
    return any(_holds_keyless_struct(f.type, inside=True) for f in fields)


def _renamed_field(f: pa.Field, names: _Names) -> pa.Field:
    level = names.below.get(f.name)
    return pa.field(names.shown(f.name), _renamed_type(f.type, level) if level else f.type,
                    f.nullable, f.metadata)


def _renamed_type(t: pa.DataType, names: _Names) -> pa.DataType:
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


def _renamed_table(table: pa.Table, names: _Names) -> pa.Table:
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


def _projected(path: str, schema: pa.Schema, as_json: set[str], names: _Names) -> str:
    """SQL reading one Parquet file with the view's names, by position, not by name.

    DuckDB mangles odd names as it reads them (``""`` becomes ``C3``, ``a`` beside
    ``A`` becomes ``a_1``), so columns are renamed by position and structs are
    rebuilt with ``struct_extract_at``.
    """
    aliases = [f"_c{i}" for i in range(len(schema))]
    items = []
    for alias, f in zip(aliases, schema, strict=True):
        level = names.below.get(f.name)
        if f.name in as_json and pa.types.is_nested(f.type):
            expr = _json_text(alias, f.type)
        elif level:
            expr = _rebuilt(alias, f.type, level, 0)
        else:
            expr = alias
        items.append(f"{expr} AS {_ident(names.shown(f.name))}")
    return (f"SELECT {', '.join(items)} FROM read_parquet([{_listed([path])}]) "
            f"AS _t({', '.join(aliases)})")


def _rebuilt(expr: str, t: pa.DataType, names: _Names, depth: int) -> str:
    """SQL for the value ``expr`` of Arrow type ``t`` with struct fields renamed."""
    if pa.types.is_struct(t):
        parts = []
        for i in range(t.num_fields):
            f = t.field(i)
            value = f"struct_extract_at({expr}, {i + 1})"
            level = names.below.get(f.name)
            if level:
                value = _rebuilt(value, f.type, level, depth)
            parts.append(f"{_ident(names.shown(f.name))} := {value}")
        return f"CASE WHEN {expr} IS NULL THEN NULL ELSE struct_pack({', '.join(parts)}) END"
    if _is_list(t):
        item = f"_x{depth}"
        inner = _rebuilt(item, t.value_type, names, depth + 1)
        return f"list_transform({expr}, lambda {item}: {inner})"
    return expr


def _json_text(expr: str, t: pa.DataType) -> str:
    """SQL turning the nested value ``expr`` into JSON text with its keys as stored.

    ``to_json`` would do, but for the keys DuckDB mangles on reading Parquet.
    """
    if not _needs_exact_json(t):
        return f"to_json({expr})::VARCHAR"
    return f"({_json_value(expr, t, 0)})::VARCHAR"


def _needs_exact_json(t: pa.DataType) -> bool:
    inner = _struct_within(t)
    if inner is None:
        return False
    return bool(renamed_keys(f.name for f in inner)) or any(_needs_exact_json(f.type)
                                                             for f in inner)


def _json_value(expr: str, t: pa.DataType, depth: int) -> str:
    if pa.types.is_struct(t):
        parts = []
        for i in range(t.num_fields):
            f = t.field(i)
            parts += [_text(f.name), _json_value(f"struct_extract_at({expr}, {i + 1})", f.type,
                                                 depth)]
        return f"CASE WHEN {expr} IS NULL THEN NULL ELSE json_object({', '.join(parts)}) END"
    if _struct_within(t) is not None:  # a list holding structs
        item = f"_x{depth}"
        return f"to_json(list_transform({expr}, lambda {item}: " \
               f"{_json_value(item, t.value_type, depth + 1)}))"
    return expr


# --------------------------------------------------------------------------- view helpers


def _empty_view(ts_field: str, entity_field: str) -> str:
    columns = ["NULL::BIGINT AS _seq"]
    if "." not in ts_field:
        columns.append(f"NULL::TIMESTAMPTZ AS {_ident(ts_field)}")
    if "." not in entity_field and entity_field != ts_field:
        columns.append(f"NULL::VARCHAR AS {_ident(entity_field)}")
    return f"SELECT {', '.join(columns)} WHERE false"


def _json_columns(unified: pa.Schema, schemas: list[pa.Schema]) -> set[str]:
    """Top-level columns that are objects/lists in some source but text in the union."""
    out = set()
    for f in unified:
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            for schema in schemas:
                index = schema.get_field_index(f.name)
                if index >= 0 and pa.types.is_nested(schema.field(index).type):
                    out.add(f.name)
    return out


def _nested_among(schema: pa.Schema, names: set[str]) -> list[str]:
    return [n for n in schema.names if n in names and pa.types.is_nested(schema.field(n).type)]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _text(value: str) -> str:
    """``value`` as a SQL string expression (control characters through ``chr``)."""
    parts = re.split("([\x00-\x1f\x7f])", value)
    pieces = [f"chr({ord(p)})" if i % 2 else "'" + p.replace("'", "''") + "'"
              for i, p in enumerate(parts) if p or i == 0]
    return pieces[0] if len(pieces) == 1 else "(" + " || ".join(pieces) + ")"


def _listed(paths: list[str]) -> str:
    return ", ".join("'" + p.replace("'", "''") + "'" for p in paths)


def _unsliced_nested(table: pa.Table) -> pa.Table:
    """Copy nested chunks that are slices: DuckDB refuses structs below an offset."""
    for i, column in enumerate(table.columns):
        if pa.types.is_nested(column.type) and any(c.offset for c in column.chunks):
            chunks = [pa.concat_arrays([c]) if c.offset else c for c in column.chunks]
            table = table.set_column(i, table.field(i), pa.chunked_array(chunks, column.type))
    return table


def _caret_position(message: str) -> int | None:
    """0-based position DuckDB marks with ``^`` under ``LINE n: ...``, if any."""
    lines = message.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("LINE ") and ":" in line and "^" in lines[i + 1]:
            prefix = line.index(":") + 2
            return max(0, lines[i + 1].index("^") - prefix)
    return None
