"""``POST /v1/events`` over a real loopback server: formats, encodings, chunked bodies,
receipts, tenants, and every kind of bad request (each answered, the store untouched,
the server still serving)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import cramjam
import httpx
import pyarrow as pa
import pytest

import tidal
from tidal.errors import BackpressureError
from tidal.server import ServerConfig

from .conftest import Served, serving

LIMIT = 64 << 10
URL = "/v1/events"
NDJSON = {"content-type": "application/x-ndjson"}


@pytest.fixture
def server(tmp_path) -> Iterator[Served]:
    """An open server whose bodies may hold at most 64 KiB."""
    with tidal.open(tmp_path / "store") as store, serving(
            store, ServerConfig(max_body_bytes=LIMIT)) as running:
        yield running


def events(n: int, start: int = 0) -> list[dict[str, object]]:
    return [{"timestamp": f"2026-01-01T00:00:{i % 60:02d}Z", "entity": f"pod-{i % 3}",
             "id": i} for i in range(start, start + n)]


def ndjson(rows: list[dict[str, object]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def arrow_stream(rows: list[dict[str, object]]) -> bytes:
    table = pa.Table.from_pylist(rows)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def post(served: Served, body: bytes | Iterator[bytes], headers: dict[str, str]
         ) -> httpx.Response:
    return httpx.post(served.url + URL, content=body, headers=headers, timeout=30)


def stored_ids(store: tidal.Store) -> list[int]:
    return sorted(store.read_from(0).column("id").to_pylist()) if store.max_seq() >= 0 else []


def still_serving(served: Served) -> None:
    before = served.store.max_seq()
    got = post(served, ndjson(events(1, start=10_000)), NDJSON)
    assert got.status_code == 200, got.text
    assert got.json()["first_seq"] == before + 1


ROWS = events(5)


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/x-ndjson", ndjson(ROWS)),
    ("application/jsonl", ndjson(ROWS)),
    ("text/plain; charset=utf-8", ndjson(ROWS)),
    ("application/json", json.dumps(ROWS).encode()),
    ("Application/JSON", json.dumps(ROWS, indent=2).encode()),
    ("application/vnd.apache.arrow.stream", arrow_stream(ROWS)),
])
def test_each_content_type_is_stored(server, content_type, body):
    got = post(server, body, {"content-type": content_type})
    assert got.status_code == 200, got.text
    assert got.json() == {"count": 5, "first_seq": 0, "last_seq": 4, "duplicates": 0}
    assert stored_ids(server.store) == [0, 1, 2, 3, 4]


def test_a_single_json_object_is_one_event(server):
    body = json.dumps(ROWS[0], indent=2).encode()  # pretty-printed: several lines
    got = post(server, body, {"content-type": "application/json"})
    assert got.json() == {"count": 1, "first_seq": 0, "last_seq": 0, "duplicates": 0}
    assert server.store.read_from(0).column("entity").to_pylist() == ["pod-0"]


def test_ndjson_sent_as_json_is_taken_line_by_line(server):
    got = post(server, ndjson(ROWS), {"content-type": "application/json"})
    assert got.json()["count"] == 5
    bad = post(server, b'{"id": 1}\n{"id": 2,\n', {"content-type": "application/json"})
    assert bad.status_code == 400
    assert [d["line"] for d in bad.json()["error"]["details"]] == [2]


@pytest.mark.parametrize(("encoding", "compress"), [
    ("gzip", gzip.compress),
    ("x-gzip", gzip.compress),
    ("zstd", lambda b: bytes(cramjam.zstd.compress(b))),
    ("identity", lambda b: b),
    ("GZIP", lambda b: gzip.compress(b[:40]) + gzip.compress(b[40:])),  # two gzip members
])
def test_each_encoding_is_decompressed(server, encoding, compress):
    got = post(server, compress(ndjson(ROWS)), {**NDJSON, "content-encoding": encoding})
    assert got.status_code == 200, got.text
    assert got.json()["count"] == 5
    assert stored_ids(server.store) == [0, 1, 2, 3, 4]


def test_a_chunked_body_is_read_whole(server):
    body = ndjson(events(300))

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1000):  # cut mid-line
            yield body[i:i + 1000]

    request = httpx.Request("POST", server.url + URL, content=chunks(), headers=NDJSON)
    assert request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in request.headers
    with httpx.Client(timeout=30) as client:
        got = client.send(request)
    assert got.json() == {"count": 300, "first_seq": 0, "last_seq": 299, "duplicates": 0}
    assert stored_ids(server.store) == list(range(300))


def test_a_chunked_gzip_body(server):
    body = gzip.compress(ndjson(events(50)))
    got = post(server, iter([body[:10], body[10:]]), {**NDJSON, "content-encoding": "gzip"})
    assert got.json()["count"] == 50


def test_receipts_follow_one_another(server):
    seqs = [post(server, ndjson(events(n)), NDJSON).json() for n in (3, 1, 4)]
    assert [(r["first_seq"], r["last_seq"], r["count"]) for r in seqs] == [
        (0, 2, 3), (3, 3, 1), (4, 7, 4)]


def test_duplicates_are_counted_in_the_receipt(tmp_path):
    with tidal.open(tmp_path / "s", dedup_key=["id"], dedup_window="1h") as store, \
            serving(store) as served:
        assert post(served, ndjson(events(3)), NDJSON).json()["duplicates"] == 0
        again = post(served, ndjson(events(4)), NDJSON).json()
        assert again == {"count": 1, "first_seq": 3, "last_seq": 3, "duplicates": 3}


def test_a_retried_position_stores_nothing_the_second_time(server):
    source = {**NDJSON, "Tidal-Source": "shipper-1"}
    first = post(server, ndjson(events(3)), {**source, "Tidal-Position": "10"}).json()
    assert first == {"count": 3, "first_seq": 0, "last_seq": 2, "duplicates": 0,
                     "source": "shipper-1", "position": 10, "duplicate": False}
    again = post(server, ndjson(events(3)), {**source, "Tidal-Position": "10"}).json()
    assert again == {"count": 0, "first_seq": None, "last_seq": None, "duplicates": 0,
                     "source": "shipper-1", "position": 10, "duplicate": True}
    older = post(server, gzip.compress(ndjson(events(2, start=50))),
                 {**source, "Tidal-Position": "4", "content-encoding": "gzip",
                  "X-Scope-OrgID": "t"}).json()
    assert older["duplicate"] and older["position"] == 10
    later = post(server, ndjson(events(2, start=3)),
                 {**source, "Tidal-Position": "12", "X-Scope-OrgID": "t"}).json()
    assert (later["count"], later["position"], later["duplicate"]) == (2, 12, False)
    empty = post(server, b"", {**NDJSON, "Tidal-Source": "idle", "Tidal-Position": "7"}).json()
    assert (empty["count"], empty["position"]) == (0, 7)  # the position alone commits
    assert stored_ids(server.store) == [0, 1, 2, 3, 4]
    got = httpx.get(server.url + "/v1/positions")
    assert got.json() == {"shipper-1": 12, "idle": 7} == server.store.positions()


def test_the_tenant_header_sets_org_id_on_every_event(server):
    rows = [*events(2), {**events(1, start=2)[0], "org_id": "someone-else"}]
    got = post(server, ndjson(rows), {**NDJSON, "X-Scope-OrgID": "acme"})
    assert got.json()["count"] == 3
    post(server, ndjson(events(1, start=3)), NDJSON)  # no header: no org_id
    table = server.store.read_from(0)
    assert table.column("org_id").to_pylist() == ["acme", "acme", "acme", None]


def test_the_tenant_header_works_with_arrow_and_keeps_line_numbers(server):
    got = post(server, arrow_stream(ROWS), {"content-type": "application/vnd.apache.arrow.stream",
                                            "x-scope-orgid": "t1"})
    assert got.json()["count"] == 5
    assert set(server.store.read_from(0).column("org_id").to_pylist()) == {"t1"}
    bad = post(server, b'{"id": 1}\n\n{"id": 2, "timestamp": "soon"}\n',
               {**NDJSON, "X-Scope-OrgID": "t1"})
    assert bad.status_code == 400
    assert bad.json()["error"]["details"] == [
        {"line": 3, "field": "timestamp", "reason": "cannot parse timestamp 'soon'"}]


def test_malformed_ndjson_names_every_bad_line(server):
    body = b'{"id": 1}\n{"id": \n{"id": 3}\n[1, 2]\n{"id": 5, "timestamp": "nope"}\n'
    got = post(server, body, NDJSON)
    assert got.status_code == 400
    error = got.json()["error"]
    assert error["type"] == "bad_input"
    assert error["message"].startswith("rejected ndjson bytes: 3 bad lines")
    lines = [(d["line"], d["field"]) for d in error["details"]]
    assert lines == [(2, None), (4, None), (5, "timestamp")]
    assert "invalid JSON" in error["details"][0]["reason"]
    assert error["details"][1]["reason"] == "not a JSON object"
    assert server.store.max_seq() == -1  # nothing of it was stored
    still_serving(server)


@dataclass(frozen=True)
class Bad:
    """A request that must be refused: its status, error type and message words."""

    name: str
    body: bytes
    headers: dict[str, str]
    status: int
    kind: str
    words: tuple[str, ...] = ()
    details: list[dict[str, object]] | None = field(default=None)


GOOD = ndjson(ROWS)
BAD = [
    Bad("truncated gzip", gzip.compress(GOOD)[:-12], {**NDJSON, "content-encoding": "gzip"},
        400, "bad_request", ("does not decompress as gzip",)),
    Bad("not zstd at all", GOOD, {**NDJSON, "content-encoding": "zstd"},
        400, "bad_request", ("does not decompress as zstd",)),
    Bad("brotli", GOOD, {**NDJSON, "content-encoding": "br"}, 415, "unsupported_media_type",
        ("'br'", "gzip, zstd or identity")),
    Bad("two encodings", GOOD, {**NDJSON, "content-encoding": "gzip, zstd"}, 415,
        "unsupported_media_type"),
    Bad("xml", b"<events/>", {"content-type": "application/xml"}, 415,
        "unsupported_media_type", ("'application/xml'", "application/x-ndjson",
                                   "application/vnd.apache.arrow.stream")),
    Bad("no content type", GOOD, {}, 415, "unsupported_media_type", ("no Content-Type",)),
    Bad("a number, not an object", b"42", {"content-type": "application/json"}, 400,
        "bad_input", details=[{"line": 1, "field": None, "reason": "not a JSON object"}]),
    Bad("a number in an array", b'[{"id": 1}, 7]', {"content-type": "application/json"}, 400,
        "bad_input", details=[{"line": 2, "field": None, "reason": "not a JSON object"}]),
    Bad("an NDJSON string line", b'{"id": 1}\n"hello"\n', NDJSON, 400, "bad_input",
        details=[{"line": 2, "field": None, "reason": "not a JSON object"}]),
    Bad("a broken JSON array", b'[{"id": 1},', {"content-type": "application/json"}, 400,
        "bad_input", ("invalid JSON array",)),
    Bad("not Arrow", b"not arrow at all", {"content-type": "application/vnd.apache.arrow.stream"},
        400, "bad_input", ("Arrow IPC",)),
    Bad("a bad tenant", GOOD, {**NDJSON, "X-Scope-OrgID": "a/b"}, 400, "bad_request",
        ("X-Scope-OrgID",)),
    Bad("a position without a source", GOOD, {**NDJSON, "Tidal-Position": "3"}, 400,
        "bad_request", ("Tidal-Source is missing",)),
    Bad("a source without a position", GOOD, {**NDJSON, "Tidal-Source": "s"}, 400,
        "bad_request", ("Tidal-Position is missing",)),
    Bad("a negative position", GOOD, {**NDJSON, "Tidal-Source": "s", "Tidal-Position": "-1"},
        400, "bad_request", ("decimal integer", "'-1'")),
    Bad("a position past 2**63-1", GOOD,
        {**NDJSON, "Tidal-Source": "s", "Tidal-Position": str(1 << 63)}, 400, "bad_request",
        ("between 0 and 2**63-1",)),
    Bad("an overlong source", GOOD,
        {**NDJSON, "Tidal-Source": "s" * 1025, "Tidal-Position": "1"}, 400, "bad_request",
        ("1 to 1024 bytes",)),
    Bad("oversized by Content-Length", b"x" * (LIMIT + 1), NDJSON, 413, "too_large",
        ("max_body_bytes",)),
    Bad("oversized once decompressed", gzip.compress(b"\n" * (LIMIT + 1)),
        {**NDJSON, "content-encoding": "gzip"}, 413, "too_large", ("decompresses",)),
    Bad("a zstd bomb", bytes(cramjam.zstd.compress(b" " * (16 << 20))),
        {**NDJSON, "content-encoding": "zstd"}, 413, "too_large", ("decompresses",)),
]


@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_a_bad_request_is_refused_and_the_server_goes_on(server, case):
    post(server, ndjson(events(2)), NDJSON)
    before = stored_ids(server.store)
    got = post(server, case.body, case.headers)
    assert got.status_code == case.status, got.text
    error = got.json()["error"]
    assert error["type"] == case.kind
    for word in case.words:
        assert word in error["message"]
    if case.details is not None:
        assert error["details"] == case.details
    assert stored_ids(server.store) == before
    still_serving(server)


def test_an_oversized_chunked_body_is_refused_while_it_streams(server):
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"{}\n" * (LIMIT // 24)  # 8 KiB a chunk, 80 KiB in all: over the limit

    got = post(server, chunks(), NDJSON)
    assert got.status_code == 413
    assert server.store.max_seq() == -1
    still_serving(server)


@pytest.mark.parametrize(("body", "headers"), [
    (b"", NDJSON),
    (b"", {"content-type": "application/json"}),
    (b"", {"content-type": "application/vnd.apache.arrow.stream"}),
    (gzip.compress(b""), {**NDJSON, "content-encoding": "gzip"}),
    (b"\n\n", NDJSON),
    (b"[]", {"content-type": "application/json"}),
])
def test_an_empty_body_stores_nothing_and_is_fine(server, body, headers):
    got = post(server, body, headers)
    assert got.status_code == 200, got.text
    assert got.json() == {"count": 0, "first_seq": None, "last_seq": None, "duplicates": 0}
    assert server.store.max_seq() == -1


class FullStore:
    """A store stand-in that is always at its memory limit."""

    closed = False

    def append(self, data: object, **options: object) -> object:
        raise BackpressureError("the store is full", retry_after_s=2.4)

    def close(self) -> None:
        pass


def test_a_full_store_answers_429_with_retry_after():
    with serving(FullStore()) as served:  # type: ignore[arg-type]
        got = post(served, GOOD, NDJSON)
    assert got.status_code == 429
    assert got.headers["retry-after"] == "2"
    assert got.json()["error"]["type"] == "backpressure"
