"""The server benchmarks of ``tidal bench``: ``tidal serve`` in a process of its own,
real HTTP clients on loopback.

* **http-ingest**: NDJSON bodies of 1k–10k ``services`` events posted to
  ``/v1/events`` from 4 keep-alive connections (threads, one connection of the
  standard library's ``http.client`` each: httpx takes about twice the client CPU
  per body, and the client shares the box's cores with the server) for
  :data:`INGEST_S` seconds: events/s and the p50/p99 request latency.
  Baseline: the raw decode ceiling, decoding the same bodies
  (``tidal.ingest.decode``) in this process in the same run; the goal is a ratio
  of at least 0.6. The client shares the box's cores with the server, so the
  absolute figure says little here.
* **http-timeline**: ``GET /v1/entities/{pod}/timeline?limit=100`` for random
  pods of a stored ``services`` store, one keep-alive connection of the standard
  library's ``http.client`` (httpx alone adds about 0.5 ms a request here): p50/p99.
  Baseline: ``Store.timeline`` in this process over the same store.
* **serve-cold-start**: ``tidal serve`` from spawn until ``/readyz`` answers
  200, over a stored store, and its RSS once idle (goals: ready within 1 s,
  idle RSS at most 150 MB).
"""

from __future__ import annotations

import http.client
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import psutil

from tidal.bench import workloads
from tidal.bench.cases import open_store
from tidal.bench.figures import Context, Figure, median_of
from tidal.bench.registry import case

__all__: list[str] = []

INGEST_S = 10.0
CONNECTIONS = 4
TIMELINE_REQUESTS = 2_000
STORE_EVENTS = 1_000_000


@contextmanager
def served(store_dir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``tidal serve`` on a free loopback port over ``store_dir``, until the block ends
    (then SIGTERM, and it must exit 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-m", "tidal.cli", "serve", "--store",
                              str(store_dir), "--port", str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _ready(url, child)
        yield url, child
    finally:
        child.terminate()
        _, err = child.communicate(timeout=60)
        if child.returncode != 0:
            raise RuntimeError(f"tidal serve exited {child.returncode}: {err.decode()[-500:]}")


def _ready(url: str, child: subprocess.Popen[bytes], timeout_s: float = 60.0) -> float:
    """Seconds until ``/readyz`` answers 200."""
    started = time.perf_counter()
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        if child.poll() is not None:
            raise RuntimeError(f"tidal serve exited {child.returncode} before it was ready")
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError("tidal serve was not ready in time")
        time.sleep(0.005)


def _bodies(events: int, seed: int) -> list[bytes]:
    """NDJSON bodies of 1k–10k ``services`` events each."""
    rng = random.Random(seed)
    table = workloads.services(events, seed=seed)
    out, at = [], 0
    while at < table.num_rows:
        size = rng.randint(1_000, 10_000)
        out.append(workloads.to_ndjson(table.slice(at, size)))
        at += size
    return out


@case("http-ingest", "NDJSON over HTTP from 4 keep-alive connections vs the decode ceiling")
def http_ingest(ctx: Context) -> list[Figure]:
    from tidal.ingest.decode import decode

    pool = ctx.size(500_000)
    bodies = _bodies(pool, seed=23)
    counts = [body.count(b"\n") for body in bodies]
    started = time.perf_counter()
    decoded = sum(decode(body, format="ndjson").table.num_rows for body in bodies)
    ceiling = decoded / (time.perf_counter() - started)
    lock = threading.Lock()
    latencies: list[float] = []
    posted = [0]
    duration = INGEST_S if ctx.events is None else min(INGEST_S, 3.0)
    with served(ctx.fresh_dir("http-ingest") / "store") as (url, _child):
        stop = time.perf_counter() + duration

        def client(k: int) -> None:
            host, port = url.removeprefix("http://").split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=60)  # (keep-alive)
            try:
                i = k
                while time.perf_counter() < stop:
                    body = bodies[i % len(bodies)]
                    t0 = time.perf_counter()
                    conn.request("POST", "/v1/events", body=body,
                                 headers={"Content-Type": "application/x-ndjson"})
                    got = conn.getresponse()
                    answer = got.read()
                    elapsed = time.perf_counter() - t0
                    if got.status != 200:
                        raise RuntimeError(f"POST /v1/events: {got.status} {answer[:500]!r}")
                    with lock:
                        latencies.append(elapsed)
                        posted[0] += counts[i % len(bodies)]
                    i += CONNECTIONS
            finally:
                conn.close()

        begun = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(CONNECTIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rate = posted[0] / (time.perf_counter() - begun)
    ms = np.array(latencies) * 1e3
    ctx.note(f"{posted[0]:,} events in {len(ms):,} requests: {rate:,.0f} events/s "
             f"(decode ceiling {ceiling:,.0f}/s); p50 {np.median(ms):.1f} ms, "
             f"p99 {np.percentile(ms, 99):.1f} ms")
    n = pool  # (the bodies' events; they are posted over and over for the duration)
    return [
        Figure("http-ingest", "services", n, "throughput", rate, "events/s",
               "raw NDJSON decode of the same bodies, in process", ceiling),
        Figure("http-ingest", "services", n, "p50_request", float(np.median(ms)), "ms",
               higher_is_better=False, runs=len(ms)),
        Figure("http-ingest", "services", n, "p99_request", float(np.percentile(ms, 99)),
               "ms", higher_is_better=False, runs=len(ms)),
    ]


def _stored(ctx: Context, name: str) -> tuple[Path, list[str]]:
    """A ``services`` store built by appends of 50k, and some of its pods."""
    n = ctx.size(STORE_EVENTS)
    path = ctx.fresh_dir(name) / "store"
    table = workloads.services(n, seed=29)
    with open_store(path, entity_field="pod") as store:
        for at in range(0, n, 50_000):
            store.append(table.slice(at, 50_000))
    pods = sorted(set(table.column("pod").to_pylist()))
    return path, pods


@case("http-timeline", "timeline requests over HTTP vs Store.timeline in process")
def http_timeline(ctx: Context) -> list[Figure]:
    import tidal

    path, pods = _stored(ctx, "http-timeline")
    rng = random.Random(5)
    picks = [rng.choice(pods) for _ in range(TIMELINE_REQUESTS)]
    with tidal.open(path, read_only=True) as store:
        for pod in picks[:50]:  # (warm, as over HTTP)
            store.timeline(pod, limit=100)
        local = []
        for pod in picks:
            t0 = time.perf_counter()
            store.timeline(pod, limit=100)
            local.append(time.perf_counter() - t0)
    with served(path) as (url, _child):
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)  # (keep-alive)
        for pod in picks[:50]:  # (warm)
            _get(conn, f"/v1/entities/{pod}/timeline?limit=100")
        remote = []
        for pod in picks:
            t0 = time.perf_counter()
            _get(conn, f"/v1/entities/{pod}/timeline?limit=100")
            remote.append(time.perf_counter() - t0)
        conn.close()
    ms, base = np.array(remote) * 1e3, np.array(local) * 1e3
    ctx.note(f"HTTP p50 {np.median(ms):.2f} ms p99 {np.percentile(ms, 99):.2f} ms; "
             f"in process p50 {np.median(base):.2f} ms p99 {np.percentile(base, 99):.2f} ms")
    n = ctx.size(STORE_EVENTS)
    return [Figure("http-timeline", "services", n, "p50", float(np.median(ms)), "ms",
                   "Store.timeline in process", float(np.median(base)),
                   higher_is_better=False, runs=len(ms)),
            Figure("http-timeline", "services", n, "p99", float(np.percentile(ms, 99)), "ms",
                   "Store.timeline in process", float(np.percentile(base, 99)),
                   higher_is_better=False, runs=len(ms))]


def _get(conn: http.client.HTTPConnection, target: str) -> bytes:
    """GET ``target`` on the kept-alive connection ``conn``: the body (else RuntimeError)."""
    conn.request("GET", target)
    got = conn.getresponse()
    body = got.read()
    if got.status != 200:
        raise RuntimeError(f"{target}: {got.status} {body[:200]!r}")
    return body


@case("serve-cold-start", "tidal serve until /readyz answers, and its idle RSS")
def serve_cold_start(ctx: Context) -> list[Figure]:
    path, _ = _stored(ctx, "serve-cold-start")
    ready, rss = [], []
    for _ in range(5):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        child = subprocess.Popen([sys.executable, "-m", "tidal.cli", "serve", "--store",
                                  str(path), "--port", str(port)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            ready.append(_ready(f"http://127.0.0.1:{port}", child))
            time.sleep(1.0)  # (idle)
            rss.append(psutil.Process(child.pid).memory_info().rss / 1e6)
        finally:
            child.terminate()
            child.wait(timeout=60)
    ctx.note(f"ready in {median_of(ready) * 1e3:.0f} ms (median of 5), idle RSS "
             f"{median_of(rss):.0f} MB")
    return [Figure("serve-cold-start", "services", ctx.size(STORE_EVENTS), "ready",
                   median_of(ready) * 1e3, "ms", "the goal", 1000.0,
                   higher_is_better=False, runs=5),
            Figure("serve-cold-start", "services", ctx.size(STORE_EVENTS), "idle_rss",
                   median_of(rss), "MB", "the goal", 150.0, higher_is_better=False, runs=5)]
