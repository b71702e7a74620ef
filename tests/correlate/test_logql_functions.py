"""LogQL's richer half over an in-memory store: pattern/regexp/json-parameter
parsers, drop/keep/decolorize, duration and byte filters, unwrapped range
functions (against numpy over the same samples), offset, absent_over_time,
topk/bottomk/sort, binary operations with vector matching, and Grafana's own
queries (the health check and the logs volume)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal
from tidal.correlate.logql import LogqlResult, Series, run_logql
from tidal.errors import QueryError

from .support import snapshot_of

B = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
S = 10**9

# host a: latencies 0.1 .. 0.5 s at seconds 1..5; host b: 2 s and 4 s at 2 and 4.
EVENTS = [
    *({"timestamp": B + i * S, "app": "api", "host": "a",
       "message": f"10.0.0.{i} - - GET /p{i} HTTP/1.1 {200 + i} latency={i}00ms size={i}KB"}
      for i in range(1, 6)),
    {"timestamp": B + 2 * S, "app": "api", "host": "b",
     "message": "10.0.1.1 - - POST /q HTTP/1.1 500 latency=2s size=2KiB"},
    {"timestamp": B + 4 * S, "app": "api", "host": "b",
     "message": "10.0.1.2 - - POST /q HTTP/1.1 503 latency=4s size=1MB"},
    {"timestamp": B + 3 * S, "app": "web", "host": "a",
     "message": "\x1b[31mERROR\x1b[0m " + json.dumps({"user": {"id": 7, "tags": ["x", "y"]},
                                                       "User-Agent": "curl"})},
]


@pytest.fixture(scope="module")
def snap():
    with snapshot_of(EVENTS) as snapshot:
        yield snapshot


def run(snapshot, text, **kwargs) -> LogqlResult:
    kwargs.setdefault("start_ns", B)
    kwargs.setdefault("end_ns", B + 100 * S)
    return run_logql(snapshot, text, **kwargs)


def at(snapshot, text, second):
    """An instant query at ``B + second``: {labels (sorted items): value}."""
    out = run(snapshot, text, instant_ns=B + second * S, start_ns=0, end_ns=0)
    assert out.kind in ("vector", "scalar")
    return {tuple(sorted(s.labels.items())): s.points[0][1] for s in out.series}


def labels_of(result: LogqlResult) -> list[dict[str, str]]:
    return [s.labels for s in result.streams]


def points(series: Series) -> list[tuple[int, float]]:
    return [((ts - B) // S, value) for ts, value in series.points]


# -- parsers and label stages ---------------------------------------------------------------
def test_pattern_parser_extracts_named_captures(snap):
    out = run(snap, '{app="api"} | pattern `<ip> - - <method> <path> <_> <status> <_>`'
                    ' | status >= 500')
    assert sorted(labels_of(out), key=lambda x: x["ip"]) == [
        {"app": "api", "host": "b", "ip": ip, "method": "POST", "path": "/q", "status": code}
        for ip, code in (("10.0.1.1", "500"), ("10.0.1.2", "503"))]


def test_pattern_that_does_not_match_adds_no_labels(snap):
    out = run(snap, '{app="web"} | pattern "<level> user=<user>"')
    assert labels_of(out) == [{"app": "web", "host": "a"}]


def test_regexp_parser(snap):
    out = run(snap, r'{app="api", host="a"} | regexp `- (?P<method>[A-Z]+) (?P<path>\S+)` '
                    '| path = "/p3"')
    assert labels_of(out) == [{"app": "api", "host": "a", "method": "GET", "path": "/p3"}]


def test_json_with_expressions_and_logfmt_with_renames(snap):
    out = run(snap, '{app="web"} | decolorize | line_format "{{__line__}}" '
                    '| regexp `(?P<body>\\{.*)` | line_format "{{.body}}" '
                    '| json uid="user.id", first="user.tags[0]", ua=`["User-Agent"]`, user')
    (stream,) = out.streams
    assert stream.labels["uid"] == "7"
    assert stream.labels["first"] == "x"
    assert stream.labels["ua"] == "curl"
    assert json.loads(stream.labels["user"]) == {"id": 7, "tags": ["x", "y"]}
    out = run(snap, '{app="api", host="b"} | logfmt took=latency | keep took')
    assert sorted(labels_of(out), key=str) == [{"took": "2s"}, {"took": "4s"}]


def test_decolorize_removes_ansi_codes(snap):
    out = run(snap, '{app="web"} | decolorize |~ "^ERROR [{]"')
    assert len(out.streams) == 1
    assert not run(snap, '{app="web"} |~ "^ERROR"').streams


def test_drop_and_keep(snap):
    out = run(snap, '{app="api"} | logfmt | drop latency, size, host="a"')
    assert {tuple(sorted(s.labels)) for s in out.streams} == {("app",), ("app", "host")}
    assert {s.labels.get("host") for s in out.streams} == {None, "b"}
    out = run(snap, '{app="api"} | logfmt | keep host, size="1MB"')
    assert sorted(map(lambda s: tuple(sorted(s.labels.items())), out.streams)) == [
        (("host", "a"),), (("host", "b"),), (("host", "b"), ("size", "1MB"))]


@pytest.mark.parametrize("text, expected", [
    ('{app="api"} | logfmt | latency > 350ms', [4, 5, 2, 4]),
    ('{app="api"} | logfmt | latency >= 2s', [2, 4]),
    ('{app="api"} | logfmt | latency < 1.5m, host="b"', [2, 4]),
    ('{app="api"} | logfmt | size > 2KB', [3, 4, 5, 2, 4]),
    ('{app="api"} | logfmt | size >= 2KiB', [3, 4, 5, 2, 4]),
    ('{app="api"} | logfmt | size > 2KiB', [3, 4, 5, 4]),
    ('{app="api"} | logfmt | size >= 1mb', [4]),
])
def test_duration_and_byte_filters(snap, text, expected):
    out = run(snap, text)
    got = sorted((ts - B) // S for s in out.streams for ts, _ in s.entries)
    assert got == sorted(expected)


# -- unwrapped range functions ----------------------------------------------------------
LATENCY = {"a": {i: i / 10 for i in range(1, 6)}, "b": {2: 2.0, 4: 4.0}}


def window(host, second, range_s):
    return [v for t, v in LATENCY[host].items() if second - range_s < t <= second]


@pytest.mark.parametrize("func, reference", [
    ("sum_over_time", np.sum), ("avg_over_time", np.mean), ("max_over_time", np.max),
    ("min_over_time", np.min), ("first_over_time", lambda v: v[0]),
    ("last_over_time", lambda v: v[-1]), ("stdvar_over_time", np.var),
    ("stddev_over_time", np.std), ("rate", lambda v: np.sum(v) / 3),
])
def test_unwrapped_functions_match_numpy(snap, func, reference):
    text = f'{func}({{app="api"}} | logfmt | unwrap duration(latency) | __error__="" [3s])' \
           " by (host)"
    for second in range(1, 8):
        got = at(snap, text, second)
        expected = {(("host", h),): float(reference(np.array(window(h, second, 3))))
                    for h in ("a", "b") if window(h, second, 3)}
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value)


def test_quantile_over_time_and_bytes_unwrap(snap):
    got = at(snap, 'quantile_over_time(0.5, {app="api", host="a"} | logfmt '
                   "| unwrap duration_seconds(latency) [10s]) by (host)", 5)
    assert got == {(("host", "a"),): pytest.approx(0.3)}
    got = at(snap, 'max_over_time({app="api"} | logfmt | unwrap bytes(size) [10s]) by (host)', 5)
    assert got == {(("host", "a"),): 5000.0, (("host", "b"),): 1_000_000.0}


def test_unwrap_failures_fail_the_query_unless_filtered(snap):
    with pytest.raises(QueryError, match="SampleExtractionErr"):
        at(snap, 'sum_over_time({app="api"} | logfmt | unwrap latency [10s])', 5)
    got = at(snap, 'sum by (app) (sum_over_time({app=~".+"} | logfmt | unwrap size '
                   '| __error__ = "" [10s]))', 5)
    assert got == {}  # every size has a unit: none reads as a plain number


def test_parser_errors_fail_metric_queries_unless_dropped(snap):
    with pytest.raises(QueryError, match="pipeline error: 'JSONParserErr'"):
        at(snap, 'count_over_time({app=~".+"} | json [10s])', 5)
    got = at(snap, 'sum(count_over_time({app=~".+"} | json | drop __error__ [10s]))', 5)
    assert got == {(): 8.0}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(samples=st.lists(st.tuples(st.integers(0, 20), st.floats(-1e3, 1e3)), max_size=25),
       range_s=st.integers(1, 8), func=st.sampled_from(
           ["sum_over_time", "avg_over_time", "max_over_time", "min_over_time",
            "stdvar_over_time", "first_over_time", "last_over_time"]))
def test_unwrap_matches_a_pure_python_oracle(samples, range_s, func):
    store = tidal.open()
    try:
        if samples:
            store.append([{"timestamp": B + t * S, "app": "x", "message": f"v={v!r}"}
                          for t, v in samples])
        with store.snapshot() as snapshot:
            out = run(snapshot, f'{func}({{app="x"}} | logfmt | unwrap v [{range_s}s])',
                      start_ns=B, end_ns=B + 20 * S, step_ns=S)
    finally:
        store.close()
    got = {p[0]: p[1] for s in out.series for p in points(s)}
    ordered = sorted(samples, key=lambda tv: tv[0])  # appends keep order within a second
    expected = {}
    for step in range(21):
        values = [v for t, v in ordered if step - range_s < t <= step]
        if values:
            expected[step] = {
                "sum_over_time": sum(values), "avg_over_time": sum(values) / len(values),
                "max_over_time": max(values), "min_over_time": min(values),
                "stdvar_over_time": float(np.var(values)), "first_over_time": values[0],
                "last_over_time": values[-1]}[func]
    assert got.keys() == expected.keys()
    for step, value in expected.items():
        assert got[step] == pytest.approx(value, rel=1e-9, abs=1e-6)


# -- offset, absent, topk, sort ---------------------------------------------------------
def test_offset_shifts_the_window(snap):
    now = at(snap, 'count_over_time({app="api"}[2s])', 5)
    earlier = at(snap, 'count_over_time({app="api"}[2s] offset 2s)', 7)
    assert now == earlier and now


def test_absent_over_time(snap):
    text = 'absent_over_time({app="api", host=~"a|b"}[1s])'
    out = run(snap, text, start_ns=B, end_ns=B + 7 * S, step_ns=S)
    assert [(s.labels, points(s)) for s in out.series] == [
        ({"app": "api"}, [(0, 1.0), (6, 1.0), (7, 1.0)])]


def test_topk_bottomk_and_sort(snap):
    inner = 'sum by (host) (count_over_time({app=~".+"}[10s]))'
    assert at(snap, f"topk(1, {inner})", 6) == {(("host", "a"),): 6.0}
    assert at(snap, f"bottomk(1, {inner})", 6) == {(("host", "b"),): 2.0}
    assert at(snap, f"topk by (host) (1, {inner})", 6) == {
        (("host", "a"),): 6.0, (("host", "b"),): 2.0}
    ascending = run(snap, f"sort({inner})", instant_ns=B + 6 * S, start_ns=0, end_ns=0)
    assert [s.labels["host"] for s in ascending.series] == ["b", "a"]
    descending = run(snap, f"sort_desc({inner})", instant_ns=B + 6 * S, start_ns=0, end_ns=0)
    assert [s.labels["host"] for s in descending.series] == ["a", "b"]
    assert at(snap, f"stddev({inner})", 6) == {(): 2.0}
    assert at(snap, f"stdvar({inner})", 6) == {(): 4.0}


# -- binary operations ------------------------------------------------------------------
def test_grafana_health_check_query():
    """Grafana's "Save & test" asks for vector(1)+vector(1) at 4 s past the epoch,
    on any store, and wants one sample valued 2."""
    store = tidal.open()
    try:
        with store.snapshot() as snapshot:
            out = run_logql(snapshot, "vector(1)+vector(1)", start_ns=0, end_ns=4 * S,
                            instant_ns=4 * S)
    finally:
        store.close()
    assert out.kind == "vector"
    assert [(s.labels, s.points) for s in out.series] == [({}, [(4 * S, 2.0)])]


def test_scalars(snap):
    out = run(snap, "1 + 2 * 3 ^ 2 ^ 0.5 - -1", instant_ns=B, start_ns=0, end_ns=0)
    assert out.kind == "scalar"
    assert out.series[0].points[0][1] == pytest.approx(2 + 2 * 3 ** (2 ** 0.5))
    assert at(snap, "7 % 3 + 2 > bool 1", 0) == {(): 1.0}
    assert at(snap, "-7 % 3", 0) == {(): -1.0}  # Go's math.Mod keeps the dividend's sign
    out = run(snap, "1 / 0", start_ns=B, end_ns=B + 2 * S, step_ns=S)
    assert out.kind == "matrix" and [p[1] for p in out.series[0].points] == [np.inf] * 3


def test_vector_and_scalar(snap):
    inner = 'sum by (host) (count_over_time({app="api"}[10s]))'
    assert at(snap, f"{inner} * 10", 6) == {(("host", "a"),): 50.0, (("host", "b"),): 20.0}
    assert at(snap, f"{inner} > 3", 6) == {(("host", "a"),): 5.0}
    assert at(snap, f"3 < {inner}", 6) == {(("host", "a"),): 5.0}  # keeps the vector's value
    assert at(snap, f"{inner} > bool 3", 6) == {(("host", "a"),): 1.0, (("host", "b"),): 0.0}


def test_vector_matching(snap):
    errors = 'sum by (host) (count_over_time({app="api"} |~ " 5[0-9][0-9] " [10s]))'
    total = 'sum by (host, app) (count_over_time({app=~".+"}[10s]))'
    with pytest.raises(QueryError, match="many-to-many|duplicate series"):
        at(snap, f"{errors} / ignoring (app) {total}", 6)  # host a: api and web
    assert at(snap, f"{errors} / on (host) sum by (host) ({total})", 6) == {
        (("host", "b"),): 1.0}
    got = at(snap, f"{total} / on (host) group_left () sum by (host) ({total})", 6)
    assert got == {(("app", "api"), ("host", "a")): 5 / 6,
                   (("app", "web"), ("host", "a")): 1 / 6,
                   (("app", "api"), ("host", "b")): 1.0}
    got = at(snap, f"sum by (host) ({total}) * on (host) group_right () {total}", 6)
    assert got[(("app", "web"), ("host", "a"))] == 6.0


def test_set_operators(snap):
    api = 'sum by (host) (count_over_time({app="api"}[10s]))'
    web = 'sum by (host) (count_over_time({app="web"}[10s]))'
    assert at(snap, f"{api} and {web}", 6) == {(("host", "a"),): 5.0}
    assert at(snap, f"{api} unless {web}", 6) == {(("host", "b"),): 2.0}
    assert at(snap, f"{web} or {api}", 6) == {(("host", "a"),): 1.0, (("host", "b"),): 2.0}
    assert at(snap, f"{api} and on () vector(1)", 6) == at(snap, api, 6)


def test_grafana_logs_volume_query(snap):
    """The logs volume panel's query, as Grafana writes it (``$__auto`` as a step)."""
    text = ('sum by (level, detected_level) (count_over_time({app=~".+"} | logfmt '
            "| drop __error__[1s]))")
    out = run(snap, text, start_ns=B, end_ns=B + 6 * S, step_ns=S)
    assert out.kind == "matrix"
    assert [(s.labels, points(s)) for s in out.series] == [
        ({}, [(1, 1.0), (2, 2.0), (3, 2.0), (4, 2.0), (5, 1.0)])]


def test_categorized_streams_keep_parsed_labels_per_entry(snap):
    out = run(snap, '{app="api", host="b"} | logfmt | keep app, host, latency',
              categorize=True)
    [stream] = out.streams  # one stream: the labels read, not the parsed ones
    assert stream.labels == {"app": "api", "host": "b"}
    assert [(ts - B) // S for ts, _ in stream.entries] == [4, 2]
    assert stream.parsed == [{"latency": "4s"}, {"latency": "2s"}]
    plain = run(snap, '{app="api", host="b"} | logfmt | keep app, host, latency')
    assert sorted(s.labels["latency"] for s in plain.streams) == ["2s", "4s"]
    assert all(s.parsed is None for s in plain.streams)


# -- sums grouped as the series are made, and the size limits ----------------------------
@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 30), st.sampled_from(["a", "b", "c"]),
                               st.sampled_from(["info", "error", None]), st.integers(0, 99)),
                     min_size=1, max_size=40),
       func=st.sampled_from(["count_over_time", "rate", "bytes_over_time", "bytes_rate"]),
       grouping=st.sampled_from(["by (level)", "by (host, level)", "without (req)", "",
                                 "by (nothing)"]),
       line_filter=st.sampled_from(["", '|= "1"', '| level = "error"', "| drop req"]))
def test_sums_grouped_early_equal_sums_of_series(rows, func, grouping, line_filter):
    """``sum by (...) (f(...))`` groups while it counts (and reads only the labels
    it needs); ``* 1`` in between forces series first. Both must agree."""
    store = tidal.open()
    try:
        store.append([{"timestamp": B + t * S, "app": "x", "host": host, "level": level,
                       "req": f"r{req}", "message": f"line {req}"}
                      for t, host, level, req in rows])
        with store.snapshot() as snapshot:
            inner = f'{func}({{app="x"}} {line_filter} [4s])'
            direct = run(snapshot, f"sum {grouping} ({inner})", start_ns=B, end_ns=B + 32 * S,
                         step_ns=2 * S)
            apart = run(snapshot, f"sum {grouping} ({inner} * 1)", start_ns=B,
                        end_ns=B + 32 * S, step_ns=2 * S)
    finally:
        store.close()
    assert [(s.labels, s.points) for s in direct.series] == \
        [(s.labels, s.points) for s in apart.series]


def test_too_many_series_is_refused_with_a_hint(snap, monkeypatch):
    from tidal.correlate.logql import metric

    monkeypatch.setattr(metric, "MAX_SERIES", 2)
    with pytest.raises(QueryError, match=r"maximum of series \(2\).*sum by"):
        at(snap, 'count_over_time({app=~".+"}[10s])', 6)
    assert at(snap, 'sum by (app) (count_over_time({app=~".+"}[10s]))', 6) == {
        (("app", "api"),): 7.0, (("app", "web"),): 1.0}
    monkeypatch.setattr(metric, "MAX_VALUES", 10)
    with pytest.raises(QueryError, match="too many values"):
        run(snap, 'sum(count_over_time({app=~".+"}[10s]))', start_ns=B, end_ns=B + 20 * S,
            step_ns=S)
