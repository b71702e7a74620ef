"""Liveness and readiness: ``/healthz`` (the process answers) and ``/readyz`` (the
store is open and the app started). Both stay open without a token."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

__all__ = ["routes"]


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    store = request.app.state.store
    ready = bool(request.app.state.ready) and not store.closed
    return JSONResponse({"status": "ready" if ready else "starting"},
                        status_code=200 if ready else 503)


def routes() -> list[BaseRoute]:
    return [Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"])]
