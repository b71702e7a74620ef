"""Reading over HTTP: timelines, EQL / CorQL / SQL in each answer format, rules and
their stored correlations, on a real server on loopback."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import httpx
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

import tidal
from tidal.server import ServerConfig
from tidal.server.config import Token

from .conftest import serving

JSON = "application/json"
NDJSON = "application/x-ndjson"
ARROW = "application/vnd.apache.arrow.stream"
T0 = "2026-01-01T00:00:00"
JOIN = 'events({svc="fe"}) and on(rid) within(10s) events({svc="be"})'
SEQUENCE = 'sequence by rid [any where svc == "fe"] [any where svc == "be"]'


def requests(n: int, *, entity: str = "pod-1", second: int = 0) -> list[dict]:
    """``n`` requests: a frontend event and, 1 s later, a backend event of the same rid."""
    out = []
    for i in range(n):
        at = second + 2 * i
        out += [{"timestamp": f"2026-01-01T00:{at // 60:02d}:{at % 60:02d}.000000001Z",
                 "entity": entity, "svc": "fe", "rid": f"r{second}-{i}",
                 "http": {"status": 200, "path": "/api"}},
                {"timestamp": f"2026-01-01T00:{(at + 1) // 60:02d}:{(at + 1) % 60:02d}Z",
                 "entity": entity, "svc": "be", "rid": f"r{second}-{i}",
                 "http": {"status": 500, "path": "/api"}}]
    return out


@pytest.fixture
def seeded(served):
    served.store.append(requests(3) + requests(1, entity="ns/pod-2", second=30))
    return served


def post(served, body: dict, accept: str = JSON) -> httpx.Response:
    return httpx.post(f"{served.url}/v1/query", json=body, headers={"Accept": accept},
                      timeout=30)


def lines(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines()]


def arrow(response: httpx.Response) -> pa.Table:
    assert response.headers["content-type"] == ARROW
    return ipc.open_stream(response.content).read_all()


# -- timeline -------------------------------------------------------------------------------

def test_a_timeline_in_json_with_times_as_rfc3339_and_nested_objects(seeded):
    got = httpx.get(f"{seeded.url}/v1/entities/pod-1/timeline")
    assert got.status_code == 200 and got.headers["content-type"] == JSON
    events = got.json()["events"]
    assert [e["svc"] for e in events] == ["fe", "be"] * 3
    assert events[0]["timestamp"] == f"{T0}.000000001Z"
    assert events[1]["timestamp"] == "2026-01-01T00:00:01.000000000Z"
    assert events[0]["http"] == {"status": 200, "path": "/api"}
    assert events[0]["_seq"] == 0


def test_a_timeline_bounded_limited_and_newest_first(seeded):
    url = f"{seeded.url}/v1/entities/pod-1/timeline"
    newest = httpx.get(url, params={"desc": "true", "limit": 2}).json()["events"]
    assert [e["timestamp"][:19] for e in newest] == [f"{T0[:17]}05", f"{T0[:17]}04"]
    window = httpx.get(url, params={"start": "2026-01-01T00:00:01Z",
                                    "end": "2026-01-01T00:00:03Z"}).json()["events"]
    assert [e["timestamp"][:19] for e in window] == [f"{T0[:17]}01", f"{T0[:17]}02"]
    assert httpx.get(url, params={"limit": "x"}).status_code == 400
    assert httpx.get(url, params={"desc": "maybe"}).status_code == 400


def test_a_timeline_of_an_entity_with_a_slash_in_ndjson_and_arrow(seeded):
    url = f"{seeded.url}/v1/entities/ns%2Fpod-2/timeline"
    assert [e["svc"] for e in lines(httpx.get(url, headers={"Accept": NDJSON}))] == [
        "fe", "be"]
    table = arrow(httpx.get(url, headers={"Accept": ARROW}))
    assert table.column("entity").to_pylist() == ["ns/pod-2"] * 2
    assert pa.types.is_timestamp(table.schema.field("timestamp").type)


def test_a_timeline_of_an_entity_with_a_newline(served):
    served.store.append(requests(1, entity="odd\nname"))
    got = httpx.get(f"{served.url}/v1/entities/odd%0Aname/timeline")
    assert got.status_code == 200, got.text
    assert [e["entity"] for e in got.json()["events"]] == ["odd\nname"] * 2


# -- queries in every language and format ---------------------------------------------------

def test_an_eql_event_query_in_each_format(seeded):
    body = {"language": "eql", "query": 'any where svc == "be"'}
    document = post(seeded, body).json()
    assert document["correlations"] == []
    assert [e["rid"] for e in document["events"]] == ["r0-0", "r0-1", "r0-2", "r30-0"]
    assert [e["rid"] for e in lines(post(seeded, body, NDJSON))] == [
        "r0-0", "r0-1", "r0-2", "r30-0"]
    table = arrow(post(seeded, body, ARROW))
    assert table.column("rid").to_pylist() == ["r0-0", "r0-1", "r0-2", "r30-0"]


@pytest.mark.parametrize("language,query", [("eql", SEQUENCE), ("corql", JOIN)])
def test_correlations_in_each_format(seeded, language, query):
    body = {"language": language, "query": query, "end": "2026-01-02T00:00:00Z"}
    document = post(seeded, body).json()
    assert document["events"] == []
    first = document["correlations"][0]
    assert (first["id"], first["key"], first["completeness"], first["labels"]) == (
        0, {"rid": "r0-0"}, "complete", {})
    assert (first["start"], first["end"]) == (f"{T0}.000000001Z", f"{T0[:17]}01.000000000Z")
    assert [e["svc"] for e in first["events"]] == ["fe", "be"]
    assert [c["key"]["rid"] for c in document["correlations"]] == [
        "r0-0", "r0-1", "r0-2", "r30-0"]

    each = lines(post(seeded, body, NDJSON))
    assert each == document["correlations"]

    table = arrow(post(seeded, body, ARROW))
    assert table.column("_sequence").to_pylist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert "_stage" in table.column_names
    assert table.column("svc").to_pylist() == ["fe", "be"] * 4


def test_sql_as_columns_and_rows_as_ndjson_objects_and_as_arrow(seeded):
    body = {"language": "sql",
            "query": "select svc, count(*) as n, max(timestamp) as last "
                     "from events group by svc order by svc"}
    document = post(seeded, body).json()
    assert [c["name"] for c in document["columns"]] == ["svc", "n", "last"]
    assert document["rows"] == [["be", 4, "2026-01-01T00:00:31.000000000Z"],
                                ["fe", 4, "2026-01-01T00:00:30.000000001Z"]]
    assert lines(post(seeded, body, NDJSON))[0] == {
        "svc": "be", "n": 4, "last": "2026-01-01T00:00:31.000000000Z"}
    assert arrow(post(seeded, body, ARROW)).column("n").to_pylist() == [4, 4]


@pytest.mark.parametrize("language,query,key", [
    ("eql", 'any where svc == "fe"', "events"),
    ("eql", SEQUENCE, "correlations"),
    ("corql", JOIN, "correlations"),
    ("sql", "select * from events order by _seq", "rows"),
])
def test_limit_caps_rows_and_correlations(seeded, language, query, key):
    got = post(seeded, {"language": language, "query": query, "limit": 2}).json()
    assert len(got[key]) == 2
    assert len(lines(post(seeded, {"language": language, "query": query, "limit": 1},
                          NDJSON))) == 1


def test_a_large_answer_streams_in_batches_and_parses_whole(served):
    served.store.append(requests(1500))  # (past a JSON batch and a correlation chunk)
    events = post(served, {"language": "eql", "query": "any where true"}).json()["events"]
    assert len(events) == 3000 and [e["_seq"] for e in events] == list(range(3000))
    found = post(served, {"language": "corql", "query": JOIN,
                          "end": "2026-01-02T00:00:00Z"}).json()["correlations"]
    assert [c["id"] for c in found] == list(range(1500))
    assert all([e["rid"] for e in c["events"]] == [c["key"]["rid"]] * 2 for c in found)
    rows = lines(post(served, {"language": "sql", "query": "select _seq from events"},
                      NDJSON))
    assert len(rows) == 3000


# -- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("language,query,line,column", [
    ("eql", "any where\n  svc == )", 2, 10),
    ("corql", 'events({svc=}) and\nevents({svc="be"})', 1, 13),
])
def test_a_malformed_query_is_a_400_naming_line_and_column(seeded, language, query, line,
                                                           column):
    got = post(seeded, {"language": language, "query": query})
    assert got.status_code == 400
    error = got.json()["error"]
    assert error["type"] == "bad_query"
    assert error["details"] == {"line": line, "column": column}


def test_bad_requests_are_400_and_a_format_we_lack_is_406(seeded):
    bad_language = post(seeded, {"language": "kql", "query": "x"})
    assert bad_language.status_code == 400
    assert bad_language.json()["error"]["details"] == {"field": "language"}
    assert post(seeded, {"language": "sql", "query": "selec 1"}).status_code == 400
    assert post(seeded, {"language": "sql", "query": "select 1",
                         "start": "2026-01-01T00:00:00Z"}).status_code == 400
    missing = post(seeded, {"language": "eql"})
    assert missing.status_code == 400 and "query" in missing.json()["error"]["message"]
    assert post(seeded, {"query": "any where true", "limit": -1}).status_code == 400
    assert post(seeded, {"query": "any where true", "size": 1}).status_code == 400
    not_json = httpx.post(f"{seeded.url}/v1/query", content=b"{nope")
    assert not_json.status_code == 400
    assert post(seeded, {"query": "any where true"}, "text/html").status_code == 406
    assert post(seeded, {"query": "any where true"}, "text/html, */*;q=0.1").status_code == 200
    preferred = post(seeded, {"query": "any where true"},
                     f"{JSON};q=0.5, {NDJSON}")
    assert preferred.headers["content-type"] == NDJSON


# -- rules and their correlations -----------------------------------------------------------

def test_rules_are_added_listed_removed_and_persisted(tmp_path):
    url_of = "{}/v1/rules/{}".format
    with tidal.open(tmp_path / "store") as store, serving(store) as served:
        put = httpx.put(url_of(served.url, "fe-be"), json={"query": JOIN, "language": "corql"})
        assert put.status_code == 201
        assert put.headers["location"] == "/v1/rules/fe-be"
        assert put.json()["name"] == "fe-be" and put.json()["from_seq"] == 0
        again = httpx.put(url_of(served.url, "fe-be"), json={"query": JOIN,
                                                              "language": "corql"})
        assert again.status_code == 409
        spaced = httpx.put(url_of(served.url, "a seq"), json={"query": SEQUENCE})
        assert spaced.headers["location"] == "/v1/rules/a%20seq"
        assert httpx.get(f"{served.url}{spaced.headers['location']}").json()["name"] == "a seq"
        bad = httpx.put(url_of(served.url, "bad"), json={"query": "any where ("})
        assert bad.status_code == 400 and bad.json()["error"]["details"]["line"] == 1

        listed = httpx.get(f"{served.url}/v1/rules").json()["rules"]
        assert sorted((r["name"], r["language"]) for r in listed) == [
            ("a seq", "eql"), ("fe-be", "corql")]
        one = httpx.get(url_of(served.url, "fe-be")).json()
        assert one["query"] == JOIN and one["stats"]["correlations"] == 0
        assert httpx.get(url_of(served.url, "nope")).status_code == 404

        assert httpx.delete(url_of(served.url, "a seq")).status_code == 204
        assert httpx.delete(url_of(served.url, "a seq")).status_code == 404
    with tidal.open(tmp_path / "store") as reopened:
        assert [(r.name, r.query) for r in reopened.rules()] == [("fe-be", JOIN)]


def test_a_rules_correlations_are_listed_once_it_finds_them(served):
    assert httpx.put(f"{served.url}/v1/rules/fe-be",
                     json={"query": JOIN, "language": "corql"}).status_code == 201
    served.store.append(requests(2))
    url = f"{served.url}/v1/correlations"
    deadline = time.monotonic() + 20
    while len(found := httpx.get(url, params={"rule": "fe-be"}).json()["correlations"]) < 2:
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    assert found[0] == {"rule": "fe-be", "id": 0, "key": {"rid": "r0-0"},
                        "start": f"{T0}.000000001Z", "end": f"{T0[:17]}01.000000000Z",
                        "completeness": "complete", "seqs": [0, 1]}
    assert httpx.get(url, params={"rule": "other"}).json() == {"correlations": []}
    later = httpx.get(url, params={"start": "2026-01-01T00:00:01Z"}).json()["correlations"]
    assert [c["id"] for c in later] == [1]
    assert len(lines(httpx.get(url, params={"limit": 1}, headers={"Accept": NDJSON}))) == 1
    table = arrow(httpx.get(url, headers={"Accept": ARROW}))
    assert table.column("seqs").to_pylist() == [[0, 1], [2, 3]]


@dataclass
class Case:
    method: str
    path: str
    token: str
    status: int


@pytest.mark.parametrize("case", [
    Case("GET", "/v1/rules", "", 401),
    Case("GET", "/v1/rules", "reader", 200),
    Case("GET", "/v1/entities/pod-1/timeline", "writer", 403),
    Case("PUT", "/v1/rules/r", "reader", 403),
    Case("PUT", "/v1/rules/r", "admin", 201),
    Case("DELETE", "/v1/rules/r", "reader", 403),
], ids=lambda c: f"{c.method} {c.path} {c.token or 'no token'}")
def test_scopes(tmp_path, case):
    config = ServerConfig(tokens=(Token("reader", frozenset({"query"})),
                                  Token("writer", frozenset({"ingest"})),
                                  Token("admin", frozenset({"admin"}))))
    with tidal.open(tmp_path / "store") as store, serving(store, config) as served:
        got = httpx.request(case.method, f"{served.url}{case.path}",
                            params={"token": case.token} if case.token else None,
                            json={"query": SEQUENCE} if case.method == "PUT" else None)
        assert got.status_code == case.status, got.text
