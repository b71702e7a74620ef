"""Property tests: any mix of appends, flushes, compactions and reopens agrees with a model.

The model is a plain list of events in ``_seq`` order. After every operation
the store must give each event exactly once in ``read_from``, each entity's
events ordered by (timestamp, ``_seq``) in ``timeline`` (also windowed, limited
and descending), the same events through ``scan`` (bounded, filtered, in either order)
and the same counts in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns
ENTITIES = ("a", "b", "c")
TS_TYPE = pa.timestamp("ns", "UTC")

# Mostly a narrow range (ties, disorder); sometimes far apart, before 1970 too.
timestamps = st.one_of(
    st.integers(-3, 25).map(lambda i: T0 + i * 1_000),
    st.integers(-3, 25).map(lambda i: T0 + i * 1_000),
    st.integers(-(2**62), 2**62),
)
events = st.lists(st.tuples(st.sampled_from(ENTITIES), timestamps), max_size=12)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), events, st.sampled_from(["table", "dicts", "ndjson"])),
        st.tuples(st.just("flush")),
        st.tuples(st.just("compact")),
        st.tuples(st.just("reopen")),
    ),
    min_size=1,
    max_size=9,
)
configs = st.sampled_from([
    {},  # everything stays in the memtable unless flushed
    {"segment_rows": 5, "compact_min_rows": 1_000},  # flushes split; compaction merges all
    {"memtable_bytes": 600, "segment_rows": 4, "compact_min_rows": 9},  # automatic flushes
])


@dataclass(frozen=True)
class Event:
    seq: int
    entity: str
    ts: int
    id: str


def encode(batch: list[tuple[str, int]], ids: list[str], form: str) -> object:
    """The batch in one of the accepted input forms (all with exact ns timestamps)."""
    if form == "dicts" and all(ts >= 10**17 for _, ts in batch):  # ns by magnitude
        return [{"timestamp": ts, "entity": e, "id": i}
                for (e, ts), i in zip(batch, ids, strict=True)]
    if form == "ndjson" and all(ts >= 10**17 for _, ts in batch):
        return "".join(f'{{"timestamp": {ts}, "entity": "{e}", "id": "{i}"}}\n'
                       for (e, ts), i in zip(batch, ids, strict=True))
    return pa.table({
        "timestamp": pa.array([ts for _, ts in batch], TS_TYPE),
        "entity": pa.array([e for e, _ in batch], pa.string()),
        "id": pa.array(ids, pa.string()),
    })


def ts_of(table: pa.Table) -> list[int]:
    return table.column("timestamp").cast(pa.int64()).to_pylist()


def draw_bound(data: st.DataObject, times: list[int], label: str) -> int | None:
    """None, or one of ``times`` nudged by -1, 0 or +1 ns (edges of the window)."""
    if not data.draw(st.booleans(), label=f"{label} given"):
        return None
    return data.draw(st.sampled_from(times), label=label) + data.draw(st.integers(-1, 1))


def check(store: tidal.Store, model: list[Event], data: st.DataObject) -> None:
    n = len(model)
    assert store.max_seq() == n - 1
    everything = store.read_from(0)
    assert everything.column("_seq").to_pylist() == list(range(n))
    if n:
        assert everything.column("id").to_pylist() == [e.id for e in model]
        assert ts_of(everything) == [e.ts for e in model]
    start_seq = data.draw(st.integers(0, n + 1), label="read_from seq")
    limit = data.draw(st.none() | st.integers(0, n + 1), label="read_from limit")
    tail = model[start_seq:][:limit] if limit is not None else model[start_seq:]
    assert store.read_from(start_seq, limit).column("_seq").to_pylist() == [e.seq for e in tail]

    for entity in ENTITIES:
        want = sorted((e for e in model if e.entity == entity), key=lambda e: (e.ts, e.seq))
        got = store.timeline(entity)
        assert got.column("_seq").to_pylist() == [e.seq for e in want], entity
        if want:
            assert got.column("id").to_pylist() == [e.id for e in want]
            assert ts_of(got) == [e.ts for e in want]

    entity = data.draw(st.sampled_from(ENTITIES), label="entity")
    bounds = [e.ts for e in model] + [T0, T0 + 10_000]
    start, end = (draw_bound(data, bounds, label) for label in ("start", "end"))
    desc = data.draw(st.booleans(), label="desc")
    limit = data.draw(st.none() | st.integers(0, 6), label="limit")
    want = sorted((e for e in model if e.entity == entity
                   and (start is None or e.ts >= start) and (end is None or e.ts < end)),
                  key=lambda e: (e.ts, e.seq), reverse=desc)
    if limit is not None:
        want = want[:limit]
    got = store.timeline(entity, start, end, limit=limit, desc=desc)
    assert got.column("_seq").to_pylist() == [e.seq for e in want]

    check_scan(store, model, data, bounds)

    total = store.sql("SELECT count(*) AS c FROM events").column("c").to_pylist()
    assert total == [n]
    stats = store.stats()
    assert stats["events"] == n
    assert stats["entities"] == sum(1 for e in ENTITIES if any(x.entity == e for x in model))
    rows = store.sql("SELECT entity, count(*) AS c, count(DISTINCT _seq) AS d FROM events "
                     "GROUP BY entity ORDER BY entity").to_pylist()
    counts = {e: sum(1 for x in model if x.entity == e) for e in ENTITIES}
    assert rows == [{"entity": e, "c": c, "d": c} for e, c in counts.items() if c]


def check_scan(store: tidal.Store, model: list[Event], data: st.DataObject,
               times: list[int]) -> None:
    """A scan with drawn bounds, filter and order gives the model's events in that order."""
    start, end = (draw_bound(data, times, label) for label in ("scan start", "scan end"))
    n = len(model)
    from_seq, to_seq = (data.draw(st.none() | st.integers(0, n + 1), label=label)
                        for label in ("from_seq", "to_seq"))
    entities = data.draw(st.none() | st.sets(st.sampled_from(ENTITIES)), label="entities")
    order = data.draw(st.sampled_from(["seq", "time"]), label="order")
    want = [e for e in model
            if (start is None or e.ts >= start) and (end is None or e.ts < end)
            and (from_seq is None or e.seq >= from_seq) and (to_seq is None or e.seq < to_seq)
            and (entities is None or e.entity in entities)]
    if order == "time":
        want.sort(key=lambda e: (e.ts, e.seq))
    if not model:
        assert store.scan().read_all().num_rows == 0
        return
    where = (None if entities is None
             else pc.field("entity").isin(pa.array(sorted(entities), pa.string())))
    got = store.scan(["id", "timestamp"], where, start=start, end=end, from_seq=from_seq,
                     to_seq=to_seq, order=order).read_all()
    assert got.column("_seq").to_pylist() == [e.seq for e in want]
    assert got.column("id").to_pylist() == [e.id for e in want]
    assert ts_of(got) == [e.ts for e in want]


@pytest.mark.parametrize("backend", ["memory", "disk"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs, ops=operations, data=st.data())
def test_store_agrees_with_model(backend, tmp_path_factory, config, ops, data):
    path: Path | None = tmp_path_factory.mktemp("prop") / "store" if backend == "disk" else None
    store = tidal.open(path, **config)
    model: list[Event] = []
    try:
        for op in ops:
            if op[0] == "append":
                _, batch, form = op
                ids = [f"x{len(model) + i}" for i in range(len(batch))]
                receipt = store.append(encode(batch, ids, form))
                first = len(model)
                model += [Event(first + i, e, ts, ids[i]) for i, (e, ts) in enumerate(batch)]
                assert receipt.count == len(batch)
                assert (receipt.first_seq, receipt.last_seq) == (
                    (first, len(model) - 1) if batch else (None, None))
            elif op[0] == "flush":
                store.flush()
                assert store.stats()["memtable_events"] == 0
            elif op[0] == "compact":
                store.compact()
                assert store.compact() == 0  # nothing left that fits together
            elif path is not None:  # reopen; the in-memory store has nothing to reopen
                store.close()
                store = tidal.open(path, **config)
            check(store, model, data)
    finally:
        store.close()

