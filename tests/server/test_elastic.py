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


# -- async searches (Kibana's way): kept, polled, their status, deleted ------------------
def test_a_search_that_outlives_its_request_is_kept_and_polled(es):
    query = "sequence by user.name [process where true] [network where true]"
    whole = es.eql.search(index="*", query=query, size=100).body
    first = es.eql.search(index="*", query=query, size=100, wait_for_completion_timeout="0ms",
                          keep_alive="1m").body
    assert first["is_running"] is True and first["is_partial"] is True  # (no time given)
    search_id = first["id"]
    done = es.eql.get(id=search_id, wait_for_completion_timeout="30s").body
    assert (done["id"], done["is_running"], done["is_partial"]) == (search_id, False, False)
    assert done["hits"] == whole["hits"]
    status = es.eql.get_status(id=search_id).body
    assert (status["id"], status["is_running"], status["completion_status"]) == (
        search_id, False, 200)
    assert status["expiration_time_in_millis"] > status["start_time_in_millis"]
    assert es.eql.delete(id=search_id).body == {"acknowledged": True}
    with pytest.raises(NotFoundError) as info:
        es.eql.get(id=search_id)
    assert info.value.body["error"]["type"] == "resource_not_found_exception"
    with pytest.raises(NotFoundError):
        es.eql.get_status(id=search_id)


def test_keep_on_completion_and_timeouts(es):
    kept = es.eql.search(index="*", query="any where i == 3", keep_on_completion=True,
                         wait_for_completion_timeout="10s").body
    assert kept["is_running"] is False and ids(kept["hits"]["events"]) == [3]
    again = es.eql.get(id=kept["id"]).body
    assert again["hits"] == kept["hits"]
    quick = es.eql.search(index="*", query="any where i == 3",
                          wait_for_completion_timeout="10s").body
    assert "id" not in quick and ids(quick["hits"]["events"]) == [3]
    with pytest.raises(BadRequestError) as info:
        es.eql.search(index="*", query="any where true", wait_for_completion_timeout="soon")
    assert info.value.body["error"]["type"] == "illegal_argument_exception"


def test_a_kept_search_that_failed_keeps_its_error(es):
    first = es.eql.search(index="*", query="any where nope == 1",
                          wait_for_completion_timeout="0ms").body
    status = es.eql.get_status(id=first["id"])
    with pytest.raises(BadRequestError) as info:
        es.eql.get(id=first["id"], wait_for_completion_timeout="30s")
    assert info.value.body["error"]["type"] == "verification_exception"
    assert es.eql.get_status(id=first["id"]).body["completion_status"] == 400
    assert status.body["id"] == first["id"]


def test_kept_searches_need_the_query_scope(served):
    plain = httpx.get(f"{served.url}/_eql/search/status/abc",
                      headers={"Authorization": "ApiKey ingest-only"})
    assert plain.status_code == 403
    assert plain.json()["error"]["type"] == "security_exception"
    assert httpx.delete(f"{served.url}/_eql/search/abc").status_code == 401
