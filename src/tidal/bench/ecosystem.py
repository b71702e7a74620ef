"""The benchmarks of the APIs other tools speak (``tidal bench``), over ``tidal serve``
in a process of its own, each against the same work done in process.

* **eql-search-api**: ``POST /{index}/_eql/search`` with Elastic's official
  Python client, a 3-stage ``sequence by`` (the ``start_connect_end`` rule of
  the eql benchmarks, ``size`` 100) over 1M ``security`` events stored by
  appends: p50/p99 of the request. Baseline: ``Store.eql`` of the same query in
  this process (``| tail 100``, as the API asks for the last 100), so the ratio
  is what HTTP, JSON and the client add.
* **loki-query-range**: ``GET /loki/api/v1/query_range`` of
  ``{service="frontend"} |= "Error"`` (the workload's messages write errors as
  ``KeyError(..)``, and Loki's line filter is case-sensitive) over the last hour
  of 10M ``services`` events stored by appends, ``limit`` 1000 as Grafana asks:
  p50/p99 of the request. Baseline: ``Store.logql`` of the same in this process.
  With it, Grafana's logs volume query over the same hour (``sum by (level,
  detected_level) (count_over_time({service="frontend"} | drop __error__[1m]))``,
  ``step=60000ms``, as Explore sends it), p50.
"""

from __future__ import annotations

import time

import numpy as np

from tidal.bench import workloads
from tidal.bench.cases import open_store
from tidal.bench.eql import SEQUENCE_EQL, security_store
from tidal.bench.figures import Context, Figure
from tidal.bench.registry import case
from tidal.bench.server import served

SEARCH_EVENTS = 1_000_000
SEARCHES = 30
SIZE = 100


@case("eql-search-api", "Elastic's EQL search API (official client) vs Store.eql in process")
def eql_search_api(ctx: Context) -> list[Figure]:
    from elasticsearch import Elasticsearch

    import tidal

    n = ctx.size(SEARCH_EVENTS)
    path, _ = security_store(ctx, n)
    local = []
    with tidal.open(path, read_only=True) as store:
        expected = store.eql(f"{SEQUENCE_EQL}\n| tail {SIZE}")  # (warm: kernels, caches)
        for _ in range(SEARCHES):
            t0 = time.perf_counter()
            store.eql(f"{SEQUENCE_EQL}\n| tail {SIZE}")
            local.append(time.perf_counter() - t0)
    remote = []
    with served(path) as (url, _child):
        es = Elasticsearch(url, request_timeout=120)
        got = es.eql.search(index="*", query=SEQUENCE_EQL, size=SIZE).body  # (warm)
        if got["hits"]["total"]["value"] != len(expected.correlations):
            raise RuntimeError(f"the API found {got['hits']['total']['value']} sequences, "
                               f"Store.eql {len(expected.correlations)}")
        for _ in range(SEARCHES):
            t0 = time.perf_counter()
            es.eql.search(index="*", query=SEQUENCE_EQL, size=SIZE)
            remote.append(time.perf_counter() - t0)
        es.close()
    ms, base = np.array(remote) * 1e3, np.array(local) * 1e3
    ctx.note(f"{len(expected.correlations)} sequences a search; HTTP p50 "
             f"{np.median(ms):.1f} ms p99 {np.percentile(ms, 99):.1f} ms; in process p50 "
             f"{np.median(base):.1f} ms p99 {np.percentile(base, 99):.1f} ms")
    return [Figure("eql-search-api", "security", n, "p50", float(np.median(ms)), "ms",
                   "Store.eql in process", float(np.median(base)), higher_is_better=False,
                   runs=SEARCHES),
            Figure("eql-search-api", "security", n, "p99", float(np.percentile(ms, 99)), "ms",
                   "Store.eql in process", float(np.percentile(base, 99)),
                   higher_is_better=False, runs=SEARCHES)]


LOKI_EVENTS = 10_000_000
LOKI_QUERY = '{service="frontend"} |= "Error"'
LOGS_VOLUME = ('sum by (level, detected_level) (count_over_time({service="frontend"} '
               "| drop __error__[1m]))")
HOUR_NS = 3600 * 10**9
VOLUMES = 7


@case("loki-query-range", "Loki's query_range (a selector and a line filter, the last hour) "
                          "vs Store.logql in process")
def loki_query_range(ctx: Context) -> list[Figure]:
    import http.client
    import json
    from urllib.parse import urlencode

    import tidal

    n = ctx.size(LOKI_EVENTS)
    table = workloads.services(n, seed=29)
    path = ctx.fresh_dir("loki-query-range") / "store"
    with open_store(path, entity_field="pod") as store:
        for at in range(0, n, 50_000):
            store.append(table.slice(at, 50_000))
    end = int(table.column("timestamp").cast("int64")[-1].as_py()) + 1
    start = end - HOUR_NS
    local = []
    with tidal.open(path, read_only=True) as store:
        expected = store.logql(LOKI_QUERY, start=start, end=end, limit=1000)  # (warm)
        for _ in range(SEARCHES):
            t0 = time.perf_counter()
            store.logql(LOKI_QUERY, start=start, end=end, limit=1000)
            local.append(time.perf_counter() - t0)
    entries = sum(len(s.entries) for s in expected.streams)
    target = "/loki/api/v1/query_range?" + urlencode(
        {"query": LOKI_QUERY, "start": start, "end": end, "limit": 1000})
    remote = []
    volume = "/loki/api/v1/query_range?" + urlencode(
        {"query": LOGS_VOLUME, "start": start, "end": end, "step": "60000ms"})
    volume_ms, volume_base = [], []
    with tidal.open(path, read_only=True) as store:
        for _ in range(VOLUMES):
            t0 = time.perf_counter()
            store.logql(LOGS_VOLUME, start=start, end=end, step_ns=60 * 10**9)
            volume_base.append((time.perf_counter() - t0) * 1e3)
    with served(path) as (url, _child):
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        for i in range(VOLUMES + 1):
            t0 = time.perf_counter()
            conn.request("GET", volume)
            got = conn.getresponse()
            body = got.read()
            if got.status != 200 or json.loads(body)["data"]["resultType"] != "matrix":
                raise RuntimeError(f"logs volume: {got.status} {body[:200]!r}")
            if i:
                volume_ms.append((time.perf_counter() - t0) * 1e3)
        for i in range(SEARCHES + 1):
            t0 = time.perf_counter()
            conn.request("GET", target)
            got = conn.getresponse()
            body = got.read()
            if i:
                remote.append(time.perf_counter() - t0)
            elif got.status != 200 or sum(len(s["values"]) for s in json.loads(body)["data"][
                    "result"]) != entries:
                raise RuntimeError(f"query_range: {got.status} {body[:200]!r}")
        conn.close()
    ms, base = np.array(remote) * 1e3, np.array(local) * 1e3
    ctx.note(f"{entries} entries an answer; HTTP p50 {np.median(ms):.1f} ms p99 "
             f"{np.percentile(ms, 99):.1f} ms; in process p50 {np.median(base):.1f} ms")
    ctx.note(f"logs volume: HTTP p50 {np.median(volume_ms):.1f} ms; in process p50 "
             f"{np.median(volume_base):.1f} ms")
    return [Figure("loki-query-range", "services", n, "p50", float(np.median(ms)), "ms",
                   "Store.logql in process", float(np.median(base)), higher_is_better=False,
                   runs=SEARCHES),
            Figure("loki-query-range", "services", n, "p99", float(np.percentile(ms, 99)),
                   "ms", "Store.logql in process", float(np.percentile(base, 99)),
                   higher_is_better=False, runs=SEARCHES),
            Figure("loki-query-range", "services", n, "logs volume p50",
                   float(np.median(volume_ms)), "ms", "Store.logql in process",
                   float(np.median(volume_base)), higher_is_better=False, runs=VOLUMES)]
