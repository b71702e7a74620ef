"""The server's Prometheus metrics and the store's own figures.

``GET /metrics`` (open) gives the Prometheus text format (OpenMetrics when the
scraper asks for it) from one registry per app:

* what the routes record: events, bytes and batches ingested per endpoint, and
  the time from a body received to its durable commit (which holds the WAL
  write and its fsync);
* HTTP request latency by route template (``/v1/rules/{name}``, never the raw
  path; ``unmatched`` for a 404), method and status, from :class:`HttpMetrics`;
* the store's figures, read from ``Store.stats()`` and ``Store.rules()`` at each
  scrape by :class:`StoreCollector`: memtable bytes against the memory limit
  (the ingest buffer's fill), WAL bytes, commit groups (one WAL write and fsync
  each), backpressure waits, and per rule the correlations, late events,
  evictions and live state size.

``GET /v1/stats`` (scope ``query``) gives ``Store.stats()`` as JSON.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidal.server import openapi
from tidal.server.auth import require

if TYPE_CHECKING:
    from tidal.api import Store

__all__ = ["HttpMetrics", "Metrics", "StoreCollector", "json_safe", "routes"]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """Counters and histograms of one app; ``registry`` is what ``/metrics`` shows.

    Args:
        store: the store whose figures each scrape reads (None: none).
    """

    def __init__(self, store: Store | None = None) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter("tidal_ingest_events", "Events ingested, by endpoint",
                              ["endpoint"], registry=self.registry)
        self.bytes = Counter("tidal_ingest_bytes", "Request body bytes ingested, by endpoint",
                             ["endpoint"], registry=self.registry)
        self.batches = Counter("tidal_ingest_batches", "Appends (request bodies), by endpoint",
                               ["endpoint"], registry=self.registry)
        self.ingest_seconds = Histogram("tidal_ingest_duration_seconds",
                                        "Time from a body received to its durable commit",
                                        ["endpoint"], registry=self.registry)
        self.http_seconds = Histogram("tidal_http_request_duration_seconds",
                                      "HTTP request latency, by route and status",
                                      ["route", "method", "status"], registry=self.registry)
        if store is not None:
            self.registry.register(StoreCollector(store))

    def ingested(self, endpoint: str, events: int, nbytes: int, seconds: float) -> None:
        """Count one accepted body of ``nbytes`` bytes (as received) holding ``events``."""
        self.events.labels(endpoint).inc(events)
        self.bytes.labels(endpoint).inc(nbytes)
        self.batches.labels(endpoint).inc()
        self.ingest_seconds.labels(endpoint).observe(seconds)


# (stats() key, metric name, help): gauges, then counters (``_total`` is added)
_GAUGES = (
    ("events", "tidal_store_events", "Events stored, in segments and memtables"),
    ("entities", "tidal_store_entities", "Distinct entities stored"),
    ("max_seq", "tidal_store_max_seq", "The highest _seq stored (-1: none)"),
    ("segments", "tidal_store_segments", "Live segments"),
    ("segment_bytes", "tidal_store_segment_bytes", "Bytes of the live segments"),
    ("wal_bytes", "tidal_store_wal_bytes", "Bytes of write-ahead log not yet flushed away"),
    ("memtable_events", "tidal_store_memtable_events", "Events held in memtables"),
    ("memtable_bytes", "tidal_store_memtable_bytes",
     "Bytes held in memtables, the active one and those waiting for a flush"),
    ("sealed_memtables", "tidal_store_sealed_memtables", "Memtables waiting for a flush"),
    ("cache_bytes", "tidal_store_cache_bytes", "Decoded segment data cached for timelines"),
    ("appends_per_group", "tidal_store_appends_per_commit_group",
     "Appends sharing one WAL write and fsync, on average since open"),
    ("followers", "tidal_store_followers", "Followers of the commit feed"),
    ("sources", "tidal_store_sources", "Sources with a committed position"),
)
_COUNTERS = (
    ("commit_groups", "tidal_store_commit_groups",
     "WAL writes since open, one fsync each under durability=group"),
    ("backpressure_waits", "tidal_store_backpressure_waits",
     "Appends that waited for room at the memory limit, since open"),
    ("backpressure_wait_s", "tidal_store_backpressure_wait_seconds",
     "Time appends spent waiting for room at the memory limit, since open"),
    ("dropped_events", "tidal_store_dropped_events",
     "Events dropped by retention, since the store was created"),
)
# (LiveStats attribute, metric name, help, counter?)
_RULES = (
    ("events", "tidal_rule_events", "Events a rule received", True),
    ("correlations", "tidal_rule_correlations", "Correlations a rule found", True),
    ("late", "tidal_rule_late_events",
     "Events that came below a rule's watermark (stored, not matched)", True),
    ("evicted", "tidal_rule_evicted", "Held events or pending matches a rule evicted to "
                                      "stay within its state bounds", True),
    ("behind", "tidal_rule_behind", "Times a rule fell behind the commit feed", True),
    ("state_bytes", "tidal_rule_state_bytes", "Memory a rule's live state holds, about",
     False),
    ("held", "tidal_rule_held_events", "Events a rule holds for pending matches", False),
    ("buffered", "tidal_rule_buffered_events", "Events waiting for a rule's watermark",
     False),
    ("keys", "tidal_rule_keys", "Join keys a rule holds", False),
)


class StoreCollector(Collector):
    """Reads the store's figures at each scrape (nothing when the store is closed)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        store = self._store
        if store.closed:
            return
        stats = store.stats()
        for key, name, text in _GAUGES:
            yield GaugeMetricFamily(name, text, value=float(stats.get(key) or 0))
        for key, name, text in _COUNTERS:
            yield CounterMetricFamily(name, text, value=float(stats.get(key) or 0))
        limit = store.config.memory_limit_bytes or 4 * store.config.memtable_bytes
        yield GaugeMetricFamily("tidal_store_memory_limit_bytes",
                                "Memtable bytes at which appends wait (ingest answers 429)",
                                value=float(limit))
        yield GaugeMetricFamily("tidal_store_buffer_fill_ratio",
                                "Memtable bytes over the memory limit (1: full)",
                                value=stats["memtable_bytes"] / limit)
        yield GaugeMetricFamily("tidal_store_background_errors",
                                "Background jobs whose last run failed",
                                value=float(len(stats["background_errors"])))
        fsyncs = stats.get("wal_fsync")
        if fsyncs is not None:
            buckets = [(repr(float(bound)), float(n)) for bound, n in fsyncs["buckets"]]
            yield HistogramMetricFamily("tidal_wal_fsync_duration_seconds",
                                        "WAL fsync latency, since open",
                                        buckets=[*buckets, ("+Inf", float(fsyncs["count"]))],
                                        sum_value=fsyncs["sum_s"])
        dedup = stats.get("dedup")
        if dedup:
            yield CounterMetricFamily("tidal_store_dedup_duplicates",
                                      "Events skipped as duplicates, since open",
                                      value=float(dedup.get("duplicates", 0)))
        yield from self._rules()

    def _rules(self) -> Iterator[Metric]:
        rules = [r for r in self._store.rules() if r.stats is not None]
        families: list[tuple[str, GaugeMetricFamily | CounterMetricFamily]] = [
            (attr, (CounterMetricFamily if counter else GaugeMetricFamily)(
                name, text, labels=["rule"])) for attr, name, text, counter in _RULES]
        lag = GaugeMetricFamily("tidal_rule_lag_seconds",
                                "Commit to delivery of a rule's last batch", labels=["rule"])
        for rule in rules:
            for attr, family in families:
                family.add_metric([rule.name], float(getattr(rule.stats, attr)))
            if rule.stats is not None and rule.stats.lag_ns is not None:
                lag.add_metric([rule.name], rule.stats.lag_ns / 1e9)
        yield from (family for _, family in families)
        yield lag


class HttpMetrics:
    """ASGI middleware: each HTTP request's latency, by route template, method and status,
    into the ``metrics`` of the Starlette app serving it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            metrics: Metrics = scope["app"].state.metrics
            metrics.http_seconds.labels(_template(scope), method, str(status[0])).observe(
                time.perf_counter() - started)


def _template(scope: Scope) -> str:
    """The path template of the route that took the request; ``unmatched`` if none."""
    route = scope.get("route")
    if route is None:  # (older Starlette versions do not record it)
        route = next((r for r in scope["app"].routes
                      if r.matches(scope)[0] is Match.FULL), None)
    return str(getattr(route, "path", None) or "unmatched")


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON: str keys, lists, finite numbers (NaN and ±inf: None),
    anything else as its ``str``.

    Example:
        >>> json_safe({"a": (1, float("nan")), 2: {"b": None}})
        {'a': [1, None], '2': {'b': None}}
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    return str(value)


@openapi.operation("Prometheus metrics: ingest, HTTP latency, the store and its rules",
                   responses={200: {"description": "The Prometheus text format", "content": {
                       "text/plain": {"schema": {"type": "string"}}}}})
async def metrics_endpoint(request: Request) -> Response:
    """The app's metrics in the Prometheus text (or OpenMetrics) format."""
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    body = await run_in_threadpool(encoder, request.app.state.metrics.registry)
    return Response(body, media_type=content_type)


@openapi.operation("The store's statistics (Store.stats())", scope="query",
                   responses={200: {"description": "Counts and sizes", "content": {
                       "application/json": {"schema": {"type": "object"}}}}})
async def stats_endpoint(request: Request) -> Response:
    """``Store.stats()`` as JSON."""
    require(request, "query")
    stats = await run_in_threadpool(request.app.state.store.stats)
    return JSONResponse(json_safe(stats))


def routes() -> list[BaseRoute]:
    """``GET /metrics`` and ``GET /v1/stats``."""
    return [Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/v1/stats", stats_endpoint, methods=["GET"])]
