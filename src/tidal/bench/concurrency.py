"""The concurrency benchmarks of ``tidal bench``: group commit, appends under flush, follow.

Every store here is durable (``durability="group"``, an fsync before each
append returns) and uses the default settings except where a case says why.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from tidal.bench import workloads
from tidal.bench.cases import open_store
from tidal.bench.figures import Context, Figure, median_of
from tidal.bench.registry import case

__all__: list[str] = []

WRITERS = 16
WRITER_BATCH = 100
STEADY_BATCH = 1_000
FLUSH_MEMTABLE_BYTES = 8 << 20  # flushes (and compactions) every second or so at the rate below
STEADY_EVENTS_PER_S = 100_000
FOLLOW_BATCH = 100
FOLLOW_APPENDS_PER_S = 500


def _percentiles_ms(latencies_ns: list[int] | np.ndarray) -> tuple[float, float]:
    values = np.asarray(latencies_ns, dtype=np.float64) / 1e6
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


# --- group commit -------------------------------------------------------------------------

def _hammer(store: object, slices: list[list[pa.Table]]) -> tuple[float, list[int]]:
    """Each thread appends its slices as fast as it can; returns (seconds, latencies ns)."""
    append: Callable[[pa.Table], object] = store.append  # type: ignore[attr-defined]
    latencies: list[list[int]] = [[] for _ in slices]
    barrier = threading.Barrier(len(slices) + 1)

    def run(mine: list[pa.Table], out: list[int]) -> None:
        barrier.wait()
        clock = time.perf_counter_ns
        for batch in mine:
            started = clock()
            append(batch)
            out.append(clock() - started)

    threads = [threading.Thread(target=run, args=(s, out)) for s, out in zip(slices, latencies,
                                                                              strict=True)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - started, [x for out in latencies for x in out]


@case("group-commit", f"{WRITERS} threads appending {WRITER_BATCH}-event batches, durable: "
                      "group commit vs one fsync per append")
def group_commit(ctx: Context) -> list[Figure]:
    """Tidal: 16 threads append 100-event ``services`` batches into one durable store;
    appends that arrive together share one WAL write and one fsync. Baseline: the same
    appends into a store whose groups hold one append each
    (``group_commit_max_events=1``), so every append pays its own fsync."""
    n = ctx.size(320_000)
    table = workloads.services(n, seed=11).combine_chunks()
    batches = [table.slice(i, WRITER_BATCH) for i in range(0, n, WRITER_BATCH)]
    slices = [batches[w::WRITERS] for w in range(WRITERS)]
    rates: dict[str, list[float]] = {"tidal": [], "base": []}
    p99s: dict[str, list[float]] = {"tidal": [], "base": []}
    per_group: list[float] = []
    for r in range(ctx.runs):
        for name, extra in (("tidal", {}), ("base", {"group_commit_max_events": 1})):
            with open_store(ctx.fresh_dir(f"{name}-{r}"), entity_field="pod", **extra) as s:
                elapsed, latencies = _hammer(s, slices)
                if s.max_seq() != n - 1:
                    raise RuntimeError(f"stored {s.max_seq() + 1} events, expected {n}")
                if name == "tidal":
                    per_group.append(s.stats()["appends_per_group"])
            rates[name].append(n / elapsed)
            p99s[name].append(_percentiles_ms(latencies)[1])
    ctx.note(f"{len(batches):,} appends; {median_of(per_group):.1f} appends per fsync")
    return [
        Figure("group-commit", "services", n, "throughput", median_of(rates["tidal"]),
               "events/s", "one fsync per append", median_of(rates["base"]), runs=ctx.runs),
        Figure("group-commit", "services", n, "p99_append_latency", median_of(p99s["tidal"]),
               "ms", "one fsync per append", median_of(p99s["base"]), higher_is_better=False,
               runs=ctx.runs),
        Figure("group-commit", "services", n, "appends_per_fsync", median_of(per_group),
               "appends", runs=ctx.runs),
    ]


# --- append latency while flushing --------------------------------------------------------

def _steady(store: object, batches: list[pa.Table], per_s: float) -> list[int]:
    """Append ``batches`` on a fixed schedule; latencies (ns) measured from the due time."""
    append: Callable[[pa.Table], object] = store.append  # type: ignore[attr-defined]
    clock = time.perf_counter_ns
    step = int(1e9 / per_s)
    latencies = []
    start = clock()
    for i, batch in enumerate(batches):
        due = start + i * step
        wait = due - clock()
        if wait > 0:
            time.sleep(wait / 1e9)
        append(batch)
        latencies.append(clock() - max(due, start))
    return latencies


@case("append-latency-under-flush", "p99 latency of 1k-event durable appends at a steady "
                                    "rate while flushes and compactions run")
def append_latency_under_flush(ctx: Context) -> list[Figure]:
    """Tidal: 1k-event ``services`` appends at 100k events/s into a durable store with an
    8 MiB memtable, so background flushes (and automatic compactions) run throughout; a
    latency counts from when the append was due, so a stall also delays the ones after
    it. Baseline: the same schedule with a memtable that never fills (no flush runs)."""
    n = ctx.size(600_000)
    table = workloads.services(n, seed=12).combine_chunks()
    batches = [table.slice(i, STEADY_BATCH) for i in range(0, n, STEADY_BATCH)]
    per_s = STEADY_EVENTS_PER_S / STEADY_BATCH
    p99: dict[str, list[float]] = {"tidal": [], "base": []}
    p50: list[float] = []
    segments: list[int] = []
    for r in range(ctx.runs):
        for name, memtable in (("tidal", FLUSH_MEMTABLE_BYTES), ("base", 1 << 40)):
            with open_store(ctx.fresh_dir(f"{name}-{r}"), entity_field="pod",
                            memtable_bytes=memtable, memtable_age_s=0) as s:
                latencies = _steady(s, batches, per_s)
                if name == "tidal":
                    segments.append(s.stats()["segments"])
            mid, high = _percentiles_ms(latencies)
            p99[name].append(high)
            if name == "tidal":
                p50.append(mid)
    ctx.note(f"{len(batches):,} appends at {STEADY_EVENTS_PER_S:,} events/s; "
             f"{median_of(segments):.0f} segments when done")
    return [
        Figure("append-latency-under-flush", "services", n, "p99_append_latency",
               median_of(p99["tidal"]), "ms", "same appends, no flush running",
               median_of(p99["base"]), higher_is_better=False, runs=ctx.runs),
        Figure("append-latency-under-flush", "services", n, "p50_append_latency",
               median_of(p50), "ms", runs=ctx.runs),
    ]


# --- follow latency -----------------------------------------------------------------------

@case("follow-latency", "WAL commit to a follower receiving the batch, vs a bare "
                        "thread-to-thread queue hand-off")
def follow_latency(ctx: Context) -> list[Figure]:
    """Tidal: a follower thread iterates ``store.follow()`` while 100-event batches are
    appended durably at 500 appends/s; the lag of each batch is from the moment its WAL
    write and fsync returned to the moment the follower got it. Baseline: the same rate
    of ``queue.Queue`` hand-offs between two threads (the floor of a cross-thread wake-up
    in CPython)."""
    appends = max(10, ctx.size(200_000) // FOLLOW_BATCH)
    table = workloads.services(appends * FOLLOW_BATCH, seed=13).combine_chunks()
    batches = [table.slice(i * FOLLOW_BATCH, FOLLOW_BATCH) for i in range(appends)]
    tidal_p: list[tuple[float, float]] = []
    base_p: list[tuple[float, float]] = []
    for r in range(ctx.runs):
        with open_store(ctx.fresh_dir(f"follow-{r}"), entity_field="pod") as s:
            follower = s.follow()
            lags: list[int] = []

            def consume(f=follower, out=lags) -> None:
                for _ in f:
                    if f.lag_ns is not None:
                        out.append(f.lag_ns)

            reader = threading.Thread(target=consume)
            reader.start()
            _steady(s, batches, FOLLOW_APPENDS_PER_S)
            deadline = time.monotonic() + 10
            while len(lags) < appends and time.monotonic() < deadline:
                time.sleep(0.01)
            follower.close()
            reader.join()
        if len(lags) < appends:
            raise RuntimeError(f"the follower got {len(lags)} of {appends} batches")
        tidal_p.append(_percentiles_ms(lags))
        base_p.append(_percentiles_ms(_queue_handoff(appends, FOLLOW_APPENDS_PER_S)))
    return [
        Figure("follow-latency", "services", appends * FOLLOW_BATCH, f"p{q}_commit_to_follower",
               median_of([p[i] for p in tidal_p]), "ms", "queue.Queue hand-off",
               median_of([p[i] for p in base_p]), higher_is_better=False, runs=ctx.runs)
        for i, q in enumerate((50, 99))
    ]


def _queue_handoff(count: int, per_s: float) -> list[int]:
    handoff: queue.Queue[int | None] = queue.Queue()
    lags: list[int] = []

    def consume() -> None:
        while (sent := handoff.get()) is not None:
            lags.append(time.perf_counter_ns() - sent)

    reader = threading.Thread(target=consume)
    reader.start()
    step = 1.0 / per_s
    start = time.perf_counter()
    for i in range(count):
        wait = start + i * step - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        handoff.put(time.perf_counter_ns())
    handoff.put(None)
    reader.join()
    return lags
