"""Loki's index routes (``index/stats``, ``index/volume``, ``index/volume_range``) on a
real server on loopback, asked what logcli and Grafana ask, their numbers checked
against DuckDB's count over the same events."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

import tidal
from tidal.server import ServerConfig
from tidal.server.config import Token

from .conftest import Served, serving

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
S = 1_000_000_000
APPS, LEVELS = ("api", "web", "db"), ("info", "error")


@pytest.fixture
def seeded(tmp_path) -> Iterator[Served]:
    """120 events over 2 min, one a second: three apps, two levels, lines of varied
    length (some not ASCII, so bytes and characters differ), a ``service.name``."""
    with tidal.open(tmp_path / "s") as store, serving(store) as served:
        store.append([{"timestamp": T0 + i * S, "app": APPS[i % 3], "level": LEVELS[i % 2],
                       "service": {"name": f"svc-{i % 4}"},
                       "message": f"request {i} " + "é" * (i % 7) + "x" * (i % 11)}
                      for i in range(120)])
        yield served


def get(served: Served, route: str, **params: object) -> httpx.Response:
    return httpx.get(f"{served.url}/loki/api/v1/{route}", params=params, timeout=30)


def duckdb(served: Served, where: str, start: int, end: int, by: str = "1"
           ) -> dict[object, tuple[int, int, int]]:
    """(entries, line bytes, distinct (app, level, service)) per ``by``, counted by
    DuckDB, for timestamps in [start, end]."""
    rows = served.store.sql(
        f"SELECT {by} AS k, count(*), sum(strlen(message)),"
        " count(DISTINCT (app, level, service.name)) FROM events"
        f" WHERE {where} AND epoch_ns(timestamp) BETWEEN {start} AND {end} GROUP BY k"
    ).to_pylist()
    return {r["k"]: tuple(int(v) for v in list(r.values())[1:]) for r in rows}


@pytest.mark.parametrize("selector,where", [
    ('{app="api"}', "app = 'api'"),
    ('{level=~"err.*", app!="db"}', "level = 'error' AND app <> 'db'"),
    ('{service_name="svc-1"}', "service.name = 'svc-1'"),
])
def test_logcli_stats_match_an_independent_count(seeded, selector, where):
    start, end = T0 + 10 * S, T0 + 70 * S
    got = get(seeded, "index/stats", end=end, query=selector, start=start)
    assert got.status_code == 200
    body = got.json()
    assert list(body) == ["streams", "chunks", "bytes", "entries"]  # (bare, as Loki's)
    [(entries, size, streams)] = duckdb(seeded, where, start, end).values()
    assert body == {"streams": streams, "chunks": streams, "bytes": size, "entries": entries}
    assert body["bytes"] > body["entries"] * len("request 0 ")


def test_stats_ignore_the_pipeline_and_take_a_posted_form(seeded):
    form = {"query": '{app="web"} |= "nothing matches this"', "start": str(T0),
            "end": str(T0 + 200 * S)}
    got = httpx.post(f"{seeded.url}/loki/api/v1/index/stats", data=form)
    assert got.status_code == 200
    [(entries, size, streams)] = duckdb(seeded, "app = 'web'", T0, T0 + 200 * S).values()
    assert got.json() == {"streams": streams, "chunks": streams, "bytes": size,
                          "entries": entries}


def test_an_empty_store_has_zero_stats_and_no_volume(served):
    assert get(served, "index/stats", query='{app="api"}').json() == {
        "streams": 0, "chunks": 0, "bytes": 0, "entries": 0}
    got = get(served, "index/volume", query='{app="api"}').json()
    assert got["data"]["result"] == [] and got["data"]["resultType"] == "vector"


def test_logcli_volume_groups_by_the_selectors_labels_largest_first(seeded):
    start, end = T0, T0 + 119 * S
    got = get(seeded, "index/volume", end=end, limit=30, query='{app=~".+"}', start=start)
    assert got.status_code == 200
    body = got.json()
    assert body["status"] == "success" and body["data"]["resultType"] == "vector"
    expected = duckdb(seeded, "true", start, end, by="app")
    result = body["data"]["result"]
    assert [r["metric"] for r in result] == [
        {"app": app} for app in sorted(expected, key=lambda a: -expected[a][1])]
    assert all(r["value"] == [end / S, str(expected[r["metric"]["app"]][1])] for r in result)


def test_volume_by_target_labels_and_the_limit(seeded):
    start, end = T0, T0 + 200 * S
    got = get(seeded, "index/volume", query='{app=~".+"}', start=start, end=end,
              targetLabels="app,level", limit=4).json()["data"]["result"]
    expected = duckdb(seeded, "true", start, end, by="app || '/' || level")
    sizes = sorted((v[1] for v in expected.values()), reverse=True)
    assert [int(r["value"][1]) for r in got] == sizes[:4]
    for r in got:
        key = r["metric"]["app"] + "/" + r["metric"]["level"]
        assert int(r["value"][1]) == expected[key][1]


def test_volume_aggregated_by_label_names(seeded):
    got = get(seeded, "index/volume", query='{app="api"}', start=T0, end=T0 + 200 * S,
              aggregateBy="labels").json()["data"]["result"]
    [(_, size, _)] = duckdb(seeded, "app = 'api'", T0, T0 + 200 * S).values()
    assert {tuple(r["metric"].items()): r["value"][1] for r in got} == {
        (("app", ""),): str(size), (("level", ""),): str(size),
        (("service_name", ""),): str(size)}


def test_the_logs_drilldown_app_asks_with_rfc3339_times(seeded):
    got = get(seeded, "index/volume", query='{service_name=~".+"}', limit=1000,
              start="2026-01-01T00:00:00Z", end="2026-01-01T00:00:59.5Z")
    expected = duckdb(seeded, "true", T0, T0 + 59 * S, by="service.name")
    assert {r["metric"]["service_name"]: int(r["value"][1])
            for r in got.json()["data"]["result"]} == {k: v[1] for k, v in expected.items()}


def test_logcli_volume_range_is_a_matrix_of_step_buckets(seeded):
    start, end, step = T0, T0 + 120 * S, 30
    got = get(seeded, "index/volume_range", end=end, limit=30, query='{level="error"}',
              start=start, step=step)
    body = got.json()["data"]
    assert body["resultType"] == "matrix"
    [series] = body["result"]
    assert series["metric"] == {"level": "error"}
    buckets = duckdb(seeded, "level = 'error'", start - step * S + 1, end,
                     by=f"ceil((epoch_ns(timestamp) - {start}) / {step * S})::BIGINT")
    assert series["values"] == [[(start + k * step * S) / S, str(buckets[k][1])]
                                for k in sorted(buckets)]
    assert len(series["values"]) == 4  # (errors are the odd seconds: none in (t0-30s, t0])


@pytest.mark.parametrize("route,params,reason", [
    ("index/stats", {}, "query parameter is required"),
    ("index/stats", {"query": "{app="}, ""),
    ("index/volume", {"query": 'count_over_time({app="a"}[1m])'}, "stream selector"),
    ("index/volume", {"query": '{app="a"}', "aggregateBy": "pods"}, "aggregateBy"),
    ("index/volume", {"query": '{app="a"}', "limit": "-1"}, "limit"),
    ("index/volume_range", {"query": '{app="a"}', "step": "0"}, "step"),
    ("index/stats", {"query": '{app="a"}', "start": "10", "end": "5"}, "end"),
])
def test_bad_requests_are_400_in_plain_text(seeded, route, params, reason):
    got = get(seeded, route, **params)
    assert got.status_code == 400
    assert got.headers["content-type"].startswith("text/plain")
    assert reason in got.text and got.text


def test_the_index_routes_need_the_query_scope(tmp_path):
    config = ServerConfig(tokens=(Token("reader", frozenset({"query"})),
                                  Token("writer", frozenset({"ingest"}))))
    with tidal.open(tmp_path / "store") as store, serving(store, config) as served:
        for route in ("index/stats", "index/volume", "index/volume_range"):
            params = {"query": '{app="a"}'}
            assert get(served, route, **params).status_code == 401
            assert get(served, route, **params, token="writer").status_code == 403
            assert get(served, route, **params, token="reader").status_code == 200


def test_the_new_routes_are_in_the_openapi_document(served):
    paths = httpx.get(f"{served.url}/openapi.json").json()["paths"]
    for path in ("/loki/api/v1/index/stats", "/loki/api/v1/index/volume",
                 "/loki/api/v1/index/volume_range"):
        assert set(paths[path]) == {"get", "post"}
        assert paths[path]["get"]["x-tidal-scope"] == "query"
    assert "WebSocket" in paths["/loki/api/v1/tail"]["get"]["description"]


def test_detected_fields_as_grafana_and_logcli_ask_for_them(served):
    lines = [f'{{"status": {200 + i}, "took": "{i}ms", "ok": true}}' if i % 2 else
             f"level=info user=u{i % 3} size={i}KB" for i in range(12)]
    served.store.append([{"timestamp": T0 + i * S, "app": "api", "message": line}
                         for i, line in enumerate(lines)])
    window = {"start": T0, "end": T0 + 60 * S, "query": '{app="api"}'}
    grafana = get(served, "detected_fields", **window, limit=1000).json()
    assert grafana["limit"] == 1000
    assert grafana["fields"] == [
        {"label": "level", "type": "string", "cardinality": 1, "parsers": ["logfmt"]},
        {"label": "ok", "type": "boolean", "cardinality": 1, "parsers": ["json"]},
        {"label": "size", "type": "bytes", "cardinality": 6, "parsers": ["logfmt"]},
        {"label": "status", "type": "int", "cardinality": 6, "parsers": ["json"]},
        {"label": "took", "type": "duration", "cardinality": 6, "parsers": ["json"]},
        {"label": "user", "type": "string", "cardinality": 3, "parsers": ["logfmt"]}]
    newest = get(served, "detected_fields", **window, limit=100, line_limit=4,
                 step="1m0s").json()  # (logcli's: the newest 4 lines, 2 of each kind)
    assert {f["label"]: f["cardinality"] for f in newest["fields"]}["status"] == 2
    values = get(served, "detected_field/user/values", **window).json()
    assert values == {"values": ["u0", "u1", "u2"], "limit": 1000}
    assert get(served, "detected_fields", query="{").status_code == 400


def test_detected_labels_as_the_logs_drilldown_app_asks(seeded):
    """``detected_labels`` (bare ``detectedLabels``), the window in RFC 3339 as the app
    sends it; the cardinalities checked against DuckDB's distinct counts."""
    window = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:01:59Z"}
    got = get(seeded, "detected_labels", **window)
    assert got.status_code == 200
    counts = seeded.store.sql(
        "SELECT count(DISTINCT app) AS app, count(DISTINCT level) AS level,"
        " count(DISTINCT service.name) AS service_name FROM events").to_pylist()[0]
    assert got.json() == {"detectedLabels": [{"label": k, "cardinality": v}
                                             for k, v in sorted(counts.items())]}
    narrowed = get(seeded, "detected_labels", query='{app="api", level="error"}', **window)
    api_errors = seeded.store.sql(
        "SELECT count(DISTINCT service.name) AS n FROM events WHERE app = 'api' AND "
        "level = 'error'").to_pylist()[0]["n"]
    assert narrowed.json()["detectedLabels"] == [
        {"label": "app", "cardinality": 1}, {"label": "level", "cardinality": 1},
        {"label": "service_name", "cardinality": api_errors}]
    assert get(seeded, "detected_labels", query='{app="nope"}', **window).json() == {
        "detectedLabels": []}
    bad = get(seeded, "detected_labels", query="{app=", **window)
    assert bad.status_code == 400 and "line 1" in bad.text


def test_patterns_count_the_shapes_of_lines_per_step(seeded):
    """``patterns`` as the Logs Drilldown app asks: ``request <_> éé…xx`` shapes; the
    counts per 30 s bucket checked against DuckDB over the same lines."""
    got = get(seeded, "patterns", query='{app="api"}', start=T0, end=T0 + 119 * S,
              step="30s")
    assert got.status_code == 200
    body = got.json()
    assert body["status"] == "success"
    rows = seeded.store.sql(
        "SELECT regexp_replace(regexp_replace(message, '[^\\s]*[0-9][^\\s]*', '<_>', 'g'),"
        " '<_>(\\s+<_>)+', '<_>', 'g') AS p, (epoch_ns(timestamp) - "
        f"{T0}) // {30 * S} AS b, count(*) AS n FROM events WHERE app = 'api' GROUP BY p, b"
    ).to_pylist()
    expected: dict[str, dict[int, int]] = {}
    for row in rows:
        expected.setdefault(row["p"], {})[T0 // S + row["b"] * 30] = row["n"]
    found = {p["pattern"]: {ts: n for ts, n in p["samples"]} for p in body["data"]}
    assert found == expected
    totals = [sum(n for _, n in p["samples"]) for p in body["data"]]
    assert totals == sorted(totals, reverse=True)  # most frequent first
    assert all(p["pattern"].startswith("request <_>") for p in body["data"])
    top = get(seeded, "patterns", query='{app="api"}', start=T0, end=T0 + 119 * S,
              limit=2).json()["data"]
    assert [p["pattern"] for p in top] == [p["pattern"] for p in body["data"][:2]]
    bad = get(seeded, "patterns", query='sum(count_over_time({app="api"}[1m]))')
    assert bad.status_code == 400 and "not a metric query" in bad.text
