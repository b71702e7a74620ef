"""``/{index}/_eql/search`` with Elastic's official Python client, unchanged: its
product check, api_key and basic auth, event and sequence answers in Elastic's
shape, the filter, fields, size and result_position, and Elastic's errors."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from elasticsearch import (
    ApiError,
    AuthenticationException,
    BadRequestError,
    Elasticsearch,
    NotFoundError,
)

import tidal
from tidal.server import ServerConfig
from tidal.server.config import Token

from .conftest import Served, serving

TOKEN = "s3cret"


def events() -> list[dict]:
    """12 events a second apart: processes and network events of two users, in two
    indices (logs-a: the first six)."""
    return [{"timestamp": f"2026-01-01T00:00:{i:02d}Z", "entity": f"host-{i % 2}",
             "event": {"category": "network" if i % 3 == 0 else "process"},
             "user": {"name": f"u{i % 2}"}, "i": i, "index": "logs-a" if i < 6 else "logs-b"}
            for i in range(12)]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    config = ServerConfig(tokens=(Token(TOKEN, frozenset({"query"})),
                                  Token("ingest-only", frozenset({"ingest"}))))
    with tidal.open(tmp_path_factory.mktemp("es") / "store") as store, \
            serving(store, config) as running:
        store.append(events())
        yield running


@pytest.fixture(scope="module")
def es(served) -> Elasticsearch:
    return Elasticsearch(served.url, api_key=TOKEN)


def ids(hits: list[dict]) -> list[int]:
    return [hit["_source"]["i"] for hit in hits]


def test_an_event_query_answers_as_elasticsearch_does(es):
    got = es.eql.search(index="store", query='process where i > 2', size=3)
    body = got.body
    assert (body["is_partial"], body["is_running"], body["timed_out"]) == (False, False, False)
    assert isinstance(body["took"], int)
    assert body["hits"]["total"] == {"value": 3, "relation": "eq"}
    hits = body["hits"]["events"]
    assert ids(hits) == [8, 10, 11]  # result_position tail (the default): the last three
    assert hits[0]["_id"] == "8" and hits[0]["_index"] == "logs-b"
    assert hits[0]["_source"]["timestamp"] == "2026-01-01T00:00:08.000000000Z"
    assert hits[0]["_source"]["user"] == {"name": "u0"}
    assert "_seq" not in hits[0]["_source"]
    assert got.meta.headers["X-Elastic-Product"] == "Elasticsearch"


def test_head_size_and_fields(es):
    body = es.eql.search(index="_all", query="any where true", size=2, result_position="head",
                         fields=["user.*", {"field": "i"}]).body
    assert ids(body["hits"]["events"]) == [0, 1]
    assert body["hits"]["events"][1]["fields"] == {"user.name": ["u1"], "i": [1]}


def test_a_sequence_with_join_keys_and_a_missing_event(es):
    body = es.eql.search(index="*", query="""
        sequence by user.name with maxspan=10s
          [process where true] ![network where i == 100] [network where true]""",
        size=10).body
    sequences = body["hits"]["sequences"]
    assert body["hits"]["total"] == {"value": len(sequences), "relation": "eq"}
    found = [(s["join_keys"], ids([s["events"][0], s["events"][2]])) for s in sequences]
    assert found == [(["u1"], [1, 3]), (["u0"], [4, 6]), (["u1"], [7, 9])]  # (latest start)
    first = sequences[0]
    assert [e.get("missing", False) for e in first["events"]] == [False, True, False]
    assert first["events"][1] == {"_index": "", "_id": "", "_source": {}, "missing": True}


def test_the_filter_and_the_index_select_events(es):
    body = es.eql.search(index="logs-b", query="any where true", size=100, filter={
        "bool": {"filter": [{"range": {"@timestamp": {"gte": "2026-01-01T00:00:07Z",
                                                      "lt": 1767225610000}}}],
                 "must_not": [{"term": {"user.name": "u1"}}]}}).body
    assert ids(body["hits"]["events"]) == [8]
    body = es.eql.search(index="logs-a,logs-c*", query="network where true", size=100).body
    assert ids(body["hits"]["events"]) == [0, 3]


@pytest.mark.parametrize(("query", "kind"), [
    ("process where (", "parsing_exception"),
    ("process where nope == 1", "verification_exception"),
    ("process where i == \"text\"", "verification_exception"),
])
def test_bad_queries_get_elastic_errors(es, query, kind):
    with pytest.raises(BadRequestError) as caught:
        es.eql.search(index="*", query=query)
    assert caught.value.error == kind
    assert caught.value.body["status"] == 400
    assert caught.value.body["error"]["root_cause"][0]["type"] == kind
    assert "line 1" in caught.value.body["error"]["reason"]


def test_a_filter_tidal_cannot_read_is_a_parsing_exception(es):
    with pytest.raises(BadRequestError) as caught:
        es.eql.search(index="*", query="any where true", filter={"fuzzy": {"a": "b"}})
    assert caught.value.error == "parsing_exception"
    assert "fuzzy" in caught.value.body["error"]["reason"]


def test_auth_is_elastic_shaped(served):
    with pytest.raises(AuthenticationException) as caught:
        Elasticsearch(served.url, api_key="wrong").eql.search(index="*", query="any where true")
    assert caught.value.error == "security_exception"
    basic = Elasticsearch(served.url, basic_auth=("anyone", TOKEN))
    assert basic.eql.search(index="*", query="any where true").body["hits"]["total"]["value"]
    with pytest.raises(ApiError) as caught:
        Elasticsearch(served.url, api_key="ingest-only").eql.search(index="*",
                                                                   query="any where true")
    assert caught.value.meta.status == 403


def test_an_index_no_event_carries_is_not_found(tmp_path):
    with tidal.open(tmp_path / "plain") as store, serving(store) as served:
        store.append([{"timestamp": 1, "entity": "a", "event": {"category": "process"}}])
        es = Elasticsearch(served.url)
        assert es.eql.search(index="plain", query="any where true").body["hits"]["total"][
            "value"] == 1
        with pytest.raises(NotFoundError) as caught:
            es.eql.search(index="logs-*", query="any where true")
        assert caught.value.error == "index_not_found_exception"


def test_a_plain_http_client_gets_json(served):
    got = httpx.post(f"{served.url}/store/_eql/search", json={"query": "any where i == 4"},
                     headers={"Authorization": f"Bearer {TOKEN}"})
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json"
    assert ids(got.json()["hits"]["events"]) == [4]
