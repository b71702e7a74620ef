"""The ASGI app: routes from each module, JSON errors, the store's lifetime.

Every route module has ``routes() -> list[BaseRoute]``; handlers find the store
as ``request.app.state.store``, the settings as ``request.app.state.config``
and the metrics as ``request.app.state.metrics``, and call
:func:`tidal.server.auth.require` first. Blocking store calls (appends wait for
their fsync) run in the thread pool, never on the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tidal.api import Store
from tidal.errors import BackpressureError, ConfigError, IngestError, QueryError, TidalError
from tidal.server import health, ingest, metrics, openapi
from tidal.server.config import ServerConfig
from tidal.server.metrics import HttpMetrics, Metrics

__all__ = ["create_app", "error_response"]


def create_app(store: Store, config: ServerConfig | None = None, *,
               close_store: bool = False) -> Starlette:
    """The app serving ``store``; ``close_store``: close it when the app shuts down
    (``tidal serve``, after the last request has been answered)."""
    config = config or ServerConfig()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            if close_store:
                store.close()

    # (reading: queries, rules, live streams; log pushes: Loki, OTLP/HTTP)
    from tidal.server import (
        elastic,
        live,
        loki,
        loki_index,
        loki_query,
        loki_tail,
        otlp,
        query,
        web,
    )

    routes = [*loki.routes(), *loki_query.routes(), *loki_index.routes(), *loki_tail.routes(),
              *otlp.routes(),
              *health.routes(), *ingest.routes(), *metrics.routes(), *openapi.routes(),
              *query.routes(), *live.routes(), *elastic.routes(),
              *web.routes()]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        HTTPException: _http_error, TidalError: _tidal_error},
        middleware=[Middleware(HttpMetrics)])
    app.state.store = store
    app.state.config = config
    app.state.metrics = Metrics(store)
    app.state.ready = False
    return app


def error_response(status: int, message: str, *, kind: str = "error",
                   details: object = None, headers: dict[str, str] | None = None) -> Response:
    """The JSON error every route answers with: ``{"error": {"type", "message"}}``."""
    body: dict[str, object] = {"type": kind, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), kind=_kind(exc.status_code),
                          headers=dict(exc.headers or {}))


async def _tidal_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, BackpressureError):
        retry = max(1, round(exc.retry_after_s or 1))
        return error_response(429, str(exc), kind="backpressure",
                              headers={"Retry-After": str(retry)})
    if isinstance(exc, IngestError):
        problems = [{"line": p.line, "field": p.field, "reason": p.reason}
                    for p in getattr(exc, "problems", [])[:1000]]
        return error_response(400, str(exc).splitlines()[0], kind="bad_input",
                              details=problems)
    if isinstance(exc, QueryError):
        return error_response(400, str(exc), kind="bad_query", details={
            "line": exc.line, "column": exc.column})
    if isinstance(exc, ConfigError):
        return error_response(400, str(exc), kind="bad_request", details={"field": exc.field})
    return error_response(500, str(exc), kind="internal")


def _kind(status: int) -> str:
    return {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type",
            429: "backpressure"}.get(status, "error")
