"""SQL through DuckDB over a view named ``events``: segments plus the memtable."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from tidal.errors import QueryError
from tidal.model.schema import concat_tables
from tidal.store.engine import Snapshot

VIEW = "events"
_EMPTY = "SELECT NULL::BIGINT AS _seq WHERE false"


class SqlEngine:
    """One DuckDB database per store; each query runs on its own cursor."""

    def __init__(self) -> None:
        self._db = duckdb.connect(":memory:")
        self._db.execute("SET TimeZone = 'UTC'")
        self._lock = threading.Lock()

    def query(self, snapshot: Snapshot, query: str,
              params: Sequence[Any] | Mapping[str, Any] | None = None) -> pa.Table:
        """Run ``query`` against ``snapshot``; DuckDB errors become :class:`QueryError`."""
        with self._lock:
            cursor = self._db.cursor()
        try:
            cursor.execute("SET TimeZone = 'UTC'")
            sources = []
            paths = snapshot.segment_paths()
            in_memory: list[pa.Table] = []
            if paths is None:
                in_memory = [snapshot.segment_table(m) for m in snapshot.segments]
            elif paths:
                listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
                sources.append(f"SELECT * FROM read_parquet([{listed}], union_by_name = true)")
            in_memory.extend(snapshot.memtable_parts)
            if in_memory:
                cursor.register("_tidal_memory", _unsliced_nested(concat_tables(in_memory)))
                sources.append("SELECT * FROM _tidal_memory")
            body = " UNION ALL BY NAME ".join(sources) if sources else _EMPTY
            cursor.execute(f"CREATE OR REPLACE TEMP VIEW {VIEW} AS {body}")
            relation = cursor.sql(query, params=params)
            return relation.to_arrow_table() if relation is not None else pa.table({})
        except duckdb.Error as exc:
            message = str(exc)
            raise QueryError(message.splitlines()[0], query=query,
                             position=_caret_position(message)) from exc
        finally:
            cursor.close()

    def close(self) -> None:
        """Release the DuckDB database."""
        self._db.close()


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
