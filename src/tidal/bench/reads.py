"""The read-at-scale benchmarks of ``tidal bench``: compact, timeline-real,
open-first-timeline, scan-full and scan-window.

They share one store of ``services`` events built the way users build one:
appends of 10k events with default settings (group commit, automatic flushes
and compactions), then ``compact()``. The ``compact`` case builds it and times
that; the others reuse it when it was built with the same layout (same
``--events``, same segment format and defaults), and build it otherwise. The
store lives under ``$TIDAL_BENCH_DATA`` (default: ``<tmp>/tidal-bench-data``), so
that a 100M-event store is built once (``tidal bench compact --events 100000000``).

*Cold* means the segment files were evicted from the page cache
(``posix_fadvise(DONTNEED)``) and the entity was never read by the process;
*warm* means the same queries ran once before.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tidal.bench import workloads
from tidal.bench.cases import _latencies_us, _percentile, open_store
from tidal.bench.figures import Context, Figure, median_of, seconds
from tidal.bench.registry import case
from tidal.config import StoreConfig
from tidal.store import segment

DEFAULT_EVENTS = 10_000_000
APPEND_EVENTS = 10_000
QUERIES = 500
COLD_QUERIES = 60
HOUR_NS = 3600 * 10**9
WINDOW_LIMIT = 1000
ENTITY = "pod"


def data_dir() -> Path:
    """Where the shared benchmark stores live (``$TIDAL_BENCH_DATA``)."""
    found = os.environ.get("TIDAL_BENCH_DATA")
    return Path(found) if found else Path(tempfile.gettempdir()) / "tidal-bench-data"


def _layout() -> dict[str, Any]:
    """What a reused store must have been built with."""
    return {"row_group_rows": segment.ROW_GROUP_ROWS, "flush": asdict(segment.FLUSH),
            "compact": asdict(segment.COMPACT), "defaults": asdict(StoreConfig())}


@dataclass(frozen=True)
class Built:
    """A shared store and what building it measured."""

    path: Path
    events: int
    append_s: float
    compact_s: float
    compacted_events: int
    bytes_before: float
    bytes_after: float
    segments_before: int
    segments_after: int


def build_store(ctx: Context, n: int) -> Built:
    """Build the shared ``services`` store of ``n`` events afresh: 10k-event appends
    with default settings, ``flush()``, then a timed ``compact()``."""
    path = data_dir() / f"services-{n}"
    marker = path.parent / f"services-{n}.json"
    marker.unlink(missing_ok=True)  # first: a build cut short is never taken for a store
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    append_s = 0.0
    with open_store(path, entity_field=ENTITY) as store:
        for chunk in workloads.services_stream(n, seed=11):
            started = time.perf_counter()
            for lo in range(0, chunk.num_rows, APPEND_EVENTS):
                store.append(chunk.slice(lo, APPEND_EVENTS))
            append_s += time.perf_counter() - started
        store.flush()
        before = store.stats()
        compact_s = seconds(store.compact)
        after = store.stats()
    if after["events"] != n:
        raise RuntimeError(f"the store holds {after['events']} events, expected {n}")
    built = Built(path, n, append_s, compact_s, before["uncompacted_events"],
                  before["bytes_per_event_disk"], after["bytes_per_event_disk"],
                  before["segments"], after["segments"])
    record = {**asdict(built), "path": str(path), "layout": _layout()}
    marker.write_text(json.dumps(record))
    ctx.note(f"built {n:,} events in {append_s:.1f} s of appends; compact() {compact_s:.1f} s; "
             f"{before['segments']} -> {after['segments']} segments")
    return built


def shared_store(ctx: Context, n: int) -> Path:
    """The shared store of ``n`` events, reused when built with today's layout."""
    path = data_dir() / f"services-{n}"
    marker = path.parent / f"services-{n}.json"
    if path.is_dir() and marker.is_file():
        record = json.loads(marker.read_text())
        if record.get("layout") == json.loads(json.dumps(_layout())):
            ctx.note(f"reusing the store at {path}")
            return path
    return build_store(ctx, n).path


def chdb_installed() -> bool:
    """Whether chDB (the ``bench`` extra, installed by ``make bench``) is importable."""
    try:
        import chdb  # noqa: F401
    except ImportError:
        return False
    return True


def segment_files(path: Path) -> list[str]:
    """The store's Parquet segment files."""
    return sorted(glob.glob(str(path / "segments" / "*.parquet")))


def evict(path: Path) -> None:
    """Drop every file under ``path`` from the page cache (clean pages only; needs no root)."""
    for root, _, names in os.walk(path):
        for name in names:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def read_bytes() -> int:
    """Bytes this process caused to be read from storage (``/proc/self/io``), or -1."""
    try:
        with open("/proc/self/io", encoding="ascii") as f:
            for line in f:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


# --- compact ----------------------------------------------------------------------------------

@case("compact", "compact() of a store built by 10k-event appends (default settings)")
def compact(ctx: Context) -> list[Figure]:
    """Tidal: ``compact()`` after the appends and a ``flush()``: events rewritten per
    second, bytes/event before and after. Baseline: raw pyarrow doing the same work
    on 2M of the events (read the Parquet files, sort by (pod, timestamp), write
    zstd Parquet in row groups of the same size)."""
    n = ctx.size(DEFAULT_EVENTS)
    built = build_store(ctx, n)
    files = segment_files(built.path)
    chosen, rows = [], 0
    for name in files:
        chosen.append(name)
        rows += pq.ParquetFile(name).metadata.num_rows
        if rows >= 2_000_000:
            break
    out = ctx.tmp / "baseline.parquet"

    def baseline() -> None:
        table = pq.read_table(chosen).sort_by([(ENTITY, "ascending"), ("timestamp", "ascending")])
        pq.write_table(table, out, compression="zstd", row_group_size=segment.ROW_GROUP_ROWS)

    base_s = median_of([seconds(baseline) for _ in range(ctx.runs)])
    rate = built.compacted_events / built.compact_s if built.compact_s else 0.0
    return [
        Figure("compact", "services", n, "throughput", rate, "events/s",
               "pyarrow read + sort + write (2M events)", rows / base_s),
        Figure("compact", "services", n, "bytes_per_event_after", built.bytes_after, "B",
               "bytes/event before compact()", built.bytes_before, higher_is_better=False),
        Figure("compact", "services", n, "append_throughput", n / built.append_s, "events/s"),
        Figure("compact", "services", n, "segments_after", built.segments_after, "segments",
               "segments before compact()", built.segments_before, higher_is_better=False),
    ]


# --- timelines --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Queries:
    keys: list[str]
    starts: np.ndarray  # one random 1-hour window per key


def _queries(path: Path, count: int, seed: int) -> _Queries:
    names: set[str] = set()
    low, high = None, None
    with open_store(path, entity_field=ENTITY) as store:
        for batch in store.scan([ENTITY, "timestamp"], order=None):
            names.update(pc.unique(batch.column(1)).to_pylist())
            lo, hi = (int(v.as_py()) for v in pc.min_max(batch.column(2).cast(pa.int64())).values())
            low = lo if low is None else min(low, lo)
            high = hi if high is None else max(high, hi)
    assert low is not None and high is not None
    pods = sorted(names)
    rng = np.random.default_rng(seed)
    keys = [pods[i] for i in rng.permutation(len(pods))[:count]]
    keys += [pods[i] for i in rng.integers(0, len(pods), max(0, count - len(keys)))]
    return _Queries(keys, rng.integers(low, max(low + 1, high - HOUR_NS), len(keys)))


def _check(store: Any, key: str, start: int | None, limit: int | None, got: pa.Table) -> None:
    """Refuse to time a timeline that returns the wrong rows (checked against scan)."""
    where = pc.field(ENTITY) == key
    wanted = store.scan(where=where, start=start,
                        end=None if start is None else start + HOUR_NS).read_all()
    wanted = wanted.sort_by([("timestamp", "ascending"), ("_seq", "ascending")])
    if limit is not None:
        wanted = wanted.slice(0, limit)
    if got.column("_seq").to_pylist() != wanted.column("_seq").to_pylist():
        raise RuntimeError(f"timeline({key!r}) differs from scan()")


@case("timeline-real", "timelines on the appended store, warm and cold, vs chDB MergeTree")
def timeline_real(ctx: Context) -> list[Figure]:
    """Tidal: ``timeline(pod)`` (full) and ``timeline(pod, t, t + 1h, limit=1000)``
    on the shared store (default settings), warm (second pass over the same
    queries) and cold (files evicted from the page cache before each query, pods
    not read before). Baseline: chDB, the same events in a MergeTree ordered by
    (pod, timestamp): ``SELECT * WHERE pod = ? [AND timestamp in window] ORDER BY
    timestamp [LIMIT 1000]``, warm and cold the same way."""
    n = ctx.size(DEFAULT_EVENTS)
    path = shared_store(ctx, n)
    queries = _queries(path, QUERIES + 2 * COLD_QUERIES + 1, seed=21)
    warm_keys = queries.keys[:QUERIES]
    cold_keys = queries.keys[QUERIES:QUERIES + COLD_QUERIES]
    starts = [int(s) for s in queries.starts]
    primer = queries.keys[-1]
    figures: list[Figure] = []
    tidal: dict[str, list[np.ndarray]] = {}
    with open_store(path, entity_field=ENTITY) as store:
        _check(store, warm_keys[0], None, None, store.timeline(warm_keys[0]))
        _check(store, warm_keys[1], starts[1], WINDOW_LIMIT,
               store.timeline(warm_keys[1], starts[1], starts[1] + HOUR_NS, limit=WINDOW_LIMIT))
        store.timeline(primer)  # every segment's footer and index loaded

        def window(i: int) -> object:
            return store.timeline(queries.keys[i], starts[i], starts[i] + HOUR_NS,
                                  limit=WINDOW_LIMIT)

        tidal["cold_full"] = _cold(path, store.timeline, cold_keys, ctx.runs)
        tidal["cold_window"] = _cold(path, window, list(range(QUERIES + COLD_QUERIES,
                                                              QUERIES + 2 * COLD_QUERIES)),
                                     ctx.runs)
        for k in warm_keys:  # the warm-up pass
            store.timeline(k)
        tidal["warm_full"] = _latencies_us(store.timeline, warm_keys, ctx.budget_s, ctx.runs)
        indices = list(range(QUERIES))
        for i in indices:
            window(i)
        tidal["warm_window"] = _latencies_us(window, indices, ctx.budget_s, ctx.runs)
        cache = store.stats()["cache_bytes"]
    ctx.note(f"tidal cache after the warm passes: {cache / (1 << 20):,.0f} MiB")
    chdb = _chdb_timelines(ctx, path, queries, starts) if chdb_installed() else None
    if chdb is None:
        ctx.note("chDB is not installed (make bench installs it): no baseline")
    for variant in ("warm_full", "warm_window", "cold_full", "cold_window"):
        for q in (50, 99):
            figures.append(Figure(
                "timeline-real", "services", n, f"p{q}_{variant}",
                _percentile(tidal[variant], q), "us",
                None if chdb is None else "chdb MergeTree order by (pod, timestamp)",
                None if chdb is None else _percentile(chdb[variant], q),
                higher_is_better=False, runs=len(tidal[variant])))
    return figures


def _cold(path: Path, query: Callable[[Any], object], keys: list[Any],
          rounds: int) -> list[np.ndarray]:
    """Latencies (µs) of ``query(key)`` with the files under ``path`` evicted before each."""
    out = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        evict(path)
        started = time.perf_counter_ns()
        query(key)
        out[i] = time.perf_counter_ns() - started
    return [part / 1e3 for part in np.array_split(out, min(rounds, len(out)))]


def _chdb_timelines(ctx: Context, path: Path, queries: _Queries,
                    starts: list[int]) -> dict[str, list[np.ndarray]]:
    from chdb import session

    db_path = ctx.tmp / "chdb"
    sess = session.Session(str(db_path))
    try:
        sess.query(f"CREATE TABLE t ENGINE = MergeTree ORDER BY ({ENTITY}, timestamp) AS "
                   f"SELECT * EXCEPT (_seq) FROM file('{path}/segments/*.parquet', Parquet) "
                   "SETTINGS schema_inference_make_columns_nullable = 0")
        full_sql = f"SELECT * FROM t WHERE {ENTITY} = {{k:String}} ORDER BY timestamp"
        window_sql = (f"SELECT * FROM t WHERE {ENTITY} = {{k:String}} "
                      "AND timestamp >= fromUnixTimestamp64Nano({s:Int64}) "
                      "AND timestamp < fromUnixTimestamp64Nano({e:Int64}) "
                      f"ORDER BY timestamp LIMIT {WINDOW_LIMIT}")

        def full(key: str) -> object:
            return sess.query(full_sql, "ArrowTable", params={"k": key})

        def window(i: int) -> object:
            return sess.query(window_sql, "ArrowTable", params={
                "k": queries.keys[i], "s": starts[i], "e": starts[i] + HOUR_NS})

        expected = full(queries.keys[0])
        if not isinstance(expected, pa.Table) or expected.num_rows == 0:
            raise RuntimeError("chDB returned no timeline")
        out: dict[str, list[np.ndarray]] = {}
        some = QUERIES // 5  # chDB queries take milliseconds: fewer of them
        out["cold_full"] = _cold(db_path, full, queries.keys[QUERIES:QUERIES + COLD_QUERIES],
                                 ctx.runs)
        out["cold_window"] = _cold(db_path, window,
                                   list(range(QUERIES + COLD_QUERIES, QUERIES + 2 * COLD_QUERIES)),
                                   ctx.runs)
        for k in queries.keys[:some]:
            full(k)
        out["warm_full"] = _latencies_us(full, queries.keys[:some], ctx.budget_s, ctx.runs)
        for i in range(some):
            window(i)
        out["warm_window"] = _latencies_us(window, list(range(some)), ctx.budget_s, ctx.runs)
    finally:
        sess.close()
    return out


# --- open and read one timeline in a fresh process ----------------------------------------------

_PROLOGUE = """
import importlib.abc, sys, time
class HidePandas(importlib.abc.MetaPathFinder):  # as if pandas were not installed
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "pandas":
            raise ModuleNotFoundError(name)
if sys.argv[3] == "hide-pandas":
    sys.meta_path.insert(0, HidePandas())
started = time.perf_counter()
"""
_EPILOGUE = """
took = time.perf_counter() - started
peak = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status")
            if line.startswith("VmHWM:"))
print(took, rows, peak)
"""
_TIDAL_FIRST = _PROLOGUE + """
import tidal
rows = tidal.open(sys.argv[1], entity_field="pod").timeline(sys.argv[2]).num_rows
""" + _EPILOGUE
_DUCKDB_FIRST = _PROLOGUE + """
import duckdb
rows = duckdb.connect().sql("SELECT * FROM read_parquet(?) WHERE pod = ? ORDER BY timestamp",
                            params=[sys.argv[1] + "/segments/*.parquet", sys.argv[2]]
                            ).to_arrow_table().num_rows
""" + _EPILOGUE
_CHDB_FIRST = _PROLOGUE + """
from chdb import session
rows = session.Session(sys.argv[1]).query(
    "SELECT * FROM t WHERE pod = {k:String} ORDER BY timestamp", "ArrowTable",
    params={"k": sys.argv[2]}).num_rows
""" + _EPILOGUE


def _fresh(script: str, *args: str) -> tuple[float, int, int]:
    """Run ``script`` in a fresh interpreter: (seconds it reports, rows, peak RSS bytes).

    Peak RSS is the process's own ``VmHWM``: ``ru_maxrss`` would keep the size of
    the benchmark process it was forked from.
    """
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, check=True, timeout=600)
    took, rows, rss = done.stdout.split()
    return float(took), int(rows), int(rss)


@case("open-first-timeline", "a fresh process opens the store and reads one timeline")
def open_first_timeline(ctx: Context) -> list[Figure]:
    """Tidal: ``import tidal; tidal.open(path).timeline(pod)`` in a new interpreter,
    timed inside it (imports included), with its peak RSS; page cache warm, then
    evicted. Baselines in the same run: DuckDB ``read_parquet`` over the segment
    files, and chDB on a MergeTree of the same events."""
    n = ctx.size(DEFAULT_EVENTS)
    path = shared_store(ctx, n)
    queries = _queries(path, ctx.runs * 2, seed=31)
    chdb_path = ctx.tmp / "chdb"
    engines = [("tidal", _TIDAL_FIRST, path), ("duckdb", _DUCKDB_FIRST, path)]
    if chdb_installed():
        _chdb_load(chdb_path, path)
        engines.append(("chdb", _CHDB_FIRST, chdb_path))
    else:
        ctx.note("chDB is not installed (make bench installs it): DuckDB baseline only")
    figures = []
    for state in ("warm", "cold"):
        runs: dict[str, list[tuple[float, int, int]]] = {name: [] for name, _, _ in engines}
        if state == "warm":
            runs["tidal_no_pandas"] = []
        for r in range(ctx.runs):
            key = queries.keys[r if state == "warm" else ctx.runs + r]
            for name, script, where in engines:
                if state == "cold":
                    evict(where)
                runs[name].append(_fresh(script, str(where), key, "as-installed"))
            if state == "warm":
                runs["tidal_no_pandas"].append(_fresh(_TIDAL_FIRST, str(path), key,
                                                      "hide-pandas"))
            if len({rows for _, rows, _ in (runs[k][-1] for k in runs)}) != 1:
                raise RuntimeError(f"the engines disagree on timeline({key!r}): {runs}")
        runs = {k: v for k, v in runs.items() if v}
        wall = {k: median_of([t for t, _, _ in v]) for k, v in runs.items()}
        rss = {k: median_of([m / (1 << 20) for _, _, m in v]) for k, v in runs.items()}
        if "tidal_no_pandas" in wall:  # pyarrow imports pandas whenever it is installed
            figures.append(Figure("open-first-timeline", "services", n,
                                  f"wall_{state}_without_pandas",
                                  wall["tidal_no_pandas"] * 1e3, "ms",
                                  "duckdb in a fresh process", wall["duckdb"] * 1e3,
                                  higher_is_better=False, runs=ctx.runs))
        for base in [name for name in runs if name not in ("tidal", "tidal_no_pandas")]:
            figures.append(Figure("open-first-timeline", "services", n, f"wall_{state}",
                                  wall["tidal"] * 1e3, "ms", f"{base} in a fresh process",
                                  wall[base] * 1e3, higher_is_better=False, runs=ctx.runs))
        figures.append(Figure("open-first-timeline", "services", n, f"peak_rss_{state}",
                              rss["tidal"], "MiB", "duckdb in a fresh process", rss["duckdb"],
                              higher_is_better=False, runs=ctx.runs))
    return figures


def _chdb_load(db_path: Path, path: Path) -> None:
    from chdb import session

    sess = session.Session(str(db_path))
    try:
        sess.query(f"CREATE TABLE t ENGINE = MergeTree ORDER BY ({ENTITY}, timestamp) AS "
                   f"SELECT * EXCEPT (_seq) FROM file('{path}/segments/*.parquet', Parquet) "
                   "SETTINGS schema_inference_make_columns_nullable = 0")
    finally:
        sess.close()


# --- scans ------------------------------------------------------------------------------------

def _drain(reader: pa.RecordBatchReader) -> int:
    return sum(batch.num_rows for batch in reader)


@case("scan-full", "every column of every event through Store.scan, vs DuckDB SELECT *")
def scan_full(ctx: Context) -> list[Figure]:
    """Tidal: ``store.scan(order=None)`` (as stored) drained batch by batch, page cache
    warm. Baseline: DuckDB ``SELECT * FROM read_parquet(<the store's segment
    files>)`` streamed into Arrow record batches. Also ``store.scan()`` in ``_seq``
    order against DuckDB's ``... ORDER BY _seq``."""
    n = ctx.size(DEFAULT_EVENTS)
    path = shared_store(ctx, n)
    files = segment_files(path)
    times: dict[str, list[float]] = {"tidal": [], "duck": [], "tidal_seq": [], "duck_seq": []}
    with open_store(path, entity_field=ENTITY) as store:
        for _ in range(ctx.runs):
            for name, read in (("tidal", lambda: _drain(store.scan(order=None))),
                               ("duck", lambda: _duckdb_scan(files)),
                               ("tidal_seq", lambda: _drain(store.scan(order="seq"))),
                               ("duck_seq", lambda: _duckdb_scan(files, order_by="_seq"))):
                started = time.perf_counter()
                rows = read()
                times[name].append(time.perf_counter() - started)
                if rows != n:
                    raise RuntimeError(f"{name} gave {rows} rows, expected {n}")
    rate = {k: n / median_of(v) for k, v in times.items()}
    return [Figure("scan-full", "services", n, "throughput", rate["tidal"], "events/s",
                   "duckdb SELECT * over the segment files", rate["duck"], runs=ctx.runs),
            Figure("scan-full", "services", n, "throughput_seq_order", rate["tidal_seq"],
                   "events/s", "duckdb SELECT * ... ORDER BY _seq", rate["duck_seq"],
                   runs=ctx.runs)]


def _duckdb_scan(files: list[str], start: int | None = None, order_by: str | None = None
                 ) -> int:
    con = duckdb.connect()
    try:
        sql = "SELECT * FROM read_parquet(?)"
        params: list[object] = [files]
        if start is not None:
            sql += " WHERE epoch_ns(timestamp) >= ?"
            params.append(start)
        if order_by is not None:
            sql += f" ORDER BY {order_by}"
        return _drain(con.sql(sql, params=params).to_arrow_reader(64 * 1024))
    finally:
        con.close()


@case("scan-window", "the last 1% of time through Store.scan: bytes read and time")
def scan_window(ctx: Context) -> list[Figure]:
    """Tidal: ``store.scan(start=<99th percentile of time>, order=None)``, cold (segment files
    evicted from the page cache: bytes read from storage, from ``/proc/self/io``)
    and warm. Baseline: DuckDB ``read_parquet(files) WHERE timestamp >= ...``."""
    n = ctx.size(DEFAULT_EVENTS)
    path = shared_store(ctx, n)
    files = segment_files(path)
    store_bytes = sum(os.path.getsize(f) for f in files)
    with open_store(path, entity_field=ENTITY) as store:
        times = store.scan(["timestamp"]).read_all().column("timestamp").cast(pa.int64())
        low, high = (int(v.as_py()) for v in pc.min_max(times).values())
        start = low + (high - low) * 99 // 100
        expected = int(pc.sum(pc.greater_equal(times, start)).as_py())
        cold_bytes, cold_s, warm_s, duck_bytes, duck_s = [], [], [], [], []
        for _ in range(ctx.runs):
            evict(path)
            before = read_bytes()
            started = time.perf_counter()
            rows = _drain(store.scan(start=start, order=None))
            cold_s.append(time.perf_counter() - started)
            cold_bytes.append(read_bytes() - before)
            warm_s.append(seconds(lambda: _drain(store.scan(start=start, order=None))))
            if rows != expected:
                raise RuntimeError(f"scan(start=...) gave {rows} rows, expected {expected}")
            evict(path)
            before = read_bytes()
            duck_s.append(seconds(lambda: _duckdb_scan(files, start)))
            duck_bytes.append(read_bytes() - before)
    ctx.note(f"{expected:,} events in the window; the store holds {store_bytes / (1 << 20):,.0f}"
             " MiB of segments")
    return [
        Figure("scan-window", "services", n, "bytes_read_share_cold",
               100 * median_of(cold_bytes) / store_bytes, "%",
               "duckdb, same files and filter", 100 * median_of(duck_bytes) / store_bytes,
               higher_is_better=False, runs=ctx.runs),
        Figure("scan-window", "services", n, "time_cold", median_of(cold_s) * 1e3, "ms",
               "duckdb, same files and filter (cold)", median_of(duck_s) * 1e3,
               higher_is_better=False, runs=ctx.runs),
        Figure("scan-window", "services", n, "time_warm", median_of(warm_s) * 1e3, "ms",
               runs=ctx.runs),
    ]
