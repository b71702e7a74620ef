"""Loki's query API over the store (scope ``query``), for Grafana (Explore, the logs
volume panel) and ``logcli``: LogQL through ``Store.logql``.

* ``GET|POST /loki/api/v1/query_range``: ``query``, ``start``, ``end``, ``limit``
  (100), ``direction`` (``backward``), ``step``. A log query answers
  ``resultType: "streams"`` (``[["<ns>", "<line>"], ...]`` per label set), a
  metric query ``"matrix"`` (``[[<unix s>, "<value>"], ...]`` per series).
* ``GET|POST /loki/api/v1/query``: one instant, ``time`` (now): a metric query
  answers ``"vector"``; a log query the streams of the hour before ``time``.
* ``GET /loki/api/v1/labels``, ``/loki/api/v1/label/{name}/values``,
  ``/loki/api/v1/series`` (``match[]``): over ``start``/``end`` (the last 6 h).
* ``GET /loki/api/v1/status/buildinfo``: what Grafana asks a Loki for.

Times are nanoseconds since the epoch, or seconds (10 digits or fewer, or with a
fraction), or RFC 3339, as Loki reads them; ``step`` a duration (``15s``) or
seconds. The default step is Loki's: the range over 250, at least 1 s. Answers
are ``{"status": "success", "data": ...}``; bad requests are 400 with the
reason as plain text, as Loki answers them.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from tidal.errors import QueryError, TidalError
from tidal.model.time import parse_instant
from tidal.server import openapi
from tidal.server.auth import require
from tidal.server.encode import dumps

if TYPE_CHECKING:
    from tidal.api import Store
    from tidal.correlate.logql.run import LogqlResult

__all__ = ["LokiError", "Work", "answer", "int_param", "loki_step", "loki_time", "query_text",
           "routes", "sample_text"]

_NS = 1_000_000_000
CATEGORIZE = "categorize-labels"
_HOUR_NS = 3600 * _NS
_LOOKBACK_NS = 6 * _HOUR_NS
_DIGITS = re.compile(r"-?[0-9]+")
_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|ms|s|m|h|d|w|y))+")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": _NS, "m": 60 * _NS,
            "h": _HOUR_NS, "d": 24 * _HOUR_NS, "w": 7 * 24 * _HOUR_NS,
            "y": 365 * 24 * _HOUR_NS}
BUILD_INFO = {"version": "3.0.0", "revision": "tidal", "branch": "main", "buildUser": "tidal",
              "buildDate": "", "goVersion": ""}


class LokiError(Exception):
    """A request Loki would refuse: answered 400 in plain text."""


def loki_time(value: str | None, default_ns: int, name: str) -> int:
    """A Loki time parameter in ns: integer ns (seconds when 10 digits or fewer), float
    seconds, or RFC 3339; ``default_ns`` when absent."""
    if value is None or value == "":
        return default_ns
    if _DIGITS.fullmatch(value):
        number = int(value)
        ns = number * _NS if len(value.lstrip("-")) <= 10 else number
        if not -(2**63) <= ns < 2**63:
            raise LokiError(f"could not parse '{name}' parameter: {value!r} is out of range")
        return ns
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is not None:
        if not math.isfinite(seconds) or abs(seconds) >= 9.2e9:
            raise LokiError(f"could not parse '{name}' parameter: {value!r}")
        return int(seconds * _NS)
    try:
        parsed = parse_instant(value, name=name)
    except (ValueError, TidalError) as exc:
        raise LokiError(f"could not parse '{name}' parameter: {value!r}") from exc
    if parsed is None:
        raise LokiError(f"could not parse '{name}' parameter: {value!r}")
    return parsed


def loki_step(value: str | None, start_ns: int, end_ns: int) -> int:
    """The step in ns: a duration or (float) seconds; by default the range over 250, at
    least a second (Loki's default)."""
    if value is None or value == "":
        return max(1, math.ceil((end_ns - start_ns) / _NS / 250)) * _NS
    if _DURATION.fullmatch(value):
        step = sum(int(float(number) * _UNIT_NS[unit]) for number, unit in
                   re.findall(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h|d|w|y)", value))
    else:
        try:
            seconds = float(value)
        except ValueError:
            raise LokiError(f"could not parse 'step' parameter: {value!r}") from None
        if not math.isfinite(seconds) or abs(seconds) >= 9.2e9:
            raise LokiError(f"could not parse 'step' parameter: {value!r}")
        step = int(seconds * _NS)
    if step <= 0:
        raise LokiError("zero or negative query resolution step widths are not accepted. "
                        "Try a positive integer")
    return step


def int_param(params: QueryParams, name: str, default: int) -> int:
    """Integer parameter ``name`` (``default`` when absent or empty)."""
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise LokiError(f"could not parse '{name}' parameter: {value!r}") from None


def _direction(params: QueryParams) -> str:
    value = (params.get("direction") or "backward").lower()
    if value not in ("backward", "forward"):
        raise LokiError(f"invalid direction {value!r}: backward or forward")
    return value


async def _params(request: Request) -> QueryParams:
    """The query string, and for a POST the form body too (as Loki reads both)."""
    if request.method == "POST":
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await request.body()
        if body and media not in ("", "application/x-www-form-urlencoded"):
            raise LokiError(f"unsupported Content-Type {media!r}: send the parameters "
                            "as application/x-www-form-urlencoded")
        try:
            form = parse_qsl(body.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            raise LokiError("the form body is not UTF-8") from None
        return QueryParams([*request.query_params.multi_items(), *form])
    return request.query_params


def _success(data: Any) -> Response:
    return Response(dumps({"status": "success", "data": data}), media_type="application/json")


Work = Callable[["Store", QueryParams, dict[str, Any]], Any]


async def answer(request: Request, work: Work, *, bare: bool = False) -> Response:
    """Check the scope, read the parameters, run ``work`` in the thread pool (with the
    configured line and label fields): its data in Loki's envelope (``bare``: as it
    is, as Loki's index and detected routes answer), or 400 with the reason in plain
    text."""
    require(request, "query")
    config = request.app.state.config
    fields = {"line_field": config.loki_line_field, "label_fields": config.loki_label_fields}
    try:
        params = await _params(request)
        data = await run_in_threadpool(work, request.app.state.store, params, fields)
    except (LokiError, QueryError) as exc:
        return PlainTextResponse(str(exc), status_code=400)
    except HTTPException:
        raise
    except TidalError as exc:
        return PlainTextResponse(str(exc), status_code=400)
    if bare:
        return Response(dumps(data), media_type="application/json")
    return _success(data)


def query_text(params: QueryParams) -> str:
    text = params.get("query")
    if not text:
        raise LokiError("query parameter is required")
    return text


def _limit(params: QueryParams, max_entries: int) -> int:
    limit = int_param(params, "limit", 100)
    if limit > max_entries:
        raise LokiError(f"max entries limit per query exceeded, limit > max_entries_limit "
                        f"({limit} > {max_entries})")
    return limit


def _run_range(store: Store, params: QueryParams, fields: dict[str, Any],
               categorize: bool = False, max_entries: int = 5000) -> dict[str, Any]:
    now = time.time_ns()
    end = loki_time(params.get("end"), now, "end")
    start = loki_time(params.get("start"), end - _HOUR_NS, "start")
    if end < start:
        raise LokiError("the end timestamp must not be before the start time")
    result = store.logql(query_text(params), start=start, end=end,
                         limit=_limit(params, max_entries), direction=_direction(params),
                         step_ns=loki_step(params.get("step"), start, end),
                         categorize=categorize, **fields)
    return _result(result, categorize)


def _run_instant(store: Store, params: QueryParams, fields: dict[str, Any],
                 categorize: bool = False, max_entries: int = 5000) -> dict[str, Any]:
    at = loki_time(params.get("time"), time.time_ns(), "time")
    result = store.logql(query_text(params), start=at - _HOUR_NS, end=at + 1,
                         limit=_limit(params, max_entries), direction=_direction(params),
                         instant_ns=at, categorize=categorize, **fields)
    return _result(result, categorize)


def categorized(request: Request) -> bool:
    """Whether the client asked for Loki's ``categorize-labels`` encoding (Grafana
    10.3+ does): streams by their stored labels, each entry's parsed labels apart."""
    flags = request.headers.get("x-loki-response-encoding-flags", "")
    return CATEGORIZE in (flag.strip() for flag in flags.split(","))


def _result(result: LogqlResult, categorized: bool = False) -> dict[str, Any]:
    if result.kind == "streams" and categorized:  # Loki's categorize-labels encoding
        return {"resultType": "streams", "encodingFlags": [CATEGORIZE], "stats": {},
                "result": [{"stream": stream.labels, "values": [
                    [str(ts), line, {"parsed": parsed} if parsed else {}]
                    for (ts, line), parsed in zip(stream.entries, stream.parsed or [],
                                                  strict=True)]}
                    for stream in result.streams]}
    if result.kind == "streams":
        return {"resultType": "streams", "stats": {}, "result": [
            {"stream": stream.labels, "values": [[str(ts), line] for ts, line in stream.entries]}
            for stream in result.streams]}
    if result.kind == "scalar":
        ts, value = result.series[0].points[0]
        return {"resultType": "scalar", "stats": {}, "result": [ts / _NS, sample_text(value)]}
    if result.kind == "vector":
        return {"resultType": "vector", "stats": {}, "result": [
            {"metric": series.labels, "value": [series.points[0][0] / _NS,
                                                sample_text(series.points[0][1])]}
            for series in result.series if series.points]}
    return {"resultType": "matrix", "stats": {}, "result": [
        {"metric": series.labels, "values": [[ts / _NS, sample_text(value)]
                                             for ts, value in series.points]}
        for series in result.series]}


def sample_text(value: float) -> str:
    """A sample value as Prometheus writes it (``"3"``, ``"0.5"``, ``"NaN"``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)


def _window(params: QueryParams) -> tuple[int, int]:
    now = time.time_ns()
    end = loki_time(params.get("end"), now, "end")
    return loki_time(params.get("start"), end - _LOOKBACK_NS, "start"), end


def _labels(store: Store, params: QueryParams, fields: dict[str, Any]) -> list[str]:
    start, end = _window(params)
    return store.logql_labels(start=start, end=end, selector=params.get("query") or None,
                              **fields)


def _series(store: Store, params: QueryParams, fields: dict[str, Any]
            ) -> list[dict[str, str]]:
    matches = params.getlist("match[]") or params.getlist("match")
    if not matches:
        raise LokiError("at least one match[] selector is required")
    start, end = _window(params)
    return store.logql_series(matches, start=start, end=end, **fields)


_QUERY = [openapi.query("query", "LogQL", required=True),
          openapi.query("start", "ns, s or RFC 3339"), openapi.query("end", "ns, s or RFC 3339"),
          openapi.query("limit", "entries", kind="integer"),
          openapi.query("direction", "backward or forward"),
          openapi.query("step", "15s or seconds")]
_DATA = {200: {"description": "Loki's answer", "content": {"application/json": {"schema": {
    "type": "object", "required": ["status", "data"]}}}},
         400: {"description": "The reason, in plain text (as Loki answers)", "content": {
             "text/plain": {"schema": {"type": "string"}}}}}


@openapi.operation("Loki: a LogQL query over a time range", scope="query",
                   parameters=_QUERY, responses=_DATA)
async def query_range(request: Request) -> Response:
    """A log query's streams or a metric query's matrix."""
    return await answer(request, partial(_run_range, categorize=categorized(request),
                                         max_entries=request.app.state.config.loki_max_entries))


@openapi.operation("Loki: a LogQL query at one instant", scope="query",
                   parameters=[openapi.query("query", "LogQL", required=True),
                               openapi.query("time", "ns, s or RFC 3339"),
                               openapi.query("limit", "entries", kind="integer"),
                               openapi.query("direction", "backward or forward")],
                   responses=_DATA)
async def query(request: Request) -> Response:
    """A metric query's vector, or a log query's streams of the hour before."""
    return await answer(request, partial(_run_instant, categorize=categorized(request),
                                         max_entries=request.app.state.config.loki_max_entries))


@openapi.operation("Loki: the label names", scope="query",
                   parameters=[*_QUERY[1:3], openapi.query("query", "a stream selector")],
                   responses=_DATA)
async def labels(request: Request) -> Response:
    """The label names of the streams in the window."""
    return await answer(request, _labels)


@openapi.operation("Loki: one label's values", scope="query",
                   parameters=[*_QUERY[1:3], openapi.query("query", "a stream selector")],
                   responses=_DATA)
async def label_values(request: Request) -> Response:
    """The values a label takes in the window (among the selector's streams)."""
    name = request.path_params["name"]

    def values(store: Store, params: QueryParams, fields: dict[str, Any]) -> list[str]:
        start, end = _window(params)
        return store.logql_label_values(name, start=start, end=end,
                                        selector=params.get("query") or None, **fields)

    return await answer(request, values)


@openapi.operation("Loki: the streams matching selectors", scope="query",
                   parameters=[openapi.query("match[]", "a stream selector", required=True),
                               *_QUERY[1:3]], responses=_DATA)
async def series(request: Request) -> Response:
    """The label sets of the streams the selectors match in the window."""
    return await answer(request, _series)


@openapi.operation("Loki: build information (what Grafana asks for)",
                   responses={200: {"description": "Loki-like build info", "content": {
                       "application/json": {"schema": {"type": "object"}}}}})
async def buildinfo(request: Request) -> Response:
    """Build information, as a Loki gives it."""
    return Response(dumps(BUILD_INFO), media_type="application/json")


@openapi.operation("Loki: a LogQL query written the canonical way (Grafana's format button)",
                   scope="query", parameters=[openapi.query("query", "LogQL", required=True)],
                   responses=_DATA)
async def format_query(request: Request) -> Response:
    """The query, parsed and written back (or 400 with the syntax error)."""
    return await answer(request, _format)


def _format(store: Store, params: QueryParams, fields: dict[str, Any]) -> str:
    from tidal.correlate.logql import parse_logql

    return str(parse_logql(query_text(params)))


def routes() -> list[BaseRoute]:
    """The Loki query routes."""
    both = ["GET", "POST"]
    return [Route("/loki/api/v1/query_range", query_range, methods=both),
            Route("/loki/api/v1/query", query, methods=both),
            Route("/loki/api/v1/labels", labels, methods=both),
            Route("/loki/api/v1/label/{name}/values", label_values, methods=["GET"]),
            Route("/loki/api/v1/series", series, methods=both),
            Route("/loki/api/v1/format_query", format_query, methods=both),
            Route("/loki/api/v1/status/buildinfo", buildinfo, methods=["GET"])]
