"""OTLP/HTTP logs on a real server: the OpenTelemetry SDK's exporter, OTLP JSON by hand,
gzip/deflate/zstd, chunked bodies, partial success, and bad bodies refused whole."""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field

import cramjam
import httpx
import pyarrow as pa
import pytest
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import tidal
from tidal.server import ServerConfig

from .conftest import serving

LOGS = "/v1/logs"
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7


def stored(store: tidal.Store) -> list[dict]:
    """Every stored event in ``_seq`` order, ``timestamp`` as int ns, nulls and ``_seq``
    dropped (also inside nested fields)."""
    table = store.read_from(0)
    table = table.set_column(table.column_names.index("timestamp"), "timestamp",
                             table["timestamp"].cast(pa.int64()))
    return [_present(row) for row in table.drop_columns(["_seq"]).to_pylist()]


def _present(value: object) -> object:
    if isinstance(value, dict):
        return {k: _present(v) for k, v in value.items() if v is not None}
    return value


def _exported(url: str, processor: type, **exporter: object) -> None:
    resource = Resource.create({"service.name": "checkout", "service.version": "2.1",
                                "deployment.environment": "prod", "host.name": "node-1"})
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_log_record_processor(processor(OTLPLogExporter(endpoint=f"{url}{LOGS}",
                                                                **exporter)))
    logger = provider.get_logger("shop.payments", "1.2.3")
    span = NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, is_remote=False,
                                        trace_flags=TraceFlags(TraceFlags.SAMPLED)))
    logger.emit(timestamp=T0, severity_number=SeverityNumber.WARN, severity_text="WARN",
                body="card declined", context=trace.set_span_in_context(span),
                attributes={"http.method": "POST", "http.status_code": 402, "retry": True,
                            "amount": 12.5, "tags": ["a", "b"], "host.name": "pod-7"})
    logger.emit(timestamp=T0 + 1, severity_number=SeverityNumber.INFO, severity_text="INFO",
                body={"event": "paid", "items": [1, 2]})
    assert provider.force_flush()
    provider.shutdown()


@pytest.mark.parametrize(("processor", "compression"), [
    (BatchLogRecordProcessor, Compression.NoCompression),
    (SimpleLogRecordProcessor, Compression.Gzip),
    (SimpleLogRecordProcessor, Compression.Deflate)], ids=["batch-plain", "simple-gzip",
                                                           "simple-deflate"])
def test_sdk_exporter(served, processor, compression):
    _exported(served.url, processor, compression=compression)
    first, second = stored(served.store)
    for event in (first, second):  # (what Resource.create adds by itself)
        assert event.pop("telemetry")["sdk"]["language"] == "python"
        assert event["service"].pop("instance")["id"]
    resource = {"service": {"name": "checkout", "version": "2.1"},
                "deployment": {"environment": "prod"}, "scope": {"name": "shop.payments",
                                                                 "version": "1.2.3"}}
    assert first == {
        "timestamp": T0, "severity_text": "WARN", "severity_number": 13,
        "body": "card declined", "trace_id": f"{TRACE_ID:032x}", "span_id": f"{SPAN_ID:016x}",
        **resource, "host": {"name": "pod-7"},  # (the log attribute wins over the resource's)
        "http": {"method": "POST", "status_code": 402}, "retry": True, "amount": 12.5,
        "tags": ["a", "b"]}
    assert second == {"timestamp": T0 + 1, "severity_text": "INFO", "severity_number": 9,
                      "body": '{"event":"paid","items":[1,2]}', **resource,
                      "host": {"name": "node-1"}}


def _otlp_json(records: list[dict], resource: list[dict] | None = None) -> dict:
    return {"resourceLogs": [{
        "resource": {"attributes": resource or [
            {"key": "service.name", "value": {"stringValue": "api"}}]},
        "scopeLogs": [{"scope": {"name": "my.lib"}, "logRecords": records}]}]}


def test_otlp_json_per_the_spec(served):
    body = _otlp_json([
        {"timeUnixNano": str(T0), "severityNumber": 17, "severityText": "ERROR",
         "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
         "body": {"stringValue": "boom"},
         "attributes": [
             {"key": "count", "value": {"intValue": "7"}},
             {"key": "size", "value": {"intValue": 8}},
             {"key": "ratio", "value": {"doubleValue": 0.5}},
             {"key": "ok", "value": {"boolValue": False}},
             {"key": "raw", "value": {"bytesValue": "aGk="}},
             {"key": "http", "value": {"kvlistValue": {"values": [
                 {"key": "route", "value": {"stringValue": "/cart"}},
                 {"key": "request.size", "value": {"intValue": "12"}}]}}},
             {"key": "ids", "value": {"arrayValue": {"values": [
                 {"intValue": "1"}, {"intValue": 2}]}}},
             {"key": "mixed", "value": {"arrayValue": {"values": [
                 {"intValue": "1"}, {"stringValue": "two"}]}}}]},
        {"observedTimeUnixNano": str(T0 + 5), "severityNumber": "SEVERITY_NUMBER_DEBUG",
         "body": {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": True}}]}},
         "unknownField": "is ignored"}])
    got = httpx.post(f"{served.url}{LOGS}", json=body)
    assert got.status_code == 200 and got.headers["content-type"] == "application/json"
    assert got.json() == {}
    first, second = stored(served.store)
    assert first == {
        "timestamp": T0, "severity_text": "ERROR", "severity_number": 17, "body": "boom",
        "trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174",
        "service": {"name": "api"}, "scope": {"name": "my.lib"}, "count": 7, "size": 8,
        "ratio": 0.5, "ok": False, "raw": "aGk=",
        "http": {"route": "/cart", "request": {"size": 12}}, "ids": [1, 2],
        "mixed": '[1,"two"]'}
    assert second == {"timestamp": T0 + 5, "severity_number": 5, "body": '{"k":true}',
                      "service": {"name": "api"}, "scope": {"name": "my.lib"}}


def _request(n: int = 3) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.add(key="service.name").value.string_value = "api"
    records = resource_logs.scope_logs.add().log_records
    for i in range(n):
        record = records.add(time_unix_nano=T0 + i, severity_text="INFO")
        record.body.string_value = f"line {i}"
    return request


@pytest.mark.parametrize("encoding", ["gzip", "zstd", "deflate"])
@pytest.mark.parametrize("media", ["protobuf", "json"])
def test_compressed_and_chunked(served, encoding, media):
    request = _request()
    raw = (request.SerializeToString() if media == "protobuf"
           else json_format.MessageToJson(request).encode())
    body = {"gzip": gzip.compress, "zstd": lambda b: bytes(cramjam.zstd.compress(b)),
            "deflate": zlib.compress}[encoding](raw)
    headers = {**(PROTOBUF if media == "protobuf" else JSON), "Content-Encoding": encoding}
    chunks = iter([body[:7], body[7:]])  # (no Content-Length: chunked)
    got = httpx.post(f"{served.url}{LOGS}", content=chunks, headers=headers)
    assert got.status_code == 200, got.text
    if media == "protobuf":
        assert got.headers["content-type"] == "application/x-protobuf"
        assert not ExportLogsServiceResponse.FromString(got.content).HasField("partial_success")
    else:
        assert got.json() == {}
    assert [e["body"] for e in stored(served.store)] == ["line 0", "line 1", "line 2"]


def test_empty_exports_store_nothing(served):
    for body, headers in [(b"", PROTOBUF), (b"", JSON), (b"{}", JSON),
                          (ExportLogsServiceRequest().SerializeToString(), PROTOBUF)]:
        got = httpx.post(f"{served.url}{LOGS}", content=body, headers=headers)
        assert got.status_code == 200, got.text
    assert served.store.max_seq() == -1


def test_partial_success_for_records_past_int64(served):
    request = _request(2)
    records = request.resource_logs[0].scope_logs[0].log_records
    records.add(time_unix_nano=(1 << 64) - 1).body.string_value = "far future"
    got = httpx.post(f"{served.url}{LOGS}", content=request.SerializeToString(),
                     headers=PROTOBUF)
    assert got.status_code == 200
    answer = ExportLogsServiceResponse.FromString(got.content)
    assert answer.partial_success.rejected_log_records == 1
    assert "2262" in answer.partial_success.error_message
    assert [e["body"] for e in stored(served.store)] == ["line 0", "line 1"]
    got = httpx.post(f"{served.url}{LOGS}", json=json_format.MessageToDict(request))
    assert got.json()["partialSuccess"]["rejectedLogRecords"] == "1"


def test_records_without_time_when_the_store_requires_one(tmp_path):
    request = _request(1)
    request.resource_logs[0].scope_logs[0].log_records.add().body.string_value = "no time"
    with tidal.open(tmp_path / "s", missing_timestamp="reject") as store, \
            serving(store) as running:
        got = httpx.post(f"{running.url}{LOGS}", content=request.SerializeToString(),
                         headers=PROTOBUF)
        answer = ExportLogsServiceResponse.FromString(got.content)
        assert answer.partial_success.rejected_log_records == 1
        assert [e["body"] for e in stored(store)] == ["line 0"]


def test_a_record_without_time_gets_the_ingest_time(served):
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.add().body.string_value = "x"
    got = httpx.post(f"{served.url}{LOGS}", content=request.SerializeToString(),
                     headers=PROTOBUF)
    assert got.status_code == 200
    [event] = stored(served.store)
    assert event["timestamp"] > T0 - 10**18 and event["body"] == "x"


def test_names_that_are_values_and_parents(served):
    """``a`` and ``a.b`` both set: ``a`` keeps its value, ``a.b`` is one dotted name."""
    body = _otlp_json([{"timeUnixNano": str(T0), "attributes": [
        {"key": "k8s.pod", "value": {"stringValue": "p1"}},
        {"key": "k8s.pod.uid", "value": {"stringValue": "u1"}},
        {"key": "body.extra", "value": {"stringValue": "kept"}}],
        "body": {"stringValue": "b"}}])
    assert httpx.post(f"{served.url}{LOGS}", json=body).status_code == 200
    [event] = stored(served.store)
    assert event["k8s"] == {"pod": "p1", "pod.uid": "u1"}
    assert event["body"] == "b" and event["body.extra"] == "kept"
    assert served.store.scan(["k8s.pod.uid"]).read_all()["k8s.pod.uid"].to_pylist() == ["u1"]


def test_deep_names_and_values_stay_within_the_nesting_limit(served):
    request = _request(1)
    record = request.resource_logs[0].scope_logs[0].log_records[0]
    value = record.attributes.add(key=".".join(["p"] * 20)).value
    for _ in range(25):
        value = value.kvlist_value.values.add(key="k").value
    value.string_value = "deep"
    array = record.attributes.add(key="arr").value
    for _ in range(12):
        array = array.array_value.values.add()
    array.int_value = 1
    got = httpx.post(f"{served.url}{LOGS}", content=request.SerializeToString(),
                     headers=PROTOBUF)
    assert got.status_code == 200, got.text
    [event] = stored(served.store)
    path = event
    for _ in range(15):
        path = path["p"]
    assert path["p.p.p.p.p"] == '{"k":' * 25 + '"deep"' + "}" * 25
    assert event["arr"] == "[" * 12 + "1" + "]" * 12


# -------------------------------------------------------------- bad bodies

@dataclass
class Bad:
    name: str
    body: bytes
    headers: dict[str, str]
    status: int
    reason: str
    extra: dict[str, str] = field(default_factory=dict)


GOOD = _request(1).SerializeToString()
BAD = [
    Bad("truncated protobuf", _request(3).SerializeToString()[:-5], PROTOBUF, 400,
        "not an OTLP ExportLogsServiceRequest (protobuf)"),
    Bad("not json", b'{"resourceLogs": [', JSON, 400, "not valid JSON"),
    Bad("json not an object", b"[1, 2]", JSON, 400, "must be a JSON object"),
    Bad("wrong types", json.dumps(_otlp_json([{"timeUnixNano": "soon"}])).encode(), JSON,
        400, "timeUnixNano"),
    Bad("intValue a fraction", json.dumps(_otlp_json([{"attributes": [
        {"key": "n", "value": {"intValue": 1.5}}]}])).encode(), JSON, 400, "intValue"),
    Bad("trace id not hex", json.dumps(_otlp_json([{"traceId": "xyz"}])).encode(), JSON, 400,
        "resourceLogs[0].scopeLogs[0].logRecords[0].traceId: 'xyz' is not hex"),
    Bad("gzip that is not", GOOD, PROTOBUF, 400, "does not decompress as gzip",
        {"Content-Encoding": "gzip"}),
    Bad("zstd that is gzip", gzip.compress(GOOD), PROTOBUF, 400, "does not decompress as zstd",
        {"Content-Encoding": "zstd"}),
    Bad("truncated gzip", gzip.compress(GOOD)[:-8], PROTOBUF, 400,
        "does not decompress as gzip", {"Content-Encoding": "gzip"}),
    Bad("snappy is not offered", GOOD, PROTOBUF, 415, "unsupported Content-Encoding 'snappy'",
        {"Content-Encoding": "snappy"}),
    Bad("unknown content type", GOOD, {"Content-Type": "text/plain"}, 415, "is not OTLP"),
    Bad("no content type", GOOD, {}, 415, "is not OTLP"),
]


def test_bad_bodies_are_refused_whole_and_the_server_goes_on(served):
    url = f"{served.url}{LOGS}"
    assert httpx.post(url, content=GOOD, headers=PROTOBUF).status_code == 200
    seq = served.store.max_seq()
    for case in BAD:
        got = httpx.post(url, content=case.body, headers={**case.headers, **case.extra})
        assert got.status_code == case.status, (case.name, got.text)
        assert case.reason in got.json()["error"]["message"], (case.name, got.text)
        assert served.store.max_seq() == seq, case.name
    assert httpx.post(url, content=GOOD, headers=PROTOBUF).status_code == 200
    assert served.store.max_seq() == seq + 1


def test_oversized_bodies_get_413(tmp_path):
    limit = 4096
    big = _request(200).SerializeToString()
    assert len(big) > limit
    with tidal.open(tmp_path / "store") as store, \
            serving(store, ServerConfig(max_body_bytes=limit)) as running:
        url = f"{running.url}{LOGS}"
        for name, body, extra in [
                ("plain", big, {}),
                ("gzip", gzip.compress(big), {"Content-Encoding": "gzip"}),
                ("zstd", bytes(cramjam.zstd.compress(big)), {"Content-Encoding": "zstd"}),
                ("deflate", zlib.compress(big), {"Content-Encoding": "deflate"})]:
            assert name == "plain" or len(body) < limit
            got = httpx.post(url, content=body, headers={**PROTOBUF, **extra})
            assert got.status_code == 413, (name, got.text)
        assert store.max_seq() == -1
        got = httpx.post(url, content=_request(1).SerializeToString(), headers=PROTOBUF)
        assert got.status_code == 200 and store.max_seq() == 0
        metrics = httpx.get(f"{running.url}/metrics").text
        assert 'tidal_ingest_events_total{endpoint="/v1/logs"} 1.0' in metrics
