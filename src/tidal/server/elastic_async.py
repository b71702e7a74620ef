"""Elasticsearch's async EQL search: searches that outlive their request, as Kibana
runs them.

``POST /{index}/_eql/search`` with ``wait_for_completion_timeout`` answers after
at most that long: done, the whole answer; still running, ``{"id", "is_running":
true, "is_partial": true, ...}`` and the search goes on. ``keep_on_completion``
keeps a finished answer too (with its ``id``). Either is kept for ``keep_alive``
(default 5 days, Elastic's) and read with:

* ``GET /_eql/search/{id}`` (``wait_for_completion_timeout``, ``keep_alive`` to
  extend): the answer, or the running state;
* ``GET /_eql/search/status/{id}``: ``is_running``, ``is_partial``,
  ``start_time_in_millis``, ``expiration_time_in_millis`` and, once done,
  ``completion_status`` (the answer's HTTP status);
* ``DELETE /_eql/search/{id}``: cancels a running search (its thread finishes
  the scan and the answer is dropped) and forgets it: ``{"acknowledged": true}``.

An unknown or expired id is 404 ``resource_not_found_exception``. Searches live
in the server's memory (at most :data:`MAX_KEPT`; the oldest finished ones go
first), not across restarts.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tidal.server import openapi
from tidal.server.auth import require

__all__ = ["MAX_KEPT", "AsyncSearches", "BadParameter", "EsAnswer", "Waiting", "duration_ms",
           "kept_searches", "routes", "waiting"]

MAX_KEPT = 1000
"""The most searches kept at once."""
DEFAULT_KEEP_ALIVE_MS = 5 * 24 * 3600 * 1000
_DURATION = re.compile(r"(-?[0-9]+)(nanos|micros|ms|s|m|h|d)?")
_UNIT_MS = {"nanos": 1e-6, "micros": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3,
            "d": 86400e3}

EsAnswer = tuple[int, dict[str, Any]]
"""An Elastic answer: its HTTP status and body."""


class BadParameter(ValueError):
    """A time value Elasticsearch would refuse."""


def duration_ms(value: object, name: str) -> float | None:
    """An Elastic time value (``2s``, ``500ms``, ``5d``; a bare number is ms) in ms.

    >>> duration_ms("2s", "x"), duration_ms("100", "x"), duration_ms(None, "x")
    (2000.0, 100.0, None)
    """
    if value is None or value == "":
        return None
    match = _DURATION.fullmatch(str(value).strip())
    if match is None or int(match.group(1)) < 0 and match.group(1) != "-1":
        raise BadParameter(f"failed to parse setting [{name}] with value [{value}] as a "
                           "time value: unit is missing or unrecognized")
    number, unit = match.groups()
    return max(0.0, int(number) * _UNIT_MS[unit or "ms"])


@dataclass(frozen=True)
class Waiting:
    """How a search request wants to wait (all None: wait to the end, keep nothing)."""

    timeout_ms: float | None
    keep_on_completion: bool
    keep_alive_ms: float


def waiting(request: Request, body: dict[str, Any]) -> Waiting:
    """The async parameters of a search, from the query string or the body."""
    def get(name: str) -> object:
        return request.query_params.get(name, body.get(name))

    keep = get("keep_on_completion")
    return Waiting(duration_ms(get("wait_for_completion_timeout"),
                               "wait_for_completion_timeout"),
                   str(keep).lower() == "true",
                   duration_ms(get("keep_alive"), "keep_alive") or DEFAULT_KEEP_ALIVE_MS)


@dataclass
class _Search:
    task: asyncio.Task[EsAnswer]
    started_ms: int
    expires_ms: float


@dataclass
class AsyncSearches:
    """The searches kept by id, on the server (``app.state.eql_searches``)."""

    searches: dict[str, _Search] = field(default_factory=dict)

    async def run(self, work: Callable[[], Awaitable[EsAnswer]], wait: Waiting) -> EsAnswer:
        """Run ``work``; answer within ``wait.timeout_ms`` when given, keeping the
        search (and adding ``id``) when it is still running or when asked to."""
        if wait.timeout_ms is None and not wait.keep_on_completion:
            return await work()
        started = time.time() * 1000
        task = asyncio.ensure_future(work())
        done = await _within(task, wait.timeout_ms)
        if done and not wait.keep_on_completion:
            return task.result()
        self._expire()
        search_id = secrets.token_urlsafe(24)
        self.searches[search_id] = _Search(task, int(started), time.time() * 1000
                                           + wait.keep_alive_ms)
        return self._state(search_id)

    async def get(self, search_id: str, wait_ms: float | None,
                  keep_alive_ms: float | None) -> EsAnswer:
        """The kept search's answer (after waiting up to ``wait_ms`` for it)."""
        search = self._find(search_id)
        if keep_alive_ms is not None:
            search.expires_ms = time.time() * 1000 + keep_alive_ms
        await _within(search.task, wait_ms or 0.0)
        return self._state(search_id)

    def status(self, search_id: str) -> dict[str, Any]:
        """The kept search's status, as ``_eql/search/status`` gives it."""
        search = self._find(search_id)
        out: dict[str, Any] = {"id": search_id, "is_running": not search.task.done(),
                               "is_partial": not search.task.done(),
                               "start_time_in_millis": search.started_ms,
                               "expiration_time_in_millis": int(search.expires_ms)}
        if search.task.done():
            out["completion_status"] = _result(search.task)[0]
        return out

    def delete(self, search_id: str) -> None:
        """Cancel (if running) and forget the search."""
        self._find(search_id).task.cancel()
        del self.searches[search_id]

    def _find(self, search_id: str) -> _Search:
        self._expire()
        search = self.searches.get(search_id)
        if search is None:
            raise LookupError(search_id)
        return search

    def _state(self, search_id: str) -> EsAnswer:
        search = self.searches[search_id]
        if not search.task.done():
            took = round(time.time() * 1000 - search.started_ms)
            return 200, {"id": search_id, "is_partial": True, "is_running": True,
                         "took": took, "timed_out": False,
                         "hits": {"total": {"value": 0, "relation": "gte"}}}
        status, body = _result(search.task)
        return status, {"id": search_id, **body}

    def _expire(self) -> None:
        now = time.time() * 1000
        for search_id in [k for k, s in self.searches.items() if s.expires_ms <= now]:
            self.searches.pop(search_id).task.cancel()
        finished = [k for k, s in self.searches.items() if s.task.done()]
        while len(self.searches) >= MAX_KEPT and finished:
            self.searches.pop(finished.pop(0))


async def _within(task: asyncio.Task[EsAnswer], timeout_ms: float | None) -> bool:
    """Wait for ``task`` up to ``timeout_ms`` (None: to the end); whether it is done."""
    if timeout_ms is None:
        await asyncio.shield(task)
        return True
    if not task.done():
        await asyncio.wait([task], timeout=timeout_ms / 1000)
    return task.done()


def _result(task: asyncio.Task[EsAnswer]) -> EsAnswer:
    if task.cancelled():
        return 500, {"error": {"type": "task_cancelled_exception", "reason": "cancelled"}}
    return task.result()


def _not_found(search_id: str) -> EsAnswer:
    cause = {"type": "resource_not_found_exception", "reason": search_id}
    return 404, {"error": {"root_cause": [cause], **cause}, "status": 404}


def kept_searches(request: Request) -> AsyncSearches:
    """The server's kept searches (made on first use)."""
    state = request.app.state
    if not hasattr(state, "eql_searches"):
        state.eql_searches = AsyncSearches()
    found: AsyncSearches = state.eql_searches
    return found


Answer = Callable[[int, dict[str, Any], Request], Response]


def routes(answer: Answer, security_error: Callable[[HTTPException, Request], Response]
           ) -> list[BaseRoute]:
    """The routes of kept searches, answering through ``answer`` (Elastic's shape)."""
    Work = Callable[[Request, AsyncSearches, str], Awaitable[EsAnswer]]

    def endpoint(work: Work) -> Callable[[Request], Awaitable[Response]]:
        """``work`` behind the query scope, with Elastic's 400 and 404."""
        async def handle(request: Request) -> Response:
            try:
                require(request, "query")
            except HTTPException as exc:
                return security_error(exc, request)
            search_id = request.path_params["id"]
            try:
                status, body = await work(request, kept_searches(request), search_id)
            except BadParameter as exc:
                status, body = 400, _bad(str(exc))
            except LookupError:
                status, body = _not_found(search_id)
            return answer(status, body, request)
        handle.__doc__ = work.__doc__
        return handle

    async def get_search(request: Request, searches: AsyncSearches, search_id: str
                         ) -> EsAnswer:
        """A kept search's answer."""
        params = request.query_params
        wait = duration_ms(params.get("wait_for_completion_timeout"),
                           "wait_for_completion_timeout")
        keep = duration_ms(params.get("keep_alive"), "keep_alive")
        return await searches.get(search_id, wait, keep)

    async def search_status(request: Request, searches: AsyncSearches, search_id: str
                            ) -> EsAnswer:
        """A kept search's status."""
        return 200, searches.status(search_id)

    async def delete_search(request: Request, searches: AsyncSearches, search_id: str
                            ) -> EsAnswer:
        """Cancel and forget a kept search."""
        searches.delete(search_id)
        return 200, {"acknowledged": True}

    json_body = {"application/json": {"schema": {"type": "object"}}}
    responses = {status: {"description": text, "content": json_body} for status, text in (
        (200, "Elastic's answer"), (400, "illegal_argument_exception"),
        (401, "security_exception: no token, or an unknown one"),
        (403, "security_exception: the token lacks the query scope"),
        (404, "resource_not_found_exception: no such search (or it expired)"))}
    openapi.operation("Elasticsearch: a kept EQL search's answer", scope="query",
                      parameters=[openapi.query("wait_for_completion_timeout", "e.g. 2s"),
                                  openapi.query("keep_alive", "e.g. 5d")],
                      responses=responses)(get_handler := endpoint(get_search))
    openapi.operation("Elasticsearch: a kept EQL search's status", scope="query",
                      responses=responses)(status_handler := endpoint(search_status))
    openapi.operation("Elasticsearch: cancel and forget a kept EQL search", scope="query",
                      responses=responses)(delete_handler := endpoint(delete_search))
    return [Route("/_eql/search/status/{id}", status_handler, methods=["GET"]),
            Route("/_eql/search/{id}", get_handler, methods=["GET"]),
            Route("/_eql/search/{id}", delete_handler, methods=["DELETE"])]


def _bad(reason: str) -> dict[str, Any]:
    cause = {"type": "illegal_argument_exception", "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": 400}
