"""Reading over HTTP: entity timelines, EQL / CorQL / SQL queries, rules and their
stored correlations.

* ``GET /v1/entities/{entity}/timeline?start&end&limit&desc`` → :meth:`Store.timeline`.
* ``POST /v1/query`` with ``{"language": "eql"|"corql"|"sql"|"logql", "query",
  "start", "end", "limit"}`` → :meth:`Store.eql`, :meth:`Store.correlate`,
  :meth:`Store.sql`, :meth:`Store.logql` (log lines as events: the timestamp,
  ``labels`` and ``line``; a metric's points as rows).
* ``PUT``/``GET``/``DELETE /v1/rules/{name}``, ``GET /v1/rules`` → the rule methods.
* ``GET /v1/correlations?rule&start&end&limit`` → :meth:`Store.correlations`.

Answers follow ``Accept``: ``application/json`` (the default),
``application/x-ndjson`` (one object a line) or
``application/vnd.apache.arrow.stream`` (Arrow IPC). The store call runs in the
thread pool; the answer is encoded there too, batch by batch, as the client
reads it (:mod:`tidal.server.encode` says how values look in JSON).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

import msgspec
import pyarrow as pa
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from tidal.api import Store
from tidal.correlate.result import Correlation
from tidal.correlate.ruleset import RuleInfo
from tidal.errors import ConfigError
from tidal.server import openapi
from tidal.server.auth import require
from tidal.server.config import ServerConfig
from tidal.server.encode import (
    arrow_stream,
    batched,
    correlation_objects,
    event_table,
    json_document,
    ndjson,
    row_arrays,
    row_objects,
)

__all__ = ["ARROW", "CORRELATION", "EVENT", "JSON", "NDJSON", "negotiate", "routes"]

JSON = "application/json"
NDJSON = "application/x-ndjson"
ARROW = "application/vnd.apache.arrow.stream"
_MEDIA = (JSON, NDJSON, ARROW)
WHOLE_ROWS = 1_000
"""Answers of at most this many rows are encoded in one body (no stream)."""
T = TypeVar("T")

# -- the OpenAPI document -------------------------------------------------------------------

EVENT = openapi.schema("Event", {
    "type": "object", "additionalProperties": True,
    "description": "An event: times as RFC 3339 text in UTC to the nanosecond, nested "
                   "structs as objects; `_seq` is its place in the store."})
CORRELATION = openapi.schema("Correlation", {
    "type": "object", "required": ["id", "key", "start", "end", "completeness", "events"],
    "properties": {
        "rule": {"type": "string", "description": "live streams of a rule only"},
        "id": {"type": "integer"},
        "key": {"type": "object", "description": "each `by`/`on` field to its value"},
        "start": {"type": "string", "format": "date-time"},
        "end": {"type": "string", "format": "date-time"},
        "completeness": {"oneOf": [{"const": "complete"},
                                   {"type": "array", "items": {"type": "string"}}],
                         "description": "`complete`, or the stages it lacks"},
        "labels": {"type": "object"},
        "events": {"type": "array", "items": EVENT,
                   "description": "stage by stage; `_sequence` is the id, `_stage` the "
                                  "stage"}}})
_QUERY_BODY = openapi.schema("QueryRequest", {
    "type": "object", "required": ["query"], "additionalProperties": False,
    "properties": {
        "language": {"enum": ["eql", "corql", "sql", "logql"], "default": "eql"},
        "query": {"type": "string"},
        "start": {"type": ["string", "integer"],
                  "description": "inclusive; RFC 3339 or int ns (not for sql)"},
        "end": {"type": ["string", "integer"],
                "description": "exclusive; CorQL's look-back is from here (default now)"},
        "limit": {"type": "integer", "minimum": 0,
                  "description": "at most this many events, correlations or rows"}}})
_ANSWER = openapi.schema("QueryAnswer", {
    "type": "object", "properties": {
        "events": {"type": "array", "items": EVENT,
                   "description": "an event query's events (empty when it correlates)"},
        "correlations": {"type": "array", "items": CORRELATION}}})
_SQL_ANSWER = openapi.schema("SqlAnswer", {
    "type": "object", "properties": {
        "columns": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "type": {"type": "string"}}}},
        "rows": {"type": "array", "items": {"type": "array"},
                 "description": "each row's values in column order"}}})
_RULE = openapi.schema("Rule", {
    "type": "object", "properties": {
        "name": {"type": "string"}, "query": {"type": "string"},
        "language": {"enum": ["eql", "corql"]},
        "from_seq": {"type": "integer", "description": "the first `_seq` it saw"},
        "stats": {"type": ["object", "null"],
                  "description": "its live run: events, late, correlations, evicted, "
                                 "state_bytes, watermark_ns, lag_ns, behind..."}}})
_STORED = openapi.schema("StoredCorrelation", {
    "type": "object", "properties": {
        "rule": {"type": "string"}, "id": {"type": "integer"}, "key": {"type": "object"},
        "start": {"type": "string", "format": "date-time"},
        "end": {"type": "string", "format": "date-time"},
        "completeness": {"oneOf": [{"const": "complete"},
                                   {"type": "array", "items": {"type": "string"}}]},
        "seqs": {"type": "array", "items": {"type": ["integer", "null"]},
                 "description": "the `_seq` of each of its events"}}})
_ARROW_BODY = {"schema": {"type": "string", "format": "binary"}}
_ACCEPT = openapi.header("Accept", f"{JSON} (default), {NDJSON} (one object a line) or "
                                   f"{ARROW} (Arrow IPC stream)")
_BOUNDS = [openapi.query("start", "inclusive: RFC 3339, or int ns"),
           openapi.query("end", "exclusive: RFC 3339, or int ns"),
           openapi.query("limit", "at most this many", kind="integer")]


def _formats(description: str, document: dict[str, Any], line: dict[str, Any]
             ) -> dict[str, Any]:
    return {"description": description, "content": {
        JSON: {"schema": document}, NDJSON: {"schema": line}, ARROW: _ARROW_BODY}}


# -- request bodies -------------------------------------------------------------------------

class QueryBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/query``."""

    query: str
    language: str = "eql"
    start: str | int | None = None
    end: str | int | None = None
    limit: Annotated[int, msgspec.Meta(ge=0)] | None = None


class RuleBody(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /v1/rules/{name}``."""

    query: str
    language: str = "eql"


async def _body(request: Request, kind: type[T]) -> T:
    limit = request.app.state.config.max_body_bytes
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the body is over {limit} bytes")
        chunks.append(chunk)
    try:
        return msgspec.json.decode(b"".join(chunks), type=kind)
    except msgspec.DecodeError as exc:  # (ValidationError included: it names the field)
        raise HTTPException(400, f"bad JSON body: {exc}") from exc


# -- what a query found ---------------------------------------------------------------------

@dataclass
class Answer:
    """A query's answer: ``events`` (an event query), ``correlations`` (with the
    events table that holds them when the query made one) or ``rows`` (SQL)."""

    kind: Literal["events", "correlations", "rows"]
    table: pa.Table | None = None
    correlations: list[Correlation] = dataclasses.field(default_factory=list)


def run_query(store: Store, body: QueryBody, config: ServerConfig | None = None) -> Answer:
    """Run ``body`` on ``store`` (blocking: call it in the thread pool); LogQL reads
    the line and label fields ``config`` names."""
    if body.language == "eql":
        result = store.eql(body.query, start=body.start, end=body.end, size=body.limit)
        if result.correlations:
            return Answer("correlations", result.events, result.correlations)
        return Answer("events", result.events)
    if body.language == "corql":
        found = store.correlate(body.query, start=body.start, end=body.end)
        return Answer("correlations", None, list(islice(found, body.limit)))
    if body.language == "sql":
        for name in ("start", "end"):
            if getattr(body, name) is not None:
                raise ConfigError(f"{name} does not apply to SQL: put the bounds in the "
                                  "WHERE clause", field=name)
        table = store.sql(body.query)
        return Answer("rows", table if body.limit is None else table.slice(0, body.limit))
    if body.language == "logql":
        config = config or ServerConfig()
        logged = store.logql(body.query, start=body.start, end=body.end,
                             limit=100 if body.limit is None else body.limit,
                             line_field=config.loki_line_field,
                             label_fields=config.loki_label_fields)
        if logged.kind != "streams":
            return Answer("rows", logged.table())
        return Answer("events", logged.table(time_name=store.config.timestamp_field))
    raise ConfigError("language must be 'eql', 'corql', 'sql' or 'logql', not "
                      f"{body.language!r}", field="language")


# -- routes ---------------------------------------------------------------------------------

@openapi.operation(
    "One entity's events, in time order", scope="query",
    description="Store.timeline. Ordered by (timestamp, `_seq`); `desc=true`: newest first, "
                "`limit` counts in that order. The entity may hold slashes.",
    parameters=[*_BOUNDS, openapi.query("desc", "newest first", kind="boolean"), _ACCEPT],
    responses={200: _formats("The events", {"type": "object", "properties": {
                   "events": {"type": "array", "items": EVENT}}}, EVENT),
               400: "A bad parameter", 406: "None of the formats Accept allows"})
async def timeline(request: Request) -> Response:
    require(request, "query")
    media = negotiate(request)
    params = request.query_params
    store: Store = request.app.state.store
    entity, limit, desc = request.path_params["entity"], _int_param(request, "limit"), \
        _bool_param(request, "desc")

    def answer() -> Response:  # (read and, when small, encode in one trip to the pool)
        table = store.timeline(entity, params.get("start"), params.get("end"), limit=limit,
                               desc=desc)
        return _answer(Answer("events", table), media, envelope=False,
                       whole=table.num_rows <= WHOLE_ROWS)

    if limit is not None and 0 <= limit <= WHOLE_ROWS:
        return answer()  # (bounded and quick: the thread pool trip would cost more)
    return await run_in_threadpool(answer)


@openapi.operation(
    "Run an EQL, CorQL or SQL query", scope="query",
    description="EQL (Store.eql), CorQL (Store.correlate), DuckDB SQL over the views "
                "`events` and `correlations` (Store.sql) or LogQL (Store.logql: log lines "
                "as events of the timestamp, `labels` and `line`; a metric's points as "
                "rows). JSON: `{events, correlations}` "
                "(SQL: `{columns, rows}`, rows as arrays); NDJSON: one event, correlation "
                "or row (an object) a line; Arrow: the events (of correlations: with "
                "`_sequence` and `_stage`), or SQL's table. Encoded as it is sent.",
    request={JSON: _QUERY_BODY}, parameters=[_ACCEPT],
    responses={200: _formats("The answer", {"oneOf": [_ANSWER, _SQL_ANSWER]},
                             {"oneOf": [EVENT, CORRELATION]}),
               400: "A bad body, language or query (`details`: line and column)",
               406: "None of the formats Accept allows", 413: "The body is too large"})
async def post_query(request: Request) -> Response:
    require(request, "query")
    media = negotiate(request)
    body = await _body(request, QueryBody)
    found = await run_in_threadpool(run_query, request.app.state.store, body,
                                    request.app.state.config)
    return _answer(found, media)


@openapi.operation(
    "Add a rule: a named live query whose correlations are stored", scope="admin",
    description="Store.add_rule. It runs from the next event on, and from every open.",
    request={JSON: {"type": "object", "required": ["query"], "properties": {
        "query": {"type": "string"}, "language": {"enum": ["eql", "corql"],
                                                  "default": "eql"}}}},
    responses={201: {"description": "Added", "content": {JSON: {"schema": _RULE}}},
               400: "A bad name or query (`details`: line and column)",
               409: "There is a rule of that name"})
async def put_rule(request: Request) -> Response:
    require(request, "admin")
    name = request.path_params["name"]
    body = await _body(request, RuleBody)
    store: Store = request.app.state.store
    try:
        await run_in_threadpool(store.add_rule, name, body.query, language=body.language)
    except ConfigError as exc:
        if exc.field == "name" and "already" in str(exc):
            raise HTTPException(409, str(exc)) from exc
        raise
    return JSONResponse(await _rule(store, name), status_code=201,
                        headers={"Location": f"/v1/rules/{quote(name, safe='')}"})


@openapi.operation(
    "The rules, with their live stats", scope="query",
    responses={200: {"description": "The rules", "content": {JSON: {"schema": {
        "type": "object", "properties": {"rules": {"type": "array", "items": _RULE}}}}}}})
async def list_rules(request: Request) -> Response:
    require(request, "query")
    infos = await run_in_threadpool(request.app.state.store.rules)
    return JSONResponse({"rules": [_rule_object(info) for info in infos]})


@openapi.operation(
    "One rule, with its live stats", scope="query",
    responses={200: {"description": "The rule", "content": {JSON: {"schema": _RULE}}},
               404: "No such rule"})
async def get_rule(request: Request) -> Response:
    require(request, "query")
    return JSONResponse(await _rule(request.app.state.store, request.path_params["name"]))


@openapi.operation(
    "Stop and forget a rule (its stored correlations stay)", scope="admin",
    responses={204: "Removed", 404: "No such rule"})
async def delete_rule(request: Request) -> Response:
    require(request, "admin")
    name = request.path_params["name"]
    try:
        await run_in_threadpool(request.app.state.store.remove_rule, name)
    except ConfigError as exc:  # (the only one remove_rule raises: no such rule)
        raise HTTPException(404, str(exc)) from exc
    return Response(status_code=204)


@openapi.operation(
    "The rules' stored correlations", scope="query",
    description="Store.correlations: of `rule` (all rules without it), starting in "
                "[`start`, `end`). For live ones: GET /v1/correlations/stream.",
    parameters=[openapi.query("rule", "a rule's name"), *_BOUNDS, _ACCEPT],
    responses={200: _formats("The correlations", {"type": "object", "properties": {
                   "correlations": {"type": "array", "items": _STORED}}}, _STORED),
               400: "A bad parameter", 406: "None of the formats Accept allows"})
async def list_correlations(request: Request) -> Response:
    require(request, "query")
    media = negotiate(request)
    params = request.query_params
    store: Store = request.app.state.store
    table = await run_in_threadpool(store.correlations, params.get("rule"),
                                    params.get("start"), params.get("end"))
    limit = _int_param(request, "limit")
    if limit is not None:
        table = table.slice(0, limit)
    if media == ARROW:
        return _stream(arrow_stream(lambda: table), ARROW)
    batches = (_stored(batch) for batch in row_objects(table))
    if media == NDJSON:
        return _stream(ndjson(batches), NDJSON)
    return _stream(json_document([("correlations", batches)]), JSON)


class _AnyText(Convertor[str]):
    """A path part of any characters, slashes and newlines too (an entity is any text;
    Starlette's ``path`` stops at a newline)."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("text", _AnyText())


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/entities/{entity:text}/timeline", timeline, methods=["GET"]),
        Route("/v1/query", post_query, methods=["POST"]),
        Route("/v1/rules", list_rules, methods=["GET"]),
        Route("/v1/rules/{name}", get_rule, methods=["GET"]),
        Route("/v1/rules/{name}", put_rule, methods=["PUT"]),
        Route("/v1/rules/{name}", delete_rule, methods=["DELETE"]),
        Route("/v1/correlations", list_correlations, methods=["GET"]),
    ]


# -- rules ----------------------------------------------------------------------------------

async def _rule(store: Store, name: str) -> dict[str, Any]:
    infos = await run_in_threadpool(store.rules)
    for info in infos:
        if info.name == name:
            return _rule_object(info)
    raise HTTPException(404, f"there is no rule named {name!r}")


def _rule_object(info: RuleInfo) -> dict[str, Any]:
    stats = None if info.stats is None else dataclasses.asdict(info.stats)
    return {"name": info.name, "query": info.query, "language": info.language,
            "from_seq": info.from_seq, "stats": stats}


def _stored(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored correlation rows with their JSON text columns as JSON values."""
    for row in rows:
        row["key"] = msgspec.json.decode(row["key"])
        if row["completeness"].startswith("["):
            row["completeness"] = msgspec.json.decode(row["completeness"])
    return rows


# -- answers --------------------------------------------------------------------------------

def negotiate(request: Request) -> str:
    """The media type to answer in, from ``Accept`` (JSON when it allows anything);
    406 when it allows none of ours."""
    header = request.headers.get("accept", "").strip()
    if not header:
        return JSON
    ranges = []
    for order, part in enumerate(header.split(",")):
        media, *options = (p.strip() for p in part.split(";"))
        weight = 1.0
        for option in options:
            name, _, value = option.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if weight > 0:
            ranges.append((-weight, order, media.lower()))
    for _, _, media in sorted(ranges):
        if media in _MEDIA:
            return media
        if media in ("*/*", "application/*"):
            return JSON
    raise HTTPException(406, f"cannot answer in {header!r}: ask for {', '.join(_MEDIA)}")


def _answer(found: Answer, media: str, *, envelope: bool = True, whole: bool = False
            ) -> Response:
    """``found`` in ``media``; ``envelope=False``: JSON as ``{"events": [...]}`` alone;
    ``whole``: encoded now, in one body (a small answer, from the thread pool)."""
    stream = functools.partial(_stream, whole=whole)
    if media == ARROW:
        if found.kind == "correlations" and found.table is None:
            correlations = found.correlations
            return stream(arrow_stream(lambda: event_table(correlations).combine_chunks()), ARROW)
        table = found.table
        return stream(arrow_stream(lambda: table), ARROW)
    if found.kind == "rows":
        assert found.table is not None
        if media == NDJSON:
            return stream(ndjson(row_objects(found.table)), NDJSON)
        columns = [{"name": f.name, "type": str(f.type)} for f in found.table.schema]
        return stream(json_document([("rows", row_arrays(found.table))], head={
            "columns": columns}), JSON)
    if found.kind == "correlations":
        objects = batched(correlation_objects(found.correlations), 256)
        if media == NDJSON:
            return stream(ndjson(objects), NDJSON)
        return stream(json_document([("events", iter(())), ("correlations", objects)]), JSON)
    assert found.table is not None
    events = row_objects(found.table)
    if media == NDJSON:
        return stream(ndjson(events), NDJSON)
    parts: list[tuple[str, Iterator[list[Any]]]] = [("events", events)]
    if envelope:
        parts.append(("correlations", iter(())))
    return stream(json_document(parts), JSON)


def _stream(chunks: Iterator[bytes], media: str, *, whole: bool = False) -> Response:
    if whole:
        return Response(b"".join(chunks), media_type=media)
    # (a sync iterator: Starlette reads it in the thread pool, so encoding is off the loop)
    return StreamingResponse(chunks, media_type=media)


# -- query-string parameters ----------------------------------------------------------------

def _int_param(request: Request, name: str) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {text!r}", field=name) from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative", field=name)
    return value


def _bool_param(request: Request, name: str) -> bool:
    text = request.query_params.get(name, "").strip().lower()
    if text in ("", "0", "false", "no"):
        return False
    if text in ("1", "true", "yes"):
        return True
    raise ConfigError(f"{name} must be true or false, not {text!r}", field=name)
