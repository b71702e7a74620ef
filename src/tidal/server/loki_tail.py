"""Loki's live tail, ``GET /loki/api/v1/tail`` (a WebSocket, scope ``query``): what
Grafana's Explore "Live" and ``logcli query --tail`` open.

Parameters, as Loki takes them: ``query`` (a LogQL log query), ``limit`` (100),
``start`` (an hour ago; ns, s or RFC 3339) and ``delay_for`` (0 to 5 s). The
first message holds the history: the newest ``limit`` stored entries from
``start`` on. Then each batch committed since is sent as it is committed (the
selector and pipeline run over the batch as columns: :meth:`Store.logql_tail`);
``delay_for`` holds entries that long first, so that one message gathers them
in time order. A message is one JSON text frame
``{"streams": [{"stream": {labels}, "values": [["<ns>", "<line>"], ...]}]}``
(``dropped_entries`` is left out: Tidal drops none, a follower that falls
behind reads what it missed back from the store, and ``append`` never waits
for it).

A bad parameter or query fails the upgrade with 400 and the reason in plain
text, as Loki answers it; so does a plain HTTP GET, which is no WebSocket.
What the client sends is ignored. The tail ends when the client leaves, when
the server shuts down (uvicorn closes the socket with 1012) or when the store
closes (close code 1011).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import pyarrow as pa
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tidal.errors import TidalError
from tidal.server import openapi
from tidal.server.auth import require
from tidal.server.encode import dumps
from tidal.server.loki_query import LokiError, int_param, loki_time

if TYPE_CHECKING:  # (the LogQL engine loads DuckDB: only on the first tail)
    from tidal.api import Store
    from tidal.correlate.logql import Stream
    from tidal.correlate.logql.tail import LogqlTail

__all__ = ["MAX_DELAY_S", "routes"]

MAX_DELAY_S = 5
"""The longest ``delay_for``, as in Loki."""
STOPPED_CODE = 1011  # WebSocket "internal error": the store closed under the tail
CLOSE_GRACE_S = 10.0  # how long the close may wait for a client that does not read
_HOUR_NS = 3600 * 1_000_000_000
_NOT_A_WEBSOCKET = ("websocket: the client is not using the websocket protocol: "
                    "'upgrade' token not found in 'Connection' header")


@dataclass(frozen=True)
class TailRequest:
    """A tail's parameters, checked."""

    query: str
    start_ns: int
    limit: int
    delay_s: int


def _open(connection: HTTPConnection) -> TailRequest:
    """Check the scope and the parameters (as Loki checks them)."""
    require(connection, "query")
    params = connection.query_params
    query = params.get("query")
    if not query:
        raise LokiError("query parameter is required")
    limit = int_param(params, "limit", 100)
    if limit <= 0:
        raise LokiError("limit must be a positive value")
    delay_s = int_param(params, "delay_for", 0)
    if delay_s > MAX_DELAY_S:
        raise LokiError(f"delay_for can't be greater than {MAX_DELAY_S}")
    if delay_s < 0:
        raise LokiError("delay_for must not be negative")
    start = loki_time(params.get("start"), time.time_ns() - _HOUR_NS, "start")
    return TailRequest(query, start, limit, delay_s)


def _begin(connection: HTTPConnection, wanted: TailRequest) -> LogqlTail:
    """Start the tail (blocking: the history is read here)."""
    config = connection.app.state.config
    store: Store = connection.app.state.store
    return store.logql_tail(wanted.query, start=wanted.start_ns, limit=wanted.limit,
                            line_field=config.loki_line_field,
                            label_fields=config.loki_label_fields)


def message(streams: list[Stream]) -> str:
    """One tail message, as Loki writes it (entries as ``["<ns>", "<line>"]``)."""
    return dumps({"streams": [
        {"stream": s.labels, "values": [[str(ts), line] for ts, line in s.entries]}
        for s in streams]}).decode()


class _Gone(Exception):
    """The client left while being written to."""


async def _forward(websocket: WebSocket, tail: LogqlTail, delay_s: int) -> bool:
    """Send the history, then each committed batch's streams, until the client leaves
    (False) or the store closes (True)."""
    stopped = False

    async def send(streams: list[Stream]) -> None:
        try:
            await websocket.send_text(message(streams))
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise _Gone from exc

    async with anyio.create_task_group() as group:
        async def watch() -> None:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass  # (what the client sends is ignored)
            group.cancel_scope.cancel()

        group.start_soon(watch)
        try:
            if tail.history:
                await send(tail.history)
            while True:
                batch = await _next(tail)
                if batch is None:
                    stopped = True
                    break
                batches = [batch]
                if delay_s:
                    with anyio.move_on_after(delay_s):
                        while (more := await _next(tail)) is not None:
                            batches.append(more)
                streams = await run_in_threadpool(tail.query.streams, batches)
                if streams:
                    await send(streams)
        except _Gone:
            pass
        group.cancel_scope.cancel()
    return stopped


async def _next(tail: LogqlTail) -> pa.RecordBatch | None:
    """The follower's next batch; None once it (or the store) is closed."""
    try:
        return await tail.follower.__anext__()
    except StopAsyncIteration:
        return None


async def _refuse(websocket: WebSocket, exc: Exception) -> None:
    """Fail the handshake: an auth error as the app answers it, the rest in plain text."""
    if isinstance(exc, HTTPException):
        handler = websocket.app.exception_handlers[HTTPException]
        response = await handler(websocket, exc)
    else:
        response = PlainTextResponse(str(exc), status_code=400)
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:  # (a server without the denial-response extension)
        await websocket.close(1008, str(exc)[:120])


_PARAMETERS = [openapi.query("query", "a LogQL log query", required=True),
               openapi.query("limit", "history entries (100)", kind="integer"),
               openapi.query("start", "history from (ns, s or RFC 3339; an hour ago)"),
               openapi.query("delay_for", "seconds to hold entries, 0 to 5", kind="integer"),
               openapi.query("token", "the API token, for clients that cannot set headers")]
_DOC = openapi.operation(
    "Loki: tail a LogQL log query live (a WebSocket)", scope="query",
    description="The history (the newest `limit` entries from `start`), then each "
                "entry as it is appended: JSON text frames `{\"streams\": [{\"stream\": "
                "{...}, \"values\": [[\"<ns>\", \"<line>\"], ...]}]}`. Bad parameters or "
                "a bad query fail the upgrade with 400 in plain text, as does a request "
                "that is no WebSocket upgrade.",
    parameters=_PARAMETERS,
    responses={101: "Switching to the WebSocket",
               400: {"description": "The reason, in plain text (as Loki answers)",
                     "content": {"text/plain": {"schema": {"type": "string"}}}}})


@_DOC
async def tail_http(request: Request) -> Response:
    """A plain GET: no WebSocket, so 400 (after the checks a handshake would make)."""
    try:
        _open(request)
    except LokiError as exc:
        return PlainTextResponse(str(exc), status_code=400)
    return PlainTextResponse(_NOT_A_WEBSOCKET, status_code=400)


@_DOC
async def tail(websocket: WebSocket) -> None:
    """Tail a LogQL log query: history, then live entries."""
    try:
        wanted = _open(websocket)
        live = await run_in_threadpool(_begin, websocket, wanted)
    except (HTTPException, LokiError, TidalError) as exc:
        await _refuse(websocket, exc)
        return
    try:
        await websocket.accept()
        stopped = await _forward(websocket, live, wanted.delay_s)
    finally:
        with anyio.CancelScope(shield=True):  # (also when the handler is cancelled)
            await run_in_threadpool(live.close)
    if stopped:
        with anyio.move_on_after(CLOSE_GRACE_S):
            try:
                await websocket.close(STOPPED_CODE, "the store closed")
            except (RuntimeError, OSError):
                pass


def routes() -> list[BaseRoute]:
    """The tail route: the WebSocket, and a plain GET's 400."""
    return [Route("/loki/api/v1/tail", tail_http, methods=["GET"]),
            WebSocketRoute("/loki/api/v1/tail", tail)]
