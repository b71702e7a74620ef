"""``GET|POST /{index}/_eql/search``: Elasticsearch's EQL search API over the store
(scope ``query``), so that Elastic's clients and Kibana-style tools run EQL on Tidal.

The request body is Elastic's: ``query``, ``size`` (default 10), ``filter`` (the
Query DSL subset of :mod:`tidal.server.elastic_dsl`), ``timestamp_field``,
``event_category_field``, ``tiebreaker_field``, ``fetch_size``, ``fields``,
``max_samples_per_key``, ``result_position`` (``tail``, the default: the last
``size`` matches; ``head``: the first). The answer is Elastic's too:
``is_partial``, ``is_running``, ``took``, ``timed_out``, ``hits.total``, and
``hits.events`` (``_index``, ``_id``, ``_source``, ``fields``) or
``hits.sequences`` (``join_keys`` and ``events``; a missing event of a sequence
is ``{"_index": "", "_id": "", "_source": {}, "missing": true}``, as Elastic
marks it). Every answer carries ``X-Elastic-Product: Elasticsearch``, which
Elastic's clients check.

``{index}``: comma-separated names, wildcards allowed. ``*``, ``_all`` and the
store's name (its directory's name) are the whole store; any other name selects
the events whose field :data:`INDEX_FIELD` matches it (events carry it from
ingest, e.g. a Loki label); when no event has that field at all, the answer is
404 ``index_not_found_exception``, as for an unknown index. ``_id`` is the
event's ``_seq``; ``_index`` its ``index`` field, else the store's name.
Differences from Elasticsearch: ties in time are broken by ``_seq``
(ingest order) whatever ``tiebreaker_field`` says; ``timestamp_field`` must be
the store's timestamp field (``@timestamp`` is taken as it); kept (async)
searches live in the server's memory (:mod:`tidal.server.elastic_async`);
``runtime_mappings`` are refused.

Errors have Elastic's shape: ``{"error": {"root_cause": [..], "type", "reason"},
"status"}``: ``parsing_exception`` (a query or filter that does not parse),
``verification_exception`` (one that does not fit the data: an unknown field),
``security_exception`` (401, 403).
"""

from __future__ import annotations

import fnmatch
import time
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tidal.errors import ConfigError, QueryError, UnknownFieldError
from tidal.server import elastic_async, openapi
from tidal.server.auth import require
from tidal.server.elastic_async import BadParameter, EsAnswer, kept_searches, waiting
from tidal.server.elastic_dsl import DslError, Filter, translate
from tidal.server.encode import correlation_objects, dumps, row_objects

if TYPE_CHECKING:
    from tidal.api import Store
    from tidal.correlate.result import Result

__all__ = ["INDEX_FIELD", "routes"]

INDEX_FIELD = "index"
"""The event field an ``{index}`` other than the store's name selects on."""
PRODUCT = {"X-Elastic-Product": "Elasticsearch"}
_WHOLE = ("*", "_all")
_HIDDEN = ("_seq", "_sequence", "_stage")
_MISSING = {"_index": "", "_id": "", "_source": {}, "missing": True}


class EsError(Exception):
    """An answer in Elastic's error shape."""

    def __init__(self, status: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.kind, self.reason = status, kind, reason


class SearchBody(msgspec.Struct, forbid_unknown_fields=False):
    query: str
    size: int = 10
    filter: Any = None
    timestamp_field: str | None = None
    event_category_field: str | None = None
    tiebreaker_field: str | None = None
    fetch_size: int | None = None
    fields: list[Any] | None = None
    max_samples_per_key: int = 1
    result_position: str = "tail"
    runtime_mappings: Any = None


def _answer(status: int, body: dict[str, Any], request: Request) -> Response:
    accept = request.headers.get("accept", "")
    media = ("application/vnd.elasticsearch+json;compatible-with=9"
             if "vnd.elasticsearch+json" in accept else "application/json")
    return Response(dumps(body), status_code=status, media_type=media, headers=PRODUCT)


def _error(exc: EsError, request: Request) -> Response:
    cause = {"type": exc.kind, "reason": exc.reason}
    return _answer(exc.status, {"error": {"root_cause": [cause], **cause},
                                "status": exc.status}, request)


def _security_error(exc: HTTPException, request: Request) -> Response:
    return _error(EsError(exc.status_code, "security_exception", str(exc.detail)), request)


_CAUSE = {"type": "object", "required": ["type", "reason"],
          "properties": {"type": {"type": "string"}, "reason": {"type": "string"}}}
_ES_ERROR = openapi.schema("ElasticError", {
    "type": "object", "required": ["error", "status"],
    "properties": {"status": {"type": "integer"}, "error": {
        "type": "object", "required": ["root_cause", "type", "reason"],
        "properties": {"root_cause": {"type": "array", "items": _CAUSE},
                       "type": {"type": "string"}, "reason": {"type": "string"}}}}})


@openapi.operation(
    "Elasticsearch's EQL search API", scope="query",
    description="Elastic's request body (query, size, filter, fields, ...) and answer "
                "(hits.events or hits.sequences); errors in Elastic's shape. See README, "
                "'Elasticsearch EQL API'.",
    request={"application/json": {"type": "object", "required": ["query"], "properties": {
        "query": {"type": "string"}, "size": {"type": "integer", "minimum": 0},
        "filter": {"type": "object"}, "fields": {"type": "array"},
        "timestamp_field": {"type": "string"}, "event_category_field": {"type": "string"},
        "tiebreaker_field": {"type": "string"}, "fetch_size": {"type": "integer"},
        "max_samples_per_key": {"type": "integer", "minimum": 1},
        "result_position": {"enum": ["head", "tail"]}}}},
    responses={200: {"description": "Elastic's EQL search answer", "content": {
                   "application/json": {"schema": {"type": "object"}}}},
               **{status: {"description": text, "content": {
                   "application/json": {"schema": _ES_ERROR}}} for status, text in (
                   (400, "parsing_exception, verification_exception and the like"),
                   (401, "security_exception: no token, or an unknown one"),
                   (403, "security_exception: the token lacks the query scope"),
                   (404, "index_not_found_exception"))}})
async def eql_search(request: Request) -> Response:
    """Run the body's EQL query, answering as Elasticsearch does (see
    :mod:`tidal.server.elastic_async` for searches that outlive the request)."""
    started = time.perf_counter()
    try:
        try:
            require(request, "query")
        except HTTPException as exc:
            raise EsError(exc.status_code, "security_exception", str(exc.detail)) from exc
        data, body = _body(await request.body())
        try:
            wait = waiting(request, data)
        except BadParameter as exc:
            raise EsError(400, "illegal_argument_exception", str(exc)) from exc
    except EsError as exc:
        return _error(exc, request)
    store: Store = request.app.state.store
    index = request.path_params["index"]

    async def search() -> EsAnswer:
        try:
            found = await run_in_threadpool(_search, store, index, body)
        except EsError as exc:
            cause = {"type": exc.kind, "reason": exc.reason}
            return exc.status, {"error": {"root_cause": [cause], **cause},
                                "status": exc.status}
        took = round((time.perf_counter() - started) * 1000)
        return 200, {"is_partial": False, "is_running": False, "took": took,
                     "timed_out": False, "hits": found}

    status, answer = await kept_searches(request).run(search, wait)
    return _answer(status, answer, request)


def _body(raw: bytes) -> tuple[dict[str, Any], SearchBody]:
    """The request body as JSON (for the async parameters too) and as a search."""
    try:
        data = msgspec.json.decode(raw or b"{}")
    except msgspec.DecodeError as exc:
        raise EsError(400, "parsing_exception", f"the body is not JSON: {exc}") from exc
    try:
        body = msgspec.convert(data, SearchBody)
    except msgspec.ValidationError as exc:
        raise EsError(400, "x_content_parse_exception", f"[eql/search] {exc}") from exc
    if body.runtime_mappings:
        raise EsError(400, "parsing_exception", "runtime_mappings are not supported by Tidal")
    if body.size < 0:
        raise EsError(400, "illegal_argument_exception", "size must be greater than or "
                                                         "equal to 0")
    if body.result_position not in ("head", "tail"):
        raise EsError(400, "illegal_argument_exception",
                      f"result_position must be head or tail, not {body.result_position!r}")
    return data, body


def _search(store: Store, index: str, body: SearchBody) -> dict[str, Any]:
    from tidal.correlate.eql.parser import parse

    ts_field = store.config.timestamp_field
    if body.timestamp_field not in (None, "@timestamp", ts_field):
        raise EsError(400, "verification_exception", f"timestamp_field must be the store's "
                                                     f"timestamp field [{ts_field}]")
    try:
        parse(body.query)
    except QueryError as exc:
        raise EsError(400, "parsing_exception", str(exc)) from exc
    try:
        limits = (translate(body.filter, ts_field, "@timestamp") if body.filter is not None
                  else Filter())
    except DslError as exc:
        raise EsError(400, "parsing_exception", f"[filter] {exc}") from exc
    name = store.path.name if store.path is not None else "memory"
    selected = _index_condition(index, name)
    where = _joined(selected, limits.condition)
    query, size = body.query, body.size
    tail = body.result_position == "tail" and not query.lstrip().startswith("sample")
    if tail:
        query, size_arg = f"{query}\n| tail {size}", None
    else:
        size_arg = size
    try:
        result = store.eql(query, start=limits.start_ns, end=limits.end_ns, size=size_arg,
                           category_field=body.event_category_field, where=where,
                           max_samples_per_key=body.max_samples_per_key)
    except UnknownFieldError as exc:
        if exc.field == INDEX_FIELD and selected is not None:
            raise EsError(404, "index_not_found_exception", f"no such index [{index}]") from exc
        raise EsError(400, "verification_exception", str(exc)) from exc
    except (QueryError, ConfigError) as exc:
        raise EsError(400, "verification_exception", str(exc)) from exc
    return _hits(result, name, body.fields)


def _index_condition(index: str, store_name: str) -> str | None:
    names = [n.strip() for n in index.split(",") if n.strip()]
    if not names or any(n in _WHOLE or fnmatch.fnmatchcase(store_name, n) for n in names):
        return None
    patterns = ", ".join(msgspec.json.encode(n).decode() for n in names)
    return f"{INDEX_FIELD} like ({patterns})"


def _joined(*conditions: str | None) -> str | None:
    kept = [c for c in conditions if c]
    return " and ".join(f"({c})" for c in kept) if kept else None


def _hits(result: Result, store_name: str, fields: list[Any] | None) -> dict[str, Any]:
    wanted = _field_patterns(fields)
    if not result.correlations:
        events = [_hit(row, store_name, wanted) for batch in row_objects(result.events)
                  for row in batch]
        return {"total": {"value": len(events), "relation": "eq"}, "events": events}
    sequences = [{"join_keys": list(found["key"].values()),
                  "events": [_hit(row, store_name, wanted) if row.get("_seq") is not None
                             else dict(_MISSING) for row in found["events"]]}
                 for found in correlation_objects(result.correlations)]
    return {"total": {"value": len(sequences), "relation": "eq"}, "sequences": sequences}


def _hit(row: dict[str, Any], store_name: str, wanted: list[str]) -> dict[str, Any]:
    source = {k: v for k, v in row.items() if k not in _HIDDEN}
    index = source.get(INDEX_FIELD)
    hit: dict[str, Any] = {"_index": index if isinstance(index, str) else store_name,
                           "_id": str(row["_seq"]), "_source": source}
    if wanted:
        flat = dict(_leaves(source))
        hit["fields"] = {name: value if isinstance(value, list) else [value]
                         for name, value in flat.items()
                         if value is not None and any(fnmatch.fnmatchcase(name, pattern)
                                                      for pattern in wanted)}
    return hit


def _field_patterns(fields: list[Any] | None) -> list[str]:
    patterns = []
    for item in fields or []:
        name = item.get("field") if isinstance(item, dict) else item
        if not isinstance(name, str):
            raise EsError(400, "parsing_exception",
                          '[fields] takes names or {"field": name} objects')
        patterns.append(name)
    return patterns


def _leaves(value: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, item in value.items():
        name = f"{prefix}{key}"
        out += _leaves(item, f"{name}.") if isinstance(item, dict) else [(name, item)]
    return out


def routes() -> list[BaseRoute]:
    """``GET|POST /{index}/_eql/search``."""
    return [*elastic_async.routes(_answer, _security_error),
            Route("/{index}/_eql/search", eql_search, methods=["GET", "POST"])]
