"""The Query DSL subset of an EQL search's ``filter``, as an EQL condition and time
bounds: a table of filters and what each becomes, and the refusals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tidal.server.elastic_dsl import DslError, Filter, translate

S = 1_000_000_000


@dataclass(frozen=True)
class Case:
    name: str
    query: Any
    expected: Filter


CASES = [
    Case("match_all", {"match_all": {}}, Filter()),
    Case("term", {"term": {"host.name": "a"}}, Filter('host.name == "a"')),
    Case("term with value", {"term": {"n": {"value": 3, "boost": 2}}}, Filter("n == 3")),
    Case("terms", {"terms": {"level": ["error", "warn"]}}, Filter('level in ("error", "warn")')),
    Case("exists", {"exists": {"field": "trace_id"}}, Filter("trace_id != null")),
    Case("odd names are backquoted", {"term": {"k8s.pod-name": 'x"\n'}},
         Filter('k8s.`pod-name` == "x\\"\\n"')),
    Case("range on a field", {"range": {"latency": {"gt": 5, "lte": 9.5}}},
         Filter("(latency > 5) and (latency <= 9.5)")),
    Case("range on the time: bounds", {"range": {"@timestamp": {"gte": 1000, "lt": 2000}}},
         Filter(None, 1 * S, 2 * S)),
    Case("gt and lte move the bounds by 1 ns",
         {"range": {"timestamp": {"gt": "1970-01-01T00:00:01Z", "lte": "1970-01-01T00:00:02Z"}}},
         Filter(None, S + 1, 2 * S + 1)),
    Case("bool", {"bool": {"must": [{"term": {"a": 1}}], "filter": {"term": {"b": True}},
                           "must_not": [{"term": {"c": None}}]}},
         Filter("(a == 1) and (b == true) and (not (c == null))")),
    Case("should alone: one of them", {"bool": {"should": [{"term": {"a": 1}},
                                                            {"term": {"a": 2}}]}},
         Filter("(a == 1) or (a == 2)")),
    Case("should beside must: scoring only", {"bool": {"must": {"term": {"a": 1}},
                                                        "should": {"term": {"b": 2}}}},
         Filter("a == 1")),
    Case("a list is and-ed", [{"term": {"a": 1}}, {"range": {"@timestamp": {"gte": 0}}}],
         Filter("a == 1", 0)),
    Case("must_not match_all", {"bool": {"must_not": {"match_all": {}}}}, Filter("false")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_filter_becomes_its_condition(case):
    assert translate(case.query, "timestamp", "@timestamp") == case.expected


@pytest.mark.parametrize(("query", "words"), [
    ({"fuzzy": {"a": "b"}}, "unknown query [fuzzy]"),
    ({"term": {"a": 1, "b": 2}}, "exactly one field"),
    ({"terms": {"a": []}}, "non-empty list"),
    ({"term": {"a": {"x": 1}}}, "takes a string"),
    ({"range": {"a": {"near": 1}}}, "does not support [near]"),
    ({"range": {"@timestamp": {"gte": "yesterday"}}}, "[range] on [@timestamp]"),
    ({"bool": {"should": [], "boost": 1}}, "does not support [boost]"),
    ("text", "an object with one clause"),
])
def test_what_cannot_be_read_is_refused_by_name(query, words):
    with pytest.raises(DslError) as caught:
        translate(query, "timestamp", "@timestamp")
    assert words in str(caught.value)
