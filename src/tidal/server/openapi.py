"""The OpenAPI 3.1 document of the server, ``GET /openapi.json`` (open).

The document is built from the app's own routes, so every route appears in it,
documented or not. A route module documents a handler by decorating it with
:func:`operation`; that is all it takes::

    from tidal.server import openapi

    PUSHED = openapi.schema("LokiPushed", {"type": "object"})  # a shared schema, by name

    @openapi.operation(
        "Push log lines (Loki's push API)", scope="ingest",
        request={"application/x-protobuf": {"type": "string", "format": "binary"},
                 "application/json": {"type": "object"}},
        responses={204: "Stored durably", 400: "Malformed body", 429: "Store is full"},
        parameters=[openapi.header("X-Scope-OrgID", "The tenant")],
    )
    async def push(request: Request) -> Response: ...

``scope`` is the token scope the handler asks :func:`tidal.server.auth.require`
for (None: open); a scoped operation lists the bearer and basic schemes and the
401/403 answers by itself. ``responses`` maps a status to its description, or to
a whole OpenAPI response object; an error status (400 and up) given as a
description gets the JSON error schema (``Error``). One handler serving several
methods takes one decorator per method (``methods=("GET",)``). A handler left
undocumented appears with the first line of its docstring as its summary.
Path parameters (``/v1/rules/{name}``) are listed by themselves.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Host, Mount, Route, WebSocketRoute

from tidal import __version__
from tidal.server.config import SCOPES

__all__ = ["Operation", "document", "header", "operation", "query", "routes", "schema"]

F = TypeVar("F", bound=Callable[..., Any])
_ATTRIBUTE = "__tidal_openapi__"
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[A-Za-z_]+)?\}")
_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["type", "message"],
            "properties": {"type": {"type": "string", "examples": ["bad_input"]},
                           "message": {"type": "string"},
                           "details": {"description": "what went wrong, in detail: for "
                                                      "bad_input, every bad line"}}}},
    },
}
_SECURITY = {"bearer": {"type": "http", "scheme": "bearer",
                        "description": "An API token: Authorization: Bearer TOKEN"},
             "basic": {"type": "http", "scheme": "basic",
                       "description": "Any user name, the API token as password"}}


@dataclass(frozen=True)
class Operation:
    """What the document says about one method of one route.

    Attributes:
        summary: one line.
        scope: the token scope required (``ingest``, ``query``, ``admin``); None: open.
        description: more, in CommonMark.
        request: the request body's JSON schema by media type (None: no body).
        responses: status → description, or → a whole OpenAPI response object.
        parameters: OpenAPI parameter objects (see :func:`header`, :func:`query`).
        methods: the methods this applies to (None: all of the route's).
    """

    summary: str
    scope: str | None = None
    description: str | None = None
    request: Mapping[str, Any] | None = None
    responses: Mapping[int, str | Mapping[str, Any]] = field(
        default_factory=lambda: {200: "OK"})
    parameters: Sequence[Mapping[str, Any]] = ()
    methods: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if not self.summary.strip():
            raise ValueError("an operation needs a summary")
        if self.scope is not None and self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope!r}: the scopes are {SCOPES}")


def operation(summary: str, **details: Any) -> Callable[[F], F]:
    """Document the decorated handler; ``details`` are :class:`Operation`'s fields."""
    op = Operation(summary, **details)

    def mark(handler: F) -> F:
        ops = [*getattr(handler, _ATTRIBUTE, ()), op]
        setattr(handler, _ATTRIBUTE, ops)
        return handler
    return mark


def schema(name: str, body: Mapping[str, Any]) -> dict[str, str]:
    """Add ``body`` to the document's components as ``name``; returns a ``$ref`` to it."""
    _SCHEMAS[name] = dict(body)
    return {"$ref": f"#/components/schemas/{name}"}


def header(name: str, description: str, *, required: bool = False,
           schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """An OpenAPI header parameter (a string, or as ``schema`` says)."""
    return {"name": name, "in": "header", "required": required, "description": description,
            "schema": schema or {"type": "string"}}


def query(name: str, description: str, *, required: bool = False,
          kind: str = "string") -> dict[str, Any]:
    """An OpenAPI query parameter of JSON type ``kind``."""
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": {"type": kind}}


def document(app_routes: Sequence[BaseRoute], *, version: str = "0") -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app_routes`` (mounts and hosts included)."""
    paths: dict[str, dict[str, Any]] = {}
    for path, method, endpoint, websocket in _walk(app_routes, ""):
        spec = _path(path)
        paths.setdefault(spec, {})[method.lower()] = _operation(spec, method, endpoint,
                                                                websocket)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tidal", "version": version,
                 "description": "Tidal's HTTP API: ingest, query and correlate events."},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(_SCHEMAS.items())),
                       "securitySchemes": _SECURITY},
    }


def _walk(app_routes: Sequence[BaseRoute], prefix: str
          ) -> Iterator[tuple[str, str, Any, bool]]:
    """(path, method, endpoint, is a WebSocket) of every route, depth first."""
    for route in app_routes:
        if isinstance(route, Route):
            methods = sorted(route.methods or _class_methods(route.endpoint))
            for method in methods:
                if method != "HEAD" or methods == ["HEAD"]:
                    yield prefix + route.path, method, route.endpoint, False
        elif isinstance(route, WebSocketRoute):
            yield prefix + route.path, "GET", route.endpoint, True
        elif isinstance(route, Mount | Host):
            inner = route.routes
            if inner:
                yield from _walk(inner, prefix + getattr(route, "path", ""))
            else:
                yield prefix + getattr(route, "path", "") + "/{path}", "GET", route.app, False


def _class_methods(endpoint: Any) -> list[str]:
    """The methods an ``HTTPEndpoint`` class handles."""
    found = [m for m in ("GET", "POST", "PUT", "PATCH", "DELETE") if hasattr(endpoint, m.lower())]
    return found or ["GET"]


def _path(path: str) -> str:
    """Starlette's ``/x/{name:int}`` as OpenAPI's ``/x/{name}``."""
    return _PARAM.sub(r"{\1}", path) or "/"


def _operation(path: str, method: str, endpoint: Any, websocket: bool) -> dict[str, Any]:
    op = next((o for o in getattr(endpoint, _ATTRIBUTE, ())
               if o.methods is None or method in o.methods), None)
    if op is None:
        doc = (getattr(endpoint, "__doc__", None) or "").strip()
        op = Operation(doc.splitlines()[0] if doc else f"{method} {path}")
    out: dict[str, Any] = {"summary": op.summary,
                           "operationId": f"{method.lower()}{_identifier(path)}"}
    if op.description or websocket:
        out["description"] = ((op.description or "") + (
            "\n\nA WebSocket: connect with an HTTP upgrade." if websocket else "")).strip()
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in re.findall(r"\{(\w+)\}", path)]
    parameters += [dict(p) for p in op.parameters]
    if parameters:
        out["parameters"] = parameters
    if op.request is not None:
        out["requestBody"] = {"required": True, "content": {
            media: {"schema": dict(body)} for media, body in op.request.items()}}
    responses = dict(op.responses)
    if op.scope is not None:
        out["security"] = [{"bearer": []}, {"basic": []}]
        out["x-tidal-scope"] = op.scope
        responses.setdefault(401, "No token, or an unknown one")
        responses.setdefault(403, f"The token lacks the {op.scope!r} scope")
    else:
        out["security"] = []
    out["responses"] = {str(status): _response(status, answer)
                        for status, answer in sorted(responses.items())}
    return out


def _response(status: int, answer: str | Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(answer, str):
        return dict(answer)
    if status >= 400:
        return {"description": answer, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}}}}
    return {"description": answer}


def _identifier(path: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", path)
    return "".join(w[:1].upper() + w[1:] for w in words) or "Root"


@operation("This document: the OpenAPI 3.1 description of every route",
           responses={200: {"description": "The document", "content": {
               "application/json": {"schema": {"type": "object"}}}}})
async def openapi_json(request: Request) -> Response:
    """The OpenAPI document of the running app."""
    return JSONResponse(document(request.app.routes, version=__version__))


def routes() -> list[BaseRoute]:
    """``GET /openapi.json``."""
    return [Route("/openapi.json", openapi_json, methods=["GET"])]
