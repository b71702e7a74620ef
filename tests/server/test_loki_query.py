"""Loki's query API (``query_range``, ``query``, ``labels``, ``label/{name}/values``,
``series``, ``status/buildinfo``) in the shapes Loki's API documentation gives, and
the round trip: lines pushed with a Loki client come back with their labels and
timestamps."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import httpx
import logging_loki
import pytest

import tidal
from tidal.server import ServerConfig

from .conftest import Served, serving

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
S = 1_000_000_000
PUSH = "/loki/api/v1/push"


def push(served: Served, streams: list[dict]) -> None:
    got = httpx.post(served.url + PUSH, json={"streams": streams})
    assert got.status_code == 204, got.text


@pytest.fixture
def seeded(tmp_path) -> Iterator[Served]:
    """Loki-pushed lines of two apps over 10 s: one line a second, every third an error."""
    with tidal.open(tmp_path / "s") as store, serving(store) as served:
        streams = []
        for app in ("api", "web"):
            for level in ("info", "error"):
                values = [[str(T0 + i * S), f'{{"status": {500 if level == "error" else 200},'
                                            f' "path": "/p{i}", "app": "{app}"}}']
                          for i in range(10) if (i % 3 == 0) == (level == "error")]
                streams.append({"stream": {"app": app, "level": level}, "values": values})
        push(served, streams)
        yield served


def get(served: Served, route: str, **params: object) -> httpx.Response:
    return httpx.get(f"{served.url}/loki/api/v1/{route}", params=params, timeout=30)


def test_query_range_answers_streams_newest_first(seeded):
    got = get(seeded, "query_range", query='{app="api"} |= "500"', start=T0, end=T0 + 20 * S,
              limit=10)
    assert got.status_code == 200
    body = got.json()
    assert body["status"] == "success"
    assert body["data"]["resultType"] == "streams"
    [stream] = body["data"]["result"]
    assert stream["stream"] == {"app": "api", "level": "error"}
    assert [v[0] for v in stream["values"]] == [str(T0 + i * S) for i in (9, 6, 3, 0)]
    assert all(isinstance(v[1], str) and '"status": 500' in v[1] for v in stream["values"])


def test_json_parser_label_filter_line_format_and_forward(seeded):
    query = '{level=~"info|error"} | json | status >= 500 and app = "web" | line_format "{{.path}}"'
    got = get(seeded, "query_range", query=query, start=T0, end=T0 + 20 * S,
              direction="forward", limit=2).json()
    lines = [v[1] for s in got["data"]["result"] for v in s["values"]]
    assert lines == ["/p0", "/p3"]


def test_a_metric_query_answers_a_matrix_at_each_step(seeded):
    query = 'sum by (level) (count_over_time({app=~".+"}[5s]))'
    got = get(seeded, "query_range", query=query, start=T0 + 4 * S, end=T0 + 9 * S,
              step="5s").json()
    assert got["data"]["resultType"] == "matrix"
    series = {s["metric"]["level"]: s["values"] for s in got["data"]["result"]}
    # windows (t-5s, t]: at t0+4s seconds 0..4, at t0+9s seconds 5..9; two apps each
    assert series["error"] == [[(T0 + 4 * S) / S, "4"], [(T0 + 9 * S) / S, "4"]]
    assert series["info"] == [[(T0 + 4 * S) / S, "6"], [(T0 + 9 * S) / S, "6"]]


def test_an_instant_query_answers_a_vector(seeded):
    got = get(seeded, "query", query='count_over_time({app="web"}[1m])',
              time=f"{(T0 + 30 * S) // S}").json()
    assert got["data"]["resultType"] == "vector"
    values = sorted((r["metric"]["level"], r["value"][1]) for r in got["data"]["result"])
    assert values == [("error", "4"), ("info", "6")]
    assert got["data"]["result"][0]["value"][0] == (T0 + 30 * S) / S


def test_labels_values_and_series(seeded):
    window = {"start": T0, "end": T0 + 20 * S}
    labels = get(seeded, "labels", **window).json()
    assert labels["status"] == "success"
    assert {"app", "level"} <= set(labels["data"])
    assert "message" not in labels["data"]  # (the line)
    assert get(seeded, "label/app/values", **window).json()["data"] == ["api", "web"]
    assert get(seeded, "label/level/values", query='{app="api"} |= "500"',
               **window).json()["data"] == ["error"]
    series = get(seeded, "series", **{"match[]": '{level="error"}'}, **window).json()["data"]
    assert series == [{"app": "api", "level": "error"}, {"app": "web", "level": "error"}]


def test_times_in_rfc3339_and_seconds(seeded):
    by_text = get(seeded, "query_range", query='{app="api"}', start="2026-01-01T00:00:00Z",
                  end="2026-01-01T00:00:05Z").json()
    by_seconds = get(seeded, "query_range", query='{app="api"}', start=T0 // S,
                     end=f"{(T0 + 5 * S) / S:.1f}").json()
    count = sum(len(s["values"]) for s in by_text["data"]["result"])
    assert count == 5
    assert by_text == by_seconds


@pytest.mark.parametrize(("params", "words"), [
    ({"query": '{app="api"'}, "line 1"),
    ({}, "query parameter is required"),
    ({"query": '{app="api"}', "start": "yesterday"}, "could not parse 'start'"),
    ({"query": 'rate({app="api"}[1m])', "step": "0"}, "zero or negative"),
    ({"query": '{app="api"}', "direction": "sideways"}, "invalid direction"),
    ({"query": '{app="api"}', "limit": "5001"},
     "max entries limit per query exceeded, limit > max_entries_limit (5001 > 5000)"),
])
def test_bad_requests_are_400_in_plain_text(seeded, params, words):
    got = get(seeded, "query_range", **params)
    assert got.status_code == 400
    assert got.headers["content-type"].startswith("text/plain")
    assert words in got.text


def test_buildinfo(seeded):
    assert get(seeded, "status/buildinfo").json()["version"].startswith("3.")


def test_a_loki_client_round_trip(tmp_path):
    with tidal.open(tmp_path / "s") as store, serving(store, ServerConfig()) as served:
        handler = logging_loki.LokiHandler(url=served.url + PUSH, tags={"app": "shop"},
                                           version="1")
        logger = logging.getLogger("tidal.test.loki_query")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        before = time.time_ns()
        try:
            logger.info("order placed")
            logger.error("payment failed", extra={"tags": {"region": "eu"}})
        finally:
            logger.removeHandler(handler)
            handler.close()
        after = time.time_ns()
        stored = store.read_from(0).to_pylist()
        got = get(served, "query_range", query='{app="shop"}', start=before - S,
                  end=after + S, direction="forward").json()
    lines = [(s["stream"].get("severity"), s["stream"].get("region"), v[1], int(v[0]))
             for s in got["data"]["result"] for v in s["values"]]
    assert sorted(lines, key=lambda x: x[3]) == [
        ("info", None, "order placed", stored[0]["timestamp"].value),
        ("error", "eu", "payment failed", stored[1]["timestamp"].value)]
    for _, _, _, ts in lines:
        assert before - S <= ts <= after


def test_a_form_post_and_configured_line_and_label_fields(tmp_path):
    config_file = tmp_path / "tidal.toml"
    config_file.write_text('[loki]\nline_field = "path"\nlabel_fields = ["app"]\n'
                           "max_entries = 2\n")
    config = ServerConfig.load(config_file, env={})
    assert (config.loki_line_field, config.loki_label_fields) == ("path", ("app",))
    assert config.loki_max_entries == 2
    with tidal.open(tmp_path / "s") as store, serving(store, config) as served:
        store.append([{"timestamp": T0 + i * S, "entity": "e", "app": "api", "level": "x",
                       "path": f"/p{i}"} for i in range(3)])
        got = httpx.post(f"{served.url}/loki/api/v1/query_range",
                         data={"query": '{app="api"}', "start": str(T0), "end": str(T0 + 9 * S),
                               "direction": "forward", "limit": "2"}).json()
        assert got["data"]["result"] == [{"stream": {"app": "api"}, "values": [
            [str(T0 + i * S), f"/p{i}"] for i in range(2)]}]
        assert get(served, "labels", start=T0, end=T0 + 9 * S).json()["data"] == ["app"]
        too_many = get(served, "query_range", query='{app="api"}', limit=3)
        assert too_many.status_code == 400 and "(3 > 2)" in too_many.text
