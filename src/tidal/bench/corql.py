"""The CorQL and live benchmarks of ``tidal bench``, over the ``services`` workload.

* **corql-join**: ``frontend`` and ``checkout`` events joined on ``request_id``
  within 5 s (:data:`JOIN_CORQL`) by ``store.correlate`` over a store built by
  ordinary appends of 50k events (default settings), in stored events per
  second. Baselines: the same join in DuckDB SQL over the same stored data
  (``Store.sql``, view ``events``), returning both events' columns per pair
  (what a correlation holds) and ``count(*)``, with the pair counts checked
  equal; and (metric ``throughput_native``, at most 2M events) the faster of
  DuckDB and chDB running that SQL on their own native tables of the same
  events (loaded once, not timed).
* **live-latency**: that join subscribed (``store.subscribe(..., callback=)``)
  while a feeder thread appends 1k-event batches at 100k events/s, paced by
  the wall clock: per correlation, the time from the WAL commit of the batch
  that completed it (the commit feed's ``committed_ns``) to the callback, and
  from that ``append`` returning to the callback. Baseline: a plain
  ``store.follow()`` reader on the same feed (commit to receipt). Also the
  highest rate (100k, 200k, 400k, ... events/s) sustained with a p99 commit
  to delivery within 20 ms.
* **live-state**: a join whose keys never complete (:data:`STATE_CORQL`) fed
  events in 50k batches through :class:`~tidal.correlate.live.LiveExecutor`
  directly (no store, no appends), in a fresh process with ``max_state_bytes``
  set: its peak RSS over the process's RSS before it, the state it reports and
  the events it evicted.

``CorQL and`` pairs each anchor event with the earliest unused partner of its
key within the window, and uses both up. In ``services`` a request touches
each service at most once (checked on the data), so the pairs are exactly the
(frontend, checkout) event pairs of one ``request_id`` with ``|dt| <= 5 s``,
which SQL counts directly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tidal.bench import workloads
from tidal.bench.cases import open_store
from tidal.bench.figures import Context, Figure, median_of, seconds
from tidal.bench.registry import case

if TYPE_CHECKING:
    from tidal.api import Store
    from tidal.correlate.result import Correlation

__all__: list[str] = []

JOIN_CORQL = ('events({service="frontend"}) and on(request_id) within(5s) '
              'events({service="checkout"})')
WITHIN_NS = 5 * 10**9
_PAIRS = ("FROM events a JOIN events b ON a.request_id = b.request_id "
          "WHERE a.service = 'frontend' AND b.service = 'checkout' "
          "AND abs({ns}(b.timestamp) - {ns}(a.timestamp)) <= " + str(WITHIN_NS))
DUCK_PAIRS = _PAIRS.format(ns="epoch_ns")
CHDB_PAIRS = _PAIRS.format(ns="toUnixTimestamp64Nano")
UNIQUE_SQL = ("SELECT count(*) - count(DISTINCT request_id) FROM events "
              "WHERE service IN ('frontend', 'checkout') GROUP BY service")
APPEND_EVENTS = 50_000
NATIVE_EVENTS = 2_000_000
MIB = 1 << 20


# --- corql-join -------------------------------------------------------------------------------

def _services_store(ctx: Context, n: int) -> Path:
    """A store of ``n`` services events, appended in batches with default settings."""
    path = ctx.fresh_dir(f"services-{n}") / "store"
    with open_store(path, entity_field="pod") as store:
        for chunk in workloads.services_stream(n, seed=17):
            for lo in range(0, chunk.num_rows, APPEND_EVENTS):
                store.append(chunk.slice(lo, APPEND_EVENTS))
    ctx.note(f"stored {n:,} services events by appends of {APPEND_EVENTS:,}")
    return path


def _pairs_sql(columns: list[str], template: str) -> str:
    """The pairs with every column of both events (``a_<name>``, ``b_<name>``)."""
    picked = [f'{side}."{c}" AS "{side}_{c}"' for side in "ab" for c in columns]
    return f"SELECT {', '.join(picked)} {template}"


def _end_ns(store: Store) -> int:
    return int(store.sql("SELECT epoch_ns(max(timestamp)) FROM events").column(0)[0].as_py()) + 1


def _correlate_s(store: Store, end: int, runs: int, expected: int) -> float:
    """Median seconds of the CorQL join (its pair count checked)."""
    found = len(list(store.correlate(JOIN_CORQL, end=end)))  # also loads the kernels
    if found != expected:
        raise RuntimeError(f"CorQL found {found} pairs, DuckDB {expected}")
    return median_of([seconds(lambda: list(store.correlate(JOIN_CORQL, end=end)))
                      for _ in range(runs)])


@case("corql-join", "a CorQL join of two services on request_id within 5 s vs DuckDB SQL")
def corql_join(ctx: Context) -> list[Figure]:
    n = ctx.size(10_000_000)
    path = _services_store(ctx, n)
    with open_store(path) as store:
        if any(v.as_py() for v in store.sql(UNIQUE_SQL).column(0)):
            raise RuntimeError("a request has two events of one service: the pair count "
                               "is no longer what SQL counts")
        columns = [c for c in store.sql("SELECT * FROM events LIMIT 0").column_names]
        rows_sql, count_sql = _pairs_sql(columns, DUCK_PAIRS), f"SELECT count(*) {DUCK_PAIRS}"
        expected = int(store.sql(count_sql).column(0)[0].as_py())
        if store.sql(rows_sql).num_rows != expected:
            raise RuntimeError("DuckDB's pair rows and count(*) differ")
        end = _end_ns(store)
        tidal_s = _correlate_s(store, end, ctx.runs, expected)
        rows_s = median_of([seconds(lambda: store.sql(rows_sql)) for _ in range(ctx.runs)])
        count_s = median_of([seconds(lambda: store.sql(count_sql)) for _ in range(ctx.runs)])
    ctx.note(f"{expected:,} pairs; CorQL {tidal_s * 1e3:,.0f} ms, DuckDB rows "
             f"{rows_s * 1e3:,.0f} ms, count(*) {count_s * 1e3:,.0f} ms")
    m = min(n, NATIVE_EVENTS)
    native = _native(ctx, path if m == n else _services_store(ctx, m),
                     tidal_s if m == n else None)
    return [
        Figure("corql-join", "services", n, "throughput", n / tidal_s, "events/s",
               "duckdb sql (Store.sql) join, both events' columns per pair, same data",
               n / rows_s, runs=ctx.runs),
        Figure("corql-join", "services", n, "throughput_count", n / tidal_s, "events/s",
               "duckdb sql (Store.sql) count(*) of the same join", n / count_s,
               runs=ctx.runs),
        Figure("corql-join", "services", m, "throughput_native", m / native[0], "events/s",
               f"{native[1]}, same join on its own native table", m / native[2],
               runs=ctx.runs),
    ]


def _native(ctx: Context, path: Path, tidal_s: float | None) -> tuple[float, str, float]:
    """(CorQL seconds, the faster native engine, its seconds) on the store at ``path``:
    DuckDB (an in-memory table) and chDB (a MergeTree ordered by service and time),
    each loaded once with the same events."""
    from tidal.bench.reads import chdb_installed

    with open_store(path) as store:
        table = store.scan().read_all().drop_columns(["_seq"])
        columns = table.column_names
        expected = int(store.sql(f"SELECT count(*) {DUCK_PAIRS}").column(0)[0].as_py())
        if tidal_s is None:
            tidal_s = _correlate_s(store, _end_ns(store), ctx.runs, expected)
    times = {"duckdb": _duckdb_native(table, _pairs_sql(columns, DUCK_PAIRS), expected,
                                      ctx.runs)}
    if chdb_installed():
        parquet = ctx.tmp / "native.parquet"
        pq.write_table(table, parquet)
        del table
        times["chdb"] = _chdb_native(ctx.tmp / "chdb", parquet,
                                     _pairs_sql(columns, CHDB_PAIRS), expected, ctx.runs)
    else:
        ctx.note("chDB is not installed (make bench installs it): DuckDB native only")
    ctx.note("native tables: " + ", ".join(f"{k} {v * 1e3:,.0f} ms" for k, v in times.items())
             + f"; CorQL {tidal_s * 1e3:,.0f} ms")
    best = min(times, key=times.__getitem__)
    return tidal_s, best, times[best]


def _duckdb_native(table: pa.Table, sql: str, expected: int, runs: int) -> float:
    con = duckdb.connect()
    try:
        con.register("loaded", table)
        con.execute("CREATE TABLE events AS SELECT * FROM loaded")
        con.unregister("loaded")
        if con.sql(sql).to_arrow_table().num_rows != expected:
            raise RuntimeError("DuckDB (native table) found another pair count")
        return median_of([seconds(lambda: con.sql(sql).to_arrow_table()) for _ in range(runs)])
    finally:
        con.close()


def _chdb_native(db: Path, parquet: Path, sql: str, expected: int, runs: int) -> float:
    from chdb import session

    sess = session.Session(str(db))
    try:
        sess.query("CREATE TABLE events ENGINE = MergeTree ORDER BY (service, timestamp) AS "
                   f"SELECT * FROM file('{parquet}', Parquet) "
                   "SETTINGS schema_inference_make_columns_nullable = 0")

        def query() -> pa.Table:
            out = sess.query(sql, "ArrowTable")
            assert isinstance(out, pa.Table)
            return out

        if query().num_rows != expected:
            raise RuntimeError("chDB (native table) found another pair count")
        return median_of([seconds(query) for _ in range(runs)])
    finally:
        sess.close()


# --- live-latency -----------------------------------------------------------------------------

LIVE_BATCH = 1_000
BASE_RATE = 100_000
RATE_CAP = 3_200_000
RATE_FLOOR = 3_125
SUSTAINED_P99_MS = 20.0
POOL_EVENTS = 1_000_000


def _copies(pool: pa.Table, events: int, batch: int) -> Iterator[pa.Table]:
    """``events`` events in ``batch`` slices: the pool again and again, each copy later
    in time than the one before and (after the first) with its own ``request_id``s."""
    ts = pool.column("timestamp").cast(pa.int64())
    span = int(pc.max(ts).as_py()) - int(pc.min(ts).as_py()) + 10**9
    at_ts, at = pool.schema.get_field_index("timestamp"), pool.schema.get_field_index("request_id")
    sent, copy = 0, 0
    while sent < events:
        for lo in range(0, pool.num_rows, batch):
            part = pool.slice(lo, min(batch, events - sent))
            if copy:
                shifted = pc.add(part.column(at_ts).cast(pa.int64()), copy * span)
                part = part.set_column(at_ts, "timestamp", shifted.cast(workloads.TIMESTAMP))
                part = part.set_column(at, "request_id", pc.binary_join_element_wise(
                    part.column(at), f"-{copy}", ""))
            yield part
            sent += part.num_rows
            if sent >= events:
                return
        copy += 1


class _Commits:
    """When each commit happened (``perf_counter_ns``), by its last ``_seq``: a follower
    of the store whose ``offer`` records the feed's ``committed_ns`` and queues nothing."""

    def __init__(self, store: Store) -> None:
        self.follower = store.follow()
        self.seqs: list[int] = []
        self.at: list[int] = []
        self.follower.offer = self._offer  # type: ignore[method-assign]

    def _offer(self, batches: list[pa.RecordBatch], committed_ns: int) -> None:
        self.seqs.append(int(batches[-1].column("_seq")[-1].as_py()))
        self.at.append(committed_ns)

    def of(self, seqs: np.ndarray) -> np.ndarray:
        """The commit time of the batch holding each ``_seq``."""
        return np.asarray(self.at)[np.searchsorted(np.asarray(self.seqs), seqs)]


def _feed(store: Store, batches: Iterator[pa.Table], per_s: float
          ) -> tuple[np.ndarray, np.ndarray, float]:
    """Append ``batches`` from a thread of its own at ``per_s`` events/s (the wall clock
    paces it): each append's last ``_seq``, when it returned (ns), and the seconds taken."""
    seqs: list[int] = []
    at: list[int] = []
    took = [0.0]

    def run() -> None:
        clock = time.perf_counter_ns
        start, sent = clock(), 0
        for batch in batches:
            wait = start + int(sent * 1e9 / per_s) - clock()
            if wait > 0:
                time.sleep(wait / 1e9)
            receipt = store.append(batch)
            at.append(clock())
            seqs.append(receipt.last_seq if receipt.last_seq is not None else -1)
            sent += batch.num_rows
        took[0] = (clock() - start) / 1e9

    feeder = threading.Thread(target=run, name="bench-feeder")
    feeder.start()
    feeder.join()
    return np.asarray(seqs), np.asarray(at), took[0]


def _wait_for(done: Callable[[int], bool], events: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done(events):
            return
        time.sleep(0.01)
    raise RuntimeError(f"the reader did not get all {events:,} events in {timeout_s:.0f} s")


def _live_run(ctx: Context, pool: pa.Table, events: int, per_s: float, *, plain: bool = False
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """Feed ``events`` events at ``per_s``; per delivery, commit to delivery and append
    return to delivery (ns), and the rate achieved. ``plain``: a ``follow()`` reader
    instead of the subscription (per batch; append-return latencies empty)."""
    got: list[tuple[int, Correlation]] = []
    received: list[tuple[int, int]] = []  # plain: (last _seq, when)
    with open_store(ctx.fresh_dir("live"), entity_field="pod") as store:
        commits = _Commits(store)
        if plain:
            follower = store.follow()

            def read() -> None:
                for batch in follower:
                    received.append((int(batch.column("_seq")[-1].as_py()),
                                     time.perf_counter_ns()))

            reader = threading.Thread(target=read, name="bench-follower")
            reader.start()
            seqs, at, took = _feed(store, _copies(pool, events, LIVE_BATCH), per_s)
            _wait_for(lambda k: follower.next_seq >= k, events)
            follower.close()
            reader.join()
        else:
            def deliver(c: Correlation) -> None:
                got.append((time.perf_counter_ns(), c))

            sub = store.subscribe(JOIN_CORQL, language="corql", callback=deliver)
            seqs, at, took = _feed(store, _copies(pool, events, LIVE_BATCH), per_s)
            _wait_for(lambda k: sub.stats().events >= k, events)
            sub.close()
            stats = sub.stats()
            _check_live(store, len(got), stats.late)
            if stats.behind:
                ctx.note(f"the subscription fell behind the feed {stats.behind} times")
        commits.follower.close()
    if plain:
        last = np.asarray([s for s, _ in received], np.int64)
        when = np.asarray([t for _, t in received], np.int64)
        return when - commits.of(last), np.zeros(0, np.int64), events / took
    last = np.asarray([pc.max(c.events.column("_seq")).as_py() for _, c in got], np.int64)
    when = np.asarray([t for t, _ in got], np.int64)
    return (when - commits.of(last), when - at[np.searchsorted(seqs, last)], events / took)


def _check_live(store: Store, found: int, late: int) -> None:
    """Live finds the pairs the batch query finds, but those of late events (dropped)."""
    end = _end_ns(store)
    expected = len(list(store.correlate(JOIN_CORQL, end=end)))
    if not expected - late <= found <= expected:
        raise RuntimeError(f"live found {found} pairs; the batch query {expected}, "
                           f"with {late} late events")


def _ms(latencies_ns: np.ndarray, q: float) -> float:
    return float(np.percentile(latencies_ns, q)) / 1e6 if len(latencies_ns) else 0.0


def _sustained(ctx: Context, pool: pa.Table, n: int, base_ok: bool) -> int:
    """The highest rate (the base rate times a power of 2) with a p99 commit to delivery
    within :data:`SUSTAINED_P99_MS` that the feeder kept up: upwards from the base
    rate when it passed, else downwards (0: not even :data:`RATE_FLOOR`)."""
    up = base_ok
    per_s = 2 * BASE_RATE if up else BASE_RATE // 2
    sustained = BASE_RATE if up else 0
    while RATE_FLOOR <= per_s <= RATE_CAP:
        commit, _, rate = _live_run(ctx, pool, max(LIVE_BATCH, n * per_s // BASE_RATE), per_s)
        p99 = _ms(commit, 99)
        ok = rate >= 0.95 * per_s and p99 <= SUSTAINED_P99_MS
        ctx.note(f"{per_s:,} events/s: achieved {rate:,.0f}, p99 commit to delivery "
                 f"{p99:,.2f} ms: {'sustained' if ok else 'not sustained'}")
        if ok:
            sustained = max(sustained, per_s)
        if ok != up:
            break
        per_s = per_s * 2 if up else per_s // 2
    return sustained


@case("live-latency", "a subscribed CorQL join at 100k events/s: WAL commit to callback")
def live_latency(ctx: Context) -> list[Figure]:
    n = ctx.size(BASE_RATE * 5)  # 5 s at the base rate; every rate runs as long
    pool = workloads.services(min(POOL_EVENTS, n * RATE_CAP // BASE_RATE), seed=31)
    pool = pool.combine_chunks()
    _live_run(ctx, pool, 2 * LIVE_BATCH, BASE_RATE)  # (loads numba and the kernels)
    runs: dict[str, list[tuple[float, float]]] = {"commit": [], "append": [], "plain": []}
    for _ in range(ctx.runs):
        commit, append, rate = _live_run(ctx, pool, n, BASE_RATE)
        runs["commit"].append((_ms(commit, 50), _ms(commit, 99)))
        runs["append"].append((_ms(append, 50), _ms(append, 99)))
        plain, _, _ = _live_run(ctx, pool, n, BASE_RATE, plain=True)
        runs["plain"].append((_ms(plain, 50), _ms(plain, 99)))
    ctx.note(f"{len(commit):,} correlations at {rate:,.0f} events/s achieved")
    base_p99 = median_of([p[1] for p in runs["commit"]])
    sustained = _sustained(ctx, pool, n, rate >= 0.95 * BASE_RATE
                           and base_p99 <= SUSTAINED_P99_MS)
    figures = []
    for i, q in enumerate((50, 99)):
        figures.append(Figure(
            "live-latency", "services", n, f"p{q}_commit_to_delivery",
            median_of([p[i] for p in runs["commit"]]), "ms",
            "a plain store.follow() reader, commit to receipt, same feed",
            median_of([p[i] for p in runs["plain"]]), higher_is_better=False, runs=ctx.runs))
        figures.append(Figure(
            "live-latency", "services", n, f"p{q}_append_to_delivery",
            median_of([p[i] for p in runs["append"]]), "ms", runs=ctx.runs))
    figures.append(Figure("live-latency", "services", n, "max_sustained_rate", sustained,
                          "events/s"))
    return figures


# --- live-state -------------------------------------------------------------------------------

STATE_CORQL = ('events({service="frontend"}) and on(request_id) within(1h) '
               'events({service="nonexistent"})')
STATE_BYTES = 64 * MIB
STATE_BATCH = 50_000

STATE_PROBE = """
import gc, json, sys
import numpy as np, pyarrow as pa
import tidal
from tidal.bench import corql, workloads
from tidal.correlate.corql.run import live_planner
from tidal.correlate.live import LiveExecutor

def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key)) * 1024

n, bound, batch = (int(a) for a in sys.argv[1:4])
pool = workloads.services(min(n, corql.POOL_EVENTS), seed=41).combine_chunks()
store = tidal.open(None, entity_field="pod")
store.append(pool.slice(0, 10))
with store.snapshot() as snap:
    schema = snap.schema
store.close()
planner = live_planner(corql.STATE_CORQL, ts_field="timestamp")

def run(events, bound):
    ex = LiveExecutor(planner, schema, ts_field="timestamp", max_keys=None,
                      max_state_bytes=bound)
    seq, top = 0, 0
    for part in corql._copies(pool, events, batch):
        ex.push(part.add_column(0, "_seq", pa.array(np.arange(seq, seq + part.num_rows))))
        seq += part.num_rows
        top = max(top, ex.stats.state_bytes)
    return ex, top

run(2000, bound)  # (loads numba and the kernels)
gc.collect()
pa.default_memory_pool().release_unused()
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS (pool generation peaked above it)
except OSError:
    pass
before = status("VmRSS:")
ex, top = run(n, bound)
s = ex.refresh()
print(json.dumps({"before": before, "peak": status("VmHWM:"), "state_max": top,
                  "state": s.state_bytes, "evicted": s.evicted, "keys": s.keys,
                  "held": s.held, "events": s.events, "correlations": s.correlations}))
"""
"""Runs the never-completing join over ``n`` events with ``max_state_bytes``; prints
what it measured as JSON."""


@case("live-state", "peak RSS of a live CorQL join whose keys never complete, "
                    "max_state_bytes=64 MiB")
def live_state(ctx: Context) -> list[Figure]:
    n = ctx.size(10_000_000)
    bound = min(STATE_BYTES, 32 * MIB * n // 1_000_000)  # (small runs: a bound they reach)
    out = subprocess.run([sys.executable, "-c", STATE_PROBE, str(n), str(bound),
                          str(STATE_BATCH)], capture_output=True, text=True, check=True,
                         timeout=3600)
    got = json.loads(out.stdout)
    if got["events"] != n or got["correlations"]:
        raise RuntimeError(f"the probe saw {got['events']} events and {got['correlations']} "
                           f"correlations, expected {n} and none")
    if not got["evicted"]:
        raise RuntimeError("nothing was evicted: the state never reached its bound")
    growth = (got["peak"] - got["before"]) / MIB
    ctx.note(f"RSS before {got['before'] / MIB:,.0f} MiB, peak {got['peak'] / MIB:,.0f} MiB "
             f"(+{growth:,.1f}, bound {bound / MIB:,.1f} MiB: "
             f"{'within' if growth <= bound / MIB else 'OVER'}); state at most "
             f"{got['state_max'] / MIB:,.1f} MiB; {got['evicted']:,} evicted; "
             f"{got['keys']:,} keys, {got['held']:,} held at the end")
    limit = "max_state_bytes (the configured bound)"
    return [
        Figure("live-state", "services", n, "peak_rss_growth", growth, "MiB", limit,
               bound / MIB, higher_is_better=False),
        Figure("live-state", "services", n, "state_bytes_max", got["state_max"] / MIB, "MiB",
               limit, bound / MIB, higher_is_better=False),
        Figure("live-state", "services", n, "evicted", got["evicted"], "events"),
    ]
