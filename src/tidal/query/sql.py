"""SQL through DuckDB over a view named ``events``: segments plus the memtable."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from tidal.errors import QueryError
from tidal.model.schema import concat_tables, conform, unify
from tidal.store.engine import Snapshot

VIEW = "events"


class SqlEngine:
    """One DuckDB database per store; each query runs on its own cursor.

    The view ``events`` is rebuilt for each query's snapshot: the segment files
    (read by DuckDB straight from Parquet) and the memtable (an Arrow table),
    united by column name. Columns whose type differs between sources widen
    as everywhere in Tidal; an object in one source and a scalar in another
    becomes JSON text.
    """

    def __init__(self, ts_field: str, entity_field: str) -> None:
        self._db = duckdb.connect(":memory:")
        self._lock = threading.Lock()
        self._schemas: dict[str, pa.Schema] = {}
        self._empty = _empty_view(ts_field, entity_field)

    def query(self, snapshot: Snapshot, query: str,
              params: Sequence[Any] | Mapping[str, Any] | None = None) -> pa.Table:
        """Run ``query`` against ``snapshot``; DuckDB errors become :class:`QueryError`."""
        with self._lock:
            cursor = self._db.cursor()
        try:
            cursor.execute("SET TimeZone = 'UTC'")
            body = self._view(cursor, snapshot)
            cursor.execute(f"CREATE OR REPLACE TEMP VIEW {VIEW} AS {body}")
            relation = cursor.sql(query, params=params)
            return relation.to_arrow_table() if relation is not None else pa.table({})
        except duckdb.Error as exc:
            message = str(exc)
            raise QueryError(message.splitlines()[0], query=query,
                             position=_caret_position(message)) from exc
        finally:
            cursor.close()

    def _view(self, cursor: duckdb.DuckDBPyConnection, snapshot: Snapshot) -> str:
        paths = snapshot.segment_paths()
        in_memory: list[pa.Table] = []
        if paths is None:
            in_memory = [snapshot.segment_table(m) for m in snapshot.segments]
            paths = []
        in_memory.extend(snapshot.memtable_parts)
        memory = concat_tables(in_memory) if in_memory else None
        schemas = [self._schema(p) for p in paths]
        if len(self._schemas) > 2 * len(paths) + 16:  # forget compacted-away segments
            self._schemas = dict(zip(paths, schemas, strict=True))
        unified = unify(schemas + ([memory.schema] if memory is not None else []))
        as_json = _json_columns(unified, schemas + ([memory.schema] if memory else []))
        sources = []
        plain = [p for p, sch in zip(paths, schemas, strict=True)
                 if not _nested_among(sch, as_json)]
        if plain:
            sources.append(f"SELECT * FROM read_parquet([{_listed(plain)}], union_by_name = true)")
        for path, schema in zip(paths, schemas, strict=True):
            nested = _nested_among(schema, as_json)
            if nested:
                replaced = ", ".join(f'to_json("{c}")::VARCHAR AS "{c}"' for c in nested)
                source = f"read_parquet([{_listed([path])}])"
                sources.append(f"SELECT * REPLACE ({replaced}) FROM {source}")
        if memory is not None:
            if as_json:
                target = pa.schema([pa.field(f.name, pa.string()) if f.name in as_json else f
                                    for f in memory.schema])
                memory = conform(memory, target)
            cursor.register("_tidal_memory", _unsliced_nested(memory))
            sources.append("SELECT * FROM _tidal_memory")
        return " UNION ALL BY NAME ".join(sources) if sources else self._empty

    def _schema(self, path: str) -> pa.Schema:
        schema = self._schemas.get(path)
        if schema is None:
            schema = self._schemas[path] = pq.read_schema(path)
        return schema

    def close(self) -> None:
        """Release the DuckDB database."""
        self._db.close()


def _empty_view(ts_field: str, entity_field: str) -> str:
    columns = ["NULL::BIGINT AS _seq"]
    if "." not in ts_field:
        columns.append(f'NULL::TIMESTAMPTZ AS "{ts_field}"')
    if "." not in entity_field and entity_field != ts_field:
        columns.append(f'NULL::VARCHAR AS "{entity_field}"')
    return f"SELECT {', '.join(columns)} WHERE false"


def _json_columns(unified: pa.Schema, schemas: list[pa.Schema]) -> set[str]:
    """Top-level columns that are objects/lists in some source but text in the union."""
    out = set()
    for field in unified:
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            for schema in schemas:
                index = schema.get_field_index(field.name)
                if index >= 0 and pa.types.is_nested(schema.field(index).type):
                    out.add(field.name)
    return out


def _nested_among(schema: pa.Schema, names: set[str]) -> list[str]:
    return [n for n in schema.names if n in names and pa.types.is_nested(schema.field(n).type)]


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
