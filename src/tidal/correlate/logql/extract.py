"""LogQL's parsers: a column of lines → label columns.

Both run as one DuckDB query over the whole column (no per-line Python): the
query yields a long table of ``(row, key, value)`` and :func:`_pivot` turns it
into one string column per key, null where a line lacks the key.

* ``json``: every scalar under the line's top-level object, nested keys joined
  with ``_`` (``{"a":{"b":1}}`` → ``a_b="1"``); arrays and nulls are skipped.
  Values are text: strings unquoted, numbers as DuckDB prints them (``1.50``
  reads ``1.5``), booleans ``true``/``false``. A line that is not a JSON object
  gets no labels and is marked as an error.
* ``logfmt``: ``key=value`` and ``key="quoted value"`` pairs (a backslash
  escapes the next character in quotes); a bare ``key`` has no value. A line
  with text that is not a pair (a stray ``"``) is marked as an error, keeping
  the pairs found.

Key names are sanitised as Loki does: every character outside ``[A-Za-z0-9_]``
becomes ``_``. Empty values are absent (null), as for every label.

* ``json`` with parameters (``| json code="response.status"``): each
  expression's value (an object or array as its JSON text); a line that is not
  JSON is an error.
* ``pattern`` and ``regexp``: the named captures of one RE2 match per line
  (pyarrow's ``extract_regex``); a line that does not match gets no labels
  (not an error, as in Loki).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["parse_json", "parse_json_paths", "parse_logfmt", "parse_regex"]

_JSON_SQL = """
WITH v AS (SELECT i, CASE WHEN json_valid(line) THEN line END AS j FROM lines),
     o AS (SELECT i, CASE WHEN json_type(j) = 'OBJECT' THEN j END AS j FROM v)
SELECT o.i AS i,
       regexp_replace(replace(substr(t.fullkey, 3), '"', ''), '[^A-Za-z0-9_]', '_', 'g') AS k,
       json_extract_string(t.value, '$') AS v
FROM o, json_tree(o.j) AS t
WHERE o.j IS NOT NULL AND t.type NOT IN ('OBJECT', 'ARRAY', 'NULL')
  AND NOT regexp_matches(t.fullkey, '\\[[0-9]+\\]')
ORDER BY i, t.id
"""
_JSON_ERRORS_SQL = """
SELECT i FROM lines
WHERE NOT coalesce(json_valid(line), false)
   OR json_type(CASE WHEN json_valid(line) THEN line END) <> 'OBJECT'
"""
_NOT_JSON_SQL = "SELECT i FROM lines WHERE NOT coalesce(json_valid(line), false)"
_PAIR = r'([^\s="]+)(?:=("(?:[^"\\]|\\.)*"|[^\s"]*))?'
_LOGFMT_SQL = """
SELECT i, regexp_replace(unnest(regexp_extract_all(line, $1, 1)), '[^A-Za-z0-9_]', '_', 'g') AS k,
       unnest(regexp_extract_all(line, $1, 2)) AS v
FROM lines ORDER BY i
"""
_LOGFMT_ERRORS_SQL = "SELECT i FROM lines WHERE trim(regexp_replace(line, $1, '', 'g')) <> ''"


def parse_json(lines: pa.Array) -> tuple[dict[str, pa.Array], np.ndarray]:
    """The labels of ``lines`` read as JSON objects, and a bool per line: not one.

    >>> labels, bad = parse_json(pa.array(['{"a":{"b":1},"c":"x"}', "oops"]))
    >>> {k: v.to_pylist() for k, v in sorted(labels.items())}, bad.tolist()
    ({'a_b': ['1', None], 'c': ['x', None]}, [False, True])
    """
    with _connect(lines) as con:
        long = con.sql(_JSON_SQL).to_arrow_table()
        errors = con.sql(_JSON_ERRORS_SQL).to_arrow_table()
    return _pivot(len(lines), long), _flags(len(lines), errors)


def parse_logfmt(lines: pa.Array) -> tuple[dict[str, pa.Array], np.ndarray]:
    """The labels of ``lines`` read as logfmt, and a bool per line: not logfmt.

    >>> labels, bad = parse_logfmt(pa.array(['level=info msg="a b"', 'x=1 "y']))
    >>> {k: v.to_pylist() for k, v in sorted(labels.items())}, bad.tolist()
    ({'level': ['info', None], 'msg': ['a b', None], 'x': [None, '1']}, [False, True])
    """
    with _connect(lines) as con:
        long = con.sql(_LOGFMT_SQL, params=[_PAIR]).to_arrow_table()
        errors = con.sql(_LOGFMT_ERRORS_SQL, params=[_PAIR]).to_arrow_table()
    values = long.column("v")
    quoted = pc.fill_null(pc.starts_with(values, '"'), False)
    inner = pc.utf8_slice_codeunits(values, 1, -1)
    unescaped = pc.replace_substring_regex(inner, r"\\(.)", r"\1")
    long = long.set_column(2, "v", pc.if_else(quoted, unescaped, values))
    return _pivot(len(lines), long), _flags(len(lines), errors)


def parse_json_paths(lines: pa.Array, paths: dict[str, str]
                     ) -> tuple[dict[str, pa.Array], np.ndarray]:
    """The value at each DuckDB JSON path of ``paths`` (by label), and a bool per
    line: not JSON.

    >>> labels, bad = parse_json_paths(pa.array(['{"a":{"b":[7]}}', "x"]), {"n": '$."a"."b"[0]'})
    >>> labels["n"].to_pylist(), bad.tolist()
    (['7', None], [False, True])
    """
    names = list(paths)
    columns = ", ".join(f"json_extract_string(j, ${i + 1}) AS c{i}" for i in range(len(names)))
    sql = (f"SELECT {columns} FROM (SELECT i, CASE WHEN json_valid(line) THEN line END AS j "
           "FROM lines) ORDER BY i")
    with _connect(lines) as con:
        table = con.sql(sql, params=[paths[name] for name in names]).to_arrow_table()
        errors = con.sql(_NOT_JSON_SQL).to_arrow_table()
    out = {}
    for i, name in enumerate(names):
        values = table.column(i).combine_chunks().cast(pa.string())
        values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
        if values.null_count < len(lines):
            out[name] = values
    return out, _flags(len(lines), errors)


def parse_regex(lines: pa.Array, regex: str) -> dict[str, pa.Array]:
    """The named groups of ``regex``'s first match in each line (null: no match or empty).

    >>> out = parse_regex(pa.array(["GET /a", "?"]), r"(?P<method>[A-Z]+) (?P<path>\\S+)")
    >>> {k: v.to_pylist() for k, v in out.items()}
    {'method': ['GET', None], 'path': ['/a', None]}
    """
    found = pc.extract_regex(lines, regex)
    out = {}
    for i in range(found.type.num_fields):
        name = found.type.field(i).name
        values = pc.struct_field(found, [i])
        values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
        if values.null_count < len(lines):
            out[name] = values
    return out


def _connect(lines: pa.Array) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register("lines", pa.table({"i": pa.array(np.arange(len(lines), dtype=np.int64)),
                                    "line": lines}))
    return con


def _flags(n: int, rows: pa.Table) -> np.ndarray:
    out = np.zeros(n, dtype=np.bool_)
    out[np.asarray(rows.column("i").to_numpy(), dtype=np.int64)] = True
    return out


def _pivot(n: int, long: pa.Table) -> dict[str, pa.Array]:
    """``(i, k, v)`` rows → one string column of length ``n`` per key (the last
    value wins where a line repeats a key; empty values are null, and a key
    with no value anywhere has no column)."""
    if long.num_rows == 0:
        return {}
    rows = np.asarray(long.column("i").to_numpy(), dtype=np.int64)
    encoded = pc.dictionary_encode(long.column("k").combine_chunks())
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    values = long.column("v").combine_chunks().cast(pa.string())
    values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(encoded.dictionary) + 1))
    out: dict[str, pa.Array] = {}
    for code, name in enumerate(encoded.dictionary.to_pylist()):
        picked = order[bounds[code]:bounds[code + 1]]
        index = np.full(n, -1, dtype=np.int64)
        index[rows[picked]] = picked
        column = values.take(pa.array(index, mask=index < 0))
        if column.null_count < n:
            out[name] = column
    return out
