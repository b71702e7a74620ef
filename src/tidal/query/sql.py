"""SQL through DuckDB over a view named ``events``: segments plus the memtable.

Each query runs on its own cursor of one DuckDB database per store, over a
temporary view ``events`` built for the query's snapshot: the segment files
(read by DuckDB straight from Parquet; an in-memory store hands over Arrow
tables) and the memtable (an Arrow table), united by column name. Columns
whose type differs between sources widen as everywhere in Tidal; an object in
one source and a scalar in another becomes JSON text.

The database is locked down before any query, and each query is checked
before it runs (see :mod:`tidal.query.sandbox`). Keys SQL cannot show as
written are renamed the same way in every source (see
:mod:`tidal.query.names`).

One locked database serves every query of a store (a cursor costs ~0.4 ms, a
new database ~11 ms). DuckDB fixes ``allowed_directories`` when the
configuration is locked, so the database is made on first use and made once
more when the first segment file appears (an in-memory store never reads files).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from tidal.errors import ClosedError, QueryError
from tidal.model.schema import concat_tables, conform, unify
from tidal.model.storable import storable
from tidal.query.names import (
    Names,
    ident,
    json_text,
    names_of,
    projected,
    renamed_table,
    struct_within,
    touched,
)
from tidal.query.sandbox import check_read_only, locked_database, query_error, segment_directory
from tidal.store.engine import Snapshot

__all__ = ["VIEW", "SqlEngine"]

VIEW = "events"
_MEMORY = "_tidal_memory"


class SqlEngine:
    """One locked-down DuckDB database per store; each query runs on its own cursor.

    See :mod:`tidal.query.sandbox` for the sandbox and :mod:`tidal.query.names`
    for how odd keys are named.
    """

    def __init__(self, ts_field: str, entity_field: str) -> None:
        self._lock = threading.Lock()
        self._db: duckdb.DuckDBPyConnection | None = None
        self._db_dir: str | None = None  # the directory self._db may read
        self._old: list[duckdb.DuckDBPyConnection] = []  # replaced, closed with the engine
        self._closed = False
        self._files: dict[str, _File] = {}
        self._last_names: tuple[pa.Schema, Names] | None = None
        self._empty = _empty_view(ts_field, entity_field)

    def query(self, snapshot: Snapshot, query: str,
              params: Sequence[Any] | Mapping[str, Any] | None = None, *,
              views: Mapping[str, pa.Table] | None = None) -> pa.Table:
        """Run one read-only statement against ``snapshot``.

        A string holding several statements is refused whole, reads included:
        checking each statement would make the answer depend on how DuckDB
        splits the text, and a caller gets one table back anyway. Refused
        statements and DuckDB errors raise :class:`QueryError`. ``views``: more
        tables the query may read, by name (the rules' ``correlations``).
        """
        paths = snapshot.segment_paths()
        if paths is not None:
            paths = [os.path.abspath(p) for p in paths]
        cursor = self._cursor(segment_directory(paths, query))
        try:
            check_read_only(cursor, query)
            body = self._view(cursor, snapshot, paths)
            cursor.execute(f"CREATE OR REPLACE TEMP VIEW {VIEW} AS {body}")
            for name, table in (views or {}).items():
                cursor.register(name, table)
            relation = cursor.sql(query, params=params)
            return relation.to_arrow_table() if relation is not None else pa.table({})
        except duckdb.Error as exc:
            raise query_error(exc, query) from exc
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
                self._db = locked_database(directory)
                self._db_dir = directory
            return self._db.cursor()

    def _view(self, cursor: duckdb.DuckDBPyConnection, snapshot: Snapshot,
              paths: list[str] | None) -> str:
        import pyarrow.parquet as pq  # (loads on first use)
        in_memory: list[pa.Table] = []
        if paths is None:
            in_memory = [snapshot.segment_table(m) for m in snapshot.segments]
            paths = []
        in_memory.extend(snapshot.memtable_parts)
        # the memory (typed as segments store it), then misread files
        tables = [storable(concat_tables(in_memory))] if in_memory else []
        files = [self._file(p) for p in paths]
        if len(self._files) > 2 * len(paths) + 16:  # forget compacted-away segments
            self._files = dict(zip(paths, files, strict=True))
        every = [f.schema for f in files] + [t.schema for t in tables]
        unified = unify(every)
        as_json = _json_columns(unified, every)
        names = self._names(unified)
        plain: list[str] = []
        sources: list[str] = []
        for path, file in zip(paths, files, strict=True):
            if file.misread:
                tables.append(pq.read_table(path))
            elif touched(file.schema, names):
                sources.append(projected(_read_parquet([path]), file.schema, as_json, names))
            elif nested := _nested_among(file.schema, as_json):
                replaced = ", ".join(f"{json_text(ident(c), file.schema.field(c).type)} AS "
                                     f"{ident(c)}" for c in nested)
                sources.append(f"SELECT * REPLACE ({replaced}) FROM {_read_parquet([path])}")
            else:
                plain.append(path)
        if plain:
            sources.insert(0, f"SELECT * FROM {_read_parquet(plain, by_name=True)}")
        for i, table in enumerate(tables):
            if as_json:
                target = pa.schema([pa.field(f.name, pa.string()) if f.name in as_json else f
                                    for f in table.schema])
                table = conform(table, target)
            name = f"{_MEMORY}{i or ''}"
            cursor.register(name, _unsliced_nested(renamed_table(table, names)))
            sources.append(f"SELECT * FROM {name}")
        return " UNION ALL BY NAME ".join(sources) if sources else self._empty

    def _names(self, unified: pa.Schema) -> Names:
        """The renames for ``unified``; the last answer is kept, as schemas rarely change."""
        last = self._last_names
        if last is not None and last[0].equals(unified):
            return last[1]
        names = names_of(list(unified))
        self._last_names = (unified, names)
        return names

    def _file(self, path: str) -> _File:
        import pyarrow.parquet as pq  # (loads on first use)
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


def _misread_by_duckdb(schema: pa.Schema) -> bool:
    """Whether DuckDB 2.0 cannot read this Parquet file's columns whole.

    It fails ("Can't remap type TUPLE(...)") on a struct column holding, below
    its top, a struct whose keys are all empty, like ``{"a": {"": 1}}``. Such a
    file is read by pyarrow and handed to DuckDB as an Arrow table instead.
    """
    return any(_holds_keyless_struct(f.type, inside=False) for f in schema)


def _holds_keyless_struct(t: pa.DataType, *, inside: bool) -> bool:
    fields = struct_within(t)
    if fields is None:
        return False
    if inside and fields and all(f.name == "" for f in fields):
        return True
    return any(_holds_keyless_struct(f.type, inside=True) for f in fields)


def _empty_view(ts_field: str, entity_field: str) -> str:
    columns = ["NULL::BIGINT AS _seq"]
    if "." not in ts_field:
        columns.append(f"NULL::TIMESTAMPTZ AS {ident(ts_field)}")
    if "." not in entity_field and entity_field != ts_field:
        columns.append(f"NULL::VARCHAR AS {ident(entity_field)}")
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


def _read_parquet(paths: list[str], *, by_name: bool = False) -> str:
    """SQL reading Parquet files; ``by_name`` unites their columns by name."""
    listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
    return f"read_parquet([{listed}]{', union_by_name = true' if by_name else ''})"


def _unsliced_nested(table: pa.Table) -> pa.Table:
    """Copy nested chunks that are slices: DuckDB refuses structs below an offset."""
    for i, column in enumerate(table.columns):
        if pa.types.is_nested(column.type) and any(c.offset for c in column.chunks):
            chunks = [pa.concat_arrays([c]) if c.offset else c for c in column.chunks]
            table = table.set_column(i, table.field(i), pa.chunked_array(chunks, column.type))
    return table
