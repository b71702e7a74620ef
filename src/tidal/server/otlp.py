"""``POST /v1/logs``: OTLP/HTTP logs, so OpenTelemetry SDKs and Collectors write to Tidal.

Bodies: ``ExportLogsServiceRequest`` as protobuf (``application/x-protobuf``)
or as OTLP JSON (``application/json``: trace and span ids in hex, 64-bit
integers as strings or numbers, enums as numbers or names; unknown fields are
ignored), optionally ``Content-Encoding: gzip``, ``deflate`` or ``zstd``, with
or without ``Content-Length`` (chunked).

Each log record becomes one event:

=======================  ===================================================
``timestamp``            ``timeUnixNano``, or ``observedTimeUnixNano`` when
                         that is 0 (the store's ``timestamp_field``; both 0:
                         the ingest time, as for any event without a time)
``severity_text``        ``severityText`` (absent when empty)
``severity_number``      ``severityNumber`` (absent when 0, unspecified)
``body``                 a string body as it is; any other body as JSON text
                         (a map or array as an object or array, ``5``,
                         ``true``; bytes as base64)
``trace_id``/``span_id`` lower-case hex (absent when empty)
``event_name``           ``eventName`` (absent when empty)
``scope.name``,          the instrumentation scope
``scope.version``
resource attributes      each at its own path: a dotted name nests,
                         ``service.name`` is ``service`` → ``name``
log attributes           the same; a log attribute replaces a resource
                         attribute (or scope field) of the same path
=======================  ===================================================

The record's own fields above win over attributes of the same name. Not
kept: scope attributes, ``flags``, ``droppedAttributesCount``, schema URLs.
``X-Scope-OrgID`` sets ``org_id`` on every event, as on ``/v1/events``.
Attribute values keep their type: string, bool, int (int64), double; a
kvlist nests like dotted names (``http`` = {``method``: ``GET``} is
``http.method``); an array becomes a list (Arrow infers its element type;
mixed element kinds give JSON text); bytes become base64 text. A field whose
values differ in kind between records of one request is stored as text.
Names nest at most 16 levels (the rest stays one dotted name) and arrays at
most 8 (deeper ones are JSON text), within the store's nesting limit.

Answer: 200 with an ``ExportLogsServiceResponse`` in the request's encoding,
with ``partialSuccess`` counting the records refused one by one: those whose
time is past 2262-04-11 (beyond signed 64-bit ns), and, when the store
refuses events without a time (``missing_timestamp="reject"``), those with
neither time. Everything else is taken whole or refused whole: 400 for a
body that cannot be read (OTLP exporters drop data on 4xx other than 429, so
only input that can never succeed gets one), 413 over ``max_body_bytes``
(compressed or not), 415 for an unknown ``Content-Type`` or
``Content-Encoding``, 429 with ``Retry-After`` under backpressure. Nothing is
stored on any 4xx. Error bodies are Tidal's JSON errors.
"""

from __future__ import annotations

import base64
import functools
import time
from typing import Any

import msgspec
import pyarrow as pa
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tidal.api import Store
from tidal.model.time import TIMESTAMP_TYPE
from tidal.server import auth, ingest, openapi
from tidal.server._push import Columns, content_encoding, decompress, media_type
from tidal.server.config import ServerConfig

__all__ = ["logs_table", "routes"]

LOGS_PATH = "/v1/logs"
ENCODINGS = ("gzip", "deflate", "zstd")
PROTOBUF, JSON = "application/x-protobuf", "application/json"
MAX_PATH_PARTS = 16
MAX_VALUE_DEPTH = 8
_I64 = 1 << 63
_json = msgspec.json.Encoder()


@openapi.operation(
    "Export logs (OTLP/HTTP); answered once durable", scope="ingest",
    description="An OTLP `ExportLogsServiceRequest`, protobuf or OTLP JSON, optionally "
                "gzip, deflate or zstd. Each log record is an event: `timestamp`, "
                "`severity_text`, `severity_number`, `body`, `trace_id`, `span_id`, "
                "`scope.name`, resource and log attributes at their dotted paths (log "
                "attributes win). The answer is an `ExportLogsServiceResponse` in the "
                "request's encoding, with `partialSuccess` for records refused one by one. "
                f"{ingest.TENANT_HEADER} sets the field {ingest.TENANT_FIELD!r} of every event.",
    request={PROTOBUF: {"type": "string", "format": "binary"},
             JSON: {"type": "object", "properties": {"resourceLogs": {"type": "array"}}}},
    parameters=[ingest.TENANT_PARAMETER,
                openapi.header("Content-Encoding", "gzip, deflate, zstd or identity")],
    responses={200: {"description": "Stored durably: an ExportLogsServiceResponse", "content": {
                   PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
                   JSON: {"schema": {"type": "object"}}}},
               400: "A body that cannot be read (what is wrong, and where)",
               **ingest.REFUSALS})
async def export_logs(request: Request) -> Response:
    """Store an OTLP logs export; 200 with an ``ExportLogsServiceResponse`` once durable."""
    auth.require(request, "ingest")
    media = _media(media_type(request))
    encoding = content_encoding(request, ENCODINGS)
    org = ingest.tenant(request)
    config: ServerConfig = request.app.state.config
    body = await ingest.read_body(request, config.max_body_bytes)
    store: Store = request.app.state.store
    started = time.perf_counter()

    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
        ExportLogsServiceResponse,
    )

    def decode_and_append() -> tuple[int, _Logs]:
        raw = decompress(body, encoding, config.max_body_bytes) if body else b""
        export = _parse(raw, media) if raw else ExportLogsServiceRequest()  # (empty: none)
        logs = logs_table(export, timestamp_field=store.config.timestamp_field,
                          need_time=store.config.missing_timestamp == "reject")
        if not logs.table.num_rows:
            return 0, logs
        table = logs.table if org is None else ingest.with_tenant(logs.table, org)
        return store.append(table, timeout=config.backpressure_wait_s).count, logs

    count, logs = await run_in_threadpool(decode_and_append)
    request.app.state.metrics.ingested(LOGS_PATH, count, len(body), time.perf_counter() - started)
    answer = ExportLogsServiceResponse()
    if logs.rejected:
        answer.partial_success.rejected_log_records = logs.rejected
        answer.partial_success.error_message = "; ".join(logs.reasons)
    if media == JSON:
        return Response(_json.encode(json_format.MessageToDict(answer)), media_type=JSON)
    return Response(answer.SerializeToString(), media_type=PROTOBUF)


def routes() -> list[BaseRoute]:
    """``POST /v1/logs``."""
    return [Route(LOGS_PATH, export_logs, methods=["POST"])]


def _media(media: str) -> str:
    if media in (PROTOBUF, "application/protobuf"):
        return PROTOBUF
    if media == JSON:
        return JSON
    raise HTTPException(415, f"Content-Type {media!r} is not OTLP: use {PROTOBUF} or {JSON}")


def _parse(raw: bytes, media: str) -> Any:
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    if media == PROTOBUF:
        try:
            return ExportLogsServiceRequest.FromString(raw)
        except DecodeError as exc:
            raise HTTPException(400, "the body is not an OTLP ExportLogsServiceRequest "
                                     f"(protobuf): {exc}") from exc
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise HTTPException(400, f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise HTTPException(400, "the body is not OTLP JSON logs: nested too deeply") from exc
    if not isinstance(doc, dict):
        raise HTTPException(400, 'the body must be a JSON object: {"resourceLogs": [...]}')
    _hex_ids_to_base64(doc)
    try:
        return json_format.ParseDict(doc, ExportLogsServiceRequest(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise HTTPException(400, f"the body is not OTLP JSON logs: {exc}") from exc
    except RecursionError as exc:
        raise HTTPException(400, "the body is not OTLP JSON logs: nested too deeply") from exc


def _hex_ids_to_base64(doc: dict[str, Any]) -> None:
    """OTLP JSON writes trace and span ids in hex; protobuf's JSON mapping reads base64."""
    for i, resource in enumerate(_items(doc, "resourceLogs", "resource_logs")):
        for j, scope in enumerate(_items(resource, "scopeLogs", "scope_logs")):
            for k, record in enumerate(_items(scope, "logRecords", "log_records")):
                if not isinstance(record, dict):
                    continue
                for key in ("traceId", "trace_id", "spanId", "span_id"):
                    value = record.get(key)
                    if isinstance(value, str) and value:
                        try:
                            record[key] = base64.b64encode(bytes.fromhex(value)).decode()
                        except ValueError as exc:
                            raise HTTPException(
                                400, f"resourceLogs[{i}].scopeLogs[{j}].logRecords[{k}]."
                                     f"{key}: {value!r:.80} is not hex") from exc


def _items(obj: object, camel: str, snake: str) -> list[Any]:
    if not isinstance(obj, dict):
        return []
    found = obj.get(camel, obj.get(snake))
    return found if isinstance(found, list) else []  # (ParseDict names a wrong type)


# ------------------------------------------------------------------ mapping

class _Logs:
    """A request's log records as a table, and those refused one by one."""

    def __init__(self, table: pa.Table, rejected: int, reasons: list[str]) -> None:
        self.table, self.rejected, self.reasons = table, rejected, reasons


def logs_table(request: Any, *, timestamp_field: str = "timestamp",
               need_time: bool = False) -> _Logs:
    """The records of an ``ExportLogsServiceRequest`` as one table (see the module doc).

    ``need_time``: refuse records with neither time (else they get the ingest time).

    >>> from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    >>> from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
    >>> r = ExportLogsServiceRequest(resource_logs=[ResourceLogs()])
    >>> rec = r.resource_logs[0].scope_logs.add().log_records.add(time_unix_nano=5)
    >>> rec.body.string_value = "hi"
    >>> r.resource_logs[0].resource.attributes.add(key="service.name").value.string_value = "api"
    >>> t = logs_table(r).table
    >>> t.column_names, t["timestamp"].cast("int64").to_pylist(), t["service"].to_pylist()
    (['timestamp', 'body', 'service'], [5], [{'name': 'api'}])
    """
    cols = Columns()
    fields: dict[str, list[Any]] = {name: [] for name in _FIELDS}
    rejected = {"late": 0, "untimed": 0}
    row = 0
    for resource_logs in request.resource_logs:
        scopes = [(scope_logs.scope, *_accepted(scope_logs.log_records, need_time, rejected))
                  for scope_logs in resource_logs.scope_logs]
        stop = row + sum(len(times) for _, _, times in scopes)
        if stop == row:
            continue
        for kv in resource_logs.resource.attributes:  # (first: log attributes replace them)
            _put(cols, _split(kv.key), row, stop, _plain(kv.value))
        for scope, records, times in scopes:
            end = row + len(times)
            if scope.name:
                cols.fill(("scope", "name"), row, end, scope.name)
            if scope.version:
                cols.fill(("scope", "version"), row, end, scope.version)
            fields["timestamp"] += times
            _record_fields(records, fields)
            _attributes(records, row, cols)
            row = end
    times = fields.pop("timestamp")
    cols.dense(tuple(timestamp_field.split(".")), pa.array(times, TIMESTAMP_TYPE))
    for name, values in fields.items():
        if any(v is not None for v in values):
            cols.dense((name,), values)
    reasons = []
    if rejected["late"]:
        reasons.append(f"{rejected['late']} log records have a time past 2262-04-11 "
                       "(beyond signed 64-bit nanoseconds)")
    if rejected["untimed"]:
        reasons.append(f"{rejected['untimed']} log records have neither timeUnixNano nor "
                       "observedTimeUnixNano, and this store refuses events without a time")
    return _Logs(cols.table(row), rejected["late"] + rejected["untimed"], reasons)


_FIELDS = ("timestamp", "severity_text", "severity_number", "body", "trace_id", "span_id",
           "event_name")


def _accepted(records: Any, need_time: bool, rejected: dict[str, int]
              ) -> tuple[Any, list[int | None]]:
    """The records to store, and their times (None: none; the ingest time is used)."""
    times = [r.time_unix_nano or r.observed_time_unix_nano or None for r in records]
    late = bool(times) and max(t or 0 for t in times) >= _I64
    untimed = need_time and None in times
    if not (late or untimed):
        return records, times
    kept, kept_times = [], []
    for record, t in zip(records, times, strict=True):
        if t is not None and t >= _I64:
            rejected["late"] += 1
        elif t is None and need_time:
            rejected["untimed"] += 1
        else:
            kept.append(record)
            kept_times.append(t)
    return kept, kept_times


def _record_fields(records: Any, fields: dict[str, list[Any]]) -> None:
    """The record's own fields, one list per field."""
    fields["severity_text"] += [r.severity_text or None for r in records]
    fields["severity_number"] += [r.severity_number or None for r in records]
    fields["body"] += [_body(r.body) for r in records]
    fields["trace_id"] += [r.trace_id.hex() or None for r in records]
    fields["span_id"] += [r.span_id.hex() or None for r in records]
    fields["event_name"] += [r.event_name or None for r in records]


def _body(body: Any) -> str | None:
    kind = body.WhichOneof("value")
    if kind == "string_value":
        return body.string_value
    value = _plain(body) if kind else None
    return None if value is None else _json.encode(value).decode()


def _attributes(records: Any, row: int, cols: Columns) -> None:
    """Each record's attributes into cells (they replace the resource's): the hot loop."""
    cells = cols.cells
    slots: dict[str, tuple[list[int], list[Any]]] = {}  # attribute name → its cell
    for record in records:
        for kv in record.attributes:
            key, value = kv.key, kv.value
            if value.WhichOneof("value") == "string_value":
                plain = value.string_value
            else:
                plain = _plain(value)
                if type(plain) is dict or type(plain) is list:
                    _put(cols, _split(key), row, row + 1, plain)
                    continue
            slot = slots.get(key)
            if slot is None:
                slot = slots[key] = cells.setdefault(_split(key), ([], []))
            slot[0].append(row)
            slot[1].append(plain)
        row += 1


@functools.lru_cache(maxsize=1 << 16)
def _split(name: str) -> tuple[str, ...]:
    """``service.name`` → ``("service", "name")``; a name with an empty part stays whole."""
    parts = name.split(".")
    if "" in parts:
        return (name,)
    return _capped(tuple(parts))


def _capped(path: tuple[str, ...]) -> tuple[str, ...]:
    if len(path) <= MAX_PATH_PARTS:
        return path
    return (*path[:MAX_PATH_PARTS - 1], ".".join(path[MAX_PATH_PARTS - 1:]))


def _put(cols: Columns, path: tuple[str, ...], start: int, stop: int, value: object) -> None:
    if type(value) is dict and len(path) < MAX_PATH_PARTS:
        for key, inner in value.items():  # (a kvlist nests like a dotted name)
            _put(cols, _capped(path + _split(key)), start, stop, inner)
        return
    if type(value) is dict or (type(value) is list and _depth(value) > MAX_VALUE_DEPTH):
        value = _json.encode(value).decode()
    if stop == start + 1:
        cols.put(path, start, value)
    else:
        cols.fill(path, start, stop, value)


def _depth(value: object) -> int:
    if type(value) is list:
        return 1 + max(map(_depth, value), default=0)
    if type(value) is dict:
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


def _plain(value: Any) -> Any:
    """An ``AnyValue`` as a Python value (kvlist: dict, array: list, bytes: base64)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None  # (unset, or a profile's string-table index)

