"""Workload generators: determinism, shape, and planted chains against pure-Python oracles."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tidal.bench import workloads as w

MIN = 60 * 10**9
HOUR = 60 * MIN


def _services(n: int, seed: int = 0) -> pa.Table:
    return w.services(n, seed=seed)


def _k8s(n: int, seed: int = 0) -> pa.Table:
    return w.k8s(n, seed=seed)[0]


def _security(n: int, seed: int = 0) -> pa.Table:
    return w.security(n, seed=seed)[0]


GENERATORS = [_services, _k8s, _security]


def _rows(table: pa.Table) -> list[dict]:
    """Rows with ``timestamp`` as int nanoseconds."""
    ts = table.column("timestamp").cast(pa.int64())
    return table.set_column(0, "timestamp", ts).to_pylist()


@pytest.mark.parametrize("gen", GENERATORS)
def test_same_seed_same_table_other_seed_differs(gen):
    a, b, c = gen(3000, 7), gen(3000, 7), gen(3000, 8)
    assert a.equals(b)
    assert not a.equals(c)


@pytest.mark.parametrize("gen", GENERATORS)
@pytest.mark.parametrize("n", [2, 3, 17, 1000, 4321])
def test_exact_size(gen, n):
    assert gen(n).num_rows == n


@pytest.mark.parametrize("gen", GENERATORS)
def test_timestamps_are_utc_ns_from_the_epoch(gen):
    table = gen(5000)
    assert table.schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    assert table.column("timestamp").null_count == 0
    ts = table.column("timestamp").cast(pa.int64()).to_numpy()
    assert ts.min() == w.EPOCH_NS


@pytest.mark.parametrize("gen", [_k8s, _security])
def test_k8s_and_security_are_sorted(gen):
    ts = gen(5000).column("timestamp").cast(pa.int64()).to_numpy()
    assert np.all(np.diff(ts) >= 0)


def test_services_mostly_sorted_with_a_few_late_rows():
    ts = _services(50_000).column("timestamp").cast(pa.int64()).to_numpy()
    back = np.diff(ts) < 0
    assert 0 < back.mean() < 0.01
    assert np.all(np.maximum.accumulate(ts) - ts <= 500 * 10**6)


def test_services_requests_touch_two_to_five_services_within_two_seconds():
    table = w.services(20_000, seed=3)
    hops: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for row in _rows(table.select(["timestamp", "request_id", "service"])):
        hops[row["request_id"]].append((row["timestamp"], row["service"]))
    sizes = [len(v) for v in hops.values()]
    assert min(sizes[:-1]) >= 2 and max(sizes) <= 5
    for events in hops.values():
        services = [s for _, s in events]
        assert len(set(services)) == len(services)
        times = [t for t, _ in events]
        assert max(times) - min(times) < 2 * 10**9
    assert len(hops) < 20_000 / 2


@pytest.mark.parametrize("count", [2, 3, 4, 7, 13])
def test_services_hops_are_distinct_for_any_service_count(count):
    table = w.services(4000, seed=count, pods=5 * count, services=count)
    seen: dict[str, list[str]] = defaultdict(list)
    for rid, svc in zip(table.column("request_id").to_pylist(),
                        table.column("service").to_pylist(), strict=True):
        seen[rid].append(svc)
    assert all(len(set(v)) == len(v) <= min(5, count) for v in seen.values())
    assert len(set(table.column("service").to_pylist())) == count
    assert len(set(table.column("pod").to_pylist())) <= 5 * count


def test_services_pods_levels_and_messages():
    table = w.services(30_000, seed=1, pods=120, services=6)
    assert set(table.column("service").to_pylist()) == {
        "frontend", "checkout", "cart", "payment", "inventory", "shipping"}
    pods = set(table.column("pod").to_pylist())
    assert 100 <= len(pods) <= 120
    assert all(p.split("-")[0] in {"frontend", "checkout", "cart", "payment", "inventory",
                                   "shipping"} and len(p.split("-")[-1]) == 5 for p in pods)
    pairs = set(zip(table.column("pod").to_pylist(), table.column("service").to_pylist(),
                    strict=True))
    assert len(pairs) == len(pods)  # a pod belongs to one service
    levels = table.column("level").to_pylist()
    share = {lv: levels.count(lv) / len(levels) for lv in ("info", "warn", "error")}
    assert share["info"] > 0.8 and 0.02 < share["warn"] < 0.12 and 0.005 < share["error"] < 0.06
    status = table.column("status").to_numpy()
    assert np.all((status >= 500) == (np.array(levels) == "error"))
    messages = table.column("message").to_pylist()
    assert all(messages) and len(set(messages)) > 1000
    shapes = {"".join("#" if ch.isalnum() else ch for ch in m.split()[0]) + m.split()[-1][-2:]
              for m in messages}
    assert len(shapes) >= 8


def test_services_ndjson_is_about_200_bytes_per_event():
    table = w.services(20_000)
    data = w.to_ndjson(table)
    assert data.count(b"\n") == 20_000
    assert 180 <= len(data) / 20_000 <= 240


@pytest.mark.parametrize("gen", GENERATORS)
def test_ndjson_round_trips(gen, tmp_path):
    table = gen(300)
    data = w.to_ndjson(table)
    path = tmp_path / "events.ndjson"
    w.write_ndjson(table, path)
    assert path.read_bytes() == data
    lines = data.decode().splitlines()
    assert len(lines) == 300
    rows = _rows(table)
    for line, row in zip(lines, rows, strict=True):
        obj = json.loads(line)
        stamp = obj.pop("timestamp")
        assert stamp.endswith("Z") and "T" in stamp
        assert int(np.datetime64(stamp[:-1], "ns").astype(np.int64)) == row.pop("timestamp")
        assert obj == row


def test_ndjson_nulls_escapes_and_empty():
    table = pa.table({"a": [1, None], "s": ['q"\n\\', None],
                      "t": pa.array([1_500, None], pa.timestamp("us"))})
    lines = w.to_ndjson(table).decode().splitlines()
    assert [json.loads(x) for x in lines] == [
        {"a": 1, "s": 'q"\n\\', "t": "1970-01-01T00:00:00.001500Z"},
        {"a": None, "s": None, "t": None}]
    assert w.to_ndjson(table.slice(0, 0)) == b""


def test_rfc3339_matches_numpy_and_trims_fraction():
    rng = np.random.default_rng(5)
    ns = rng.integers(-2 * 10**18, 4 * 10**18, 5000)
    expected = [np.datetime_as_string(np.datetime64(int(v), "ns"), unit="ns") + "Z" for v in ns]
    assert w.rfc3339(ns).to_pylist() == expected
    assert w.rfc3339(np.array([w.EPOCH_NS])).to_pylist() == ["2026-01-01T00:00:00Z"]
    assert w.rfc3339(np.array([w.EPOCH_NS + 2_000_000, w.EPOCH_NS])).to_pylist() == [
        "2026-01-01T00:00:00.002Z", "2026-01-01T00:00:00.000Z"]
    assert w.rfc3339(np.array([-1])).to_pylist() == ["1969-12-31T23:59:59.999999999Z"]


# --- k8s oracle ----------------------------------------------------------------------------

def _pod(row: dict) -> str | None:
    pod = row["kubernetes"]["pod"]
    return None if pod is None else pod["name"]


def oom_oracle(rows: list[dict]) -> int:
    """OOMKilled -> BackOff -> Started on the same pod, all within 5 min of the first."""
    by_pod: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for row in rows:
        if _pod(row):
            by_pod[_pod(row)].append((row["timestamp"], row["reason"]))
    found = 0
    for events in by_pod.values():
        events.sort()
        for i, (t0, reason) in enumerate(events):
            if reason != "OOMKilled":
                continue
            stage = 0
            for t, r in events[i + 1:]:
                if t > t0 + 5 * MIN:
                    break
                if stage == 0 and r == "BackOff":
                    stage = 1
                elif stage == 1 and r == "Started" and t > t0:
                    stage = 2
                    break
            found += stage == 2
    return found


def config_oracle(rows: list[dict]) -> int:
    """A ConfigMap or Secret update -> >= 2 pods of its namespace restart within 2 min ->
    Unhealthy in 5."""
    by_ns: dict[str, list[tuple[int, str, str | None]]] = defaultdict(list)
    for row in rows:
        by_ns[row["kubernetes"]["namespace"]].append((row["timestamp"], row["reason"], _pod(row)))
    found = 0
    for events in by_ns.values():
        events.sort(key=lambda e: e[0])
        for t0, reason, _ in events:
            if reason not in ("ConfigMapUpdated", "SecretUpdated"):
                continue
            window = [e for e in events if t0 < e[0] <= t0 + 5 * MIN]
            killed: dict[str, int] = {}
            restarted: dict[str, int] = {}
            for t, r, pod in window:
                if t > t0 + 2 * MIN or pod is None:
                    continue
                if r == "Killing":
                    killed.setdefault(pod, t)
                elif r == "Started" and pod in killed and pod not in restarted:
                    restarted[pod] = t
            if len(restarted) < 2:
                continue
            second = sorted(restarted.values())[1]
            found += any(r == "Unhealthy" and t > second for t, r, _ in window)
    return found


def crash_oracle(rows: list[dict]) -> int:
    """Failed on a pod, after a Started and before a BackOff then a Started, within 10 min."""
    by_pod: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for row in rows:
        if _pod(row):
            by_pod[_pod(row)].append((row["timestamp"], row["reason"]))
    found = 0
    for events in by_pod.values():
        for i, (t1, reason) in enumerate(events):
            if reason != "Failed":
                continue
            starts = [t for t, r in events[:i] if r == "Started" and t >= t1 - 10 * MIN]
            if not starts:
                continue
            backoff = next((t for t, r in events[i + 1:] if r == "BackOff"), None)
            found += backoff is not None and any(
                r == "Started" and backoff < t <= starts[-1] + 10 * MIN for t, r in events[i + 1:])
    return found


def node_oracle(rows: list[dict]) -> int:
    """Memory or disk pressure on a node -> >= 2 of its pods evicted within 5 min."""
    pressures, evictions = [], defaultdict(list)
    for row in rows:
        node = row["kubernetes"]["node"]
        if row["reason"] in ("NodeHasMemoryPressure", "NodeHasDiskPressure"):
            pressures.append((row["timestamp"], node["name"]))
        elif row["reason"] == "Evicted":
            evictions[node["name"]].append((row["timestamp"], _pod(row)))
    return sum(len({p for t, p in evictions[node] if t0 < t <= t0 + 5 * MIN}) >= 2
               for t0, node in pressures)


K8S_KINDS = ("oom_chains", "config_chains", "crash_loops", "node_pressures")
TRIGGERS = {"oom_chains": {"OOMKilled"}, "config_chains": {"ConfigMapUpdated", "SecretUpdated"},
            "crash_loops": {"Failed"},
            "node_pressures": {"NodeHasMemoryPressure", "NodeHasDiskPressure"}}
ORACLES = {"oom_chains": oom_oracle, "config_chains": config_oracle,
           "crash_loops": crash_oracle, "node_pressures": node_oracle}


def test_k8s_planted_chains_match_the_oracle():
    table, planted = w.k8s(20_000, seed=11, pods=600, incident_rate=0.002)
    assert planted == dict.fromkeys(K8S_KINDS, 10)
    rows = _rows(table)
    reasons = [r["reason"] for r in rows]
    for kind in K8S_KINDS:
        assert sum(reasons.count(r) for r in TRIGGERS[kind]) == 10, kind
        assert ORACLES[kind](rows) == planted[kind], kind
    assert {"ConfigMapUpdated", "SecretUpdated", "NodeHasMemoryPressure",
            "NodeHasDiskPressure"} <= set(reasons)


def test_k8s_chains_are_where_the_truth_says():
    table, chains = w.k8s_chains(20_000, seed=11, pods=600, incident_rate=0.002)
    assert table.equals(w.k8s(20_000, seed=11, pods=600, incident_rate=0.002)[0])
    rows = _rows(table)
    for kind, truth in chains.items():
        assert truth.column_names == ["key", "trigger_ns", "start_ns", "end_ns"]
        field = {"config_chains": "namespace", "node_pressures": "node"}.get(kind, "pod")
        triggers = sorted((r["timestamp"], r["kubernetes"]["namespace"] if field == "namespace"
                           else r["kubernetes"][field]["name"])
                          for r in rows if r["reason"] in TRIGGERS[kind])
        assert triggers == list(zip(truth["trigger_ns"].to_pylist(), truth["key"].to_pylist(),
                                    strict=True)), kind
        assert pc.all(pc.less_equal(truth["start_ns"], truth["trigger_ns"])).as_py()
        assert pc.all(pc.less(truth["trigger_ns"], truth["end_ns"])).as_py()


def test_k8s_background_forms_no_chain_and_entity_is_nested():
    table, planted = w.k8s(20_000, seed=2, pods=300, incident_rate=0.0)
    assert planted == dict.fromkeys(K8S_KINDS, 0)
    rows = _rows(table)
    assert all(ORACLES[kind](rows) == 0 for kind in K8S_KINDS)
    assert not {r["reason"] for r in rows} & set().union(*TRIGGERS.values())
    assert "pod" not in table.column_names
    assert {"Scheduled", "Pulled", "Started", "Unhealthy", "Killing", "BackOff", "Evicted"} <= set(
        r["reason"] for r in rows)
    types = {(r["reason"], r["type"]) for r in rows}
    assert ("Unhealthy", "Warning") in types and ("Started", "Normal") in types
    pods = {_pod(r) for r in rows}
    assert None not in pods and len(pods) <= 300
    flat = table.flatten().flatten()
    assert "kubernetes.pod.name" in flat.column_names


def test_k8s_config_and_node_events_have_no_pod():
    table, _ = w.k8s(20_000, seed=4, pods=900, incident_rate=0.002)
    updates = table.filter(pc.is_in(table["reason"], pa.array(["ConfigMapUpdated",
                                                                "SecretUpdated"])))
    assert updates.num_rows == 10
    assert all(r["kubernetes"]["pod"] is None and r["kubernetes"]["node"] is None
               and r["kubernetes"]["namespace"] for r in updates.to_pylist())
    pressures = table.filter(pc.starts_with(table["reason"], "NodeHas"))
    assert pressures.num_rows == 10
    assert all(r["kubernetes"]["pod"] is None and r["kubernetes"]["namespace"] == "default"
               and r["kubernetes"]["node"]["name"].startswith("ip-10-0-")
               and r["kubernetes"]["node"]["name"] in r["message"]
               for r in pressures.to_pylist())


# --- security oracle -----------------------------------------------------------------------

def logon_oracle(rows: list[dict]) -> int:
    """Logons with no logoff of the same user and host within 8 h, whose deadline has passed."""
    last = max(r["timestamp"] for r in rows)
    logoffs: dict[tuple[str, str], list[int]] = defaultdict(list)
    for r in rows:
        if r["event"]["action"] == "logoff":
            logoffs[(r["user"]["name"], r["host"]["name"])].append(r["timestamp"])
    found = 0
    for r in rows:
        if r["event"]["action"] != "logon" or r["timestamp"] + 8 * HOUR > last:
            continue
        t0 = r["timestamp"]
        ends = logoffs[(r["user"]["name"], r["host"]["name"])]
        found += not any(t0 < t <= t0 + 8 * HOUR for t in ends)
    return found


def connect_oracle(rows: list[dict]) -> int:
    """Process starts followed by an outbound connection of the same host and pid within 5 s."""
    conns: dict[tuple[str, int], list[int]] = defaultdict(list)
    for r in rows:
        if r["event"]["category"] == "network" and r["network"]["direction"] == "outbound":
            conns[(r["host"]["name"], r["process"]["pid"])].append(r["timestamp"])
    found = 0
    for r in rows:
        if r["event"]["category"] == "process" and r["event"]["type"] == "start":
            t0 = r["timestamp"]
            key = (r["host"]["name"], r["process"]["pid"])
            found += any(t0 < t <= t0 + 5 * 10**9 for t in conns[key])
    return found


def end_oracle(rows: list[dict]) -> int:
    """Process starts followed by an outbound connection, then the process's end, of the
    same host and pid, all within 10 s."""
    times: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    for r in rows:
        if r["process"] is not None or r["network"] is not None:
            what = "conn" if r["event"]["category"] == "network" else r["event"]["type"]
            if what == "conn" and r["network"]["direction"] != "outbound":
                continue
            times[(what, r["host"]["name"], r["process"]["pid"])].append(r["timestamp"])
    found = 0
    for (what, host, pid), starts in times.items():
        if what != "start":
            continue
        for t0 in starts:
            conns = [t for t in times.get(("conn", host, pid), [])
                     if t0 < t <= t0 + 10 * 10**9]
            found += bool(conns) and any(min(conns) < t <= t0 + 10 * 10**9
                                         for t in times.get(("end", host, pid), []))
    return found


def test_security_planted_sequences_match_the_oracle():
    table, planted = w.security(20_000, seed=5, hosts=50, users=400, incident_rate=0.003)
    assert planted == {"logon_without_logoff": 30, "process_then_connect": 30,
                       "start_connect_end": 30}
    rows = _rows(table)
    assert logon_oracle(rows) == planted["logon_without_logoff"]
    assert connect_oracle(rows) == planted["process_then_connect"]
    assert end_oracle(rows) == planted["start_connect_end"]


def test_security_background_forms_no_sequence_and_has_ecs_shape():
    table, planted = w.security(20_000, seed=6, hosts=30, users=100, incident_rate=0.0)
    assert planted == {"logon_without_logoff": 0, "process_then_connect": 0,
                       "start_connect_end": 0}
    rows = _rows(table)
    assert logon_oracle(rows) == 0 and connect_oracle(rows) == 0 and end_oracle(rows) == 0
    assert {r["event"]["category"] for r in rows} == {"process", "network", "authentication"}
    assert {r["event"]["action"] for r in rows} >= {"logon", "logoff", "start", "connection"}
    flat = table.flatten()
    for name in ("event.category", "event.type", "event.action", "host.name", "user.name",
                 "process.name", "process.pid", "destination.ip", "destination.port"):
        assert name in flat.column_names
    ts = table.column("timestamp").cast(pa.int64()).to_numpy()
    assert ts.max() - ts.min() > 20 * HOUR


def test_services_stream_is_one_fleet_continuing_in_time():
    chunks = list(w.services_stream(25_000, seed=3, chunk=10_000))
    assert [c.num_rows for c in chunks] == [10_000, 10_000, 5_000]
    pods = [set(c.column("pod").to_pylist()) for c in chunks]
    assert len(pods[0] | pods[1] | pods[2]) <= 2000
    assert len(pods[0] & pods[1]) > 1000  # the same pods, not a new fleet per chunk
    times = [c.column("timestamp").cast(pa.int64()).to_numpy() for c in chunks]
    for before, after in zip(times, times[1:], strict=False):
        assert after.min() > before.max()  # each chunk starts after the last ended
    assert chunks[0].column("request_id") != chunks[1].column("request_id")
    again = list(w.services_stream(25_000, seed=3, chunk=10_000))
    assert all(a.equals(b) for a, b in zip(chunks, again, strict=True))
