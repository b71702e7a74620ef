"""LogQL over an in-memory store: streams, filters, parsers, formats, limit and
direction, metrics at steps against hand-computed values, and a pure-Python
oracle on random events."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal
from tidal.correlate.logql import LogqlOptions, LogqlResult, Series, Stream, run_logql
from tidal.errors import ConfigError, QueryError

from .support import OneRowBatches, snapshot_of

B = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
S = 10**9
END = B + 100 * S

EVENTS = [
    {"timestamp": B + 1 * S, "app": "api", "level": "info", "service": {"name": "web"},
     "message": json.dumps({"status": 200, "path": "/a", "req": {"ms": 12}})},
    {"timestamp": B + 2 * S, "app": "api", "level": "error", "service": {"name": "web"},
     "message": json.dumps({"status": 500, "path": "/api/b", "req": {"ms": 40}})},
    {"timestamp": B + 3 * S, "app": "db", "level": "error",
     "message": 'level=warn msg="slow query" dur=3'},
    {"timestamp": B + 4 * S, "app": "api", "level": "info", "message": "not json"},
    {"timestamp": B + 5 * S, "app": "api", "level": "error", "service": {"name": "web"},
     "message": json.dumps({"status": 503, "path": "/api/c", "req": {"ms": 7}})},
    {"timestamp": B + 6 * S, "app": "db", "level": "info",
     "message": "level=info msg=ok dur=1"},
]


@pytest.fixture(scope="module")
def snap():
    with snapshot_of(EVENTS) as snapshot:
        yield snapshot


def run(snapshot, text, **kwargs) -> LogqlResult:
    kwargs.setdefault("start_ns", B)
    kwargs.setdefault("end_ns", END)
    return run_logql(snapshot, text, **kwargs)


def lines(result: LogqlResult) -> list[str]:
    return [line for s in result.streams for _, line in s.entries]


def seconds(stream: Stream) -> list[int]:
    return [(ts - B) // S for ts, _ in stream.entries]


# -- log queries ------------------------------------------------------------------------
def test_streams_group_entries_by_label_set(snap):
    out = run(snap, '{app="api"}')
    assert out.kind == "streams"
    assert [(s.labels, seconds(s)) for s in out.streams] == [
        ({"app": "api", "level": "error", "service_name": "web"}, [5, 2]),
        ({"app": "api", "level": "info"}, [4]),
        ({"app": "api", "level": "info", "service_name": "web"}, [1]),
    ]


@pytest.mark.parametrize("text, expected", [
    ('{app="api"} |= "/api"', [5, 2]),
    ('{app="api"} != "/api"', [4, 1]),
    ('{app=~"api|db"} |~ "dur=[0-9]$"', [6, 3]),
    ('{app=~"api|db"} !~ "^[{]" |= "q"', [3]),
    ('{app="api"} |= "/api" |= "503"', [5]),
    ('{app="api"} |= "API"', []),  # case-sensitive
    ('{service_name="web", level="error"}', [5, 2]),
    ('{service.name="web", level!="error"}', [1]),
    ('{app="nope"}', []),
    ('{team="x"}', []),  # a field the store lacks reads as ""
    ('{app="db", team=""}', [6, 3]),
])
def test_selectors_and_line_filters(snap, text, expected):
    out = run(snap, text)
    assert sorted(((ts - B) // S for s in out.streams for ts, _ in s.entries),
                  reverse=True) == expected


def test_json_labels_and_label_filters(snap):
    out = run(snap, '{app="api"} | json | status >= 500')
    assert [(s.labels, seconds(s)) for s in out.streams] == [
        ({"app": "api", "level": "error", "service_name": "web", "status": "500",
          "path": "/api/b", "req_ms": "40"}, [2]),
        ({"app": "api", "level": "error", "service_name": "web", "status": "503",
          "path": "/api/c", "req_ms": "7"}, [5]),
    ]
    assert lines(run(snap, '{app="api"} | json | __error__ = "JSONParserErr"')) == ["not json"]
    assert seconds(run(snap, '{app="api"} | json | req_ms < 10').streams[0]) == [5]
    out = run(snap, '{app="api"} | json | path =~ "/api.*" and status != 500 or req_ms > 13')
    assert sorted(s for st in out.streams for s in seconds(st)) == [2, 5]
    out = run(snap, '{app="api"} | json | (status = 200, path = "/a") or level = "error"')
    assert sorted(s for st in out.streams for s in seconds(st)) == [1, 2, 5]


def test_logfmt_labels_and_line_format(snap):
    out = run(snap, '{app="db"} | logfmt | dur > 2 | line_format "{{.msg}} took {{ .dur }}s"')
    assert [(s.labels, s.entries) for s in out.streams] == [
        ({"app": "db", "level": "error", "level_extracted": "warn", "msg": "slow query",
          "dur": "3"}, [(B + 3 * S, "slow query took 3s")]),
    ]
    out = run(snap, '{app="db"} | line_format "[{{.level}}{{.missing}}] {{__line__}}"')
    assert lines(out) == ["[error] level=warn msg=\"slow query\" dur=3",
                          "[info] level=info msg=ok dur=1"]


def test_label_format_renames_and_templates(snap):
    out = run(snap, '{app="db"} | logfmt | label_format where=msg, both="{{.app}}/{{.dur}}"')
    assert [s.labels for s in out.streams] == [  # (streams in the order of their labels)
        {"app": "db", "level": "info", "level_extracted": "info", "where": "ok", "dur": "1",
         "both": "db/1"},
        {"app": "db", "level": "error", "level_extracted": "warn", "where": "slow query",
         "dur": "3", "both": "db/3"},
    ]


@pytest.mark.parametrize("direction, limit, expected", [
    ("backward", 3, [6, 5, 4]),
    ("forward", 3, [1, 2, 3]),
    ("backward", 100, [6, 5, 4, 3, 2, 1]),
    ("forward", 1, [1]),
])
def test_limit_keeps_the_newest_or_oldest_across_streams(snap, direction, limit, expected):
    out = run(snap, '{app=~".+"}', limit=limit, direction=direction)
    got = [s for st in out.streams for s in seconds(st)]
    assert sorted(got, reverse=direction == "backward") == expected
    for stream in out.streams:  # each stream in the direction's order
        assert seconds(stream) == sorted(seconds(stream), reverse=direction == "backward")


def test_window_is_start_inclusive_end_exclusive(snap):
    out = run(snap, '{app=~".+"}', start_ns=B + 2 * S, end_ns=B + 5 * S)
    assert sorted(s for st in out.streams for s in seconds(st)) == [2, 3, 4]


def test_batch_edges_do_not_matter(snap):
    text = '{app=~".+"} | json | line_format "{{.path}}"'
    one = run(OneRowBatches(snap), text)
    assert one == run(snap, text)
    assert len(one.streams) == 6


def test_options_choose_line_and_labels(snap):
    out = run(snap, '{app="db"}', options=LogqlOptions(line_field="level", label_fields=("app",)))
    assert [(s.labels, [line for _, line in s.entries]) for s in out.streams] == [
        ({"app": "db"}, ["info", "error"])]
    out = run(snap, '{service_name="web"}', options=LogqlOptions(label_fields=("service.name",)))
    assert [s.labels for s in out.streams] == [{"service_name": "web"}]
    with pytest.raises(QueryError, match="no field 'nope'"):
        run(snap, '{app="db"}', options=LogqlOptions(line_field="nope"))
    with pytest.raises(ConfigError):
        LogqlOptions(label_fields="app")  # type: ignore[arg-type]


def test_without_a_line_field_the_line_is_the_event_as_json():
    store = tidal.open()
    store.append([{"timestamp": B + S, "app": "x", "n": 5, "k": {"s": 'q"'}}])
    with store.snapshot() as snapshot:
        out = run(snapshot, '{app="x"} | json | n = 5')
    store.close()
    # (parsed keys that name a stream label get the suffix _extracted, as in Loki)
    assert [(s.labels, lines(out)) for s in out.streams] == [
        ({"app": "x", "app_extracted": "x", "k_s": 'q"', "k_s_extracted": 'q"', "n": "5"},
         ['{"app":"x","n":5,"k":{"s":"q\\""}}'])]


def test_empty_store_and_bad_arguments(snap):
    store = tidal.open()
    with store.snapshot() as snapshot:
        assert run(snapshot, '{app="x"}') == LogqlResult("streams")
        assert run(snapshot, 'rate({app="x"}[1m])', step_ns=S) == LogqlResult("matrix")
    store.close()
    for kwargs in ({"direction": "sideways"}, {"limit": 0}, {"end_ns": B - 1}):
        with pytest.raises(QueryError):
            run(snap, '{app="x"}', **kwargs)
    with pytest.raises(QueryError, match="step must be positive"):
        run(snap, 'rate({app="x"}[1m])', step_ns=0)


# -- metric queries ---------------------------------------------------------------------
def points(series: Series) -> list[tuple[int, float]]:
    return [((ts - B) // S, value) for ts, value in series.points]


def test_count_over_time_at_steps(snap):
    out = run(snap, 'count_over_time({app="api"} |= "/api" [2s])', start_ns=B,
              end_ns=B + 6 * S, step_ns=S)
    assert out.kind == "matrix"
    assert [(s.labels, points(s)) for s in out.series] == [
        ({"app": "api", "level": "error", "service_name": "web"},
         [(2, 1.0), (3, 1.0), (5, 1.0), (6, 1.0)]),
    ]


def test_rate_and_bytes(snap):
    out = run(snap, 'sum(rate({app="db"}[4s]))', start_ns=B + 2 * S, end_ns=B + 8 * S,
              step_ns=2 * S)
    assert [(s.labels, points(s)) for s in out.series] == [
        ({}, [(4, 0.25), (6, 0.5), (8, 0.25)])]
    size3, size6 = len(EVENTS[2]["message"]), len(EVENTS[5]["message"])
    out = run(snap, 'sum(bytes_over_time({app="db"}[10s]))', instant_ns=B + 6 * S,
              start_ns=0, end_ns=0)
    assert out.kind == "vector"
    assert [points(s) for s in out.series] == [[(6, float(size3 + size6))]]
    out = run(snap, 'bytes_rate({app="db", level="info"}[2s])', instant_ns=B + 7 * S,
              start_ns=0, end_ns=0)
    assert [points(s) for s in out.series] == [[(7, size6 / 2)]]


def test_sum_by_and_without(snap):
    text = 'sum by (level) (count_over_time({app=~".+"}[3s]))'
    out = run(snap, text, start_ns=B, end_ns=B + 6 * S, step_ns=3 * S)
    assert [(s.labels, points(s)) for s in out.series] == [
        ({"level": "error"}, [(3, 2.0), (6, 1.0)]),
        ({"level": "info"}, [(3, 1.0), (6, 2.0)]),
    ]
    text = 'count without (level, service_name) (count_over_time({app=~".+"}[3s]))'
    out = run(snap, text, start_ns=B, end_ns=B + 6 * S, step_ns=3 * S)
    assert [(s.labels, points(s)) for s in out.series] == [
        ({"app": "api"}, [(3, 2.0), (6, 2.0)]),
        ({"app": "db"}, [(3, 1.0), (6, 1.0)]),
    ]


@pytest.mark.parametrize("op, expected", [
    ("sum", 3.0), ("count", 2.0), ("max", 2.0), ("min", 1.0), ("avg", 1.5)])
def test_vector_aggregations(snap, op, expected):
    text = f'{op}(sum by (app) (count_over_time({{app=~".+", level="error"}} [10s])))'
    out = run(snap, text, instant_ns=B + 10 * S, start_ns=0, end_ns=0)
    assert [points(s) for s in out.series] == [[(10, expected)]]


def test_parsed_labels_make_series(snap):
    text = 'sum by (status) (count_over_time({app="api"} | json | status >= 200 [1m]))'
    out = run(snap, text, instant_ns=B + 60 * S, start_ns=0, end_ns=0)
    assert [(s.labels, points(s)) for s in out.series] == [
        ({"status": "200"}, [(60, 1.0)]), ({"status": "500"}, [(60, 1.0)]),
        ({"status": "503"}, [(60, 1.0)])]


# -- the oracle ---------------------------------------------------------------------------
EVENT = st.fixed_dictionaries({
    "second": st.integers(0, 12),
    "app": st.sampled_from(["a", "b"]),
    "level": st.sampled_from(["info", "error", None]),
    "message": st.text("xyz ", max_size=5),
})


def oracle_log(events, needle, limit, direction):
    rows = [(e["second"], i, e) for i, e in enumerate(events)
            if e["app"] == "a" and needle in e["message"]]
    rows.sort(key=lambda r: (r[0], r[1]), reverse=direction == "backward")
    streams: dict[tuple, list] = {}
    for second, _, e in rows[:limit]:
        labels = {"app": e["app"], **({"level": e["level"]} if e["level"] else {})}
        streams.setdefault(tuple(sorted(labels.items())), []).append(
            (B + second * S, e["message"]))
    return [Stream(dict(k), v) for k, v in sorted(streams.items())]


def oracle_metric(events, needle, range_s, steps):
    groups: dict[tuple, list] = {}
    for t in steps:
        counts: dict[tuple, int] = {}
        for e in events:
            if needle in e["message"] and t - range_s < e["second"] <= t:
                key = (("level", e["level"]),) if e["level"] else ()
                counts[key] = counts.get(key, 0) + 1
        for key, n in counts.items():
            groups.setdefault(key, []).append((B + t * S, float(n)))
    return [Series(dict(k), v) for k, v in sorted(groups.items())]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(EVENT, min_size=1, max_size=25), needle=st.sampled_from(["", "x", "yz"]),
       limit=st.integers(1, 8), direction=st.sampled_from(["backward", "forward"]),
       range_s=st.integers(1, 5), step_s=st.integers(1, 4))
def test_matches_a_pure_python_oracle(events, needle, limit, direction, range_s, step_s):
    store = tidal.open()
    store.append([{"timestamp": B + e["second"] * S, "app": e["app"], "level": e["level"],
                   "message": e["message"]} for e in events])
    try:
        with store.snapshot() as snapshot:
            out = run_logql(snapshot, f'{{app="a"}} |= {json.dumps(needle)}',
                            start_ns=B, end_ns=B + 13 * S, limit=limit, direction=direction)
            assert out.streams == oracle_log(events, needle, limit, direction)
            text = (f'sum by (level) (count_over_time({{app=~"a|b"}} |= {json.dumps(needle)}'
                    f' [{range_s}s]))')
            out = run_logql(snapshot, text, start_ns=B + S, end_ns=B + 13 * S,
                            step_ns=step_s * S)
            steps = list(np.arange(1, 14, step_s))
            assert out.series == oracle_metric(events, needle, range_s, steps)
    finally:
        store.close()
