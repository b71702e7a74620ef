"""Store.sql is read-only and reads nothing but the store, in memory and on disk."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tidal

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns

EVENTS = [
    {"timestamp": T0 + i, "entity": f"e{i % 2}", "service": "api" if i % 3 else "db",
     "latency_ms": float(i), "msg": f"GET /items/{i} done", "payload": f'{{"user": {{"id": {i}}}}}',
     "kubernetes": {"pod": {"name": f"pod-{i % 2}"}}}
    for i in range(6)
]


@pytest.fixture(params=["memtable", "flushed"])
def store(request: pytest.FixtureRequest, open_store) -> tidal.Store:
    """A store holding EVENTS, in its memtable or flushed to segments."""
    opened = open_store()
    opened.append(EVENTS)
    if request.param == "flushed":
        opened.flush()
    return opened


@pytest.fixture
def mixed(open_store) -> tidal.Store:
    """A store holding EVENTS, half in a segment and half in its memtable."""
    opened = open_store()
    opened.append(EVENTS[:3])
    opened.flush()
    opened.append(EVENTS[3:])
    return opened


def outside_parquet(tmp_path: Path) -> Path:
    """A Parquet file (and a CSV file beside it) outside the store."""
    path = tmp_path / "outside" / "secret.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"secret": ["s3cr3t"]}), path)
    path.with_suffix(".csv").write_text("secret\ns3cr3t\n")
    return path


@pytest.mark.parametrize("query", [
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_parquet('{outside}')",
    "SELECT * FROM '{outside}'",
    "SELECT * FROM '{csv}'",
    "SELECT * FROM read_csv(['{csv}'])",
    "SELECT * FROM parquet_metadata('{outside}')",
])
def test_files_outside_the_store_are_unreadable(store, tmp_path, query):
    outside = outside_parquet(tmp_path)
    with pytest.raises(tidal.QueryError):
        store.sql(query.format(outside=outside, csv=outside.with_suffix(".csv")))


def test_store_files_beside_the_segments_are_unreadable(tmp_path):
    with tidal.open(tmp_path / "s") as store:
        store.append(EVENTS)
        store.flush()
        for name in ["MANIFEST.json", "segments/../MANIFEST.json"]:
            with pytest.raises(tidal.QueryError, match="Permission"):
                store.sql(f"SELECT * FROM read_text('{tmp_path / 's' / name}')")


def test_outside_files_stay_unreadable_once_segments_appear(tmp_path):
    outside = outside_parquet(tmp_path)
    with tidal.open(tmp_path / "s") as store:
        assert store.sql("SELECT count(*) AS c FROM events").to_pylist() == [{"c": 0}]
        store.append(EVENTS)
        store.flush()
        assert store.sql("SELECT count(*) AS c FROM events").to_pylist() == [{"c": 6}]
        with pytest.raises(tidal.QueryError):
            store.sql(f"SELECT * FROM read_parquet('{outside}')")


@pytest.mark.parametrize("target", ["outside", "segments"])
@pytest.mark.parametrize("query", [
    "COPY (SELECT 1 AS x) TO '{path}'",
    "COPY (SELECT * FROM events) TO '{path}' (FORMAT parquet)",
    "EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{path}'",
    "EXPLAIN (ANALYZE) COPY (SELECT 1 AS x) TO '{path}'",
])
def test_copy_to_is_refused(tmp_path, query, target):
    with tidal.open(tmp_path / "s") as store:
        store.append(EVENTS)
        store.flush()
        folder = tmp_path if target == "outside" else tmp_path / "s" / "segments"
        path = folder / "x.csv"
        with pytest.raises(tidal.QueryError, match="refused: .*COPY"):
            store.sql(query.format(path=path))
        assert not path.exists()


@pytest.mark.parametrize(("query", "named"), [
    ("ATTACH '{tmp}/x.db' AS x", "ATTACH"),
    ("INSTALL httpfs", "INSTALL"),
    ("LOAD json", "LOAD"),
    ("SET threads = 1", "SET"),
    ("SET TimeZone = 'America/New_York'", "SET"),
    ("RESET enable_external_access", "RESET"),
    ("PRAGMA threads = 1", "PRAGMA"),
    ("PRAGMA version", "PRAGMA"),
    ("CALL pragma_version()", "CALL"),
    ("CREATE TABLE t AS SELECT 1 AS x", "CREATE"),
    ("CREATE TEMP TABLE t AS SELECT 1 AS x", "CREATE"),
    ("CREATE MACRO f(x) AS x + 1", "CREATE"),
    ("CREATE OR REPLACE TEMP VIEW events AS SELECT 1 AS x", "CREATE"),
    ("DROP VIEW events", "DROP"),
    ("INSERT INTO events VALUES (1)", "INSERT"),
    ("WITH x AS (SELECT 1) DELETE FROM events", "DELETE"),
    ("EXPORT DATABASE '{tmp}/export'", "EXPORT"),
    ("DETACH memory", "DETACH"),
    ("USE memory", "USE"),
    ("BEGIN TRANSACTION", "BEGIN"),
    ("CHECKPOINT", "CHECKPOINT"),
    ("PIVOT events ON service USING count(*)", "PIVOT"),
])
def test_statements_other_than_reads_are_refused(mixed, tmp_path, query, named):
    with pytest.raises(tidal.QueryError, match=f"refused: ({named}|.*a {named} statement)") as info:
        mixed.sql(query.format(tmp=tmp_path))
    assert info.value.query == query.format(tmp=tmp_path)
    assert not (tmp_path / "x.db").exists()
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize("query", [
    "SELECT * FROM query('SELECT 42')",
    "SELECT * FROM \"QUERY\" ('SELECT 42')",
    "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 42'))",
    "SELECT * FROM enable_logging()",
    "SELECT * FROM enable_profiling()",
    "SELECT * FROM checkpoint()",
    "SELECT * FROM register_external_resource_type('t', kind := 'k', create_function := 'f')",
    "SELECT * FROM add_grammar_extension('x')",
])
def test_functions_that_run_text_or_change_the_database_are_refused(mixed, query):
    with pytest.raises(tidal.QueryError, match=r"refused: function \w+\(\)"):
        mixed.sql(query)
    assert mixed.sql("SELECT count(*) AS c FROM duckdb_external_resource_types()").to_pylist() \
        == [{"c": 0}]


def test_a_key_named_like_a_refused_function_is_still_a_column(open_store):
    store = open_store()
    store.append([{"timestamp": T0, "entity": "e", "query": "q=1", "checkpoint": 7}])
    got = store.sql("SELECT query, checkpoint, 'query(' AS s FROM events").to_pylist()
    assert got == [{"query": "q=1", "checkpoint": 7, "s": "query("}]


def test_settings_stay_as_the_store_set_them(mixed):
    for query in ["SET TimeZone = 'America/New_York'", "SET enable_external_access = true",
                  "SELECT * FROM enable_logging()"]:
        with pytest.raises(tidal.QueryError):
            mixed.sql(query)
    got = mixed.sql("SELECT current_setting('TimeZone') AS tz, "
                    "current_setting('enable_external_access') AS ext").to_pylist()
    assert got == [{"tz": "UTC", "ext": False}]
    assert mixed.sql("SELECT min(timestamp)::VARCHAR AS t FROM events").to_pylist() \
        == [{"t": "2026-01-01 00:00:00+00"}]


def test_nothing_created_persists_into_later_calls(mixed):
    with pytest.raises(tidal.QueryError):
        mixed.sql("CREATE TABLE t AS SELECT 1 AS x")
    with pytest.raises(tidal.QueryError, match="t does not exist"):
        mixed.sql("SELECT * FROM t")
    # only this call's views (and its memtable) exist, on a cursor of its own
    tables = mixed.sql("SELECT table_name FROM duckdb_tables() UNION ALL "
                       "SELECT view_name FROM duckdb_views() WHERE NOT internal")
    assert {n for n in tables.column(0).to_pylist() if not n.startswith("_tidal_memory")} \
        == {"events", "correlations"}


@pytest.mark.parametrize("query", [
    "SELECT 1; SELECT 2",
    "SELECT 1 AS x; CREATE TABLE t AS SELECT 1 AS x",
    "CREATE TABLE t AS SELECT 1 AS x; SELECT * FROM t",
])
def test_several_statements_are_refused(mixed, query):
    with pytest.raises(tidal.QueryError, match="refused: 2 statements"):
        mixed.sql(query)
    with pytest.raises(tidal.QueryError):
        mixed.sql("SELECT * FROM t")


@pytest.mark.parametrize("query", ["", "  ", "-- nothing", "/* nothing */ ;"])
def test_an_empty_query_is_refused(mixed, query):
    with pytest.raises(tidal.QueryError, match="no SQL statement"):
        mixed.sql(query)


LEGIT = [
    ("SELECT count(*) AS c FROM events WHERE entity = ?", ["e0"], [{"c": 3}]),
    ("SELECT count(*) AS c FROM events WHERE entity = $e AND latency_ms >= $lo",
     {"e": "e1", "lo": 3.0}, [{"c": 2}]),
    ("SELECT service, count(*) AS c, max(latency_ms) AS m FROM events GROUP BY ALL "
     "ORDER BY service", None,
     [{"service": "api", "c": 4, "m": 5.0}, {"service": "db", "c": 2, "m": 3.0}]),
    ("SELECT _seq, sum(latency_ms) OVER (PARTITION BY entity ORDER BY _seq) AS s "
     "FROM events ORDER BY _seq LIMIT 3", None,
     [{"_seq": 0, "s": 0.0}, {"_seq": 1, "s": 1.0}, {"_seq": 2, "s": 2.0}]),
    ("SELECT quantile_cont(latency_ms, 0.5) AS p50 FROM events", None, [{"p50": 2.5}]),
    ("SELECT regexp_extract(msg, '/items/(\\d+)', 1) AS id FROM events ORDER BY _seq LIMIT 2",
     None, [{"id": "0"}, {"id": "1"}]),
    ("SELECT json_extract(payload, '$.user.id')::INT AS id, payload->>'$.user' AS u "
     "FROM events ORDER BY _seq LIMIT 1", None, [{"id": 0, "u": '{"id":0}'}]),
    ("SELECT kubernetes.pod.name AS pod, count(*) AS c FROM events GROUP BY 1 ORDER BY 1",
     None, [{"pod": "pod-0", "c": 3}, {"pod": "pod-1", "c": 3}]),
    ("WITH t AS (SELECT entity FROM events) SELECT count(DISTINCT entity) AS n FROM t", None,
     [{"n": 2}]),
    ("FROM events SELECT count(*) AS c", None, [{"c": 6}]),
    ("VALUES (1, 'a')", None, [{"col0": 1, "col1": "a"}]),
    ("PIVOT (SELECT service FROM events) ON service IN ('api', 'db') USING count(*)", None,
     [{"api": 4, "db": 2}]),
    ("SELECT count(*) AS c FROM (DESCRIBE events) WHERE column_name = 'kubernetes'", None,
     [{"c": 1}]),
    ("SELECT count(*) AS c FROM (SUMMARIZE SELECT latency_ms FROM events)", None, [{"c": 1}]),
]


@pytest.mark.parametrize(("query", "params", "want"), LEGIT)
def test_read_queries_work(store, query, params, want):
    assert store.sql(query, params).to_pylist() == want


@pytest.mark.parametrize("query", [
    "DESCRIBE events", "SUMMARIZE events", "SHOW TABLES", "TABLE events",
    "EXPLAIN SELECT count(*) FROM events", "EXPLAIN ANALYZE SELECT count(*) FROM events",
    "EXPLAIN (FORMAT json) SELECT 1", "/* why */ EXPLAIN (SELECT 1)",
])
def test_describing_and_explaining_reads_work(store, query):
    assert store.sql(query).num_rows > 0


def test_segments_change_between_queries(tmp_path):
    with tidal.open(tmp_path / "s", compact_min_rows=100) as store:
        for i in range(3):
            store.append(EVENTS)
            store.flush()
            assert store.sql("SELECT count(*) AS c FROM events").to_pylist() == [{"c": 6 * (i + 1)}]
        assert store.compact() > 0
        assert store.sql("SELECT count(*) AS c FROM events").to_pylist() == [{"c": 18}]
