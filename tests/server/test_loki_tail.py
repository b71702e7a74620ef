"""Loki's live tail (``/loki/api/v1/tail``) on a real server on loopback, with a real
WebSocket client sending what logcli and Grafana send: the history first, then each
entry appended after, with the labels, lines and timestamps that were appended."""

from __future__ import annotations

import json
import signal
import time
from urllib.parse import urlencode

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

import tidal
from tidal.server import ServerConfig
from tidal.server.config import Token

from .conftest import Served, serving
from .test_serve import Serving

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
S = 1_000_000_000
TAIL = "/loki/api/v1/tail"


def event(ts: int, app: str, message: str, level: str = "info") -> dict:
    return {"timestamp": ts, "app": app, "level": level, "message": message}


def ws_url(url: str, query: str) -> str:
    return url.replace("http://", "ws://") + TAIL + "?" + query


def logcli(served: Served, query: str, start: int, **more: object) -> ClientConnection:
    """The WebSocket logcli opens for ``logcli query --tail``: its parameters, in its
    (sorted) order."""
    params = urlencode({**more, "limit": 30, "query": query, "start": start})
    return connect(ws_url(served.url, params), proxy=None)


def recv(ws: ClientConnection, timeout: float = 20) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def entries(message: dict) -> list[tuple[dict, int, str]]:
    """(labels, ns, line) of every entry of a tail message."""
    return [(s["stream"], int(ts), line) for s in message["streams"]
            for ts, line in s["values"]]


def followers(store: tidal.Store) -> int:
    return int(store.stats()["followers"])


def wait_for_followers(store: tidal.Store, count: int) -> None:
    deadline = time.monotonic() + 20
    while followers(store) != count:
        assert time.monotonic() < deadline, f"{followers(store)} followers"
        time.sleep(0.05)


def test_logcli_gets_the_newest_history_then_each_entry_appended(served):
    store = served.store
    store.append([event(T0 + i * S, "api" if i % 2 else "web", f"line {i}")
                  for i in range(80)])
    with logcli(served, '{app="api"}', T0) as ws:
        history = recv(ws)
        assert set(history) == {"streams"}  # (dropped_entries: none, left out as Loki does)
        assert entries(history) == [({"app": "api", "level": "info"}, T0 + i * S, f"line {i}")
                                    for i in range(21, 80, 2)]  # (the newest 30, oldest first)
        store.append([event(T0 + 100 * S, "web", "not this"),
                      event(T0 + 101 * S, "api", "live one", level="error")])
        live = recv(ws)
        assert entries(live) == [({"app": "api", "level": "error"}, T0 + 101 * S, "live one")]
        assert isinstance(live["streams"][0]["values"][0][0], str)
    wait_for_followers(store, 0)  # (the client left: its follower is closed)


def test_history_starts_at_start_and_the_pipeline_runs_on_live_batches(served):
    store = served.store
    store.append([event(T0 + i * S, "api", json.dumps({"status": 200 + 300 * (i % 2),
                                                          "path": f"/p{i}"}))
                  for i in range(6)])
    query = '{app="api"} | json | status >= 500 | line_format "{{.path}}"'
    with logcli(served, query, T0 + 2 * S) as ws:
        assert [line for _, _, line in entries(recv(ws))] == ["/p3", "/p5"]
        store.append([event(T0 + 10 * S, "api", '{"status": 200, "path": "/ok"}'),
                      event(T0 + 11 * S, "api", '{"status": 503, "path": "/bad"}')])
        [(labels, ts, line)] = entries(recv(ws))
        assert (ts, line, labels["status"], labels["path"]) == (T0 + 11 * S, "/bad", "503",
                                                                  "/bad")


def test_grafana_sends_only_the_query_and_gets_the_last_hour(served):
    store = served.store
    now = time.time_ns()
    store.append([event(now - 2 * 3600 * S, "api", "too old"),
                  event(now - 600 * S, "api", "recent")])
    url = ws_url(served.url, urlencode({"query": '{app="api"}'}))
    with connect(url, proxy=None) as ws:
        assert [line for _, _, line in entries(recv(ws))] == ["recent"]
        store.append([event(now, "api", "new")])
        assert entries(recv(ws)) == [({"app": "api", "level": "info"}, now, "new")]


def test_an_empty_store_sends_no_history_then_what_is_appended(served):
    with logcli(served, '{app=~".+"}', T0) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)
        served.store.append([event(T0, "api", "first")])
        assert entries(recv(ws)) == [({"app": "api", "level": "info"}, T0, "first")]


def test_delay_for_gathers_what_arrives_meanwhile_in_time_order(served):
    with logcli(served, '{app="api"}', T0, delay_for=2) as ws:
        wait_for_followers(served.store, 1)
        served.store.append([event(T0 + 5 * S, "api", "later")])
        time.sleep(0.3)
        served.store.append([event(T0 + 1 * S, "api", "earlier")])
        assert [line for _, _, line in entries(recv(ws))] == ["earlier", "later"]


@pytest.mark.parametrize("params,reason", [
    ({"query": '{app="api"'}, ""),
    ({"query": 'rate({app="api"}[1m])'}, "only log queries"),
    ({}, "query parameter is required"),
    ({"query": '{app="api"}', "delay_for": 6}, "delay_for can't be greater than 5"),
    ({"query": '{app="api"}', "limit": 0}, "limit must be a positive value"),
    ({"query": '{app="api"}', "start": "yesterday"}, "could not parse 'start'"),
])
def test_bad_requests_fail_the_upgrade_with_400_in_plain_text(served, params, reason):
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(served.url, urlencode(params)), proxy=None)
    response = refused.value.response
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")
    assert reason in response.body.decode() and response.body
    assert followers(served.store) == 0


def test_a_plain_get_is_no_websocket_and_answers_400(served):
    got = httpx.get(served.url + TAIL, params={"query": '{app="api"}'})
    assert got.status_code == 400
    assert "not using the websocket protocol" in got.text
    assert httpx.get(served.url + TAIL, params={"query": "{"}).status_code == 400


def test_the_tail_needs_the_query_scope(tmp_path):
    config = ServerConfig(tokens=(Token("reader", frozenset({"query"})),
                                  Token("writer", frozenset({"ingest"}))))
    with tidal.open(tmp_path / "store") as store, serving(store, config) as served:
        query = {"query": '{app="api"}', "start": T0}
        for params, status in (({}, 401), ({"token": "writer"}, 403),
                               ({"token": "nope"}, 401)):
            with pytest.raises(InvalidStatus) as refused:
                connect(ws_url(served.url, urlencode({**query, **params})), proxy=None)
            assert refused.value.response.status_code == status
        url = ws_url(served.url, urlencode(query))
        with connect(url, proxy=None, additional_headers={"Authorization": "Bearer reader"}
                     ) as ws, connect(ws_url(served.url, urlencode({**query, "token": "reader"})),
                                      proxy=None) as by_token:
            store.append([event(T0, "api", "hello")])
            assert [line for _, _, line in entries(recv(ws))] == ["hello"]
            assert [line for _, _, line in entries(recv(by_token))] == ["hello"]


def test_sigterm_closes_open_tails_and_the_server_exits_0(tmp_path):
    with Serving("--store", tmp_path / "store") as server:
        url = ws_url(server.url, urlencode({"query": '{app="api"}', "start": T0}))
        with connect(url, proxy=None) as ws:
            got = httpx.post(server.url + "/v1/events", json=[event(T0, "api", "before")])
            assert got.status_code == 200, got.text
            assert [line for _, _, line in entries(recv(ws))] == ["before"]
            started = time.monotonic()
            assert server.stop(signal.SIGTERM, timeout=30) == 0, server.err
            assert time.monotonic() - started < 20  # (the open tail did not hold the drain)
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)


def test_closing_the_store_ends_the_tail_with_1011(tmp_path):
    store = tidal.open(tmp_path / "store")
    with serving(store) as served, logcli(served, '{app="api"}', T0) as ws:
        wait_for_followers(store, 1)
        store.close()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=20)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
