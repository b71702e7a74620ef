"""Live correlations over SSE and a WebSocket, on a real server on loopback: each client
gets what is appended after it connected; a client that does not read is cut off with
a clear reason while appends go on at full speed; leaving closes the subscription."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import closing
from urllib.parse import urlencode

import httpx
import pytest
from httpx_sse import connect_sse
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

import tidal
from tidal.server import ServerConfig, live
from tidal.server.config import Token

from .conftest import serving

JOIN = 'events({svc="fe"}) and on(rid) within(10s) events({svc="be"})'
PARAMS = {"query": JOIN, "language": "corql"}


def pair(i: int, blob: str = "") -> list[dict]:
    """A frontend event and, 1 s later, a backend event of request ``r{i}``."""
    extra = {"blob": blob} if blob else {}
    return [{"timestamp": 1767225600_000000000 + 2 * i * 10**9, "entity": "pod-1",
             "svc": "fe", "rid": f"r{i}", **extra},
            {"timestamp": 1767225601_000000000 + 2 * i * 10**9, "entity": "pod-1",
             "svc": "be", "rid": f"r{i}", **extra}]


def ws_url(served, params: dict) -> str:
    return served.url.replace("http://", "ws://") + "/v1/correlations/ws?" + urlencode(params)


def subscriptions() -> int:
    return sum(t.name == "tidal-subscription" for t in threading.enumerate())


def wait_for_subscriptions(count: int) -> None:
    deadline = time.monotonic() + 20
    while subscriptions() != count:
        assert time.monotonic() < deadline, f"{subscriptions()} subscriptions run"
        time.sleep(0.05)


def test_an_sse_client_gets_a_correlation_appended_after_it_connected(served):
    with httpx.Client(timeout=20) as client, connect_sse(
            client, "GET", f"{served.url}/v1/correlations/stream", params=PARAMS) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        assert subscriptions() == 1
        served.store.append(pair(0))
        event = next(source.iter_sse())
        assert event.event == "correlation"
        found = json.loads(event.data)
        assert (found["key"], found["completeness"]) == ({"rid": "r0"}, "complete")
        assert found["start"] == "2026-01-01T00:00:00.000000000Z"
        assert [e["svc"] for e in found["events"]] == ["fe", "be"]
    wait_for_subscriptions(0)  # (the client left: its subscription is closed)


def test_a_websocket_client_gets_a_correlation_appended_after_it_connected(served):
    with connect(ws_url(served, PARAMS), proxy=None) as ws:
        served.store.append(pair(0) + pair(1))
        got = [json.loads(ws.recv(timeout=20)) for _ in range(2)]
        assert [c["key"]["rid"] for c in got] == ["r0", "r1"]
        assert [c["id"] for c in got] == [0, 1]
    wait_for_subscriptions(0)


def test_a_stream_of_a_rule_runs_its_query_from_the_next_event(served):
    served.store.append(pair(0))  # (before the stream: not sent)
    served.store.add_rule("fe-be", JOIN, language="corql")
    with httpx.Client(timeout=20) as client, connect_sse(
            client, "GET", f"{served.url}/v1/correlations/stream",
            params={"rule": "fe-be"}) as source:
        served.store.append(pair(1))
        found = json.loads(next(source.iter_sse()).data)
        assert (found["rule"], found["key"]) == ("fe-be", {"rid": "r1"})
    wait_for_subscriptions(1)  # (the rule's own goes on)


def test_a_quiet_sse_stream_sends_keep_alive_comments(served, monkeypatch):
    monkeypatch.setattr(live, "KEEPALIVE_S", 0.1)
    with httpx.stream("GET", f"{served.url}/v1/correlations/stream", params=PARAMS,
                      timeout=20) as response:
        assert next(response.iter_lines()) == ": keep-alive"


@pytest.mark.parametrize("params,status,kind", [
    ({}, 400, "bad_request"),
    ({"query": JOIN, "rule": "x"}, 400, "bad_request"),
    ({"rule": "x", "language": "corql"}, 400, "bad_request"),
    ({"rule": "nope"}, 404, "not_found"),
    ({"query": "events({svc=})", "language": "corql"}, 400, "bad_query"),
    ({"query": JOIN, "language": "sql"}, 400, "bad_request"),
    ({"query": JOIN, "language": "corql", "lateness": "soon"}, 400, "bad_request"),
])
def test_bad_parameters_are_refused_before_streaming(served, params, status, kind):
    got = httpx.get(f"{served.url}/v1/correlations/stream", params=params)
    assert (got.status_code, got.json()["error"]["type"]) == (status, kind)
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(served, params), proxy=None)
    assert refused.value.response.status_code == status
    assert json.loads(refused.value.response.body)["error"]["type"] == kind
    assert subscriptions() == 0


def test_a_stream_needs_the_query_scope_a_browser_may_give_it_as_token(tmp_path):
    config = ServerConfig(tokens=(Token("reader", frozenset({"query"})),
                                  Token("writer", frozenset({"ingest"}))))
    with tidal.open(tmp_path / "store") as store, serving(store, config) as served:
        url = f"{served.url}/v1/correlations/stream"
        assert httpx.get(url, params=PARAMS).status_code == 401
        assert httpx.get(url, params={**PARAMS, "token": "writer"}).status_code == 403
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url(served, PARAMS), proxy=None)
        assert refused.value.response.status_code == 401
        with connect(ws_url(served, {**PARAMS, "token": "reader"}), proxy=None) as ws:
            store.append(pair(0))
            assert json.loads(ws.recv(timeout=20))["key"] == {"rid": "r0"}


# -- a client that does not read ------------------------------------------------------------

BLOB = "x" * 200_000  # (sent uncompressed: ~400 kB of JSON a correlation)
PAIRS = 40  # (16 MB: past what the socket buffers of both ends hold)
RCVBUF = 262144


def append_fast(store: tidal.Store) -> None:
    """Append ``PAIRS`` requests, one append each; none may wait for the stalled client."""
    slowest = 0.0
    for i in range(PAIRS):
        started = time.perf_counter()
        store.append(pair(i, BLOB))
        slowest = max(slowest, time.perf_counter() - started)
    assert slowest < 2.0, f"an append took {slowest:.2f} s"


def small_socket(served) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.connect(("127.0.0.1", int(served.url.rsplit(":", 1)[1])))
    return sock


def test_a_websocket_client_that_does_not_read_is_closed_as_too_slow(served, monkeypatch):
    monkeypatch.setattr(live, "QUEUE_BOUND", 2)
    with connect(ws_url(served, PARAMS), sock=small_socket(served), proxy=None,
                 compression=None, max_size=None, max_queue=1) as ws:
        wait_for_subscriptions(1)  # (its subscription runs before the events come)
        append_fast(served.store)
        wait_for_subscriptions(0)  # (the overflow ends it: only then does the client read)
        received = 0
        with pytest.raises(ConnectionClosedError) as closed:
            while True:  # (now read what was sent, up to the close)
                ws.recv(timeout=60)
                received += 1
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013
    assert closed.value.rcvd.reason == "client too slow: 3 correlations behind"
    assert received < PAIRS
    wait_for_subscriptions(0)


def test_an_sse_client_that_does_not_read_gets_a_last_error_event(served, monkeypatch):
    monkeypatch.setattr(live, "QUEUE_BOUND", 2)
    transport = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF,
                                                     RCVBUF)])
    with closing(httpx.Client(transport=transport, timeout=20)) as client, client.stream(
            "GET", f"{served.url}/v1/correlations/stream", params=PARAMS) as response:
        wait_for_subscriptions(1)
        append_fast(served.store)
        wait_for_subscriptions(0)  # (the overflow ends it: only then does the client read)
        events = [line for line in response.iter_lines() if line.startswith("event: ")]
    assert events[-1] == "event: error"
    # (under load the queue may overflow before the first one is sent)
    assert set(events[:-1]) <= {"event: correlation"} and len(events) - 1 < PAIRS
    wait_for_subscriptions(0)
