"""The exactly-once benchmarks of ``tidal bench``: positioned appends and positions on open.

Stores are durable and use the default settings, built by ordinary appends.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING

import pyarrow as pa

from tidal.bench import workloads
from tidal.bench.cases import open_store
from tidal.bench.figures import Context, Figure, median_of, seconds
from tidal.bench.registry import case

if TYPE_CHECKING:
    from tidal.api import Store

__all__: list[str] = []

BATCH = 1_000
OPEN_SOURCES = 10_000


def _batches(n: int, seed: int) -> list[pa.Table]:
    table = workloads.services(n, seed=seed).combine_chunks()
    return [table.slice(i, BATCH) for i in range(0, n, BATCH)]


def _append_all(store: Store, batches: list[pa.Table], *, positioned: bool) -> None:
    for k, batch in enumerate(batches):
        if positioned:
            store.append(batch, source=f"partition-{k % 16}", position=k)
        else:
            store.append(batch)


@case("append-positioned", "1k-event durable appends with a source and position, "
                           "against the same appends without")
def append_positioned(ctx: Context) -> list[Figure]:
    """Tidal: each 1k-event ``services`` batch appended with ``source`` (one of 16
    partitions) and ``position``; the duplicate check and the position travel in
    the append's WAL frame. Baseline: the same appends into a fresh store without
    them. The two alternate within each run, so both see the same disk."""
    n = ctx.size(1_000_000)
    batches = _batches(n, seed=21)
    rates: dict[str, list[float]] = {"positioned": [], "plain": []}
    for r in range(ctx.runs):
        for name in ("plain", "positioned") if r % 2 else ("positioned", "plain"):
            with open_store(ctx.fresh_dir(f"{name}-{r}"), entity_field="pod") as store:
                rates[name].append(n / seconds(partial(_append_all, store, batches,
                                                       positioned=name == "positioned")))
                if name == "positioned" and len(store.positions()) != min(16, len(batches)):
                    raise RuntimeError("positions were not kept")
    positioned, plain = rates["positioned"], rates["plain"]
    return [Figure("append-positioned", "services", n, "throughput", median_of(positioned),
                   "events/s", "the same appends without source and position",
                   median_of(plain), runs=ctx.runs)]


@case("positions-open", f"open a store of appends from {OPEN_SOURCES:,} sources and read "
                        "positions(), against the same store without sources")
def positions_open(ctx: Context) -> list[Figure]:
    """Tidal: a store built by 1k-event appends, each from one of 10k sources, closed,
    then opened (manifest, WAL tail) and ``positions()`` read; median of several
    opens. Baseline: opening the same appends made without sources."""
    n = ctx.size(10_000_000)
    batches = _batches(min(n, 1_000_000), seed=22)
    opens: dict[str, list[float]] = {"positioned": [], "plain": []}
    for name in ("positioned", "plain"):
        path = ctx.fresh_dir(name)
        with open_store(path, entity_field="pod") as store:
            for k in range(-(-n // BATCH)):
                batch = batches[k % len(batches)]
                if name == "positioned":
                    store.append(batch, source=f"source-{k % OPEN_SOURCES}", position=k)
                else:
                    store.append(batch)
        for _ in range(max(5, ctx.runs)):
            started = time.perf_counter()
            with open_store(path) as store:
                found = store.positions()
            opens[name].append((time.perf_counter() - started) * 1e3)
        if name == "positioned" and len(found) != min(OPEN_SOURCES, -(-n // BATCH)):
            raise RuntimeError(f"positions() found {len(found)} sources")
    ctx.note(f"{n:,} events; open + positions() {median_of(opens['positioned']):.1f} ms")
    return [Figure("positions-open", "services", n, "open_and_positions",
                   median_of(opens["positioned"]), "ms", "open of the same appends without "
                   "sources", median_of(opens["plain"]), higher_is_better=False,
                   runs=len(opens["positioned"]))]
