"""``GET /``: the web view, a small app shipped inside the package (``tidal/server/web/``:
one HTML page, a stylesheet and a script; no build step, nothing from a CDN).

The page is open (it holds no data); what it shows comes from the API with the
token typed into it: ``POST /v1/query``, the timeline route, ``/v1/rules`` and the
SSE stream of live correlations.
"""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from tidal.server import openapi

__all__ = ["ASSETS", "routes"]

ASSETS = Path(__file__).with_name("web")
"""The page, its stylesheet and its script."""


@openapi.operation("The web view (HTML)", responses={200: {
    "description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}}})
async def index(request: Request) -> Response:
    """The web view's page."""
    return FileResponse(ASSETS / "index.html", media_type="text/html")


_TYPES = {".css": "text/css", ".js": "text/javascript", ".html": "text/html"}


@openapi.operation("A file of the web view (its script or stylesheet)", responses={
    200: {"description": "The file", "content": {m: {"schema": {"type": "string"}}
                                                 for m in sorted(set(_TYPES.values()))}},
    404: "No such file"})
async def asset(request: Request) -> Response:
    """One of the page's files."""
    name = request.path_params["name"]
    path = ASSETS / name
    if name not in _FILES:
        raise HTTPException(404, f"no file {name!r} in the web view")
    return FileResponse(path, media_type=_TYPES[path.suffix])


_FILES = frozenset(p.name for p in ASSETS.iterdir() if p.suffix in _TYPES)


def routes() -> list[BaseRoute]:
    """``GET /`` and the page's files under ``/ui/``."""
    return [Route("/", index, methods=["GET"]),
            Route("/ui/{name}", asset, methods=["GET"])]
