"""The benchmark harness: every case at a tiny size, records, JSON lines, errors."""

from __future__ import annotations

import io
import json
import math
import os
import tempfile

import numpy as np
import pyarrow as pa
import pytest
from rich.console import Console

from tidal.bench import harness, reads
from tidal.bench.cases import entity_table
from tidal.bench.registry import CASES
from tidal.errors import ConfigError

FIELDS = {"name", "workload", "events", "metric", "value", "unit", "baseline",
          "baseline_value", "ratio", "runs", "at"}
EXPECTED_METRICS = {
    "ingest-arrow": {"throughput"},
    "ingest-ndjson": {"throughput"},
    "timeline": {"p50_memtable", "p99_memtable", "p50_segments", "p99_segments"},
    "footprint": {"disk_bytes_per_event", "memtable_bytes_per_event", "max_rss_streaming",
                  "rss_growth_25_to_100pct"},
    "group-commit": {"throughput", "p99_append_latency", "appends_per_fsync"},
    "append-latency-under-flush": {"p99_append_latency", "p50_append_latency"},
    "follow-latency": {"p50_commit_to_follower", "p99_commit_to_follower"},
    "append-positioned": {"throughput"},
    "positions-open": {"open_and_positions"},
    "consume-jetstream": {"throughput"},
    "compact": {"throughput", "bytes_per_event_after", "append_throughput", "segments_after"},
    "timeline-real": {f"p{q}_{v}" for q in (50, 99)
                      for v in ("warm_full", "warm_window", "cold_full", "cold_window")},
    "open-first-timeline": {"wall_warm", "wall_cold", "peak_rss_warm", "peak_rss_cold",
                            "wall_warm_without_pandas"},
    "scan-full": {"throughput", "throughput_seq_order"},
    "scan-window": {"bytes_read_share_cold", "time_cold", "time_warm"},
    "eql-filter": {"time", "time_rows"},
    "eql-sequence": {"events_scanned_per_s", "time_selective"},
    "eql-sequence-memory": {"peak_rss_ratio"},
    "corql-join": {"throughput", "throughput_count", "throughput_native"},
    "live-latency": {f"p{q}_{span}_to_delivery" for q in (50, 99) for span in ("commit", "append")}
    | {"max_sustained_rate"},
    "live-state": {"peak_rss_growth", "state_bytes_max", "evicted"},
    "http-ingest": {"throughput", "p50_request", "p99_request"},
    "http-timeline": {"p50", "p99"},
    "serve-cold-start": {"ready", "idle_rss"},
    "eql-search-api": {"p50", "p99"},
    "loki-query-range": {"p50", "p99", "logs volume p50"},
}

MAY_BE_ZERO = {"bytes_read_share_cold", "peak_rss_growth"}
NO_BASELINE = {"rss_growth_25_to_100pct", "appends_per_fsync", "p50_append_latency",
               "append_throughput", "time_warm", "p50_append_to_delivery",
               "p99_append_to_delivery", "max_sustained_rate", "evicted", "p50_request",
               "p99_request"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """All cases at 3,000 events, with a private system temp dir."""
    root = tmp_path_factory.mktemp("bench")
    scratch = root / "systmp"
    scratch.mkdir()
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    json_path = root / "results.jsonl"
    saved = tempfile.tempdir
    tempfile.tempdir = str(scratch)
    saved_data = os.environ.get("TIDAL_BENCH_DATA")
    os.environ["TIDAL_BENCH_DATA"] = str(root / "stores")  # kept between runs, not scratch
    try:
        records = harness.run(None, 3000, json_path, console)
    finally:
        tempfile.tempdir = saved
        if saved_data is None:
            del os.environ["TIDAL_BENCH_DATA"]
        else:
            os.environ["TIDAL_BENCH_DATA"] = saved_data
    return records, json_path, out.getvalue(), scratch


def test_every_case_reports_its_metrics(tiny_run):
    records, *_ = tiny_run
    assert set(CASES) == set(EXPECTED_METRICS)
    got: dict[str, set[str]] = {}
    for r in records:
        got.setdefault(r["name"], set()).add(r["metric"])
    assert got == EXPECTED_METRICS


def test_records_are_complete_and_ratios_oriented(tiny_run):
    records, *_ = tiny_run
    for r in records:
        assert set(r) == FIELDS
        assert r["events"] == 3000
        assert isinstance(r["value"], float) and math.isfinite(r["value"])
        assert r["unit"] and r["workload"] and r["at"].endswith("Z")
        if r["metric"] in NO_BASELINE or (r["name"] == "timeline-real"
                                          and not reads.chdb_installed()):
            assert r["baseline"] is None and r["ratio"] is None
            continue
        if r["metric"] in MAY_BE_ZERO:  # bytes read from storage: none on a tmpfs
            assert r["value"] >= 0 and r["baseline_value"] >= 0
            continue
        assert r["value"] > 0 and r["baseline_value"] > 0 and r["baseline"]
        if r["unit"] == "events/s":
            expected = r["value"] / r["baseline_value"]
        else:  # times and sizes: lower is better
            expected = r["baseline_value"] / r["value"]
        assert r["ratio"] == pytest.approx(expected, rel=1e-3)
    runs = {(r["name"], r["metric"]): r["runs"] for r in records}
    assert runs[("ingest-arrow", "throughput")] == 3
    assert runs[("timeline", "p50_memtable")] == 3


def test_timeline_percentiles_are_ordered(tiny_run):
    records, *_ = tiny_run
    by = {r["metric"]: r for r in records if r["name"] == "timeline"}
    for variant in ("memtable", "segments"):
        assert by[f"p50_{variant}"]["value"] <= by[f"p99_{variant}"]["value"]
        assert by[f"p50_{variant}"]["baseline_value"] <= by[f"p99_{variant}"]["baseline_value"]


def test_json_lines_match_records_and_console_shows_table(tiny_run):
    records, json_path, text, _ = tiny_run
    lines = json_path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == records
    assert "tidal bench" in text and "ratio > 1 means Tidal did better" in text
    for name in CASES:
        assert name in text


def test_scratch_space_is_removed(tiny_run):
    *_, scratch = tiny_run
    assert list(scratch.iterdir()) == []


def test_json_is_appended_not_overwritten(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"earlier": true}\n')
    first = harness.run(["footprint"], 1500, path, None, runs=1)
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"earlier": True}
    assert [json.loads(x) for x in lines[1:]] == first


@pytest.mark.parametrize(("names", "events", "runs"), [
    (["nope"], 100, 1), (["timeline", "ingest"], 100, 1), (None, 0, 1), (None, 10, 0)])
def test_bad_arguments_are_refused(tmp_path, names, events, runs):
    path = tmp_path / "r.jsonl"
    with pytest.raises(ConfigError):
        harness.run(names, events, path, None, runs=runs)
    assert not path.exists()


def test_figure_ratio_orientation():
    rate = harness.Figure("x", "w", 10, "throughput", 200.0, "events/s", "b", 100.0)
    assert rate.ratio == 2.0
    latency = harness.Figure("x", "w", 10, "p50", 50.0, "us", "b", 100.0,
                             higher_is_better=False)
    assert latency.ratio == 2.0
    slower = harness.Figure("x", "w", 10, "p50", 400.0, "us", "b", 100.0,
                            higher_is_better=False)
    assert slower.ratio == 0.25
    assert harness.Figure("x", "w", 10, "m", 1.0, "B").ratio is None
    record = slower.record("2026-01-01T00:00:00Z")
    assert set(record) == FIELDS and record["ratio"] == 0.25


def test_entity_table_shape():
    table = entity_table(5000, 50, seed=1)
    assert table.num_rows == 5000
    assert table.schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    assert len(table.column("entity").unique()) == 50
    assert all(len(e) == 9 and e.startswith("e-") for e in table.column("entity").to_pylist())
    ts = table.column("timestamp").cast(pa.int64()).to_numpy()
    assert np.all(np.diff(ts) >= 0)
    assert entity_table(5000, 50, seed=1).equals(table)
