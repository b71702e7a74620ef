"""The store benchmarks of ``tidal bench``: ingest, timeline, footprint.

Each case sizes itself from ``ctx.size(default)`` (``--events`` overrides every
default), measures Tidal and a baseline in the same run, and returns
:class:`~tidal.bench.figures.Figure` objects. Defaults are sized so that the
whole suite takes a few minutes on two cores.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from tidal.bench import workloads
from tidal.bench.figures import Context, Figure, median_of, seconds
from tidal.bench.registry import case

if TYPE_CHECKING:
    from tidal.api import Store

__all__ = ["entity_table", "open_store"]

K = TypeVar("K")
BATCH_EVENTS = 10_000
MIB = 1 << 20
HUGE_MEMTABLE = 1 << 40


@contextmanager
def open_store(path: Path | None, **config: Any) -> Iterator[Store]:
    import tidal

    store = tidal.open(path, **config)
    try:
        yield store
    finally:
        store.close()


def _append_all(store: Store, table: pa.Table, batch: int) -> None:
    _append_each(store, [table.slice(i, batch) for i in range(0, table.num_rows, batch)])


def _append_each(store: Store, batches: list[pa.Table]) -> None:
    for batch in batches:
        store.append(batch)


def _check_count(store: Store, n: int) -> None:
    """Refuse to report a rate for events that were not all stored."""
    stored = store.stats()["events"]
    if stored != n:
        raise RuntimeError(f"the store holds {stored} events, expected {n}")


# --- ingest ---------------------------------------------------------------------------------

@case("ingest-arrow", "durable appends (group commit) of 10k-event Arrow batches of `services`")
def ingest_arrow(ctx: Context) -> list[Figure]:
    """Tidal: ``append`` per batch into an on-disk store, fsynced before it returns.
    Baseline: the same batches written as an Arrow IPC stream, fsync after each."""
    n = ctx.size(1_000_000)
    table = workloads.services(n, seed=1).combine_chunks()
    batches = [table.slice(i, BATCH_EVENTS) for i in range(0, n, BATCH_EVENTS)]
    tidal_rate, base_rate = [], []
    for r in range(ctx.runs):
        with open_store(ctx.fresh_dir(f"store-{r}"), entity_field="pod", durability="group") as s:
            tidal_rate.append(n / seconds(partial(_append_each, s, batches)))
            _check_count(s, n)
        path = ctx.tmp / f"baseline-{r}.arrows"
        base_rate.append(n / seconds(partial(_ipc_fsync, path, batches)))
        path.unlink()
    ctx.note(f"{len(batches)} batches; tidal {median_of(tidal_rate):,.0f} events/s")
    return [Figure("ingest-arrow", "services", n, "throughput", median_of(tidal_rate),
                   "events/s", "pyarrow IPC stream + fsync per batch", median_of(base_rate),
                   runs=ctx.runs)]


def _ipc_fsync(path: Path, batches: list[pa.Table]) -> None:
    with open(path, "wb") as f, ipc.new_stream(f, batches[0].schema) as writer:
        for batch in batches:
            writer.write_table(batch)
            f.flush()
            os.fsync(f.fileno())


@case("ingest-ndjson", "durable `append(path)` of a `services` NDJSON file")
def ingest_ndjson(ctx: Context) -> list[Figure]:
    """Tidal: ``append(path)`` into an on-disk store (decode, normalise, WAL, fsync).
    Baseline: the faster of ``pyarrow.json.read_json`` and DuckDB ``read_json`` of the
    same file into Arrow, with no store at all."""
    n = ctx.size(1_000_000)
    path = ctx.tmp / "services.ndjson"
    workloads.write_ndjson(workloads.services(n, seed=2), path)
    mib = path.stat().st_size / MIB
    tidal_rate, arrow_rate, duck_rate = [], [], []
    for r in range(ctx.runs):
        with open_store(ctx.fresh_dir(f"store-{r}"), entity_field="pod", durability="group") as s:
            tidal_rate.append(n / seconds(partial(s.append, path)))
            _check_count(s, n)
        arrow_rate.append(n / seconds(lambda: pa_json.read_json(path)))
        duck_rate.append(n / seconds(lambda: _duckdb_read_json(path)))
    ctx.note(f"{mib:,.0f} MiB of NDJSON ({path.stat().st_size / n:.0f} B/event)")
    arrow, duck = median_of(arrow_rate), median_of(duck_rate)
    baseline, value = (("pyarrow.json.read_json", arrow) if arrow >= duck
                       else ("duckdb read_json", duck))
    return [Figure("ingest-ndjson", "services", n, "throughput", median_of(tidal_rate),
                   "events/s", baseline, value, runs=ctx.runs)]


def _duckdb_read_json(path: Path) -> pa.Table:
    con = duckdb.connect()
    try:
        return con.sql("SELECT * FROM read_json(?, format = 'newline_delimited')",
                       params=[str(path)]).to_arrow_table()
    finally:
        con.close()


# --- timeline -------------------------------------------------------------------------------

def entity_table(n: int, entities: int, *, seed: int = 0) -> pa.Table:
    """``n`` events over ``entities`` entities (``e-0000042``), sorted by time over one hour.

    Columns: timestamp, entity, kind, value, code. Vectorised.
    """
    rng = np.random.default_rng([seed, 4])
    ts = np.sort(rng.integers(0, 3600 * 10**9, n)) + workloads.EPOCH_NS
    names = pc.binary_join_element_wise(
        "e-", pc.utf8_lpad(pc.cast(pa.array(np.arange(entities)), pa.string()), 7, "0"), "")
    kinds = pa.array(["start", "stop", "read", "write", "error", "retry", "open", "close"])
    return pa.table({
        "timestamp": pa.array(ts, type=workloads.TIMESTAMP),
        "entity": names.take(pa.array(rng.integers(0, entities, n))),
        "kind": kinds.take(pa.array(rng.integers(0, len(kinds), n))),
        "value": pa.array(np.round(rng.random(n) * 1000, 3)),
        "code": pa.array(rng.integers(0, 600, n)),
    })


def _latencies_us(query: Callable[[K], object], keys: Sequence[K], budget_s: float,
                  rounds: int) -> list[np.ndarray]:
    """Per-query latencies in µs, split into ``rounds`` rounds; stops early past the budget."""
    for key in keys[: max(1, len(keys) // 100)]:  # warm-up, not measured
        query(key)
    out = np.empty(len(keys), dtype=np.int64)
    clock = time.perf_counter_ns
    deadline = clock() + int(budget_s * 1e9)
    done = 0
    for key in keys:
        started = clock()
        query(key)
        end = clock()
        out[done] = end - started
        done += 1
        if end > deadline and done >= 3 * rounds:
            break
    return [part / 1e3 for part in np.array_split(out[:done], min(rounds, done))]


def _percentile(parts: list[np.ndarray], q: float) -> float:
    return median_of([float(np.percentile(p, q)) for p in parts])


@case("timeline", "per-entity timeline latency, memtable and segments, vs DuckDB filter+sort")
def timeline(ctx: Context) -> list[Figure]:
    """``store.timeline(entity)`` for random entities, one at a time, timed with
    ``perf_counter_ns``: once with everything in the memtable, once after
    ``flush()`` and ``compact()``. Baseline: DuckDB ``SELECT * ... WHERE entity = ?
    ORDER BY timestamp`` over the same Arrow table (fewer queries)."""
    n = ctx.size(10_000_000)
    entities = max(10, n // 100)
    queries = min(100_000, max(300, n // 100))
    table = entity_table(n, entities, seed=5)
    rng = np.random.default_rng(6)
    names = table.column("entity").unique()
    keys = names.take(pa.array(rng.integers(0, len(names), queries))).to_pylist()
    figures: list[Figure] = []
    base = _duckdb_timeline(table, keys[: min(1000, queries)], ctx)
    for variant in ("memtable", "segments"):
        config: dict[str, Any] = {"entity_field": "entity", "durability": "none",
                                  "cache_bytes": 1 << 40}
        if variant == "memtable":
            config.update(memtable_bytes=HUGE_MEMTABLE, memtable_age_s=0)
        else:  # one compacted segment holding everything, kept decoded in the cache
            config.update(segment_rows=n, compact_min_rows=n + 1, compact_chunk_rows=n)
        with open_store(ctx.fresh_dir(variant), **config) as store:
            _append_all(store, table, 500_000)
            if variant == "segments":
                store.flush()
                store.compact()
            stats = store.stats()
            _check_timelines(store, table, keys[:20])
            parts = _latencies_us(store.timeline, keys, ctx.budget_s, ctx.runs)
        ctx.note(f"{variant}: {sum(map(len, parts)):,} queries, {stats['segments']} segments, "
                 f"{stats['memtable_events']:,} memtable events")
        for q in (50, 99):
            figures.append(Figure("timeline", "entities", n, f"p{q}_{variant}",
                                  _percentile(parts, q), "us", "duckdb filter + order by",
                                  _percentile(base, q), higher_is_better=False,
                                  runs=len(parts)))
    return figures


def _check_timelines(store: Store, table: pa.Table, keys: list[str]) -> None:
    """Refuse to time a timeline that returns the wrong rows."""
    counts = pc.value_counts(table.column("entity"))
    expected = dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(),
                        strict=True))
    for key in keys:
        got = store.timeline(key)
        ts = got.column("timestamp").cast(pa.int64()).to_numpy()
        if got.num_rows != expected[key] or np.any(np.diff(ts) < 0):
            raise RuntimeError(f"timeline({key!r}) returned {got.num_rows} rows, "
                               f"expected {expected[key]} in time order")


def _duckdb_timeline(table: pa.Table, keys: list[str], ctx: Context) -> list[np.ndarray]:
    con = duckdb.connect()
    try:
        con.register("t", table)
        sql = "SELECT * FROM t WHERE entity = ? ORDER BY timestamp"
        parts = _latencies_us(lambda key: con.sql(sql, params=[key]).to_arrow_table(), keys,
                              ctx.budget_s / 2, ctx.runs)
    finally:
        con.close()
    ctx.note(f"baseline: {sum(map(len, parts)):,} DuckDB queries")
    return parts


# --- footprint ------------------------------------------------------------------------------

@case("footprint", "bytes/event on disk and in the memtable; RSS while streaming")
def footprint(ctx: Context) -> list[Figure]:
    """Disk: ``services`` into an on-disk store, ``flush()``, ``stats()`` bytes/event vs
    ``pyarrow.parquet.write_table(compression="zstd")`` of the same rows. Memory:
    memtable bytes/event vs the Arrow table's ``nbytes``. RSS: stream events
    through a store with the default memtable size in 100k batches, sampling RSS."""
    n = ctx.size(1_000_000)
    table = workloads.services(n, seed=7)
    config = {"entity_field": "pod", "durability": "none", "memtable_bytes": HUGE_MEMTABLE,
              "memtable_age_s": 0}
    with open_store(ctx.fresh_dir("store"), **config) as store:
        _append_all(store, table, 100_000)
        memory = store.stats()["bytes_per_event_memory"]
        store.flush()
        store.compact()
        disk = store.stats()["bytes_per_event_disk"]
    parquet = ctx.tmp / "baseline.parquet"
    pq.write_table(table, parquet, compression="zstd")
    figures = [
        Figure("footprint", "services", n, "disk_bytes_per_event", disk, "B",
               "parquet zstd (pyarrow defaults)", parquet.stat().st_size / n,
               higher_is_better=False),
        Figure("footprint", "services", n, "memtable_bytes_per_event", memory, "B",
               "arrow table nbytes", table.nbytes / n, higher_is_better=False),
    ]
    del table
    return figures + _rss_stream(ctx, ctx.size(10_000_000))


def _rss_stream(ctx: Context, n: int) -> list[Figure]:
    """Stream ``n`` services events through a default store; max RSS and late growth."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    batch = min(100_000, max(1_000, n // 20))
    pool = [workloads.services(batch, seed=100 + i) for i in range(min(8, -(-n // batch)))]
    span = max(int(pc.max(p.column("timestamp").cast(pa.int64())).as_py()) for p in pool) + 1
    span -= workloads.EPOCH_NS
    proc = psutil.Process()
    before = proc.memory_info().rss
    samples: list[int] = []
    sent = 0
    with open_store(ctx.fresh_dir("stream"), entity_field="pod") as store:
        while sent < n:
            part = pool[len(samples) % len(pool)].slice(0, n - sent)
            shifted = pc.add(part.column("timestamp").cast(pa.int64()), len(samples) * span)
            store.append(part.set_column(0, "timestamp", shifted.cast(workloads.TIMESTAMP)))
            sent += part.num_rows
            samples.append(proc.memory_info().rss)
        segments = store.stats()["segments"]
    quarter = samples[max(0, -(-len(samples) // 4) - 1)]
    ctx.note(f"streamed {n:,} events in {len(samples)} batches, {segments} segments; "
             f"RSS before {before / MIB:,.0f} MiB")
    return [
        Figure("footprint", "services", n, "max_rss_streaming", max(samples) / MIB, "MiB",
               "process RSS before streaming", before / MIB, higher_is_better=False),
        Figure("footprint", "services", n, "rss_growth_25_to_100pct",
               (samples[-1] - quarter) / MIB, "MiB"),
    ]
