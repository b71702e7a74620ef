"""The store contract, run against the in-memory and the on-disk store alike."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pyarrow as pa
import pytest

import tidal

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns


def events(n: int, *, entities: int = 3, start: int = T0, step: int = 1_000_000_000) -> pa.Table:
    return pa.table({
        "timestamp": pa.array([start + i * step for i in range(n)], pa.timestamp("ns", "UTC")),
        "entity": [f"e{i % entities}" for i in range(n)],
        "n": list(range(n)),
    })


def test_append_returns_seq_range(open_store):
    store = open_store()
    r1 = store.append(events(5))
    r2 = store.append(events(3))
    assert (r1.count, r1.first_seq, r1.last_seq) == (5, 0, 4)
    assert (r2.count, r2.first_seq, r2.last_seq) == (3, 5, 7)
    assert store.max_seq() == 7


def test_empty_append_stores_nothing(open_store):
    store = open_store()
    r = store.append([])
    assert (r.count, r.first_seq, r.last_seq) == (0, None, None)
    assert store.max_seq() == -1
    assert store.timeline("e0").num_rows == 0


@pytest.mark.parametrize("flush", [False, True])
def test_timeline_orders_by_time_then_seq(open_store, flush):
    store = open_store()
    # out of order in time, with a tie broken by _seq
    store.append([
        {"timestamp": T0 + 30, "entity": "a", "v": 1},
        {"timestamp": T0 + 10, "entity": "a", "v": 2},
        {"timestamp": T0 + 10, "entity": "b", "v": 3},
        {"timestamp": T0 + 20, "entity": "a", "v": 4},
    ], )
    if flush:
        store.flush()
    store.append([{"timestamp": T0 + 10, "entity": "a", "v": 5}])
    t = store.timeline("a")
    assert t.column("v").to_pylist() == [2, 5, 4, 1]
    assert t.column("_seq").to_pylist() == [1, 4, 3, 0]
    assert store.timeline("a", desc=True).column("v").to_pylist() == [1, 4, 5, 2]
    assert store.timeline("a", limit=2).column("v").to_pylist() == [2, 5]
    assert store.timeline("a", desc=True, limit=1).column("v").to_pylist() == [1]


def test_timeline_window_start_inclusive_end_exclusive(open_store):
    store = open_store()
    store.append(events(30, entities=1))
    start = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
    t = store.timeline("e0", start, "2026-01-01T00:00:20Z")
    assert t.column("n").to_pylist() == list(range(10, 20))
    assert store.timeline("e0", T0 + 25 * 10**9).column("n").to_pylist() == list(range(25, 30))
    assert store.timeline("e0", end=T0 + 2 * 10**9).column("n").to_pylist() == [0, 1]


def test_timeline_naive_datetime_is_an_error(open_store):
    store = open_store()
    with pytest.raises(tidal.QueryError, match="start"):
        store.timeline("e0", datetime(2026, 1, 1))  # noqa: DTZ001


def test_timeline_spans_segments_and_memtable(open_store):
    store = open_store()
    for i in range(4):
        store.append(events(10, start=T0 + i * 100 * 10**9))
        if i % 2 == 0:
            store.flush()
    t = store.timeline("e1")
    ts = t.column("timestamp").to_pylist()
    assert ts == sorted(ts)
    assert t.num_rows == 4 * len(range(1, 10, 3))


def test_flush_and_compact_keep_every_event_once(open_store):
    store = open_store(compact_min_rows=1000)
    for i in range(5):
        store.append(events(20, start=T0 + i * 10**11))
        store.flush()
    assert store.stats()["segments"] == 5
    assert store.compact() == 5
    assert store.stats()["segments"] == 1
    seqs = store.sql("SELECT _seq FROM events ORDER BY _seq").column("_seq").to_pylist()
    assert seqs == list(range(100))


def test_segments_stay_within_their_time_span(open_store):
    """Flushes and compactions cut at ``segment_span_s``: a window reads its own segments."""
    store = open_store(compact_min_rows=1000, segment_span_s=150)
    for i in range(5):  # 100 s apart; the first append also holds two events an hour late
        late = events(2, start=T0 - 3600 * 10**9) if i == 0 else None
        store.append(events(20, start=T0 + i * 10**11))
        if late is not None:
            store.append(late)
        store.flush()
    assert store.stats()["segments"] == 6  # the late events got their own segment
    store.compact()
    spans = sorted((m.min_ts, m.max_ts) for m in store._engine.manifest.segments)
    assert all(high - low < 150 * 10**9 for low, high in spans)
    assert len(spans) == 4  # [late], [0 s, 100 s], [200 s, 300 s], [400 s]
    assert store.read_from(0).num_rows == 102
    got = store.timeline("e0")
    ts = got.column("timestamp").cast(pa.int64()).to_pylist()
    assert ts == sorted(ts) and len(ts) == 5 * 7 + 1


def test_compaction_splits_a_chunk_by_entity(open_store):
    """A merged chunk larger than ``segment_rows`` is written as segments of disjoint
    entities over the same time, none of them small enough to be compacted again."""
    store = open_store(segment_rows=100, compact_min_rows=40, compact_chunk_rows=1000)
    for i in range(6):  # 6 flushes of 36 events over 12 entities
        store.append(events(36, entities=12, start=T0 + i * 36 * 10**9))
        store.flush()
    store.compact()
    metas = store._engine.manifest.segments
    assert [m.rows for m in metas] == [72, 72, 72]  # ceil(216 / 100) pieces
    held = [set(store._engine.segments.index_table(m).column("entity").to_pylist())
            for m in metas]
    assert sum(map(len, held)) == 12 and set().union(*held) == {f"e{i}" for i in range(12)}
    assert store.compact() == 0  # its output is not compacted again
    for k in range(12):
        got = store.timeline(f"e{k}").column("n").to_pylist()
        assert got == [n for i in range(6) for n in range(k, 36, 12)]
    assert store.read_from(0).num_rows == 216


def test_sql_sees_segments_and_memtable(open_store):
    store = open_store()
    store.append(events(10))
    store.flush()
    store.append(events(5))
    got = store.sql("SELECT count(*) AS c, max(n) AS m FROM events").to_pylist()
    assert got == [{"c": 15, "m": 9}]
    params = store.sql("SELECT count(*) AS c FROM events WHERE entity = ?", ["e0"])
    assert params.column("c").to_pylist() == [4 + 2]


def test_sql_nested_fields(open_store):
    store = open_store(entity_field="kubernetes.pod.name")
    store.append([
        {"timestamp": T0, "kubernetes": {"pod": {"name": "p1"}}, "reason": "OOMKilled"},
        {"timestamp": T0 + 1, "kubernetes": {"pod": {"name": "p2"}}, "reason": "BackOff"},
    ])
    got = store.sql("SELECT kubernetes.pod.name AS pod FROM events ORDER BY _seq")
    assert got.column("pod").to_pylist() == ["p1", "p2"]
    assert store.timeline("p2").column("reason").to_pylist() == ["BackOff"]


def test_sql_error_is_query_error(open_store):
    store = open_store()
    with pytest.raises(tidal.QueryError) as info:
        store.sql("SELEC 1")
    assert info.value.query == "SELEC 1"


def test_sql_on_empty_store(open_store):
    store = open_store()
    assert store.sql("SELECT count(*) AS c FROM events").to_pylist() == [{"c": 0}]


def test_read_from_returns_seq_order(open_store):
    store = open_store(compact_min_rows=10**6)
    store.append(events(10))
    store.flush()
    store.append(events(10))
    store.flush()
    store.compact()
    store.append(events(5))
    t = store.read_from(7)
    assert t.column("_seq").to_pylist() == list(range(7, 25))
    assert store.read_from(20, limit=3).column("_seq").to_pylist() == [20, 21, 22]
    assert store.read_from(100).num_rows == 0


def test_schema_evolves_across_appends(open_store):
    store = open_store()
    store.append([{"timestamp": T0, "entity": "a", "x": 1}])
    store.flush()
    store.append([{"timestamp": T0 + 1, "entity": "a", "x": 1.5, "y": "new"}])
    store.append([{"timestamp": T0 + 2, "entity": "a", "x": "text"}])
    t = store.timeline("a")
    assert [str(v) for v in t.column("x").to_pylist()] in (["1", "1.5", "text"],
                                                           ["1.0", "1.5", "text"])
    assert t.column("y").to_pylist() == [None, "new", None]
    assert store.sql("SELECT count(*) AS c FROM events").column("c").to_pylist() == [3]


def test_missing_timestamp_gets_ingest_time_or_is_rejected(open_store):
    store = open_store()
    before = tidal.api.now_ns()
    store.append([{"entity": "a"}])
    ts = store.timeline("a").column("timestamp").cast(pa.int64()).to_pylist()[0]
    assert before <= ts <= tidal.api.now_ns()
    store.close()
    strict = open_store(missing_timestamp="reject")
    with pytest.raises(tidal.IngestError, match="missing timestamp"):
        strict.append([{"timestamp": T0, "entity": "a"}, {"entity": "b"}])


def test_bad_timestamp_rejects_whole_input(open_store):
    store = open_store()
    with pytest.raises(tidal.IngestError) as info:
        store.append(b'{"timestamp": "2026-01-01T00:00:00Z", "entity": "a"}\n'
                     b'{"timestamp": "not a time", "entity": "a"}\n')
    assert info.value.problems[0].line == 2
    assert info.value.problems[0].field == "timestamp"
    assert store.max_seq() == -1


def test_skip_writes_dead_letter(open_store, tmp_path):
    store = open_store()
    r = store.append(b'{"timestamp": 1767225600, "entity": "a"}\n'
                     b'{oops\n'
                     b'{"timestamp": "bad", "entity": "a"}\n'
                     b'{"timestamp": 1767225601, "entity": "a"}\n', on_error="skip")
    assert (r.count, r.rejected) == (2, 2)
    lines = (tmp_path / "dead.ndjson").read_text().splitlines()
    assert len(lines) == 2 and '"line":2' in lines[0] and '"line":3' in lines[1]
    assert store.timeline("a").num_rows == 2


def test_stats(open_store, backend):
    store = open_store()
    store.append(events(30, entities=3))
    store.flush()
    store.append(events(6, entities=6))
    s = store.stats()
    assert s["events"] == 36
    assert s["entities"] == 6
    assert s["segments"] == 1
    assert s["memtable_events"] == 6
    assert s["bytes_per_event_memory"] > 0
    if backend is not None:
        assert s["disk_bytes"] > 0 and s["bytes_per_event_disk"] > 0 and s["wal_bytes"] > 0


def test_closed_store_refuses_work(open_store):
    store = open_store()
    store.close()
    store.close()
    with pytest.raises(tidal.ClosedError):
        store.append(events(1))


def test_context_manager_closes(backend):
    with tidal.open(backend) as store:
        store.append(events(1))
    assert store.closed


def test_disk_store_remembers_its_entity_field(tmp_path):
    path = tmp_path / "s"
    with tidal.open(path, entity_field="pod") as store:
        store.append([{"timestamp": T0, "pod": "p1"}])
    with tidal.open(path) as store:
        assert store.config.entity_field == "pod"
        assert store.timeline("p1").num_rows == 1
    with pytest.raises(tidal.ConfigError, match="entity_field"):
        tidal.open(path, entity_field="other")


def test_retention_by_age_drops_old_segments(open_store):
    store = open_store(retention_age_s=86_400)
    old = 1_577_836_800_000_000_000  # 2020-01-01
    store.append(events(10, start=old))
    store.flush()
    store.append(events(10, start=tidal.api.now_ns()))
    store.flush()
    s = store.stats()
    assert (s["events"], s["dropped_segments"], s["dropped_events"]) == (10, 1, 10)
    assert store.sql("SELECT min(n) AS m FROM events").to_pylist() == [{"m": 0}]
    ts = store.sql("SELECT min(timestamp) AS t FROM events").column("t")
    assert ts.cast(pa.timestamp("ns", "UTC")).cast(pa.int64())[0].as_py() > old


def test_retention_by_bytes_drops_oldest_segments(open_store):
    probe = open_store()
    probe.append(events(50))
    probe.flush()
    one_segment = probe.stats()["segment_bytes"]
    probe.close()
    store = open_store(retention_bytes=int(2.5 * one_segment), compact_min_rows=1)
    for i in range(4):
        store.append(events(50, start=T0 + i * 10**12))
        store.flush()
    s = store.stats()
    assert s["dropped_segments"] >= 2 and s["segments"] == 2
    oldest = store.sql("SELECT min(timestamp) AS t FROM events").column("t")
    assert oldest.cast(pa.timestamp("ns", "UTC")).cast(pa.int64())[0].as_py() >= T0 + 2 * 10**12


def test_old_memtable_is_flushed_without_further_appends(open_store):
    store = open_store(memtable_age_s=0.2)
    store.append(events(5))
    deadline = threading.Event()
    for _ in range(100):  # up to 5 s
        if store.stats()["segments"] >= 1:
            break
        deadline.wait(0.05)
    s = store.stats()
    assert s["segments"] == 1 and s["memtable_events"] == 0 and s["events"] == 5


@pytest.mark.parametrize("durability", ["group", "interval", "none"])
def test_every_durability_policy_survives_close_and_reopen(tmp_path, durability):
    path = tmp_path / "s"
    with tidal.open(path, durability=durability, fsync_interval_s=0.01) as store:
        for i in range(5):
            store.append(events(10, start=T0 + i * 10**12))
        assert store.stats()["wal_bytes"] > 0
    with tidal.open(path) as store:
        assert store.read_from(0).column("_seq").to_pylist() == list(range(50))


def test_bad_config_is_a_config_error():
    with pytest.raises(tidal.ConfigError) as info:
        tidal.open(None, durability="sometimes")
    assert info.value.field == "durability"
    with pytest.raises(tidal.ConfigError, match="unknown option"):
        tidal.open(None, no_such_option=1)


@pytest.mark.parametrize("name", ["segment_rows", "segment_span_s", "compact_min_rows",
                                  "compact_chunk_rows"])
def test_layout_sizes_must_be_positive(name):
    with pytest.raises(tidal.ConfigError, match=f"{name} must be positive") as info:
        tidal.open(None, **{name: 0})
    assert info.value.field == name
