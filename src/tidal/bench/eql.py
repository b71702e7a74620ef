"""The EQL benchmarks of ``tidal bench``: an event query and a sequence over the
``security`` workload, stored by ordinary appends with default settings.

* **eql-filter**: ``process where`` three conditions, one a wildcard; baseline:
  the same predicate in DuckDB SQL over the same stored data (``Store.sql``),
  with the row counts checked equal: ``count(*)`` (the issue's baseline), and
  (metric ``time_rows``) ``SELECT *`` in time order, the rows EQL returns.
* **eql-sequence**: the ``start_connect_end`` rule of ``rules/security.eql``
  (a 3-stage ``sequence by`` with ``maxspan`` and stage predicates); it must find
  exactly the planted sequences. Reported as events scanned per second.
  Also (metric ``time_selective``) a sequence whose first stage is rare, with
  its scan driven by that stage vs not (:mod:`tidal.correlate.drive`).
* **eql-sequence-memory**: the peak RSS of that query, run in a fresh process
  on the stored data, against the process's RSS with the store open before it.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from tidal.bench import workloads
from tidal.bench.cases import open_store
from tidal.bench.figures import Context, Figure, median_of, seconds
from tidal.bench.registry import case

if TYPE_CHECKING:
    from tidal.api import Store

FILTER_EQL = ('process where process.name : "power*" and host.name != "host-0001" '
              'and process.pid >= 1000')
FILTER_SQL = ("SELECT count(*) FROM events WHERE event.category = 'process' "
              "AND process.name ILIKE 'power%' AND host.name <> 'host-0001' "
              "AND process.pid >= 1000")
ROWS_SQL = ("SELECT * FROM events WHERE event.category = 'process' "
            "AND process.name ILIKE 'power%' AND host.name <> 'host-0001' "
            "AND process.pid >= 1000 ORDER BY timestamp, _seq")
SEQUENCE_EQL = """sequence by host.name, process.pid with maxspan=10s
  [process where event.type == "start"]
  [network where network.direction == "outbound"]
  [process where event.type == "end"]"""
PLANTED = "start_connect_end"
SELECTIVE_EQL = """sequence by host.name, process.pid with maxspan=10s
  [process where event.type == "start" and process.name == "powershell.exe"
   and host.name == "host-0042"]
  [network where network.direction == "outbound"]
  [process where event.type == "end"]"""
APPEND_EVENTS = 50_000


def security_store(ctx: Context, n: int) -> tuple[Path, dict[str, int]]:
    """A store of ``n`` security events, appended in batches with default settings."""
    table, planted = workloads.security(n, seed=5)
    path = ctx.fresh_dir("security") / "store"
    with open_store(path, entity_field="host.name") as store:
        for i in range(0, table.num_rows, APPEND_EVENTS):
            store.append(table.slice(i, APPEND_EVENTS))
    ctx.note(f"stored {n:,} security events by appends of {APPEND_EVENTS:,}")
    return path, planted


@case("eql-filter", "an EQL event query (3 conditions, a wildcard) vs DuckDB SQL")
def eql_filter(ctx: Context) -> list[Figure]:
    n = ctx.size(10_000_000)
    path, _ = security_store(ctx, n)
    tidal_s, duck_s, rows_s = [], [], []
    with open_store(path) as store:
        found = store.eql(FILTER_EQL).events.num_rows
        expected = store.sql(FILTER_SQL).column(0)[0].as_py()
        rows = store.sql(ROWS_SQL).num_rows
        if not found == expected == rows:
            raise RuntimeError(f"eql found {found} events, DuckDB {expected} ({rows} rows)")
        for _ in range(ctx.runs):
            tidal_s.append(seconds(lambda: store.eql(FILTER_EQL)))
            duck_s.append(seconds(lambda: store.sql(FILTER_SQL)))
            rows_s.append(seconds(lambda: store.sql(ROWS_SQL)))
    ctx.note(f"{found:,} matching events")
    tidal_ms = median_of(tidal_s) * 1e3
    return [Figure("eql-filter", "security", n, "time", tidal_ms, "ms",
                   "duckdb sql count(*), same predicate and data", median_of(duck_s) * 1e3,
                   higher_is_better=False, runs=ctx.runs),
            Figure("eql-filter", "security", n, "time_rows", tidal_ms, "ms",
                   "duckdb sql select * in time order, same predicate and data",
                   median_of(rows_s) * 1e3, higher_is_better=False, runs=ctx.runs)]


REFERENCE = Path(__file__).resolve().parents[3] / "bench" / "eql_reference.py"
REFERENCE_EVENTS = 100_000


def _reference_rate(ctx: Context, n: int) -> float | None:
    """The ``eql`` package's PythonEngine on the first ``n`` events, in events/s, run in
    its own process by ``bench/eql_reference.py`` (None when it is not installed)."""
    if not REFERENCE.exists() or importlib.util.find_spec("eql") is None:
        ctx.note("the eql package (dev extra) is not installed: no baseline")
        return None
    table, _ = workloads.security(n, seed=5)
    at = table.schema.get_field_index("timestamp")
    table = table.set_column(at, "timestamp", pc.cast(table.column(at), pa.int64()))  # ns
    path = ctx.tmp / "reference.ndjson"
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in table.to_pylist())
    rates = []
    for _ in range(ctx.runs):
        out = subprocess.run([sys.executable, str(REFERENCE), str(path), SEQUENCE_EQL],
                             capture_output=True, text=True, check=True, timeout=3600)
        answer = json.loads(out.stdout)
        rates.append(answer["events"] / answer["seconds"])
    return median_of(rates)


@case("eql-sequence", "an EQL 3-stage sequence by host and pid with maxspan")
def eql_sequence(ctx: Context) -> list[Figure]:
    n = ctx.size(10_000_000)
    path, planted = security_store(ctx, n)
    rates = []
    with open_store(path) as store:
        found = len(store.eql(SEQUENCE_EQL).correlations)  # also compiles the kernels
        if found != planted[PLANTED]:
            raise RuntimeError(f"found {found} sequences, planted {planted[PLANTED]}")
        for _ in range(ctx.runs):
            rates.append(n / seconds(lambda: store.eql(SEQUENCE_EQL)))
        driven_s, plain_s = _driven_and_plain(ctx, store)
    ctx.note(f"{found:,} sequences, as planted")
    reference = _reference_rate(ctx, min(n, REFERENCE_EVENTS))
    return [Figure("eql-sequence", "security", n, "events_scanned_per_s", median_of(rates),
                   "events/s", f"eql PythonEngine, first {min(n, REFERENCE_EVENTS):,} events"
                   if reference is not None else None, reference, runs=ctx.runs),
            Figure("eql-sequence", "security", n, "time_selective", driven_s * 1e3, "ms",
                   "the same sequence, its scan not driven by its selective stage",
                   plain_s * 1e3, higher_is_better=False, runs=ctx.runs)]


def _driven_and_plain(ctx: Context, store: Store) -> tuple[float, float]:
    """Median seconds of :data:`SELECTIVE_EQL` with its scan driven by its first stage,
    and with driving off (the answers checked equal)."""
    from tidal.correlate import drive

    driven = store.eql(SELECTIVE_EQL).correlations
    saved, drive.EVENTS = drive.EVENTS, -1  # (every driver "matches too many")
    try:
        plain = store.eql(SELECTIVE_EQL).correlations
        if [c.key for c in driven] != [c.key for c in plain]:
            raise RuntimeError("the driven and the plain scan found different sequences")
        plain_s = median_of([seconds(lambda: store.eql(SELECTIVE_EQL)) for _ in range(ctx.runs)])
    finally:
        drive.EVENTS = saved
    driven_s = median_of([seconds(lambda: store.eql(SELECTIVE_EQL)) for _ in range(ctx.runs)])
    ctx.note(f"selective sequence: {len(driven):,} found")
    return driven_s, plain_s


RSS_PROBE = """
import sys
import tidal
def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key)) * 1024
store = tidal.open(sys.argv[1], read_only=True)
store.eql(sys.argv[2], end=0)  # (loads what a query loads: numba, the kernels)
before = status("VmRSS:")
found = len(store.eql(sys.argv[2]).correlations)
print(before, status("VmHWM:"), found)
"""
"""Prints RSS before the query, peak RSS (``VmHWM``: ``ru_maxrss`` of a forked child
keeps its parent's peak), and the sequences found."""


@case("eql-sequence-memory", "peak RSS of the eql-sequence query vs the store's RSS before it")
def eql_sequence_memory(ctx: Context) -> list[Figure]:
    n = ctx.size(10_000_000)
    path, planted = security_store(ctx, n)
    ratios, peaks, befores = [], [], []
    for _ in range(ctx.runs):
        out = subprocess.run([sys.executable, "-c", RSS_PROBE, str(path), SEQUENCE_EQL],
                             capture_output=True, text=True, check=True, timeout=3600)
        before, peak, found = (int(x) for x in out.stdout.split())
        if found != planted[PLANTED]:
            raise RuntimeError(f"found {found} sequences, planted {planted[PLANTED]}")
        ratios.append(peak / before)
        peaks.append(peak)
        befores.append(before)
    ctx.note(f"RSS before the query {median_of(befores) / 2**20:,.0f} MiB, peak "
             f"{median_of(peaks) / 2**20:,.0f} MiB")
    return [Figure("eql-sequence-memory", "security", n, "peak_rss_ratio", median_of(ratios),
                   "x", "the store's RSS before the query (1x)", 1.0, higher_is_better=False,
                   runs=ctx.runs)]
