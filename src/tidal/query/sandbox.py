"""The read-only sandbox ``Store.sql`` runs in: statement checks and a locked database.

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

DuckDB fixes ``allowed_directories`` when the configuration is locked, so a
locked database can read one directory for good: :func:`segment_directory`
names it, :func:`locked_database` makes the database, :func:`check_read_only`
vets each query, and :func:`query_error` turns DuckDB's errors (its refusals
included) into :class:`~tidal.errors.QueryError`.
"""

from __future__ import annotations

import os
import secrets
import tempfile

import duckdb

from tidal.errors import QueryError

__all__ = ["check_read_only", "locked_database", "query_error", "segment_directory"]

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


def locked_database(directory: str | None) -> duckdb.DuckDBPyConnection:
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


def segment_directory(paths: list[str] | None, query: str) -> str | None:
    """The one directory holding the segment files (None if there are none).

    >>> segment_directory(["/s/segments/1.parquet", "/s/segments/2.parquet"], "SELECT 1")
    '/s/segments'
    """
    directories = {os.path.dirname(p) for p in paths or ()}
    if len(directories) > 1:
        raise QueryError(f"segments in several directories: {sorted(directories)}", query=query)
    return directories.pop() if directories else None


def check_read_only(cursor: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse anything but one read-only statement that calls no refused function.

    Raises:
        QueryError: ``query`` is empty, holds several statements, is not a
            read, or calls a refused function.
    """
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
    tokens = _tokens(query)
    for (_, word, kind), (_, following, _) in zip(tokens, tokens[1:], strict=False):
        name = _unquoted(word).lower()
        if following.startswith("(") and kind != duckdb.token_type.string_const \
                and name in _REFUSED_FUNCTIONS:
            raise QueryError(f"refused: function {name}() is not allowed in store.sql "
                             f"({_REFUSED_FUNCTIONS[name]})", query=query)


def _label(statement: duckdb.Statement) -> str:
    """``COPY``, or ``INSTALL (a LOAD statement)`` where the first word differs."""
    kind = statement.type.name
    tokens = _tokens(statement.query)
    first = tokens[0][1].upper() if tokens else kind
    return kind if first == kind else f"{first} (a {kind} statement)"


def _explained(cursor: duckdb.DuckDBPyConnection, text: str) -> duckdb.Statement | None:
    """The statement an ``EXPLAIN [ANALYZE] [(options)]`` statement explains, if clear."""
    tokens = _tokens(text)
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


def _tokens(text: str) -> list[tuple[int, str, duckdb.token_type]]:
    """The tokens of ``text`` as (start, text, kind), comments left out."""
    tokens = duckdb.tokenize(text)
    ends = [start for start, _ in tokens[1:]] + [len(text)]
    return [(start, text[start:end].strip(), kind)
            for (start, kind), end in zip(tokens, ends, strict=True)
            if kind != duckdb.token_type.comment]


def _unquoted(word: str) -> str:
    if len(word) >= 2 and word[0] == word[-1] == '"':
        return word[1:-1].replace('""', '"')
    return word


def query_error(exc: duckdb.Error, query: str) -> QueryError:
    """``exc`` as a :class:`QueryError`: its first line, and where DuckDB marked it."""
    message = str(exc)
    first = message.splitlines()[0]
    if isinstance(exc, duckdb.PermissionException):
        first = f"refused: {first} (store.sql reads only the store's segment files)"
    return QueryError(first, query=query, position=_caret_position(message))


def _caret_position(message: str) -> int | None:
    """0-based position DuckDB marks with ``^`` under ``LINE n: ...``, if any."""
    lines = message.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("LINE ") and ":" in line and "^" in lines[i + 1]:
            prefix = line.index(":") + 2
            return max(0, lines[i + 1].index("^") - prefix)
    return None
