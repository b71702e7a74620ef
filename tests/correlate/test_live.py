"""Live queries (``Store.subscribe``): the watermark, lateness, idle advance with an
injected clock, state bounds, replay from the past, the ways to receive, and
live == batch on generated streams split and shuffled within the lateness."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal
from tidal.errors import ConfigError, QueryError

from .support import T0

S = 10**9
JOIN = 'events({svc="fe"}) and on(rid) within(10s) events({svc="be"})'
LEFT = 'events({svc="fe"}) or on(rid) within(10s) events({svc="be"})'
ABSENT = 'events({svc="fe"}) unless on(rid) within(10s) events({svc="be"})'
SEQUENCE = ('sequence by rid with maxspan=10s [any where svc == "fe"] '
            '[any where svc == "be"]')
TRAILING = ('sequence by rid with maxspan=10s [any where svc == "fe"] '
            '![any where svc == "be"]')


def event(second: float, svc: str, rid: str | None) -> dict:
    return {"timestamp": T0 + round(second * S), "svc": svc, "rid": rid,
            "event": {"category": "web"}}


def drained(sub: tidal.api.Subscription, events: int, timeout_s: float = 30.0) -> list:
    """Every correlation the subscription delivers once it has taken ``events`` events."""
    deadline = time.monotonic() + timeout_s
    while sub.stats().events < events:
        assert time.monotonic() < deadline, f"subscription saw {sub.stats().events} of {events}"
        time.sleep(0.01)
    found = []
    while (correlation := sub.get(0.2)) is not None:
        found.append(correlation)
    return found


def seqs(correlations: list) -> list[tuple]:
    return sorted(tuple(c.events.column("_seq").to_pylist()) for c in correlations)


class Clock:
    """A clock the test moves by hand (ns)."""

    def __init__(self, ns: int) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns


@pytest.fixture
def store(tmp_path):
    with tidal.open(tmp_path / "s") as opened:
        opened.append([event(0, "seed", None)])  # (the fields exist before planning)
        yield opened


def test_join_fires_as_the_partner_commits(store):
    with store.subscribe(JOIN, language="corql") as sub:
        store.append([event(1, "fe", "r1"), event(2, "fe", "r2")])
        assert drained(sub, 2) == []
        store.append([event(5, "be", "r1")])
        (found,) = drained(sub, 3)
        assert found.key == {"rid": "r1"}
        assert found.events.column("svc").to_pylist() == ["fe", "be"]
        assert (found.start, found.end) == (T0 + 1 * S, T0 + 5 * S)


def test_late_events_are_counted_stored_and_not_matched(store):
    with store.subscribe(JOIN, language="corql") as sub:
        store.append([event(10, "fe", "r1")])
        store.append([event(10, "be", "r0")])  # (at the watermark: not late)
        store.append([event(4, "be", "r1")])  # below the watermark: late
        assert drained(sub, 3) == []
        stats = sub.stats()
        assert (stats.late, stats.released) == (1, 2)
    assert store.sql("SELECT count(*) AS n FROM events WHERE rid = 'r1'").column(0)[0].as_py() == 2


def test_events_out_of_order_within_the_lateness_match_as_in_batch(store):
    with store.subscribe(JOIN, language="corql", allowed_lateness="5s") as sub:
        store.append([event(10, "fe", "r1")])
        store.append([event(6, "be", "r1")])  # 4 s late: within the lateness
        store.append([event(30, "fe", "r9")])  # moves the watermark past both
        found = drained(sub, 3)
        assert sub.stats().late == 0
    assert seqs(found) == seqs(list(store.correlate(JOIN)))


def test_idle_advance_fires_absence_while_the_stream_is_quiet(store):
    clock = Clock(T0 + 3 * S)
    with store.subscribe(ABSENT, language="corql", idle_advance="30s", clock=clock) as sub:
        store.append([event(3, "fe", "r1")])
        assert drained(sub, 1) == []
        clock.ns = T0 + 40 * S  # quiet for 37 s: the watermark is 10 s, not past 3 + 10
        assert sub.tick() == []
        clock.ns = T0 + 44 * S  # watermark 14 s > 13 s: r1 had no partner
        (found,) = sub.tick() or drained(sub, 1)
        assert found.key == {"rid": "r1"}


def test_idle_advance_completes_a_trailing_missing_stage(store):
    clock = Clock(T0)
    with store.subscribe(TRAILING, idle_advance="1s", clock=clock) as sub:
        store.append([event(1, "fe", "r1"), event(2, "fe", "r2"), event(5, "be", "r2")])
        assert drained(sub, 3) == []
        clock.ns = T0 + 20 * S
        found = sub.tick() or drained(sub, 3)
        assert [c.key for c in found] == [{"rid": "r1"}]


def test_without_idle_advance_absence_waits_for_event_time(store):
    with store.subscribe(LEFT, language="corql") as sub:
        store.append([event(1, "fe", "r1")])
        assert drained(sub, 1) == []
        store.append([event(12, "fe", "r2")])  # watermark 12 > 1 + 10: r1 is partial
        (found,) = drained(sub, 2)
        assert found.completeness == ('events({svc="be"})',)


def test_state_beyond_max_keys_is_evicted_and_counted(store):
    with store.subscribe(JOIN, language="corql", max_keys=50) as sub:
        for chunk in range(4):
            store.append([event(chunk * 40 + i * 0.01, "fe", f"r{chunk}-{i}")
                          for i in range(100)])
        drained(sub, 400)
        stats = sub.stats()
        assert stats.evicted > 0
        assert stats.keys <= 400


def test_state_beyond_max_state_bytes_is_evicted(store):
    with store.subscribe(SEQUENCE, max_state_bytes=4096) as sub:
        store.append([event(i * 0.001, "fe", f"r{i}") for i in range(3000)])
        drained(sub, 3000)
        assert sub.stats().evicted > 0


def test_a_subscription_from_the_past_replays_without_gap_or_repeat(store):
    history = [event(i, "fe" if i % 2 == 0 else "be", f"r{i // 2}") for i in range(40)]
    store.append(history[:20])
    store.append(history[20:30])
    with store.subscribe(JOIN, language="corql", from_seq=0) as sub:
        store.append(history[30:])
        found = drained(sub, 41)
        assert [c.id for c in found] == list(range(len(found)))
    assert seqs(found) == seqs(list(store.correlate(JOIN)))
    assert len(found) == 20


def test_start_skips_what_came_before_it(store):
    store.append([event(1, "fe", "a"), event(2, "be", "a"), event(50, "fe", "b"),
                  event(51, "be", "b")])
    with store.subscribe(JOIN, language="corql", start=T0 + 10 * S) as sub:
        found = drained(sub, 2)
    assert [c.key for c in found] == [{"rid": "b"}]


def test_a_callback_receives_each_correlation(store):
    got = []
    with store.subscribe(SEQUENCE, callback=got.append) as sub:
        store.append([event(1, "fe", "r1"), event(2, "be", "r1")])
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(ConfigError, match="callback"):
            sub.get(0.05)  # (delivered to the callback, not a queue)
    assert [c.key for c in got] == [{"rid": "r1"}]


def test_async_iteration(store):
    async def first(sub):
        async for correlation in sub:
            return correlation
        return None

    with store.subscribe(JOIN, language="corql") as sub:
        store.append([event(1, "fe", "r1"), event(2, "be", "r1")])
        found = asyncio.run(asyncio.wait_for(first(sub), 10))
    assert found.key == {"rid": "r1"}


def test_a_slow_subscriber_never_stalls_append_and_is_counted(store, monkeypatch):
    monkeypatch.setattr("tidal.store.engine.FOLLOW_QUEUE_BATCHES", 8)  # (falls behind soon)

    def slow(_correlation):
        time.sleep(0.05)

    with store.subscribe(SEQUENCE, callback=slow) as sub:
        started = time.monotonic()
        for i in range(300):
            store.append([event(i, "fe", f"r{i}"), event(i + 0.5, "be", f"r{i}")])
        appended_s = time.monotonic() - started
        assert appended_s < 300 * 0.05  # appends did not wait for the callback
        deadline = time.monotonic() + 60
        while sub.stats().correlations < 300:
            assert time.monotonic() < deadline, sub.stats()
            time.sleep(0.05)
        stats = sub.stats()
    assert stats.correlations == 300  # (what it fell behind on was read back, not lost)
    assert stats.behind > 0


@pytest.mark.parametrize(("query", "language", "message"), [
    ('any where svc == "fe" | head 3', "eql", "pipes"),
    ('join by rid [any where svc == "fe"] [any where svc == "be"]', "eql", "history"),
    ('loki({svc="fe"}) and on(rid) events({svc="be"})', "corql", "no such source"),
])
def test_what_cannot_run_live_is_refused(store, query, language, message):
    with pytest.raises(QueryError, match=message):
        store.subscribe(query, language=language)


@pytest.mark.parametrize(("options", "field"), [
    ({"language": "sql"}, "language"),
    ({"allowed_lateness": "soon"}, "allowed_lateness"),
    ({"idle_advance": -1}, "idle_advance"),
    ({"max_keys": 0}, "max_keys"),
])
def test_bad_options_are_refused(store, options, field):
    with pytest.raises(ConfigError) as caught:
        store.subscribe(SEQUENCE, **options)
    assert caught.value.field == field


# --- live == batch --------------------------------------------------------------------------

QUERIES = [(JOIN, "corql"), (LEFT, "corql"), (ABSENT, "corql"), (SEQUENCE, "eql"),
           (TRAILING, "eql"),
           ('events({svc="fe"}) and on(rid) within(3s) events({svc="be"}) '
            'and on(rid) within(6s) events({svc="db"})', "corql"),
           ('events({svc="fe"}) and on(rid) within(4s) group_left(svc) events({svc="be"})',
            "corql")]


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, len(QUERIES) - 1),
       lateness=st.sampled_from([0, 3]))
def test_live_equals_batch_whatever_the_split_and_order(tmp_path_factory, seed, which,
                                                        lateness):
    query, language = QUERIES[which]
    rng = random.Random(seed)
    times = sorted(rng.randint(0, 120) / 2 for _ in range(rng.randint(5, 60)))
    stream = [event(t, rng.choice(["fe", "be", "db"]), rng.choice(["a", "b", "c", None]))
              for t in times]
    arrival = _shuffled_within(stream, lateness, rng)
    with tidal.open(tmp_path_factory.mktemp("live")) as store:
        store.append([event(0, "seed", None)])
        with store.subscribe(query, language=language, allowed_lateness=f"{lateness}s") as sub:
            at = 0
            while at < len(arrival):
                step = rng.randint(1, 8)
                store.append(arrival[at:at + step])
                at += step
            live = drained(sub, len(arrival))
            watermark = sub.stats().watermark_ns
            assert sub.stats().late == 0
        run = (store.correlate(query, end=watermark + 1) if language == "corql"
               else store.eql(query, end=watermark + 1).correlations)
        assert seqs(live) == seqs(list(run))


def _shuffled_within(stream: list[dict], lateness_s: int, rng: random.Random) -> list[dict]:
    """``stream`` in an arrival order where no event comes after one more than
    ``lateness_s`` later than it."""
    out = list(stream)
    for _ in range(len(out)):
        i = rng.randrange(len(out))
        j = min(len(out) - 1, i + rng.randint(1, 3))
        candidate = out[:i] + [out[j]] + out[i:j] + out[j + 1:]
        if _within(candidate, lateness_s):
            out = candidate
    return out


def _within(order: list[dict], lateness_s: int) -> bool:
    highest = None
    for item in order:
        ts = item["timestamp"]
        if highest is not None and ts < highest - lateness_s * S:
            return False
        highest = ts if highest is None else max(highest, ts)
    return True
