"""Tokens and scopes over a real server: bearer and basic auth, 401 and 403, the open
routes; and the settings that carry the tokens (TOML file, ``TIDAL_*`` variables)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

import tidal
from tidal.errors import ConfigError
from tidal.server import ServerConfig
from tidal.server.config import Token

from .conftest import Served, serving

TOKENS = (Token("ing-token", frozenset({"ingest"})), Token("qry-token", frozenset({"query"})),
          Token("all-token", frozenset({"ingest", "query", "admin"})))
EVENT = b'{"timestamp": "2026-01-01T00:00:00Z", "entity": "pod-1"}\n'
NDJSON = {"content-type": "application/x-ndjson"}


@pytest.fixture
def guarded(tmp_path) -> Iterator[Served]:
    with tidal.open(tmp_path / "store") as store, serving(
            store, ServerConfig(tokens=TOKENS)) as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {pair}"}


def ingest(served: Served, headers: dict[str, str], **params: str) -> httpx.Response:
    return httpx.post(f"{served.url}/v1/events", content=EVENT, headers={**NDJSON, **headers},
                      params=params)


@pytest.mark.parametrize("headers", [
    bearer("ing-token"), bearer("all-token"), basic("promtail", "ing-token"),
    basic("", "all-token"), {"authorization": "bearer   ing-token"}])
def test_a_token_with_the_scope_may_ingest(guarded, headers):
    got = ingest(guarded, headers)
    assert got.status_code == 200, got.text
    assert got.json()["count"] == 1


def test_a_token_may_come_as_a_query_parameter(guarded):
    assert ingest(guarded, {}, token="ing-token").status_code == 200


@pytest.mark.parametrize("headers", [
    {}, {"authorization": "Bearer"}, {"authorization": "Basic !!not-base64!!"},
    basic("ing-token", ""), {"authorization": "Token ing-token"}])
def test_no_token_is_401_with_a_challenge(guarded, headers):
    got = ingest(guarded, headers)
    assert got.status_code == 401
    assert got.json()["error"]["type"] == "unauthorized"
    challenge = got.headers["www-authenticate"]
    assert "Bearer" in challenge and "Basic" in challenge
    assert guarded.store.max_seq() == -1


@pytest.mark.parametrize("headers", [bearer("wrong"), bearer("ing-token2"),
                                     basic("x", "qry")])
def test_an_unknown_token_is_401(guarded, headers):
    got = ingest(guarded, headers)
    assert got.status_code == 401
    assert got.json()["error"]["message"] == "unknown token"
    assert "www-authenticate" in got.headers


def test_a_token_without_the_scope_is_403(guarded):
    got = ingest(guarded, bearer("qry-token"))
    assert got.status_code == 403
    assert got.json()["error"] == {"type": "forbidden",
                                   "message": "this token lacks the 'ingest' scope"}
    stats = httpx.get(f"{guarded.url}/v1/stats", headers=bearer("ing-token"))
    assert stats.status_code == 403
    assert guarded.store.max_seq() == -1


def test_stats_needs_the_query_scope(guarded):
    ingest(guarded, bearer("ing-token"))
    assert httpx.get(f"{guarded.url}/v1/stats").status_code == 401
    got = httpx.get(f"{guarded.url}/v1/stats", headers=bearer("qry-token"))
    assert got.status_code == 200
    assert got.json()["events"] == 1


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json"])
def test_health_metrics_and_the_api_document_stay_open(guarded, path):
    assert httpx.get(guarded.url + path).status_code == 200


def test_with_no_tokens_everything_is_open(served):
    assert ingest(served, {}).status_code == 200
    assert ingest(served, bearer("anything")).status_code == 200
    assert httpx.get(f"{served.url}/v1/stats").json()["events"] == 2


def test_tokens_come_from_the_toml_file_then_the_environment(tmp_path):
    path = tmp_path / "tidal.toml"
    path.write_text('host = "0.0.0.0"\nport = 8080\nmax_body_bytes = 1000\n'
                    'backpressure_wait_s = 0.5\n'
                    '[[auth.tokens]]\ntoken = "a"\nscopes = ["ingest"]\n'
                    '[[auth.tokens]]\ntoken = "b"\n')
    config = ServerConfig.load(path, env={})
    assert config.tokens == (Token("a", frozenset({"ingest"})),
                             Token("b", frozenset({"ingest", "query", "admin"})))
    assert (config.host, config.port, config.max_body_bytes, config.backpressure_wait_s) == (
        "0.0.0.0", 8080, 1000, 0.5)
    env = {"TIDAL_TOKENS": "c:query+admin, d", "TIDAL_PORT": "9000",
           "TIDAL_BACKPRESSURE_WAIT_S": "2"}
    config = ServerConfig.load(path, env=env, port=0)
    assert config.tokens == (Token("c", frozenset({"query", "admin"})),
                             Token("d", frozenset({"ingest", "query", "admin"})))
    assert (config.port, config.backpressure_wait_s) == (0, 2.0)


def test_with_no_tokens_the_server_binds_to_loopback_only():
    assert ServerConfig.load(env={}, host="0.0.0.0").host == "127.0.0.1"
    assert ServerConfig.load(env={"TIDAL_TOKENS": "t"}, host="0.0.0.0").host == "0.0.0.0"


@pytest.mark.parametrize(("toml", "env", "field"), [
    ('[[auth.tokens]]\ntoken = "a"\nscopes = ["write"]\n', {}, "auth.tokens"),
    ('[[auth.tokens]]\ntoken = ""\n', {}, "auth.tokens"),
    ("auth = 3\n", {}, "auth.tokens"),
    ("port = 70000\n", {}, "port"),
    ("", {"TIDAL_BACKPRESSURE_WAIT_S": "-1"}, "backpressure_wait_s"),
    ("", {"TIDAL_MAX_BODY_BYTES": "lots"}, "max_body_bytes"),
    ("port = \n", {}, "config"),
])
def test_bad_settings_name_their_field(tmp_path, toml, env, field):
    path = tmp_path / "tidal.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        ServerConfig.load(path, env=env)
    assert caught.value.field == field
