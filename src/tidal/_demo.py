"""``tidal demo``: generate the services, k8s and security workloads, ingest, query (SQL,
timelines, the EQL rule pack), show stats; then replay a k8s workload as a live
stream under the Kubernetes rules, showing each correlation as it fires.

Embedded stores live under the demo directory, one per entity field:
``services/`` (entity ``pod``), ``k8s/`` and ``k8s-live/`` (entity
``kubernetes.pod.name``) and ``security/`` (``host.name``). The directory is
wiped first, but only if it is empty or was made by an earlier demo (it holds a
``.tidal-demo`` marker).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from tidal.errors import ConfigError

if TYPE_CHECKING:
    from queue import SimpleQueue

    import pyarrow as pa
    from rich.console import Console

    from tidal.api import Store
    from tidal.correlate.result import Correlation

__all__ = ["SERVICES_SHARE", "run_demo"]

RULES = Path(__file__).resolve().parents[2] / "rules" / "security.eql"
"""The EQL rule pack, beside the source tree (the demo runs from a checkout)."""
K8S_RULES = RULES.with_name("k8s.eql")
"""The Kubernetes rules, run live over a replayed stream."""
K8S_PLANTED = {"crash_loop": "crash_loops", "oom_cascade": "oom_chains",
               "config_change_restarts": "config_chains",
               "node_pressure_evictions": "node_pressures"}
"""Each Kubernetes rule's chains, by the k8s workload's name for them."""
LIVE_EVENTS = 20_000
LIVE_APPEND_EVENTS = 500
LIVE_PAUSE_S = 0.02
"""The live replay: its events, in appends of this many, this long apart."""
LIVE_DRAIN_S = 30.0
WATCH_EXAMPLE = ('sequence by kubernetes.pod.name [any where reason == "OOMKilled"] '
                 '[any where reason == "Started"]')
SECURITY_EVENTS = 200_000
SERVICES_SHARE = 0.7
"""Share of the demo's events that are service request logs; the rest are k8s events."""
MARKER = ".tidal-demo"
K8S_ENTITY = "kubernetes.pod.name"

ERRORS_SQL = """
SELECT service,
       count(*) FILTER (WHERE level = 'error') AS errors,
       count(*) AS events,
       round(100.0 * count(*) FILTER (WHERE level = 'error') / count(*), 2) AS error_pct
FROM events GROUP BY service ORDER BY errors DESC, service
"""
P99_SQL = """
SELECT service, round(quantile_cont(latency_ms, 0.99), 1) AS p99_ms,
       round(quantile_cont(latency_ms, 0.5), 1) AS p50_ms
FROM events GROUP BY service ORDER BY p99_ms DESC, service
"""
REASONS_SQL = """
SELECT reason, count(*) AS events FROM events GROUP BY reason ORDER BY events DESC, reason LIMIT 8
"""
OOM_POD_SQL = f"""
SELECT {K8S_ENTITY} AS pod, count(*) AS ooms, epoch_ns(min(timestamp)) AS first_ns
FROM events WHERE reason = 'OOMKilled' GROUP BY pod ORDER BY ooms DESC, pod LIMIT 1
"""
LOGQL_ERRORS = '{service="frontend", level="error"} |~ "timeout|pool" | keep pod'
LOGQL_TOP = 'sort_desc(topk(3, sum by (service) (rate({level="error"}[5m]))))'
MINUTE_NS = 60 * 10**9
WINDOW_NS = 15 * MINUTE_NS


def _prepare(root: Path) -> None:
    """Wipe and recreate ``root``, refusing directories that a demo did not make."""
    if root.exists():
        if not root.is_dir():
            raise ConfigError(f"demo store {str(root)!r} is a file", field="store")
        if any(root.iterdir()) and not (root / MARKER).exists():
            raise ConfigError(f"refusing to wipe {str(root)!r}: it is not empty and was not "
                              "made by `tidal demo`; pick another --store", field="store")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / MARKER).write_text("made by `tidal demo`; wiped by the next demo\n")


def batch_events(n: int) -> int:
    """Events per append: a tenth of ``n``, kept within 10k to 100k."""
    return max(10_000, min(100_000, n // 10))


def _ingest(store: Store, table: pa.Table, advance: Callable[[int], None]) -> float:
    """Append ``table`` in batches; returns the seconds it took."""
    step = batch_events(table.num_rows)
    started = time.perf_counter()
    for offset in range(0, table.num_rows, step):
        part = table.slice(offset, step)
        store.append(part)
        advance(part.num_rows)
    return time.perf_counter() - started


def _rate(n: int, seconds: float) -> str:
    return f"{n:,} events in {seconds:.2f} s ({n / max(seconds, 1e-9):,.0f} events/s)"


def run_demo(root: Path, events: int, console: Console) -> None:
    """Generate ``events`` events into fresh stores under ``root`` and show what Tidal does."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    import tidal
    from tidal.bench.workloads import k8s, services
    from tidal.render import stats_table

    n_services = round(events * SERVICES_SHARE)
    n_k8s = events - n_services
    _prepare(root)
    console.print(f"[bold]Tidal demo[/]: {events:,} events into {root}/")

    started = time.perf_counter()
    svc_table = services(n_services, seed=0)
    k8s_table, _planted = k8s(n_k8s, seed=0)
    console.print(f"generated {n_services:,} service request logs and {n_k8s:,} Kubernetes "
                  f"events in {time.perf_counter() - started:.2f} s")

    with ExitStack() as stack:
        svc = stack.enter_context(tidal.open(root / "services", entity_field="pod"))
        kube = stack.enter_context(tidal.open(root / "k8s", entity_field=K8S_ENTITY))
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, disable=not console.is_terminal,
                      transient=True) as progress:
            task = progress.add_task("services", total=events)

            def advance(n: int) -> None:
                progress.advance(task, n)

            svc_s = _ingest(svc, svc_table, advance)
            progress.update(task, description="k8s")
            k8s_s = _ingest(kube, k8s_table, advance)
        for name, n, seconds in (("services", n_services, svc_s), ("k8s", n_k8s, k8s_s)):
            console.print(f"ingested {name + ':':9} {_rate(n, seconds)}, "
                          f"in appends of up to {batch_events(n):,} events, each fsynced")
        console.print(f"[bold]ingest total:      {_rate(events, svc_s + k8s_s)}[/]")

        _show_oom_timeline(kube, console)
        _show_rules(stack, root, min(SECURITY_EVENTS, events), console)
        for title, store, query in (
            ("errors per service", svc, ERRORS_SQL),
            ("top Kubernetes event reasons", kube, REASONS_SQL),
            ("latency per service", svc, P99_SQL),
        ):
            _show_sql(store, query, title, console)
        _show_logql(svc, svc_table, console)

        started = time.perf_counter()
        svc.flush()
        kube.flush()
        console.print()
        console.print(f"flushed both stores to segments in {time.perf_counter() - started:.2f} s")
        for store in (svc, kube):
            console.print(stats_table(store.stats(), title=f"stats of {store.path}"))
        _show_live(stack, root, console)
    console.print()
    console.print("try:")
    console.print(f"  tidal sql \"SELECT level, count(*) FROM events GROUP BY level\" "
                  f"--store {root / 'services'}")
    console.print(f"  tidal timeline POD --store {root / 'k8s'}")
    console.print(f"  tidal eql 'process where process.name : \"cmd*\"' "
                  f"--store {root / 'security'}")
    console.print(escape(f"  tidal logql '{{service=\"frontend\"}} |= \"Error\"' "
                         f"--store {root / 'services'}"))
    console.print(escape(f"  tidal watch '{WATCH_EXAMPLE}' --from-seq 0 "
                         f"--store {root / 'k8s-live'}"))


def _show_rules(stack: ExitStack, root: Path, events: int, console: Console) -> None:
    """Ingest the security workload and run the EQL rule pack over it."""
    import tidal
    from tidal.bench.workloads import security
    from tidal.correlate.eql.rules import load_rules
    from tidal.render import rich_table

    console.print()
    if not RULES.exists():
        console.print(f"(no rule pack at {RULES}: the EQL detections are skipped)")
        return
    table, planted = security(events, seed=0)
    store = stack.enter_context(tidal.open(root / "security", entity_field="host.name"))
    _ingest(store, table, lambda n: None)
    console.print(f"[bold]EQL rules[/] of {RULES.name} over {events:,} security events "
                  f"(ECS: process, network, authentication)")
    for rule in load_rules(RULES):
        started = time.perf_counter()
        result = store.eql(rule.query)
        took_ms = (time.perf_counter() - started) * 1e3
        found = len(result.correlations)
        console.print(f"  {rule.name}: {found:,} sequences in {took_ms:.0f} ms "
                      f"({planted.get(rule.name, 0):,} planted)")
        first = result.correlations[:3]
        if first:
            import pyarrow as pa

            console.print(rich_table(pa.table({
                "key": [", ".join(f"{k}={v}" for k, v in c.key.items()) for c in first],
                "start": pa.array([c.start for c in first], pa.timestamp("ns", "UTC")),
                "end": pa.array([c.end for c in first], pa.timestamp("ns", "UTC")),
                "events": [c.events.num_rows for c in first]})))


def _show_oom_timeline(kube: Store, console: Console) -> None:
    """Print the k8s events around the first OOM kill of the pod killed most often."""
    from tidal.render import rich_table

    oom = kube.sql(OOM_POD_SQL)
    if not oom.num_rows:
        console.print("no pod was OOMKilled in this sample")
        return
    pod = str(oom.column("pod")[0].as_py())
    at_ns = int(oom.column("first_ns")[0].as_py())
    took_s = []
    for _ in range(2):  # the first call reads the entity index, the second finds it cached
        started = time.perf_counter()
        timeline = kube.timeline(pod, at_ns - WINDOW_NS, at_ns + WINDOW_NS)
        took_s.append(time.perf_counter() - started)
    shown = timeline.select([c for c in timeline.column_names if c not in ("_seq", "kubernetes")])
    console.print()
    console.print(f"[bold]timeline of pod {pod}[/], {WINDOW_NS // MINUTE_NS} minutes either side "
                  f"of its OOM kill: {timeline.num_rows} events in {took_s[0] * 1e3:.1f} ms "
                  f"(first call), {took_s[1] * 1e6:.0f} µs (again)")
    console.print(rich_table(shown))


def _show_logql(store: Store, table: pa.Table, console: Console) -> None:
    """The same store through Grafana Loki's eyes: the newest errors of one service,
    and the services with the most errors a second over the last five minutes."""
    import pyarrow as pa
    from rich.markup import escape

    from tidal.render import rich_table

    end = int(table.column("timestamp").cast(pa.int64())[-1].as_py()) + 1
    for title, query, instant in (("newest frontend timeouts (LogQL)", LOGQL_ERRORS, None),
                                  ("errors a second, top 3 services (LogQL)", LOGQL_TOP,
                                   end - 1)):
        started = time.perf_counter()
        answer = store.logql(query, start=end - WINDOW_NS, end=end, limit=5,
                             instant_ns=instant)
        took_ms = (time.perf_counter() - started) * 1e3
        console.print()
        console.print(f"[bold]{title}[/] in {took_ms:.1f} ms")
        console.print(f"[dim]{escape(query)}[/]")
        console.print(rich_table(answer.table()))


def _show_sql(store: Store, query: str, title: str, console: Console) -> None:
    from tidal.render import rich_table

    started = time.perf_counter()
    answer = store.sql(query)
    took_ms = (time.perf_counter() - started) * 1e3
    console.print()
    console.print(f"[bold]{title}[/] in {took_ms:.1f} ms")
    console.print(f"[dim]{' '.join(query.split())}[/]")
    console.print(rich_table(answer))


def _show_live(stack: ExitStack, root: Path, console: Console) -> None:
    """Subscribe the Kubernetes rules to a fresh store, replay a k8s workload into it
    as a live stream, and show each correlation as it fires, with its latency: from
    the return of the append that committed its last event to its delivery."""
    from queue import SimpleQueue

    import tidal
    from tidal.bench.workloads import k8s
    from tidal.correlate.eql.rules import load_rules

    console.print()
    if not K8S_RULES.exists():
        console.print(f"(no rule pack at {K8S_RULES}: the live rules are skipped)")
        return
    rules = load_rules(K8S_RULES)
    table, planted = k8s(LIVE_EVENTS, seed=0)
    parts = [table.slice(i, LIVE_APPEND_EVENTS)
             for i in range(0, table.num_rows, LIVE_APPEND_EVENTS)]
    store = stack.enter_context(tidal.open(root / "k8s-live", entity_field=K8S_ENTITY))
    seen: SimpleQueue[tuple[str, Correlation, float]] = SimpleQueue()

    def deliver(name: str) -> Callable[[Correlation], None]:
        return lambda c: seen.put((name, c, time.perf_counter()))

    console.print(f"[bold]live[/]: the {len(rules)} rules of {K8S_RULES.name} subscribed, "
                  f"{table.num_rows:,} Kubernetes events replayed as a stream "
                  f"(appends of {LIVE_APPEND_EVENTS:,}, {LIVE_PAUSE_S * 1e3:.0f} ms apart)")
    # subscribe() plans against the store's fields, so the first append comes first
    # and the subscriptions start at _seq 0: they replay it, then go on live.
    ends = [store.append(parts[0]).last_seq or 0]
    returned = [time.perf_counter()]
    subs = [stack.enter_context(store.subscribe(rule.query, from_seq=0,
                                                callback=deliver(rule.name)))
            for rule in rules]
    found: dict[str, list[float]] = {rule.name: [] for rule in rules}
    console.print(f"[dim]  {'latency':>9}  {'rule':<24} {'key':<28} {'at':<8}  events[/]")
    started = time.perf_counter()
    for part in parts[1:]:
        time.sleep(LIVE_PAUSE_S)
        receipt = store.append(part)
        returned.append(time.perf_counter())
        ends.append(receipt.last_seq or 0)
        _show_fired(seen, ends, returned, found, console)
    deadline = time.monotonic() + LIVE_DRAIN_S
    while any(sub.stats().events < table.num_rows for sub in subs) \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.01)  # (the callbacks run just after the stats move)
    _show_fired(seen, ends, returned, found, console)
    took_s = time.perf_counter() - started
    latencies = sorted(ms for times in found.values() for ms in times)
    console.print(f"replayed {table.num_rows:,} events in {len(parts)} appends in "
                  f"{took_s:.1f} s: {len(latencies)} correlations"
                  + (f", latency median {latencies[len(latencies) // 2]:.1f} ms, "
                     f"max {latencies[-1]:.1f} ms" if latencies else ""))
    import pyarrow as pa

    from tidal.render import rich_table

    console.print(rich_table(pa.table({
        "rule": [rule.name for rule in rules],
        "found live": [len(found[rule.name]) for rule in rules],
        "planted": [planted.get(K8S_PLANTED.get(rule.name, ""), 0) for rule in rules],
        "late": [sub.stats().late for sub in subs]})))


def _show_fired(seen: SimpleQueue[tuple[str, Correlation, float]], ends: list[int],
                returned: list[float], found: dict[str, list[float]],
                console: Console) -> None:
    """Print the correlations delivered so far, each with its latency."""
    from bisect import bisect_left

    from rich.markup import escape

    from tidal.render import instant

    while not seen.empty():
        name, c, at = seen.get()
        last = max(c.events.column("_seq").to_pylist())
        batch = bisect_left(ends, last)  # the append that committed it
        latency_ms = (at - returned[batch]) * 1e3 if batch < len(returned) else 0.0
        found[name].append(latency_ms)
        key = ", ".join(f"{v}" for v in c.key.values())
        chain = " → ".join(str(r) for r in c.events.column("reason").to_pylist())
        console.print(escape(f"  {latency_ms:6.1f} ms  {name:<24} {key:<28} "
                             f"{instant(c.end)[11:19]}  {chain}"))
