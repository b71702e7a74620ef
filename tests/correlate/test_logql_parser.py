"""LogQL text → AST: each construct, canonical text that parses back to the same
AST, and errors that name line and column."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tidal.correlate.logql as logql
from tidal.correlate.corql.ast import Matcher as M
from tidal.correlate.logql import is_metric, parse_logql
from tidal.correlate.logql.ast import (
    Grouping,
    LabelAnd,
    LabelCompare,
    LabelFilter,
    LabelFormat,
    LabelMatch,
    LabelOr,
    LineFilter,
    LineFormat,
    LogQuery,
    Parser,
    RangeAggregation,
    VectorAggregation,
)
from tidal.errors import QueryError

MIN = 60 * 10**9
APP = (M("app", "=", "x"),)


def log(*stages, selector=APP) -> LogQuery:
    return LogQuery(selector, tuple(stages))


def lf(expr) -> LabelFilter:
    return LabelFilter(expr)


def lm(name, op, value) -> LabelMatch:
    return LabelMatch(M(name, op, value))


def count(query: LogQuery, range_ns: int = MIN, func: str = "count_over_time"):
    return RangeAggregation(func, query, range_ns)  # type: ignore[arg-type]


VALID = [
    # stream selectors
    ('{app="x"}', log()),
    ('{ app = "x" , }', log()),
    ('{app="api", level=~"err.*", c!="y", d!~"z|w"}',
     log(selector=(M("app", "=", "api"), M("level", "=~", "err.*"), M("c", "!=", "y"),
                   M("d", "!~", "z|w")))),
    ('{service.name="web"}', log(selector=(M("service.name", "=", "web"),))),
    ('{a="", b="x"}', log(selector=(M("a", "=", ""), M("b", "=", "x")))),
    # line filters, strings with escapes and raw strings
    ('{app="x"} |= "a" != "b" |~ "c+" !~ "d"',
     log(LineFilter("|=", "a"), LineFilter("!=", "b"), LineFilter("|~", "c+"),
         LineFilter("!~", "d"))),
    (r'{app="x"} |= "q\"t\n"', log(LineFilter("|=", 'q"t\n'))),
    (r'{app="x"} |~ `\d+\.\d`', log(LineFilter("|~", r"\d+\.\d"))),
    # parsers and label filters
    ('{app="x"} | json | logfmt', log(Parser("json"), Parser("logfmt"))),
    ('{app="x"} | JSON', log(Parser("json"))),
    ('{app="x"} | status >= 500', log(lf(LabelCompare("status", ">=", 500.0)))),
    ('{app="x"} | status = 500', log(lf(LabelCompare("status", "==", 500.0)))),
    ('{app="x"} | n != -1.5e3', log(lf(LabelCompare("n", "!=", -1500.0)))),
    ('{app="x"} | n < 1 | n <= 2 | n > 3',
     log(lf(LabelCompare("n", "<", 1.0)), lf(LabelCompare("n", "<=", 2.0)),
         lf(LabelCompare("n", ">", 3.0)))),
    ('{app="x"} | level = "error"', log(lf(lm("level", "=", "error")))),
    ('{app="x"} | level == "error"', log(lf(lm("level", "=", "error")))),
    ('{app="x"} | path =~ "/api.*" | p !~ "x"',
     log(lf(lm("path", "=~", "/api.*")), lf(lm("p", "!~", "x")))),
    ('{app="x"} | a="1", b="2"', log(lf(LabelAnd(lm("a", "=", "1"), lm("b", "=", "2"))))),
    ('{app="x"} | a="1" and b="2" or c="3"',
     log(lf(LabelOr(LabelAnd(lm("a", "=", "1"), lm("b", "=", "2")), lm("c", "=", "3"))))),
    ('{app="x"} | a="1" and (b="2" or c > 3)',
     log(lf(LabelAnd(lm("a", "=", "1"), LabelOr(lm("b", "=", "2"),
                                                 LabelCompare("c", ">", 3.0)))))),
    ('{app="x"} | json | status >= 500 |= "x"',
     log(Parser("json"), lf(LabelCompare("status", ">=", 500.0)), LineFilter("|=", "x"))),
    # formats
    ('{app="x"} | line_format "{{.a}} - {{ .b }} {{__line__}}"',
     log(LineFormat("{{.a}} - {{ .b }} {{__line__}}"))),
    ('{app="x"} | label_format new=old, t="{{.a}}/{{.b}}"',
     log(LabelFormat((("new", "old", False), ("t", "{{.a}}/{{.b}}", True))))),
    # range aggregations: the range after the selector or after the pipeline
    ('count_over_time({app="x"}[1m])', count(log())),
    ('count_over_time({app="x"} |= "e" [1h30m])', count(log(LineFilter("|=", "e")), 90 * MIN)),
    ('rate({app="x"}[1m] |= "e")', count(log(LineFilter("|=", "e")), func="rate")),
    ('bytes_over_time({app="x"}[5m])', count(log(), 5 * MIN, "bytes_over_time")),
    ('bytes_rate({app="x"} | json [250ms])', count(log(Parser("json")), 250 * 10**6,
                                                     "bytes_rate")),
    # vector aggregations, grouping before or after, nested, parenthesised
    ('sum by (level) (count_over_time({app="x"}[1m]))',
     VectorAggregation("sum", Grouping(False, ("level",)), count(log()))),
    ('sum(count_over_time({app="x"}[1m])) by (level, app)',
     VectorAggregation("sum", Grouping(False, ("level", "app")), count(log()))),
    ('avg without (pod) (rate({app="x"}[1m]))',
     VectorAggregation("avg", Grouping(True, ("pod",)), count(log(), func="rate"))),
    ('count by () (count_over_time({app="x"}[1m]))',
     VectorAggregation("count", Grouping(False, ()), count(log()))),
    ('MAX(min by (a) (count_over_time({app="x"}[1m])))',
     VectorAggregation("max", None, VectorAggregation("min", Grouping(False, ("a",)),
                                                       count(log())))),
    ('(sum((count_over_time({app="x"}[1m]))))', VectorAggregation("sum", None, count(log()))),
]


@pytest.mark.parametrize("text, expected", VALID, ids=[v[0] for v in VALID])
def test_valid_queries_parse_to_their_ast(text, expected):
    assert parse_logql(text) == expected


@pytest.mark.parametrize("text", [v[0] for v in VALID])
def test_canonical_text_parses_back_to_the_same_ast(text):
    query = parse_logql(text)
    assert parse_logql(str(query)) == query


@pytest.mark.parametrize("text, metric", [
    ('{app="x"} |= "a"', False),
    ('count_over_time({app="x"}[1m])', True),
    ('sum by (a) (rate({app="x"}[1m]))', True),
])
def test_is_metric(text, metric):
    assert is_metric(text) is metric


ERRORS = [
    ("", 1, 1, "empty query"),
    ("{}", 1, 1, "at least one matcher"),
    ('{app=~".*"}', 1, 1, "does not match the empty"),
    ('{a="", b!="x"}', 1, 1, "does not match the empty"),
    ('{app="x"', 1, 9, 'expected "," or "}"'),
    ("{app=x}", 1, 6, "quoted string"),
    ("{app}", 1, 5, "expected =, !=, =~ or !~"),
    ('{app="x"} |= 5', 1, 14, "quoted string"),
    ('{app="x"} |~ "("', 1, 14, "invalid regex"),
    ('{app=~"[a"}', 1, 7, "invalid regex"),
    ('{app="x"} | status >= "5"', 1, 23, "compares numbers"),
    ('{app="x"} | status >= 5x', 1, 23, "not a number, a duration"),
    ('{app="x"} | pattern "<_> x"', 1, 21, "at least one named capture"),
    ('{app="x"} | pattern "<a><b>"', 1, 21, "text between them"),
    ('{app="x"} | regexp "[0-9]+"', 1, 20, "named group"),
    ('{app="x"} | json a="b..c"', 1, 26, "invalid json expression"),
    ('sum_over_time({app="x"}[1m])', 1, 1, "| unwrap <label>"),
    ('count_over_time({app="x"} | unwrap n [1m])', 1, 1, "takes no unwrap"),
    ('sum_over_time({app="x"} | unwrap n | json [1m])', 1, 1, "only label filters"),
    ('count_over_time({app="x"}[1m]) by (a)', 1, 1, "takes no by/without"),
    ('quantile_over_time(2, {app="x"} | unwrap n [1m])', 1, 1, "between 0 and 1"),
    ('topk(0, count_over_time({app="x"}[1m]))', 1, 6, "whole number"),
    ('sum(1 + 2)', 1, 1, "not a number"),
    ('1 > 2', 1, 3, "must use bool"),
    ('vector(1) and 1', 1, 11, "between two vectors"),
    ('vector(1) + on (a) 2', 1, 11, "not a number"),
    ('vector(1) + bool vector(1)', 1, 13, "comparisons only"),
    ('count_over_time({app="x"}[1m]) + {app="y"}', 1, 34, "cannot be part of a metric"),
    ('sort by (a) (vector(1))', 1, 6, "no grouping"),
    ('{app="x"} | status', 1, 19, "expected a comparison"),
    ('{app="x"} | status =~ 5', 1, 23, "quoted regex"),
    ('{app="x"} | line_format "{{.a | upper}}"', 1, 25, "unsupported template action"),
    ('{app="x"} | 5', 1, 13, "after \"|\""),
    ('{app="x"} @', 1, 11, "unexpected character"),
    ('{app="x"}[5m]', 1, 10, "belongs inside a metric"),
    ('{app="x"} extra', 1, 11, "end of the query"),
    ('count_over_time({app="x"})', 1, 26, "needs a range"),
    ('count_over_time({app="x"}[5m] [1m])', 1, 31, "given twice"),
    ('rate({app="x"}[5x])', 1, 16, 'unknown unit "x"'),
    ('rate(sum(x))', 1, 6, "takes a log query and a range"),
    ('foo({app="x"})', 1, 1, "or a metric"),
    ('sum by (a) (rate({app="x"}[1m])) by (b)', 1, 34, "grouping already"),
    ('sum by (a (rate({app="x"}[1m]))', 1, 11, '","'),
    ('sum(rate({app="x"}[1m])', 1, 24, "to close sum"),
    ('{app="x"}\n  |= 5', 2, 6, "quoted string"),
]


@pytest.mark.parametrize("text, line, column, message", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_name_line_and_column(text, line, column, message):
    with pytest.raises(QueryError) as info:
        parse_logql(text)
    assert (info.value.line, info.value.column) == (line, column), str(info.value)
    assert message in str(info.value)
    assert str(info.value).splitlines()[-1].index("^") == column + 1  # ("  " then caret)


def test_public_names():
    assert sorted(logql.__all__) == ["LogQuery", "LogqlOptions", "LogqlResult", "Query",
                                     "Series", "Stream", "is_metric", "parse_logql",
                                     "run_logql"]


NEWER = [
    '{app="x"} | pattern `<ip> - <_> "<method> <path>" <status>`',
    '{app="x"} | regexp "(?P<method>\\\\w+) (?P<path>\\\\S+)"',
    '{app="x"} | json status="response.code", ua=`["User-Agent"]`, first="items[0]", level',
    '{app="x"} | logfmt took=latency, level',
    '{app="x"} | logfmt | drop __error__, level="info", pod=~"a.*" | keep app, level',
    '{app="x"} | decolorize | latency > 250ms and size <= 1.5MiB or took >= -2s',
    'sum_over_time({app="x"} | logfmt | unwrap latency [5m])',
    'avg_over_time({app="x"} | logfmt | unwrap duration(latency) | __error__="" [5m]) by (pod)',
    'max_over_time({app="x"} | json | unwrap bytes(size) [1m] offset 1h) without (pod)',
    'quantile_over_time(0.99, {app="x"} | logfmt | unwrap duration_seconds(t) [5m])',
    'absent_over_time({app="x"}[10m])',
    'count_over_time({app="x"}[5m] offset 30s)',
    'topk(3, sum by (app) (rate({app="x"}[1m])))',
    'bottomk by (ns) (2, count_over_time({app="x"}[1m]))',
    'sort_desc(sum(rate({app="x"}[1m])))',
    'stddev by (a) (count_over_time({app="x"}[1m]))',
    'sum(rate({app="x"}[1m])) / sum(rate({app="y"}[1m])) * 100',
    'sum by (a) (rate({app="x"}[1m])) > bool on (a) group_left (b) sum by (a, b) '
    '(rate({app="y"}[1m]))',
    'sum(rate({app="x"}[1m])) and ignoring (pod) sum(rate({app="y"}[1m])) or vector(0)',
    'count_over_time({app="x"}[1m]) unless on () vector(1)',
    '-count_over_time({app="x"}[1m]) % 7 ^ 2',
    'vector(1)+vector(1)',
    '1 + 2 * 3 - 4 / 2 == bool 5',
]


@pytest.mark.parametrize("text", NEWER)
def test_newer_constructs_parse_and_round_trip(text):
    query = parse_logql(text)
    assert parse_logql(str(query)) == query


def test_binary_precedence_and_associativity():
    one_plus = parse_logql("1 + 2 * 3")
    assert (one_plus.op, one_plus.right.op) == ("+", "*")
    power = parse_logql("2 ^ 3 ^ 2")  # right-associative
    assert (power.left.value, power.right.op) == (2.0, "^")
    minus = parse_logql("8 - 2 - 1")  # left-associative
    assert (minus.left.op, minus.right.value) == ("-", 1.0)
    q = 'count_over_time({a="x"}[1m])'
    mixed = parse_logql(f"{q} or {q} and {q} > 1")
    assert (mixed.op, mixed.right.op, mixed.right.right.op) == ("or", "and", ">")


_PIECES = ['{app="x"}', "{", "}", "(", ")", "[5m]", "[", "]", "|", "|=", '"e"', "`(?P<a>x)`",
           "json", "logfmt", "pattern", "regexp", "unwrap", "duration", "drop", "keep",
           "offset", "1h", "by", "without", "on", "ignoring", "group_left", "bool", "and",
           "or", "unless", "sum", "topk", "count_over_time", "sum_over_time",
           "quantile_over_time", "vector", "3", "0.5", "-", "+", "*", "/", "^", ">", "==",
           ",", "a", "=", "=~", "250ms", "1KB", "@", "'"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=14))
def test_any_text_parses_or_fails_with_a_query_error(pieces):
    text = " ".join(pieces)
    try:
        query = parse_logql(text)
    except QueryError as exc:
        assert exc.line >= 1 and exc.column >= 1
    else:
        assert parse_logql(str(query)) == query
