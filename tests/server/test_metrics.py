"""``GET /metrics`` parsed as Prometheus parses it: names by the conventions, values
that match what was ingested, the store's and the rules' figures; ``/v1/stats``."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import tidal

from .conftest import Served, serving

NDJSON = {"content-type": "application/x-ndjson"}


def body(ids: range, second: int = 0) -> bytes:
    return b"".join(json.dumps({"timestamp": f"2026-01-01T00:00:{second + i % 10:02d}Z",
                                "entity": f"pod-{i % 4}", "id": i}).encode() + b"\n"
                    for i in ids)


def scrape(served: Served) -> tuple[str, dict[str, list[Sample]], dict[str, str]]:
    """The text, the samples of each family, and each family's type."""
    got = httpx.get(f"{served.url}/metrics")
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[Sample]] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(got.text):
        samples[family.name] = family.samples
        types[family.name] = family.type
    return got.text, samples, types


def value(samples: dict[str, list[Sample]], family: str, name: str, **labels: str) -> float:
    found = [s.value for s in samples[family]
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, samples[family])
    return found[0]


def test_ingest_counters_match_what_was_sent(served):
    bodies = [body(range(0, 7)), body(range(7, 10)), gzip.compress(body(range(10, 30)))]
    for i, payload in enumerate(bodies):
        headers = {**NDJSON, "content-encoding": "gzip"} if i == 2 else NDJSON
        assert httpx.post(f"{served.url}/v1/events", content=payload,
                          headers=headers).status_code == 200
    httpx.post(f"{served.url}/v1/events", content=b"{oops\n", headers=NDJSON)
    httpx.get(f"{served.url}/no/such/route/42")
    _, samples, types = scrape(served)
    endpoint = {"endpoint": "/v1/events"}
    assert types["tidal_ingest_events"] == "counter"
    assert value(samples, "tidal_ingest_events", "tidal_ingest_events_total", **endpoint) == 30
    assert value(samples, "tidal_ingest_bytes", "tidal_ingest_bytes_total",
                 **endpoint) == sum(map(len, bodies))
    assert value(samples, "tidal_ingest_batches", "tidal_ingest_batches_total", **endpoint) == 3
    assert types["tidal_ingest_duration_seconds"] == "histogram"
    assert value(samples, "tidal_ingest_duration_seconds", "tidal_ingest_duration_seconds_count",
                 **endpoint) == 3
    http = "tidal_http_request_duration_seconds"
    assert value(samples, http, f"{http}_count", route="/v1/events", method="POST",
                 status="200") == 3
    assert value(samples, http, f"{http}_count", route="/v1/events", status="400") == 1
    assert value(samples, http, f"{http}_count", route="unmatched", method="GET",
                 status="404") == 1
    routes = {s.labels["route"] for s in samples[http]}
    assert not any("42" in r for r in routes)  # templates, never raw paths


def test_store_figures_are_read_at_each_scrape(served):
    httpx.post(f"{served.url}/v1/events", content=body(range(12)), headers=NDJSON)
    _, samples, types = scrape(served)
    store = served.store
    assert value(samples, "tidal_store_max_seq", "tidal_store_max_seq") == store.max_seq() == 11
    assert value(samples, "tidal_store_events", "tidal_store_events") == 12
    assert value(samples, "tidal_store_entities", "tidal_store_entities") == 4
    limit = value(samples, "tidal_store_memory_limit_bytes", "tidal_store_memory_limit_bytes")
    assert limit == 4 * store.config.memtable_bytes
    memtable = value(samples, "tidal_store_memtable_bytes", "tidal_store_memtable_bytes")
    assert memtable > 0
    fill = value(samples, "tidal_store_buffer_fill_ratio", "tidal_store_buffer_fill_ratio")
    assert fill == pytest.approx(memtable / limit)
    assert types["tidal_store_commit_groups"] == "counter"
    assert value(samples, "tidal_store_commit_groups", "tidal_store_commit_groups_total") >= 1
    assert value(samples, "tidal_store_wal_bytes", "tidal_store_wal_bytes") > 0
    fsync = "tidal_wal_fsync_duration_seconds"
    assert types[fsync] == "histogram"
    fsyncs = value(samples, fsync, f"{fsync}_count")
    assert fsyncs == store.stats()["wal_fsync"]["count"] >= 1  # one per commit group at least
    assert value(samples, fsync, f"{fsync}_bucket", le="+Inf") == fsyncs
    assert 0 < value(samples, fsync, f"{fsync}_sum") < 60
    httpx.post(f"{served.url}/v1/events", content=body(range(12, 20)), headers=NDJSON)
    _, samples, _ = scrape(served)
    assert value(samples, "tidal_store_max_seq", "tidal_store_max_seq") == 19


def test_rules_report_correlations_late_events_and_state(tmp_path):
    with tidal.open(tmp_path / "s") as store, serving(store) as served:
        store.add_rule("every", "any where true")
        store.add_rule("pairs", "sequence by entity [any where id == 1] [any where id == 5]")
        httpx.post(f"{served.url}/v1/events", content=body(range(8), second=30),
                   headers=NDJSON)
        httpx.post(f"{served.url}/v1/events", content=body(range(8, 10)), headers=NDJSON)
        deadline = time.monotonic() + 20
        while store.rules()[0].stats.events < 10:  # (rules run on their own thread)
            assert time.monotonic() < deadline
            time.sleep(0.02)
        _, samples, types = scrape(served)
    every = {"rule": "every"}
    assert types["tidal_rule_correlations"] == "counter"
    assert value(samples, "tidal_rule_events", "tidal_rule_events_total", **every) == 10
    assert value(samples, "tidal_rule_correlations", "tidal_rule_correlations_total",
                 **every) == 8
    assert value(samples, "tidal_rule_late_events", "tidal_rule_late_events_total",
                 **every) == 2  # 00:00:08 and :09 came after :37
    assert value(samples, "tidal_rule_evicted", "tidal_rule_evicted_total", **every) == 0
    assert value(samples, "tidal_rule_state_bytes", "tidal_rule_state_bytes", **every) >= 0
    assert value(samples, "tidal_rule_events", "tidal_rule_events_total", rule="pairs") == 10


NAME = re.compile(r"tidal_[a-z][a-z0-9_]*")


def test_names_follow_the_prometheus_conventions(served):
    httpx.post(f"{served.url}/v1/events", content=body(range(3)), headers=NDJSON)
    _, samples, types = scrape(served)
    assert len(types) >= 20
    for name, kind in types.items():
        assert NAME.fullmatch(name), name
        assert not name.endswith("_total"), name  # the client adds it to counters' samples
        if kind == "counter":
            assert all(s.name in (f"{name}_total", f"{name}_created") for s in samples[name])
        base = name.removesuffix("_created")  # (when each series began, a gauge of its own)
        for unit in ("seconds", "bytes"):
            if unit in base.split("_"):
                assert base.endswith(f"_{unit}"), name
        assert not re.search(r"_(ms|milliseconds|kb|mb|percent)(_|$)", name), name


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_finds_nothing_to_lint(served):
    httpx.post(f"{served.url}/v1/events", content=body(range(3)), headers=NDJSON)
    text, _, _ = scrape(served)
    checked = subprocess.run([str(shutil.which("promtool")), "check", "metrics"], input=text,
                             text=True, capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_openmetrics_when_the_scraper_asks_for_it(served):
    got = httpx.get(f"{served.url}/metrics",
                    headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert got.headers["content-type"].startswith("application/openmetrics-text")
    assert got.text.rstrip().endswith("# EOF")


def test_stats_is_the_stores_stats_as_json(served):
    httpx.post(f"{served.url}/v1/events", content=body(range(5)), headers=NDJSON)
    got = httpx.get(f"{served.url}/v1/stats")
    assert got.status_code == 200
    stats = got.json()
    expected = json.loads(json.dumps(served.store.stats(), default=str))
    assert stats.keys() == expected.keys()
    assert (stats["events"], stats["max_seq"], stats["entities"]) == (5, 4, 4)
    assert stats["positions"] == {} and stats["background_errors"] == []
