"""The Kubernetes rule pack finds exactly the chains the k8s workload plants, one each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import tidal
from tidal.bench.workloads import k8s, k8s_chains
from tidal.correlate.eql.rules import load_rules
from tidal.correlate.result import Result

RULES = Path(__file__).resolve().parents[2] / "rules" / "k8s.eql"
ENTITY = "kubernetes.pod.name"
MIN = 60 * 10**9


@dataclass(frozen=True)
class Case:
    rule: str
    kind: str  # the workload's name for the chains the rule finds
    by: str
    stages: tuple[frozenset[str], ...]  # the reasons each stage matches
    trigger: int  # the stage that matches only planted events (1-based)
    maxspan_ns: int


def _reasons(*names: str) -> frozenset[str]:
    return frozenset(names)


CASES = [
    Case("crash_loop", "crash_loops", ENTITY,
         (_reasons("Started"), _reasons("Failed"), _reasons("BackOff"), _reasons("Started")),
         2, 10 * MIN),
    Case("oom_cascade", "oom_chains", ENTITY,
         (_reasons("OOMKilled"), _reasons("BackOff"), _reasons("Started")), 1, 5 * MIN),
    Case("config_change_restarts", "config_chains", "kubernetes.namespace",
         (_reasons("ConfigMapUpdated", "SecretUpdated"), _reasons("Killing"),
          _reasons("Started"), _reasons("Unhealthy")), 1, 10 * MIN),
    Case("node_pressure_evictions", "node_pressures", "kubernetes.node.name",
         (_reasons("NodeHasMemoryPressure", "NodeHasDiskPressure"), _reasons("Evicted"),
          _reasons("Evicted")), 1, 5 * MIN),
]
WORKLOADS = {  # seed: (events, pods, incident rate); few pods crowd the chains' keys
    0: (30_000, 10_000, 0.004),
    1: (30_000, 600, 0.004),
    2: (20_000, 90, 0.01),
}


def _store(table: pa.Table, path: Path) -> dict[str, Result]:
    with tidal.open(path, entity_field=ENTITY) as store:
        for i in range(0, table.num_rows, 6_000):  # appends as users make them
            store.append(table.slice(i, 6_000))
        store.flush()
        return {rule.name: store.eql(rule.query) for rule in load_rules(RULES)}


@pytest.fixture(scope="module", params=sorted(WORKLOADS), ids=lambda seed: f"seed{seed}")
def found(request, tmp_path_factory):
    n, pods, rate = WORKLOADS[request.param]
    table, chains = k8s_chains(n, seed=request.param, pods=pods, incident_rate=rate)
    return table, chains, _store(table, tmp_path_factory.mktemp("k8s") / "s")


def test_the_pack_holds_the_four_rules():
    assert [r.name for r in load_rules(RULES)] == [c.rule for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.rule)
def test_each_rule_finds_exactly_the_planted_chains(found, case):
    table, chains, results = found
    truth = chains[case.kind]
    got = results[case.rule].correlations
    assert truth.num_rows >= 5
    assert len(got) == truth.num_rows  # as many as planted ...
    planted = {(key, trigger): (start, end) for key, trigger, start, end in zip(
        *(truth[c].to_pylist() for c in ("key", "trigger_ns", "start_ns", "end_ns")),
        strict=True)}
    matched = set()
    for c in got:
        stage = c.events.column("_stage").to_pylist()
        reasons = c.events.column("reason").to_pylist()
        assert stage == list(range(1, len(case.stages) + 1))
        assert all(r in allowed for r, allowed in zip(reasons, case.stages, strict=True))
        times = c.events.column("timestamp").cast(pa.int64()).to_pylist()
        key = (c.key[case.by], times[case.trigger - 1])
        assert key in planted  # ... each one of them (precision) ...
        start, end = planted[key]
        assert start <= c.start and c.end <= end  # inside its chain
        assert 0 < c.end - c.start <= case.maxspan_ns
        matched.add(key)
    assert len(matched) == len(got)  # ... and each once (recall)
    triggers = pc.sum(pc.is_in(table["reason"], pa.array(sorted(case.stages[case.trigger - 1]))))
    assert triggers.as_py() == truth.num_rows  # the background never emits a trigger


def test_the_background_forms_no_pattern(tmp_path):
    table, planted = k8s(20_000, seed=3, pods=300, incident_rate=0.0)
    assert set(planted.values()) == {0}
    results = _store(table, tmp_path / "s")
    assert {name: len(r.correlations) for name, r in results.items()} == dict.fromkeys(
        (c.rule for c in CASES), 0)


def test_the_counts_are_the_chains():
    table, planted = k8s(50_000, seed=0)
    again, chains = k8s_chains(50_000, seed=0)
    assert table.equals(again)
    assert planted == {kind: t.num_rows for kind, t in chains.items()} == {
        "oom_chains": 13, "config_chains": 13, "crash_loops": 12, "node_pressures": 12}
