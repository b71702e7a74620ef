"""Loki's push API on a real server: the python-logging-loki handler, hand-built JSON,
snappy protobuf as Promtail sends it, tolerant labels, and bad bodies refused whole."""

from __future__ import annotations

import gzip
import json
import logging
import time
from dataclasses import dataclass, field

import cramjam
import httpx
import logging_loki
import pyarrow as pa
import pytest

import tidal
from tidal.server import ServerConfig
from tidal.server._loki_proto import PushRequest
from tidal.server.config import Token
from tidal.server.loki import parse_labels

from .conftest import serving

PUSH = "/loki/api/v1/push"
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def stored(store: tidal.Store) -> list[dict]:
    """Every stored event in ``_seq`` order, ``timestamp`` as int ns, ``_seq`` dropped."""
    table = store.read_from(0)
    table = table.set_column(table.column_names.index("timestamp"), "timestamp",
                             table["timestamp"].cast(pa.int64()))
    return [{k: v for k, v in row.items() if v is not None and k != "_seq"}
            for row in table.to_pylist()]


def push_body(*streams: tuple[str, list[tuple]]) -> bytes:
    """A snappy block-compressed ``PushRequest``: (labels, [(ns, line[, {metadata}])])."""
    request = PushRequest()
    for labels, entries in streams:
        stream = request.streams.add(labels=labels)
        for ns, line, *metadata in entries:
            entry = stream.entries.add(line=line)
            entry.timestamp.FromNanoseconds(ns)
            for name, value in (metadata[0] if metadata else {}).items():
                entry.structuredMetadata.add(name=name, value=value)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


# ----------------------------------------------------------------- clients

def test_python_logging_loki_handler(served):
    handler = logging_loki.LokiHandler(url=f"{served.url}{PUSH}", tags={"app": "shop"},
                                       version="1")
    failures: list[logging.LogRecord] = []
    handler.handleError = failures.append  # type: ignore[method-assign]
    logger = _logger("tidal.test.loki.v1", handler)
    before = time.time_ns()
    logger.info("order placed")
    logger.warning("card declined", extra={"tags": {"region": "eu-west"}})
    logger.error("payment service down")
    after = time.time_ns()
    handler.close()
    assert failures == []
    events = stored(served.store)
    assert [(e["message"], e["severity"], e.get("region")) for e in events] == [
        ("order placed", "info", None), ("card declined", "warning", "eu-west"),
        ("payment service down", "error", None)]
    assert {(e["app"], e["logger"]) for e in events} == {("shop", "tidal.test.loki.v1")}
    assert all(before <= e["timestamp"] <= after for e in events)


def test_python_logging_loki_handler_legacy_form(served):
    """``version="0"``: a selector string with escaped quotes and RFC 3339 times."""
    handler = logging_loki.LokiHandler(url=f"{served.url}{PUSH}",
                                       tags={"app": 'say "hi"'}, version="0")
    failures: list[logging.LogRecord] = []
    handler.handleError = failures.append  # type: ignore[method-assign]
    logger = _logger("tidal.test.loki.v0", handler)
    records: list[logging.LogRecord] = []
    logger.addFilter(lambda record: records.append(record) or True)
    logger.info("legacy line")
    handler.close()
    assert failures == []
    [event] = stored(served.store)
    assert event["message"] == "legacy line" and event["app"] == 'say "hi"'
    assert abs(event["timestamp"] - round(records[0].created * 1e9)) < 2_000  # (µs precision)


def test_json_labels_lines_and_structured_metadata(served):
    body = {"streams": [
        {"stream": {"app": "api", "level": "info", "message": "a label named message"},
         "values": [[str(T0), "GET /cart 200"],
                    [str(T0 + 1), "GET /pay 500", {"trace_id": "4bf92f35", "level": "error"}],
                    [str(T0 + 2), "GET /pay 200", {}]]},
        {"stream": {"app": "worker"}, "values": [[str(T0 - 5), "tick"]]}]}
    got = httpx.post(f"{served.url}{PUSH}", json=body)
    assert got.status_code == 204 and got.content == b""
    assert stored(served.store) == [
        {"timestamp": T0, "message": "GET /cart 200", "app": "api", "level": "info",
         "label_message": "a label named message"},
        {"timestamp": T0 + 1, "message": "GET /pay 500", "app": "api", "level": "error",
         "label_message": "a label named message", "trace_id": "4bf92f35"},
        {"timestamp": T0 + 2, "message": "GET /pay 200", "app": "api", "level": "info",
         "label_message": "a label named message"},
        {"timestamp": T0 - 5, "message": "tick", "app": "worker"}]


def test_json_gzip_and_tenant(served):
    body = gzip.compress(json.dumps({"streams": [
        {"stream": {"app": "api"}, "values": [[str(T0), "zipped"]]}]}).encode())
    got = httpx.post(f"{served.url}{PUSH}", content=body,
                     headers={**JSON, "Content-Encoding": "gzip", "X-Scope-OrgID": "team-a"})
    assert got.status_code == 204
    assert stored(served.store) == [{"timestamp": T0, "message": "zipped", "app": "api",
                                     "org_id": "team-a"}]


@pytest.mark.parametrize("headers", [PROTOBUF, {}, {**PROTOBUF, "Content-Encoding": "snappy"}],
                         ids=["x-protobuf", "no-content-type", "content-encoding-snappy"])
def test_protobuf_snappy_as_promtail_sends_it(served, headers):
    body = push_body(('{app="api", level="info"}',
                      [(T0, "first"), (T0 + 7, "second", {"trace_id": "abc", "user": "ann"})]),
                     ('{app="db"}', [(T0 + 3, "slow query")]))
    got = httpx.post(f"{served.url}{PUSH}", content=body, headers=headers)
    assert got.status_code == 204, got.text
    assert stored(served.store) == [
        {"timestamp": T0, "message": "first", "app": "api", "level": "info"},
        {"timestamp": T0 + 7, "message": "second", "app": "api", "level": "info",
         "trace_id": "abc", "user": "ann"},
        {"timestamp": T0 + 3, "message": "slow query", "app": "db"}]


def test_empty_pushes_store_nothing(served):
    for body, headers in [(b"", PROTOBUF), (b"", JSON), (push_body(), PROTOBUF),
                          (b'{"streams": []}', JSON)]:
        assert httpx.post(f"{served.url}{PUSH}", content=body,
                          headers=headers).status_code == 204
    assert served.store.max_seq() == -1


def test_repeated_timestamp_and_labels_are_all_stored(served):
    """Shippers repeat (timestamp, labels) legitimately: nothing is deduplicated."""
    body = push_body(('{app="api"}', [(T0, "same"), (T0, "same")]))
    for _ in range(2):
        assert httpx.post(f"{served.url}{PUSH}", content=body,
                          headers=PROTOBUF).status_code == 204
    assert stored(served.store) == [{"timestamp": T0, "message": "same", "app": "api"}] * 4


@dataclass
class Labels:
    text: str
    expected: dict[str, str]


LABELS = [
    Labels('{app="api", level="info"}', {"app": "api", "level": "info"}),
    Labels('{app="api",level="info",}', {"app": "api", "level": "info"}),
    Labels('{ app = "api" ,  level="info" }', {"app": "api", "level": "info"}),
    Labels(r'{msg="say \"hi\"", path="C:\\temp"}', {"msg": 'say "hi"', "path": "C:\\temp"}),
    Labels(r'{tab="a\tb", uni="\u00e9\xe2\x82\xac", odd="\q"}',
           {"tab": "a\tb", "uni": "é€", "odd": "\\q"}),
    Labels('{msg="an "unescaped" quote", next="x"}',
           {"msg": 'an "unescaped" quote', "next": "x"}),
    Labels('{msg="ends with a quote"", n="1"}', {"msg": 'ends with a quote"', "n": "1"}),
    Labels("{app='single', b=`raw \\n`}", {"app": "single", "b": "raw \\n"}),
    Labels("{app=unquoted, level = info}", {"app": "unquoted", "level": "info"}),
    Labels('app="no braces"', {"app": "no braces"}),
    Labels('{url="http://x/?a=1,b=2}"}', {"url": "http://x/?a=1,b=2}"}),
    Labels("{}", {}),
    Labels('{a="1", a="2"}', {"a": "2"}),
]


@pytest.mark.parametrize("case", LABELS, ids=[c.text for c in LABELS])
def test_label_selectors_are_read_tolerantly(case):
    assert parse_labels(case.text) == case.expected


def test_weird_label_quoting_over_protobuf(served):
    body = push_body(*[(c.text, [(T0 + i, f"line {i}")]) for i, c in enumerate(LABELS[:10])])
    assert httpx.post(f"{served.url}{PUSH}", content=body, headers=PROTOBUF).status_code == 204
    assert [{k: v for k, v in e.items() if k not in ("timestamp", "message")}
            for e in stored(served.store)] == [c.expected for c in LABELS[:10]]


@pytest.mark.parametrize("text", ['{app="unterminated}', '{="x"}', '{app "x"}',
                                  '{app="x"} trailing'])
def test_hopeless_labels_are_refused(text):
    with pytest.raises(ValueError):
        parse_labels(text)


# -------------------------------------------------------------- bad bodies

def _truncated_protobuf() -> bytes:
    request = PushRequest()
    request.streams.add(labels='{app="api"}').entries.add(line="x" * 100)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()[:-20]))


@dataclass
class Bad:
    name: str
    body: bytes
    headers: dict[str, str]
    status: int
    reason: str
    extra: dict[str, str] = field(default_factory=dict)


def _json(doc: object) -> bytes:
    return json.dumps(doc).encode()


GOOD_STREAM = {"stream": {"app": "api"}, "values": [[str(T0), "fine"]]}
BAD = [
    Bad("not json", b'{"streams": [', JSON, 400, "not valid JSON"),
    Bad("streams not a list", _json({"streams": {}}), JSON, 400, '"streams" must be a list'),
    Bad("timestamp not digits", _json({"streams": [GOOD_STREAM, {
        "stream": {"app": "api"}, "values": [[str(T0), "ok"], ["yesterday", "x"]]}]}),
        JSON, 400, "streams[1].values[1][0]: the timestamp must be nanoseconds"),
    Bad("timestamp out of range", _json({"streams": [{"stream": {}, "values": [
        ["99999999999999999999", "x"]]}]}), JSON, 400, "out of range"),
    Bad("line not a string", _json({"streams": [{"stream": {"app": "api"},
                                                 "values": [[str(T0), 42]]}]}),
        JSON, 400, "streams[0].values[0][1]: the log line must be a string, not a number"),
    Bad("entry not a pair", _json({"streams": [{"stream": {}, "values": [[str(T0)]]}]}),
        JSON, 400, "streams[0].values[0] must be [timestamp, line]"),
    Bad("label value not a string", _json({"streams": [{"stream": {"n": 1}, "values": []}]}),
        JSON, 400, "streams[0].stream.n: label values are strings, not a number"),
    Bad("metadata not an object", _json({"streams": [{"stream": {}, "values": [
        [str(T0), "x", ["trace", "1"]]]}]}), JSON, 400, "streams[0].values[0][2] must be an"),
    Bad("bad snappy", b"\x10this is not snappy", PROTOBUF, 400, "does not decompress as snappy"),
    Bad("framed snappy", bytes(cramjam.snappy.compress(b"x" * 100)), PROTOBUF, 400,
        "snappy framed"),
    Bad("protobuf not snappy-compressed", PushRequest().SerializeToString() + b"\x0a\x05",
        PROTOBUF, 400, "snappy"),
    Bad("truncated protobuf", _truncated_protobuf(), PROTOBUF, 400,
        "not a Loki PushRequest (protobuf)"),
    Bad("hopeless labels", push_body(('{app="a"}', [(T0, "ok")]),
                                     ('{app="unterminated}', [(T0, "x")])),
        PROTOBUF, 400, "streams[1]: cannot read the labels"),
    Bad("gzip that is not", _json({"streams": [GOOD_STREAM]}), JSON, 400,
        "does not decompress as gzip", {"Content-Encoding": "gzip"}),
    Bad("unknown encoding", _json({"streams": [GOOD_STREAM]}), JSON, 415,
        "unsupported Content-Encoding 'br'", {"Content-Encoding": "br"}),
    Bad("unknown content type", b"app=api line", {"Content-Type": "text/csv"}, 415,
        "not a Loki push body"),
    Bad("bad tenant", _json({"streams": [GOOD_STREAM]}), JSON, 400, "X-Scope-OrgID",
        {"X-Scope-OrgID": "../etc"}),
]


def test_bad_bodies_are_refused_whole_and_the_server_goes_on(served):
    assert httpx.post(f"{served.url}{PUSH}", json={"streams": [GOOD_STREAM]}).status_code == 204
    seq = served.store.max_seq()
    for case in BAD:
        got = httpx.post(f"{served.url}{PUSH}", content=case.body,
                         headers={**case.headers, **case.extra})
        assert got.status_code == case.status, (case.name, got.text)
        assert case.reason in got.json()["error"]["message"], (case.name, got.text)
        assert served.store.max_seq() == seq, case.name
    assert httpx.post(f"{served.url}{PUSH}", json={"streams": [GOOD_STREAM]}).status_code == 204
    assert served.store.max_seq() == seq + 1


def test_oversized_bodies_get_413(tmp_path):
    limit = 4096
    big_line = "x" * 3000
    with tidal.open(tmp_path / "store") as store, \
            serving(store, ServerConfig(max_body_bytes=limit)) as running:
        url = f"{running.url}{PUSH}"
        plain = _json({"streams": [{"stream": {}, "values": [[str(T0), big_line * 2]]}]})
        many = _json({"streams": [{"stream": {}, "values": [[str(T0), big_line]] * 20}]})
        cases = [
            ("plain", plain, JSON),
            ("gzip inflates past the limit", gzip.compress(many),
             {**JSON, "Content-Encoding": "gzip"}),
            ("snappy inflates past the limit",
             push_body(("{}", [(T0, big_line)] * 20)), PROTOBUF),
        ]
        for name, body, headers in cases:
            got = httpx.post(url, content=body, headers=headers)
            assert got.status_code == 413, (name, got.text)
            assert "max_body_bytes" in got.json()["error"]["message"]
        chunked = httpx.post(url, content=iter([plain[:3000], plain[3000:]]), headers=JSON)
        assert chunked.status_code == 413
        assert store.max_seq() == -1
        small = push_body(("{}", [(T0, "small")]))
        assert httpx.post(url, content=small, headers=PROTOBUF).status_code == 204
        assert store.max_seq() == 0


def test_tokens_basic_auth_as_loki_clients_send_it_and_metrics(tmp_path):
    config = ServerConfig(tokens=(Token("pushy", frozenset({"ingest"})),
                                  Token("reader", frozenset({"query"}))))
    body = push_body(('{app="api"}', [(T0, "a"), (T0 + 1, "b")]))
    with tidal.open(tmp_path / "store") as store, serving(store, config) as running:
        url = f"{running.url}{PUSH}"
        assert httpx.post(url, content=body, headers=PROTOBUF).status_code == 401
        assert httpx.post(url, content=body, headers=PROTOBUF,
                          auth=("reader", "reader")).status_code == 403
        assert httpx.post(url, content=body, headers=PROTOBUF,
                          auth=("tenant-1", "pushy")).status_code == 204
        assert store.max_seq() == 1
        metrics = httpx.get(f"{running.url}/metrics").text
        assert 'tidal_ingest_events_total{endpoint="/loki/api/v1/push"} 2.0' in metrics
