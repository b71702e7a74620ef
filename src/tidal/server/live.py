"""Live correlations over HTTP: Server-Sent Events and a WebSocket twin.

``GET /v1/correlations/stream`` (SSE) and ``WS /v1/correlations/ws`` take the
same query-string parameters: ``rule=NAME`` (the rule's query and language), or
``query=...&language=eql|corql``; and ``lateness`` (allowed lateness, default
``0s``) and ``idle_advance`` (none by default), as :meth:`Store.subscribe`
takes them. Each connection runs a private live subscription that starts with
the next event appended (also for ``rule=``: the rule's stored correlations are
at ``GET /v1/correlations``), and closes it when the client leaves.

How a slow client is kept from stalling anything: the subscription's thread
encodes each correlation to JSON and hands it to the event loop
(``call_soon_threadsafe``) into a buffer of at most :data:`QUEUE_BOUND`
correlations; ``append`` never waits for the subscription, which never waits
for the client. When the buffer overflows, the stream ends: SSE sends a last
``event: error`` and ends the response, the WebSocket closes with code 1013
(try again later) and the reason ``client too slow: N correlations behind``.
A client that reconnects gets a fresh stream from the next event.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from tidal.api import Store
from tidal.correlate.result import Correlation
from tidal.correlate.subscription import Subscription
from tidal.errors import ConfigError, TidalError
from tidal.server import openapi
from tidal.server.auth import require
from tidal.server.encode import correlation_objects, dumps
from tidal.server.query import CORRELATION

__all__ = ["CLOSE_GRACE_S", "KEEPALIVE_S", "QUEUE_BOUND", "routes"]

QUEUE_BOUND = 1024
"""Correlations waiting for one client, at most; one more and its stream is closed."""
KEEPALIVE_S = 15.0
"""An SSE comment is sent after this long without a correlation (proxies, clients)."""
CLOSE_GRACE_S = 10.0
"""How long the last words (SSE ``event: error``, the WebSocket close) may wait for a
client that does not read; then the connection is dropped."""
_POLL_S = 1.0  # how often a quiet stream checks that its subscription still runs
TOO_SLOW_CODE = 1013  # WebSocket "try again later"
STOPPED_CODE = 1011  # WebSocket "internal error": the live query ended on its own


@dataclass(frozen=True)
class LiveQuery:
    """What a live stream runs: a query (a rule's, or given) and its options."""

    query: str
    language: str
    rule: str | None = None
    lateness: str = "0s"
    idle_advance: str | None = None


def live_query(connection: HTTPConnection) -> LiveQuery:
    """The stream's parameters, from the query string (the rule is looked up later)."""
    params = connection.query_params
    rule, text = params.get("rule"), params.get("query")
    if (rule is None) == (text is None):
        raise ConfigError("give rule=NAME or query=... (and language=eql|corql), "
                          "one of the two", field="rule" if rule is not None else "query")
    if rule is not None and "language" in params:
        raise ConfigError("a rule has its own language: give rule= or language=, not both",
                          field="language")
    return LiveQuery(text or "", params.get("language", "eql"), rule,
                     params.get("lateness") or "0s", params.get("idle_advance") or None)


def subscribe(store: Store, wanted: LiveQuery,
              callback: Callable[[Correlation], None]) -> Subscription:
    """Start ``wanted`` live on ``store`` from the next event (blocking: thread pool)."""
    query, language = wanted.query, wanted.language
    if wanted.rule is not None:
        found = [r for r in store.rules() if r.name == wanted.rule]
        if not found:
            raise HTTPException(404, f"there is no rule named {wanted.rule!r}")
        query, language = found[0].query, found[0].language
    return store.subscribe(query, language=language, allowed_lateness=wanted.lateness,
                           idle_advance=wanted.idle_advance, callback=callback)


class Feed:
    """Correlations on their way from a subscription's thread to one client: encoded
    there, queued on the event loop, at most ``bound`` of them.

    On overflow the queue is dropped, ``behind`` says how many were waiting, and
    ``on_overflow`` (set by the stream) is called to stop the stream at once,
    even while it waits for a client that does not read.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, bound: int, rule: str | None) -> None:
        self._loop, self._bound, self._rule = loop, bound, rule
        self._items: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self.behind: int | None = None
        self.on_overflow: Callable[[], None] | None = None

    def offer(self, correlation: Correlation) -> None:
        """The subscription's callback (its thread): encode, hand over, never wait."""
        if self.behind is not None:
            return
        payload = dumps(next(correlation_objects([correlation], rule=self._rule)))
        try:
            self._loop.call_soon_threadsafe(self._put, payload)
        except RuntimeError:  # (the loop has closed: the server is gone)
            pass

    def _put(self, payload: bytes) -> None:
        if self.behind is not None:
            return
        if len(self._items) >= self._bound:
            self.behind = len(self._items) + 1
            self._items.clear()
            if self.on_overflow is not None:
                self.on_overflow()
        else:
            self._items.append(payload)
        self._ready.set()

    async def next(self, timeout_s: float) -> bytes | None:
        """The next correlation's JSON; None after ``timeout_s`` without one."""
        if not self._items:
            self._ready.clear()
            with anyio.move_on_after(timeout_s):
                await self._ready.wait()
        return self._items.popleft() if self._items else None


class _Gone(Exception):
    """The client left while being written to."""


async def forward(feed: Feed, subscription: Subscription,
                  write: Callable[[bytes | None], Awaitable[None]],
                  left: Callable[[], Awaitable[None]]) -> str | None:
    """Write ``feed`` to the client (``None``: a keep-alive) until it leaves (returns
    None) or the stream must end (returns why)."""
    stopped = False
    async with anyio.create_task_group() as group:
        async def watch() -> None:
            await left()
            group.cancel_scope.cancel()

        group.start_soon(watch)
        feed.on_overflow = group.cancel_scope.cancel
        written = anyio.current_time()
        while feed.behind is None:
            payload = await feed.next(min(_POLL_S, KEEPALIVE_S))
            if payload is None and subscription.closed:
                stopped = True
                break
            if payload is None and anyio.current_time() - written < KEEPALIVE_S:
                continue
            try:
                await write(payload)
            except _Gone:
                break
            written = anyio.current_time()
        group.cancel_scope.cancel()
    if feed.behind is not None:
        return f"client too slow: {feed.behind} correlations behind"
    return "the live query stopped (the store closed or the query failed)" if stopped else None


async def _close(subscription: Subscription) -> None:
    with anyio.CancelScope(shield=True):  # (also when the stream is cancelled)
        await run_in_threadpool(subscription.close)


async def _start(connection: HTTPConnection) -> tuple[Feed, Subscription]:
    require(connection, "query")
    wanted = live_query(connection)
    feed = Feed(asyncio.get_running_loop(), QUEUE_BOUND, wanted.rule)
    subscription = await run_in_threadpool(subscribe, connection.app.state.store, wanted,
                                           feed.offer)
    return feed, subscription


_PARAMETERS = [
    openapi.query("rule", "a rule's name: run its query and language (or give query)"),
    openapi.query("query", "the query to run live (or give rule)"),
    openapi.query("language", "eql (default) or corql; not with rule"),
    openapi.query("lateness", "allowed lateness, e.g. 30s (default 0s)"),
    openapi.query("idle_advance", "move the watermark by the clock after this long "
                                  "without events, e.g. 1m (default: never)"),
    openapi.query("token", "the API token, for clients that cannot set headers"),
]


# -- Server-Sent Events ---------------------------------------------------------------------

@openapi.operation(
    "Live correlations as Server-Sent Events", scope="query",
    description="A private live subscription from the next event appended: `event: "
                "correlation` with a Correlation as JSON data, as each fires; a `: "
                "keep-alive` comment after 15 s without one. A client that falls "
                f"{QUEUE_BOUND} correlations behind gets a last `event: error` (data: the "
                "JSON error, type `too_slow`) and the stream ends; so does a live query "
                "that stops (type `stopped`).",
    parameters=_PARAMETERS,
    responses={200: {"description": "The stream", "content": {"text/event-stream": {
                   "schema": {"type": "string"}, "x-tidal-data": CORRELATION}}},
               400: "Bad parameters or query (`details`: line and column)",
               404: "No such rule"})
async def stream(request: Request) -> Response:
    feed, subscription = await _start(request)  # (errors here are JSON answers: 4xx)
    return EventStream(feed, subscription)


class EventStream(Response):
    """``text/event-stream``: ``event: correlation`` with the correlation as JSON data,
    a ``: keep-alive`` comment when quiet, a last ``event: error`` when cut off."""

    media_type = "text/event-stream"

    def __init__(self, feed: Feed, subscription: Subscription) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self._feed, self._subscription = feed, subscription

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def chunk(body: bytes, more: bool = True) -> None:
            await send({"type": "http.response.body", "body": body, "more_body": more})

        async def write(payload: bytes | None) -> None:
            await chunk(b": keep-alive\n\n" if payload is None
                        else b"event: correlation\ndata: " + payload + b"\n\n")

        async def left() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            why = await forward(self._feed, self._subscription, write, left)
        finally:
            await _close(self._subscription)
        with anyio.move_on_after(CLOSE_GRACE_S):  # (past it the connection is dropped)
            if why is not None:
                kind = "too_slow" if self._feed.behind is not None else "stopped"
                error = dumps({"error": {"type": kind, "message": why}})
                await chunk(b"event: error\ndata: " + error + b"\n\n")
            await chunk(b"", more=False)


# -- WebSocket ------------------------------------------------------------------------------

@openapi.operation(
    "Live correlations over a WebSocket", scope="query",
    description="The twin of GET /v1/correlations/stream: one JSON text frame a "
                "Correlation. What the client sends is ignored. A client that falls "
                f"{QUEUE_BOUND} correlations behind is closed with code "
                f"{TOO_SLOW_CODE} and the reason `client too slow: N correlations "
                f"behind`; a live query that stops closes it with {STOPPED_CODE}. Bad "
                "parameters are refused at the handshake with the JSON error.",
    parameters=_PARAMETERS,
    responses={101: "Switching to the WebSocket",
               400: "Bad parameters or query (`details`: line and column)",
               404: "No such rule"})
async def stream_ws(websocket: WebSocket) -> None:
    try:
        feed, subscription = await _start(websocket)
    except (HTTPException, TidalError) as exc:
        await _refuse(websocket, exc)
        return

    async def write(payload: bytes | None) -> None:
        if payload is None:
            return  # (WebSocket pings keep the connection: the server sends them)
        try:
            await websocket.send_text(payload.decode())
        except WebSocketDisconnect as exc:
            raise _Gone from exc

    async def left() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass  # (what the client sends is ignored)

    try:
        await websocket.accept()
        why = await forward(feed, subscription, write, left)
    finally:
        await _close(subscription)
    if why is not None:
        code = TOO_SLOW_CODE if feed.behind is not None else STOPPED_CODE
        with anyio.move_on_after(CLOSE_GRACE_S):  # (past it the connection is dropped)
            await websocket.close(code, why)


async def _refuse(websocket: WebSocket, exc: Exception) -> None:
    """Answer a WebSocket handshake with the JSON error an HTTP request would get."""
    handlers = websocket.app.exception_handlers
    handler = next(handlers[kind] for kind in type(exc).__mro__ if kind in handlers)
    response = await handler(websocket, exc)
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:  # (a server without the denial-response extension)
        await websocket.close(1008, str(getattr(exc, "detail", exc))[:120])


def routes() -> list[BaseRoute]:
    return [Route("/v1/correlations/stream", stream, methods=["GET"]),
            WebSocketRoute("/v1/correlations/ws", stream_ws)]
