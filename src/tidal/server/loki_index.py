"""Loki's index routes (scope ``query``): how much a stream selector matches, for
Grafana's query-size hint, the Logs Drilldown app and ``logcli stats|volume``.

* ``GET|POST /loki/api/v1/index/stats``: ``query``, ``start``, ``end`` (the last
  hour) → ``{"streams": N, "chunks": N, "bytes": N, "entries": N}``, bare (no
  ``status``/``data`` envelope, as Loki answers). ``bytes`` are the lines' UTF-8
  bytes; Tidal stores no chunks, so ``chunks`` counts one per stream.
* ``GET|POST /loki/api/v1/index/volume``: ``query``, ``start``, ``end``, ``limit``
  (100), ``targetLabels`` (``a,b``), ``aggregateBy`` (``series`` or ``labels``)
  → a ``vector`` of line bytes per group at ``end``, largest first. Groups are
  the selector's labels (or ``targetLabels``); with ``aggregateBy=labels`` one
  ``{"<name>": ""}`` per label name.
* ``GET|POST /loki/api/v1/index/volume_range``: the same plus ``step`` → a
  ``matrix``, a point per step over ``(t - step, t]``.
* ``GET /loki/api/v1/detected_fields``: ``query``, ``start``, ``end``,
  ``line_limit`` (100 lines), ``limit`` (or ``field_limit``, 1000 fields) →
  ``{"fields": [{"label", "type", "cardinality", "parsers"}], "limit": N}``, and
  ``/detected_field/{name}/values`` → ``{"values": [...], "limit": N}``: the
  JSON or logfmt keys of the query's newest lines (bare, as Loki answers).

Only the stream selector counts (a pipeline is ignored, as Loki's index ignores
it). Bad requests are 400 with the reason in plain text. See
:mod:`tidal.correlate.logql.index`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tidal.server import openapi
from tidal.server.loki_query import (
    LokiError,
    answer,
    int_param,
    loki_step,
    loki_time,
    query_text,
    sample_text,
)

if TYPE_CHECKING:
    from tidal.api import Store
    from tidal.correlate.logql import Series

__all__ = ["routes"]

_NS = 1_000_000_000
_HOUR_NS = 3600 * _NS


def _window(params: QueryParams) -> tuple[int, int]:
    """``start`` and ``end`` in ns (the last hour by default), end inclusive."""
    end = loki_time(params.get("end"), time.time_ns(), "end")
    start = loki_time(params.get("start"), end - _HOUR_NS, "start")
    if end < start:
        raise LokiError("the end timestamp must not be before the start time")
    return start, end


def _stats(store: Store, params: QueryParams, fields: dict[str, Any]) -> dict[str, int]:
    start, end = _window(params)
    found = store.logql_index_stats(query_text(params), start=start, end=end + 1, **fields)
    return {"streams": found.streams, "chunks": found.chunks, "bytes": found.bytes,
            "entries": found.entries}


def _volume_args(params: QueryParams) -> dict[str, Any]:
    aggregate_by = params.get("aggregateBy") or "series"
    if aggregate_by not in ("series", "labels"):
        raise LokiError(f"invalid aggregateBy {aggregate_by!r}: series or labels")
    limit = int_param(params, "limit", 100)
    if limit <= 0:
        raise LokiError("limit must be a positive value")
    targets = [t.strip() for t in (params.get("targetLabels") or "").split(",") if t.strip()]
    return {"aggregate_by": aggregate_by, "limit": limit, "target_labels": targets or None}


def _volume(store: Store, params: QueryParams, fields: dict[str, Any]) -> dict[str, Any]:
    start, end = _window(params)
    found = store.logql_volume(query_text(params), start=start, end=end,
                               **_volume_args(params), **fields)
    return {"resultType": "vector", "result": [
        {"metric": s.labels, "value": [s.points[0][0] / _NS, sample_text(s.points[0][1])]}
        for s in found if s.points], "stats": {}}


def _volume_range(store: Store, params: QueryParams, fields: dict[str, Any]
                  ) -> dict[str, Any]:
    start, end = _window(params)
    found: list[Series] = store.logql_volume(
        query_text(params), start=start, end=end,
        step_ns=loki_step(params.get("step"), start, end), **_volume_args(params), **fields)
    return {"resultType": "matrix", "result": [
        {"metric": s.labels, "values": [[ts / _NS, sample_text(v)] for ts, v in s.points]}
        for s in found], "stats": {}}


def _fields(store: Store, params: QueryParams, fields: dict[str, Any]) -> list[Any]:
    start, end = _window(params)
    line_limit = int_param(params, "line_limit", 100)
    if line_limit <= 0:
        raise LokiError("line_limit must be a positive value")
    return store.logql_detected_fields(query_text(params), start=start, end=end + 1,
                                       line_limit=line_limit, **fields)


def _field_limit(params: QueryParams) -> int:
    limit = int_param(params, "limit", int_param(params, "field_limit", 1000))
    if limit <= 0:
        raise LokiError("limit must be a positive value")
    return limit


def _detected(store: Store, params: QueryParams, fields: dict[str, Any]) -> dict[str, Any]:
    limit = _field_limit(params)
    return {"fields": [{"label": f.label, "type": f.type, "cardinality": f.cardinality,
                        "parsers": list(f.parsers)}
                       for f in _fields(store, params, fields)[:limit]], "limit": limit}


_WINDOW = [openapi.query("query", "a LogQL stream selector", required=True),
           openapi.query("start", "ns, s or RFC 3339"), openapi.query("end", "ns, s or RFC 3339")]
_VOLUME = [*_WINDOW, openapi.query("limit", "groups, largest first (100)", kind="integer"),
           openapi.query("targetLabels", "the labels to group by, comma-separated"),
           openapi.query("aggregateBy", "series (default) or labels")]
_TEXT_400 = {"description": "The reason, in plain text (as Loki answers)",
             "content": {"text/plain": {"schema": {"type": "string"}}}}
_STATS = openapi.schema("LokiIndexStats", {
    "type": "object", "required": ["streams", "chunks", "bytes", "entries"],
    "properties": {name: {"type": "integer", "minimum": 0}
                   for name in ("streams", "chunks", "bytes", "entries")}})
_DATA = {200: {"description": "Loki's answer", "content": {"application/json": {"schema": {
    "type": "object", "required": ["status", "data"]}}}}, 400: _TEXT_400}


@openapi.operation("Loki: index statistics of a stream selector", scope="query",
                   parameters=_WINDOW, responses={
                       200: {"description": "Streams, chunks (one a stream), line bytes "
                                            "and entries", "content": {
                                                "application/json": {"schema": _STATS}}},
                       400: _TEXT_400})
async def index_stats(request: Request) -> Response:
    """The streams, chunks, bytes and entries a selector matches in the window."""
    return await answer(request, _stats, bare=True)


@openapi.operation("Loki: log volume (line bytes) per group, as a vector", scope="query",
                   parameters=_VOLUME, responses=_DATA)
async def volume(request: Request) -> Response:
    """Line bytes per group over the window, largest first."""
    return await answer(request, _volume)


@openapi.operation("Loki: log volume (line bytes) per group and step, as a matrix",
                   scope="query", parameters=[*_VOLUME, openapi.query("step", "15s or seconds")],
                   responses=_DATA)
async def volume_range(request: Request) -> Response:
    """Line bytes per group and step, largest groups first."""
    return await answer(request, _volume_range)


@openapi.operation("Loki: the fields detected in a log query's newest lines",
                   scope="query", parameters=[
                       *_WINDOW, openapi.query("line_limit", "lines (100)", kind="integer"),
                       openapi.query("limit", "fields (1000)", kind="integer")],
                   responses={200: {"description": "The fields", "content": {
                       "application/json": {"schema": {"type": "object",
                                                       "required": ["fields", "limit"]}}}},
                              400: _TEXT_400})
async def detected_fields(request: Request) -> Response:
    """The JSON and logfmt keys of the query's newest lines: type, cardinality, parsers."""
    return await answer(request, _detected, bare=True)


@openapi.operation("Loki: one detected field's values", scope="query", parameters=[
    *_WINDOW, openapi.query("line_limit", "lines (100)", kind="integer"),
    openapi.query("limit", "values (1000)", kind="integer")],
                   responses={200: {"description": "The values", "content": {
                       "application/json": {"schema": {"type": "object",
                                                       "required": ["values", "limit"]}}}},
                              400: _TEXT_400})
async def detected_field_values(request: Request) -> Response:
    """The distinct values of one detected field in the query's newest lines."""
    name = request.path_params["name"]

    def values(store: Store, params: QueryParams, fields: dict[str, Any]) -> dict[str, Any]:
        limit = _field_limit(params)
        found = next((f.values for f in _fields(store, params, fields) if f.label == name), ())
        return {"values": list(found[:limit]), "limit": limit}

    return await answer(request, values, bare=True)


@openapi.operation("Loki: the labels and their cardinality (Grafana's Logs Drilldown)",
                   scope="query", parameters=[*_WINDOW[1:], openapi.query(
                       "query", "a stream selector (default: every stream)")],
                   responses={200: {"description": "The labels", "content": {
                       "application/json": {"schema": {"type": "object",
                                                       "required": ["detectedLabels"]}}}},
                              400: _TEXT_400})
async def detected_labels(request: Request) -> Response:
    """Every label of the window's streams with its number of distinct values."""
    def labels(store: Store, params: QueryParams, fields: dict[str, Any]) -> dict[str, Any]:
        start, end = _window(params)
        found = store.logql_detected_labels(start=start, end=end + 1,
                                            selector=params.get("query") or None, **fields)
        return {"detectedLabels": [{"label": name, "cardinality": count}
                                   for name, count in found.items()]}

    return await answer(request, labels, bare=True)


@openapi.operation("Loki: the patterns of a log query's lines (Grafana's Logs Drilldown)",
                   scope="query", parameters=[
                       *_WINDOW, openapi.query("step", "the buckets' width, 15s or seconds"),
                       openapi.query("limit", "patterns, most frequent first (50)",
                                     kind="integer")],
                   responses=_DATA)
async def patterns(request: Request) -> Response:
    """The most frequent line patterns (digit-bearing tokens as ``<_>``) per step."""
    def found(store: Store, params: QueryParams, fields: dict[str, Any]) -> list[Any]:
        start, end = _window(params)
        limit = int_param(params, "limit", 50)
        if limit <= 0:
            raise LokiError("limit must be a positive value")
        return [{"pattern": p.pattern, "samples": [[ts // _NS, count]
                                                   for ts, count in p.samples]}
                for p in store.logql_patterns(query_text(params), start=start, end=end + 1,
                                              step_ns=loki_step(params.get("step"), start,
                                                                end),
                                              limit=limit, **fields)]

    return await answer(request, found)


def routes() -> list[BaseRoute]:
    """The index and detected-fields routes."""
    both = ["GET", "POST"]
    return [Route("/loki/api/v1/index/stats", index_stats, methods=both),
            Route("/loki/api/v1/index/volume", volume, methods=both),
            Route("/loki/api/v1/index/volume_range", volume_range, methods=both),
            Route("/loki/api/v1/detected_fields", detected_fields, methods=["GET"]),
            Route("/loki/api/v1/detected_labels", detected_labels, methods=["GET"]),
            Route("/loki/api/v1/patterns", patterns, methods=["GET"]),
            Route("/loki/api/v1/detected_field/{name}/values", detected_field_values,
                  methods=["GET"])]
