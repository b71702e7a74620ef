"""The server answers on loopback: health and readiness, JSON errors."""

from __future__ import annotations

import httpx


def test_health_and_readiness(served):
    assert httpx.get(f"{served.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{served.url}/readyz").json() == {"status": "ready"}


def test_an_unknown_route_is_a_json_404(served):
    got = httpx.get(f"{served.url}/nope")
    assert got.status_code == 404
    assert got.json()["error"]["type"] == "not_found"
