"""``GET /openapi.json``: a valid OpenAPI 3.1 document of every route the app serves,
documented by the route modules' decorators or, failing those, by docstrings."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

import tidal
from tidal.server import create_app, openapi

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def routed(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(OpenAPI path, method) of every route, found independently of the module."""
    for route in routes:
        if isinstance(route, Mount):
            yield from routed(route.routes, prefix + route.path)
        elif isinstance(route, WebSocketRoute):
            yield re.sub(r"\{(\w+):\w+\}", r"{\1}", prefix + route.path), "get"
        elif isinstance(route, Route):
            for method in route.methods or {"GET"}:
                if method != "HEAD":
                    yield re.sub(r"\{(\w+):\w+\}", r"{\1}", prefix + route.path), method.lower()


def test_the_document_lists_every_route_the_app_serves(served):
    got = httpx.get(f"{served.url}/openapi.json")
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json"
    doc = json.loads(got.text)
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["version"] == tidal.__version__
    with tidal.open() as store:
        expected = set(routed(create_app(store).routes))
    listed = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert expected <= listed
    for must in [("/v1/events", "post"), ("/healthz", "get"), ("/metrics", "get"),
                 ("/v1/stats", "get"), ("/openapi.json", "get"), ("/readyz", "get")]:
        assert must in listed


def check(doc: dict) -> None:
    """What OpenAPI 3.1 requires of the parts we write, and that every $ref resolves."""
    assert set(doc) >= {"openapi", "info", "paths"}
    assert {"title", "version"} <= set(doc["info"])
    ids = []
    for path, item in doc["paths"].items():
        assert path.startswith("/")
        for method, op in item.items():
            assert method in METHODS
            assert op["summary"] and op["responses"]
            assert all(re.fullmatch(r"[1-5](\d\d|XX)", code) for code in op["responses"])
            assert all("description" in r for r in op["responses"].values())
            ids.append(op["operationId"])
            for name in re.findall(r"\{(\w+)\}", path):
                assert {"name": name, "in": "path", "required": True,
                        "schema": {"type": "string"}} in op["parameters"]
            for scheme in op["security"]:
                assert set(scheme) <= set(doc["components"]["securitySchemes"])
    assert len(ids) == len(set(ids))
    text = json.dumps(doc)
    for ref in re.findall(r'"\$ref": "#/components/schemas/(\w+)"', text):
        assert ref in doc["components"]["schemas"]


def test_the_served_document_is_well_formed(served):
    doc = httpx.get(f"{served.url}/openapi.json").json()
    check(doc)
    events = doc["paths"]["/v1/events"]["post"]
    assert events["x-tidal-scope"] == "ingest"
    assert {"200", "400", "401", "403", "413", "415", "429"} <= set(events["responses"])
    assert "application/vnd.apache.arrow.stream" in events["requestBody"]["content"]
    receipt = events["responses"]["200"]["content"]["application/json"]["schema"]
    assert receipt == {"$ref": "#/components/schemas/Receipt"}
    assert doc["paths"]["/metrics"]["get"]["security"] == []
    assert doc["paths"]["/v1/stats"]["get"]["x-tidal-scope"] == "query"


@openapi.operation("Read one rule", scope="query", methods=("GET",),
                   parameters=[openapi.query("limit", "at most this many", kind="integer")],
                   responses={200: "The rule", 404: "No such rule"})
@openapi.operation("Delete one rule", scope="admin", methods=("DELETE",))
async def rule(request: Request) -> Response:
    return PlainTextResponse("")


async def undocumented(request: Request) -> Response:
    """Say hello.

    More words that stay out of the summary.
    """
    return PlainTextResponse("hello")


async def socket(websocket: WebSocket) -> None:
    """Stream things."""


def test_route_modules_document_their_routes_with_a_decorator():
    doc = openapi.document([
        Route("/v1/rules/{name:str}", rule, methods=["GET", "DELETE"]),
        Route("/hello", undocumented),
        WebSocketRoute("/v1/live/{id:int}", socket),
        Mount("/extra", routes=[Route("/x", undocumented, methods=["POST"])]),
    ])
    check(doc)
    assert set(doc["paths"]) == {"/v1/rules/{name}", "/hello", "/v1/live/{id}", "/extra/x"}
    got, deleted = doc["paths"]["/v1/rules/{name}"]["get"], doc["paths"][
        "/v1/rules/{name}"]["delete"]
    assert got["summary"] == "Read one rule" and got["x-tidal-scope"] == "query"
    assert [p["name"] for p in got["parameters"]] == ["name", "limit"]
    assert set(got["responses"]) == {"200", "401", "403", "404"}
    assert got["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    assert deleted["summary"] == "Delete one rule" and deleted["x-tidal-scope"] == "admin"
    hello = doc["paths"]["/hello"]["get"]
    assert hello["summary"] == "Say hello." and hello["security"] == []
    assert "WebSocket" in doc["paths"]["/v1/live/{id}"]["get"]["description"]
    assert doc["paths"]["/extra/x"]["post"]["summary"] == "Say hello."


def test_a_shared_schema_is_a_reference(monkeypatch):
    monkeypatch.setattr(openapi, "_SCHEMAS", dict(openapi._SCHEMAS))
    ref = openapi.schema("TestThing", {"type": "object"})
    assert ref == {"$ref": "#/components/schemas/TestThing"}
    assert openapi.document([])["components"]["schemas"]["TestThing"] == {"type": "object"}


@pytest.mark.parametrize("bad", [{"summary": ""}, {"scope": "nope"}])
def test_operation_details_are_checked(bad):
    with pytest.raises(ValueError):
        openapi.operation(**{"summary": "x", **bad})
