"""The server's Prometheus metrics (``prometheus_client``, one registry per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["Metrics"]


class Metrics:
    """Counters and histograms of one app; ``registry`` is what ``/metrics`` shows."""

    def __init__(self) -> None:
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

    def ingested(self, endpoint: str, events: int, nbytes: int, seconds: float) -> None:
        self.events.labels(endpoint).inc(events)
        self.bytes.labels(endpoint).inc(nbytes)
        self.batches.labels(endpoint).inc()
        self.ingest_seconds.labels(endpoint).observe(seconds)
