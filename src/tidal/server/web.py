"""``GET /``: the web view, a small app shipped inside the package (``tidal/server/web/``:
one HTML page, a stylesheet and a script; no build step, nothing from a CDN).

The page is open (it holds no data); what it shows comes from the API with the
token typed into it: ``POST /v1/query``, the timeline route, ``/v1/rules`` and the
SSE stream of live correlations.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from tidal.server import openapi

__all__ = ["ASSETS", "routes"]

ASSETS = Path(__file__).with_name("web")
"""The page, its stylesheet and its script."""


@openapi.operation("The web view (HTML)", responses={200: {
    "description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}}})
async def index(request: Request) -> Response:
    """The web view's page."""
    return FileResponse(ASSETS / "index.html", media_type="text/html")


def routes() -> list[BaseRoute]:
    """``GET /`` and the page's files under ``/ui/``."""
    return [Route("/", index, methods=["GET"]),
            Mount("/ui", app=StaticFiles(directory=ASSETS), name="ui")]
