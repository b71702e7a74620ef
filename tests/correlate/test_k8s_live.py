"""The Kubernetes rule pack run live: the k8s workload replayed as a stream of appends
finds, as it is committed, exactly the planted chains, and exactly what ``eql()``
finds over the same store afterwards, in order or shuffled within the lateness."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import tidal
from tidal.bench.workloads import k8s_chains
from tidal.correlate.eql.rules import load_rules
from tidal.correlate.live import LiveStats
from tidal.correlate.result import Correlation
from tidal.correlate.subscription import Subscription

from .test_k8s_rules import CASES, ENTITY, RULES, WORKLOADS, Case

S = 10**9
MIN = 60 * S
DRAIN_S = 30.0  # how long the subscription threads get to catch up (they take well under 1 s)


@dataclass(frozen=True)
class Replay:
    """How the workload is appended: in appends of about ``batch`` events, each
    event arriving up to ``jitter_ns`` after its time (0: in time order), its
    append's rows shuffled when ``jitter_ns`` is set."""

    name: str
    batch: int
    jitter_ns: int
    lateness: str
    ragged: bool = False  # appends of 1 to 2 * batch events, not batch each


REPLAYS = [
    Replay("in_order", 1_000, 0, "0s"),
    Replay("shuffled_90s_lateness_2m", 1_000, 90 * S, "2m"),
    Replay("ragged_shuffled_2m_lateness_2m", 700, 2 * MIN, "2m", ragged=True),
]
SEEDS = [1, 2]  # 30k events on 600 pods, and 20k crowded on 90 (see test_k8s_rules)


class Clock:
    """The subscriptions' clock: still until the stream ends, then far past it, so
    ``tick()`` (``idle_advance``) releases what the lateness still holds back."""

    def __init__(self) -> None:
        self.now_ns = 0

    def __call__(self) -> int:
        return self.now_ns


@dataclass
class Run:
    table: pa.Table
    chains: dict[str, pa.Table]
    live: dict[str, list[Correlation]]  # received as the stream came in
    flushed: dict[str, list[Correlation]]  # released once the stream had ended
    batch: dict[str, list[Correlation]]  # eql() over the store afterwards
    stats: dict[str, LiveStats]  # of each subscription when the stream ended


def _arrivals(table: pa.Table, replay: Replay, seed: int) -> list[pa.Table]:
    """The appends of ``replay``: each event arrives within ``jitter_ns`` of its time."""
    rng = np.random.default_rng([seed, 7])
    ts = table["timestamp"].cast(pa.int64()).to_numpy()
    if replay.jitter_ns:
        table = table.take(np.argsort(ts + rng.integers(0, replay.jitter_ns, len(ts)),
                                      kind="stable"))
    parts, offset = [], 0
    while offset < table.num_rows:
        size = int(rng.integers(1, 2 * replay.batch + 1)) if replay.ragged else replay.batch
        part = table.slice(offset, size)
        if replay.jitter_ns:  # one append's rows come in any order
            part = part.take(rng.permutation(part.num_rows))
        parts.append(part)
        offset += size
    return parts


def _received(sub: Subscription, appended: int, taken: int = 0) -> list[Correlation]:
    """The correlations ``sub`` has found beyond the first ``taken``, once all
    ``appended`` events have reached it.

    The subscription's thread pushes each committed batch on its own time:
    ``stats().events`` says what it has taken in and ``stats().correlations``
    what it has emitted, so this waits for exactly those, then checks that
    nothing more comes.
    """
    deadline = time.monotonic() + DRAIN_S
    while sub.stats().events < appended:
        assert time.monotonic() < deadline, f"the subscription is stuck: {sub.stats()}"
        time.sleep(0.005)
    out: list[Correlation] = []
    while taken + len(out) < sub.stats().correlations:
        found = sub.get(max(0.0, deadline - time.monotonic()))
        assert found is not None, f"{taken + len(out)} received: {sub.stats()}"
        out.append(found)
    assert sub.get(0) is None
    return out


def _replay(path: Path, seed: int, replay: Replay, end_ns: int | None = None) -> Run:
    """Append the workload of ``seed`` (its events up to ``end_ns``) as ``replay`` says,
    with each rule subscribed; then eql() each over the store."""
    n, pods, rate = WORKLOADS[seed]
    table, chains = k8s_chains(n, seed=seed, pods=pods, incident_rate=rate)
    if end_ns is not None:
        table = table.filter(pc.less_equal(table["timestamp"].cast(pa.int64()), end_ns))
        n = table.num_rows
    appends = _arrivals(table, replay, seed)
    rules = load_rules(RULES)
    clock = Clock()
    with tidal.open(path, entity_field=ENTITY) as store:
        # The first append comes before subscribing, and is replayed from history
        # (from_seq=0): subscribe() plans against the store's schema, so it refuses
        # a store without events (see test_subscribing_to_an_empty_store).
        store.append(appends[0])
        subs = {rule.name: store.subscribe(rule.query, allowed_lateness=replay.lateness,
                                           idle_advance="1m", clock=clock, from_seq=0)
                for rule in rules}
        try:
            for part in appends[1:]:
                store.append(part)
            live = {name: _received(sub, n) for name, sub in subs.items()}
            stats = {name: sub.stats() for name, sub in subs.items()}
            # The stream ends: idle_advance moves the watermark past every event.
            clock.now_ns = _max_ns(table) + 60 * MIN
            flushed = {}
            for name, sub in subs.items():
                sub.tick()
                flushed[name] = _received(sub, n, len(live[name]))
        finally:
            for sub in subs.values():
                sub.close()
        batch = {rule.name: store.eql(rule.query).correlations for rule in rules}
    return Run(table, chains, live, flushed, batch, stats)


def _max_ns(table: pa.Table) -> int:
    return int(table["timestamp"].cast(pa.int64()).to_numpy().max())


def _seqs(correlations: list[Correlation]) -> list[tuple[int, ...]]:
    return sorted(tuple(c.events["_seq"].to_pylist()) for c in correlations)


@pytest.fixture(scope="module", params=[(seed, r) for seed in SEEDS for r in REPLAYS],
                ids=lambda p: f"seed{p[0]}-{p[1].name}")
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    seed, replay = request.param
    return _replay(tmp_path_factory.mktemp("k8s-live") / "s", seed, replay)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.rule)
def test_live_equals_batch_up_to_the_watermark(run: Run, case: Case) -> None:
    live, stats = run.live[case.rule], run.stats[case.rule]
    assert stats.events == run.table.num_rows and stats.late == 0 and stats.evicted == 0
    assert stats.released + stats.buffered == stats.events
    mark = stats.watermark_ns
    assert mark is not None
    due = [c for c in run.batch[case.rule] if c.end <= mark]
    assert _seqs(live) == _seqs(due)
    assert [c.id for c in live] == list(range(len(live)))  # numbered as they came
    assert all(c.completeness == "complete" for c in live)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.rule)
def test_the_end_of_the_stream_settles_the_rest(run: Run, case: Case) -> None:
    live = run.live[case.rule] + run.flushed[case.rule]
    assert _seqs(live) == _seqs(run.batch[case.rule])
    if run.stats[case.rule].buffered == 0:  # in order, no lateness: nothing was held back
        assert run.flushed[case.rule] == []


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.rule)
def test_live_finds_exactly_the_planted_chains(run: Run, case: Case) -> None:
    found = run.live[case.rule] + run.flushed[case.rule]
    truth = run.chains[case.kind]
    assert truth.num_rows >= 5
    assert len(found) == truth.num_rows  # as many as planted ...
    planted = {(key, trigger): (start, end) for key, trigger, start, end in zip(
        *(truth[c].to_pylist() for c in ("key", "trigger_ns", "start_ns", "end_ns")),
        strict=True)}
    matched = set()
    for c in found:
        assert c.events.column("_stage").to_pylist() == list(range(1, len(case.stages) + 1))
        reasons = c.events.column("reason").to_pylist()
        assert all(r in allowed for r, allowed in zip(reasons, case.stages, strict=True))
        times = c.events.column("timestamp").cast(pa.int64()).to_pylist()
        key = (c.key[case.by], times[case.trigger - 1])
        assert key in planted  # ... each one of them ...
        start, end = planted[key]
        assert start <= c.start and c.end <= end
        assert 0 < c.end - c.start <= case.maxspan_ns
        matched.add(key)
    assert len(matched) == len(found)  # ... and each once


def test_in_order_appends_release_everything_at_once(tmp_path: Path) -> None:
    """With no lateness the watermark is the newest event: nothing waits, nothing
    is left for the end of the stream."""
    done = _replay(tmp_path / "s", 2, REPLAYS[0])
    for name, stats in done.stats.items():
        assert stats.released == stats.events == done.table.num_rows, name
        assert stats.buffered == 0 and done.flushed[name] == []


def test_what_completes_within_the_lateness_of_the_end_waits_for_it(tmp_path: Path) -> None:
    """A stream that stops just after a chain completes: the lateness holds the
    completing event back, so the chain is found only once the watermark moves on
    (here by idle_advance), not live."""
    n, pods, rate = WORKLOADS[2]
    _, chains = k8s_chains(n, seed=2, pods=pods, incident_rate=rate)
    ends = chains["oom_chains"]["end_ns"].to_pylist()
    done = _replay(tmp_path / "s", 2, REPLAYS[1], end_ns=ends[len(ends) // 2])
    stats = done.stats["oom_cascade"]
    assert stats.buffered > 0 and stats.late == 0 and stats.watermark_ns is not None
    waiting = [c for c in done.batch["oom_cascade"] if c.end > stats.watermark_ns]
    assert waiting and _seqs(done.flushed["oom_cascade"]) == _seqs(waiting)
    for name, found in done.live.items():
        assert _seqs(found + done.flushed[name]) == _seqs(done.batch[name]), name


def test_subscribing_to_an_empty_store(tmp_path: Path) -> None:
    """A rule subscribed before the first event should still see every event."""
    table, _ = k8s_chains(2_000, seed=1, pods=600, incident_rate=0.004)
    with tidal.open(tmp_path / "s", entity_field=ENTITY) as store:
        rule = load_rules(RULES)[1]
        with store.subscribe(rule.query) as sub:
            store.append(table)
            assert len(_received(sub, table.num_rows)) == len(
                store.eql(rule.query).correlations)
