"""Ingest deduplication: ``dedup_key`` + ``dedup_window`` skip (and count) repeated events.

An event is a duplicate when its key equals that of a stored event, or of one
kept earlier in the same append, within the window of its timestamp
(``|Δt| <= window``). The cases below are tables: each append is a list of
``(offset_ns, key)`` events; ``kept`` lists the events stored, numbered across
the appends in input order.
"""

from __future__ import annotations

import importlib
import json
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pytest

import tidal
from tidal.api import Store
from tidal.config import StoreConfig

from .events import T0

S = 10**9
W = 10 * S  # the window of the cases: "10s"
dedup_module = importlib.import_module("tidal.store.dedup")


def events(pairs: list[tuple[int, object]], first: int = 0) -> list[dict[str, object]]:
    """Events at ``T0 + offset_ns`` with key ``rid``; ``n`` numbers them from ``first``."""
    out: list[dict[str, object]] = []
    for i, (offset, key) in enumerate(pairs):
        event: dict[str, object] = {"timestamp": T0 + offset, "entity": "e", "n": first + i}
        if key is not ...:  # (... : the field is absent)
            event["rid"] = key
        out.append(event)
    return out


def stored(store: tidal.Store, column: str = "n") -> list[object]:
    return store.read_from(0).column(column).to_pylist()


@dataclass(frozen=True)
class Case:
    name: str
    appends: list[list[tuple[int, object]]]
    kept: list[int]


CASES = [
    Case("within one append, the first is kept",
         [[(0, "a"), (5 * S, "a"), (0, "b"), (1, "a")]], kept=[0, 2]),
    Case("across appends", [[(0, "a"), (0, "b")], [(3 * S, "a"), (3 * S, "c")]],
         kept=[0, 1, 3]),
    Case("exactly the window apart is a duplicate", [[(0, "a")], [(W, "a")]], kept=[0]),
    Case("1 ns past the window is not", [[(0, "a")], [(W + 1, "a")]], kept=[0, 1]),
    Case("earlier in time, within the window", [[(20 * S, "a")], [(12 * S, "a")]], kept=[0]),
    Case("earlier in time, past the window", [[(20 * S, "a")], [(10 * S - 1, "a")]],
         kept=[0, 1]),
    Case("out of order inside one append",
         [[(30 * S, "a"), (21 * S, "a"), (19 * S, "a"), (40 * S, "a")]], kept=[0, 2]),
    Case("compared with the events kept, not those skipped",
         [[(0, "a"), (W, "a"), (2 * W, "a")]], kept=[0, 2]),
    Case("one by one, the same", [[(0, "a")], [(W, "a")], [(2 * W, "a")]], kept=[0, 2]),
    Case("null keys are never duplicates", [[(0, None), (0, None)], [(0, None)]],
         kept=[0, 1, 2]),
    Case("absent keys are never duplicates", [[(0, ...), (0, ...)], [(0, "a"), (0, ...)]],
         kept=[0, 1, 2, 3]),
    Case("keys compare as text: 5 and '5' are one key", [[(0, 5)], [(S, "5"), (S, 5.5)]],
         kept=[0, 2]),
    Case("behind the newest time by more than the window, only its own append counts",
         [[(100 * S, "x")], [(5 * S, "a"), (6 * S, "a")], [(7 * S, "a")]], kept=[0, 1, 3]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_duplicates_are_skipped_and_counted(open_store, case):
    store = open_store(dedup_key=["rid"], dedup_window="10s")
    first, skipped = 0, 0
    for pairs in case.appends:
        receipt = store.append(events(pairs, first))
        kept_here = [n for n in case.kept if first <= n < first + len(pairs)]
        assert (receipt.count, receipt.duplicates) == (len(kept_here), len(pairs) - len(kept_here))
        skipped += receipt.duplicates
        first += len(pairs)
    assert stored(store) == case.kept
    assert store.max_seq() == len(case.kept) - 1  # duplicates get no _seq
    assert store.stats()["dedup"]["duplicates"] == skipped


def test_stats_report_the_key_window_and_counts(open_store):
    store = open_store(dedup_key=["rid"], dedup_window="1m")
    store.append(events([(0, "a"), (0, "a"), (0, "b"), (0, None)]))
    store.append(events([(S, "b"), (2 * S, "c")]))
    assert store.stats()["dedup"] == {"key": ["rid"], "window_ns": 60 * S, "duplicates": 2,
                                      "tracked": 3}


def test_nested_and_multi_field_keys(open_store):
    store = open_store(dedup_key=["host.name", "event.id"], dedup_window="10s")
    rows = [
        {"host": {"name": "h1"}, "event": {"id": 1}},   # 0 kept
        {"host": {"name": "h1"}, "event": {"id": 2}},   # 1 kept: another event.id
        {"host": {"name": "h2"}, "event": {"id": 1}},   # 2 kept: another host
        {"host": {"name": "h1"}, "event": {"id": 1}},   # 3 duplicate of 0
        {"host": {"name": "h1"}},                       # 4 kept: no event.id
        {"host": {"name": "h1"}},                       # 5 kept: no event.id
        {"host": {"name": "ab"}, "event": {"id": "c"}},  # 6 kept
        {"host": {"name": "a"}, "event": {"id": "bc"}},  # 7 kept: fields are kept apart
        {"event": {"id": 1}},                           # 8 kept: no host
    ]
    receipt = store.append([{"timestamp": T0, "entity": "e", "n": i, **row}
                            for i, row in enumerate(rows)])
    assert (receipt.count, receipt.duplicates) == (8, 1)
    again = store.append([{"timestamp": T0 + S, "entity": "e", "n": 9, **rows[6]},
                          {"timestamp": T0 + S, "entity": "e", "n": 10,
                           "host": {"name": "h2", "os": "linux"}, "event": {"id": 1}}])
    assert (again.count, again.duplicates) == (0, 2)
    assert stored(store) == [0, 1, 2, 4, 5, 6, 7, 8]


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2]])
def test_a_key_field_holding_an_object_or_array_is_no_key(open_store, value):
    store = open_store(dedup_key=["rid"], dedup_window="10s")
    for _ in range(2):
        assert store.append([{"timestamp": T0, "rid": value}] * 2).duplicates == 0
    assert store.stats()["events"] == 4


def test_concurrent_appends_keep_each_event_once(open_store):
    """Eight threads append overlapping batches: every key is stored exactly once."""
    store = open_store(dedup_key=["rid"], dedup_window="1h")
    threads, per_thread, batches = 8, 40, 25
    receipts: list[tidal.Receipt] = []
    lock = threading.Lock()
    go = threading.Barrier(threads)

    drawn = [np.random.default_rng(t).integers(0, 600, (batches, per_thread))
             for t in range(threads)]

    def work(t: int) -> None:
        go.wait()
        for keys in drawn[t]:
            r = store.append([{"timestamp": T0 + int(k) * S, "entity": f"e{k % 3}",
                               "rid": f"r{k}"} for k in keys])
            with lock:
                receipts.append(r)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    keys = stored(store, "rid")
    assert len(keys) == len(set(keys))
    assert set(keys) == {f"r{k}" for keys_of in drawn for k in keys_of.ravel()}
    total = threads * per_thread * batches
    assert sum(r.count for r in receipts) == len(keys)
    assert sum(r.duplicates for r in receipts) == total - len(keys)
    assert store.stats()["dedup"]["duplicates"] == total - len(keys)


def test_a_positioned_append_of_duplicates_still_commits_its_position(open_store):
    store = open_store(dedup_key=["rid"], dedup_window="10s")
    store.append(events([(0, "a")]), source="s", position=1)
    r = store.append(events([(0, "a")]), source="s", position=2)
    assert (r.count, r.duplicates, r.position, r.duplicate) == (0, 1, 2, False)
    assert store.positions() == {"s": 2}


def test_without_a_dedup_key_nothing_changes(tmp_path):
    with tidal.open(tmp_path / "s") as store:
        r = store.append(events([(0, "a"), (0, "a")]))
        assert (r.count, r.duplicates) == (2, 0)
        assert store.stats()["dedup"] is None
        assert store._engine.writer is not None and store._engine.writer.dedup is None
    code = ("import sys, tidal; s = tidal.open(sys.argv[1]); s.append([{'x': 1}]); s.close(); "
            "print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "t")], check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == "False"  # no dedup, no numba at open or append


# -- reopening -------------------------------------------------------------------------

def test_a_batch_retried_after_a_reopen_is_skipped(tmp_path):
    path = tmp_path / "s"
    batch = events([(i * S, f"r{i}") for i in range(50)])
    with tidal.open(path, dedup_key=["rid"], dedup_window="1m") as store:
        store.append(batch[:30])
        store.flush()  # some in segments, the rest in the WAL
        store.append(batch[30:])
    with tidal.open(path, dedup_key=["rid"], dedup_window="1m") as again:
        assert again.stats()["dedup"]["tracked"] == 50
        r = again.append(batch)
        assert (r.count, r.duplicates) == (0, 50)
        assert again.stats()["events"] == 50
    with tidal.open(path) as plain:  # not remembered: without the key, no deduplication
        assert plain.append(batch[:1]).count == 1


def test_reopening_tracks_only_the_last_window_and_takes_a_new_key(tmp_path):
    path = tmp_path / "s"
    old, new = {"rid": "a", "host": "h"}, {"rid": "b", "host": "h"}
    with tidal.open(path, dedup_key=["rid"], dedup_window="10m") as store:
        store.append([{"timestamp": T0, **old}, {"timestamp": T0 + 3600 * S, **new}])
    with tidal.open(path, dedup_key=["rid"], dedup_window="10m") as again:
        assert again.stats()["dedup"]["tracked"] == 1  # the hour-old event is behind
        r = again.append([{"timestamp": T0 + 3600 * S, **new}, {"timestamp": T0, **old}])
        assert (r.count, r.duplicates) == (1, 1)
    with tidal.open(path, dedup_key=["host"], dedup_window="2h") as other:
        r = other.append([{"timestamp": T0 + 3600 * S, "rid": "z", "host": "h"}])
        assert (r.count, r.duplicates) == (0, 1)
        assert other.stats()["dedup"]["key"] == ["host"]


CHILD = """
import os, signal, sys, json
import tidal
events = json.loads(sys.stdin.read())
store = tidal.open(sys.argv[1], dedup_key=["rid"], dedup_window="1m")
store.append(events[:40])
store.flush()
r = store.append(events[40:] + events[:5])
print(r.count, r.duplicates, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_batch_retried_after_a_crash_is_skipped(tmp_path):
    """A writer killed with SIGKILL after its appends were acknowledged."""
    path = tmp_path / "s"
    batch = events([(i * S // 10, f"r{i}") for i in range(100)])
    child = subprocess.run([sys.executable, "-c", CHILD, str(path)], input=json.dumps(batch),
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout.split() == ["60", "5"]
    with tidal.open(path, dedup_key=["rid"], dedup_window="1m") as store:
        assert store.stats()["events"] == 100  # from segments and the WAL
        r = store.append(batch + events([(0, "new")], first=100))
        assert (r.count, r.duplicates) == (1, 100)
        assert stored(store) == list(range(101))


# -- failures --------------------------------------------------------------------------

def test_a_failed_wal_write_forgets_what_it_kept(tmp_path):
    from .faults import FaultyFiles

    files = FaultyFiles()
    store = Store(tmp_path / "s", StoreConfig.build({"dedup_key": ["rid"],
                                                    "dedup_window": "10s"}), fs=files)
    store.append(events([(0, "a")]))
    files.space_bytes = 0  # the next WAL write fails
    with pytest.raises(tidal.StorageError):
        store.append(events([(0, "b"), (0, "a")], first=1))
    files.space_bytes = None
    r = store.append(events([(0, "b"), (0, "a")], first=1))  # b was never stored: kept now
    assert (r.count, r.duplicates) == (1, 1)
    assert store.stats()["dedup"]["duplicates"] == 1  # the failed append counts nothing
    store.close()
    with tidal.open(tmp_path / "s") as again:
        assert stored(again) == [0, 1]


def test_an_append_of_duplicates_only_fails_with_the_write_it_relied_on(tmp_path):
    """Two appends of one event in one group: if the group's write fails, neither
    may claim the event was stored."""
    from .faults import FaultyFiles

    files = FaultyFiles()
    config = {"dedup_key": ["rid"], "dedup_window": "10s", "group_commit_max_events": 2,
              "group_commit_max_wait_us": 1_000_000}  # the leader waits for the second
    store = Store(tmp_path / "s", StoreConfig.build(config), fs=files)
    files.space_bytes = 0
    outcomes: list[object] = []

    def append() -> None:
        try:
            outcomes.append(store.append(events([(0, "a")])))
        except tidal.StorageError as exc:
            outcomes.append(exc)

    workers = [threading.Thread(target=append) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert store._engine.writer.groups == (1, 2)  # one group of both
    assert [type(o) for o in outcomes] == [tidal.StorageError] * 2
    files.space_bytes = None
    store.close()
    with tidal.open(tmp_path / "s", dedup_key=["rid"], dedup_window="10s") as again:
        assert again.append(events([(0, "a")])).count == 1


def test_a_bad_append_leaves_the_index_as_it_was(open_store):
    store = open_store(dedup_key=["rid"], dedup_window="10s")
    with pytest.raises(tidal.IngestError):
        store.append(b'{"timestamp": 1, "rid": "a"}\n{not json}\n')
    assert store.append(events([(0, "a")])).count == 1


def test_a_hash_collision_is_not_a_duplicate(open_store, monkeypatch):
    """Every key hashes alike here: only equal keys may be duplicates."""
    monkeypatch.setattr(dedup_module, "fnv1a",
                        lambda offsets, data: np.zeros(len(offsets) - 1, dtype=np.int64))
    store = open_store(dedup_key=["rid"], dedup_window="10s")
    r = store.append(events([(0, "a"), (0, "b"), (0, "a"), (S, "c"), (S, "b")]))
    assert (r.count, r.duplicates) == (3, 2)
    assert stored(store, "rid") == ["a", "b", "c"]


def test_entries_behind_the_window_are_dropped(open_store, monkeypatch):
    monkeypatch.setattr(dedup_module, "COMPACT_MIN_ENTRIES", 1000)
    store = open_store(dedup_key=["rid"], dedup_window="1s")
    for k in range(30):  # 30 s of events, 200 a second
        store.append(events([(k * S + i * 5_000_000, f"r{k}-{i}") for i in range(200)]))
    index = store._engine.writer.dedup
    assert store.stats()["dedup"]["tracked"] == 201  # from 28.995 s, 1 s before the newest
    assert len(index) <= 2 * 1000 + 200
    late = store.append(events([(29 * S, "r29-0"), (28 * S, "r28-0")]))
    assert (late.count, late.duplicates) == (1, 1)  # r28-0 is behind the window: stored


def test_a_streamed_append_skips_duplicates_across_its_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.import_module("tidal.ingest.decode"), "STREAM_MIN_BYTES",
                        16 << 10)
    monkeypatch.setattr(importlib.import_module("tidal.ingest.ndjson"), "STREAM_BLOCK_BYTES",
                        4 << 10)
    rows = [json.dumps({"timestamp": T0 + (i % 500) * S // 100, "rid": f"r{i % 500}",
                        "pad": "p" * 40}) for i in range(1500)]
    path = tmp_path / "big.ndjson"
    path.write_text("\n".join(rows) + "\n")
    with tidal.open(tmp_path / "s", dedup_key=["rid"], dedup_window="10s") as store:
        r = store.append(path)
        assert (r.count, r.duplicates) == (500, 1000)
        fresh = [row.replace('"rid": "r', '"rid": "n') for row in rows[:500]]
        bad = tmp_path / "bad.ndjson"
        bad.write_text("\n".join(fresh[:300] + ["{oops"] + fresh[300:]) + "\n")
        with pytest.raises(tidal.IngestError):
            store.append(bad)  # fails whole, after some of its blocks were written
        assert store.stats()["dedup"]["duplicates"] == 1000
        good = tmp_path / "good.ndjson"
        good.write_text("\n".join(fresh) + "\n")
        assert store.append(good).count == 500  # what the failed one kept is forgotten
        r = store.append(path)
        assert (r.count, r.duplicates) == (0, 1500)


# -- settings --------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "field"), [
    ({"dedup_key": [], "dedup_window": "10m"}, "dedup_key"),
    ({"dedup_key": [""], "dedup_window": "10m"}, "dedup_key"),
    ({"dedup_key": ["a..b"], "dedup_window": "10m"}, "dedup_key"),
    ({"dedup_key": [1], "dedup_window": "10m"}, "dedup_key"),
    ({"dedup_key": 5, "dedup_window": "10m"}, "dedup_key"),
    ({"dedup_key": ["rid"]}, "dedup_window"),
    ({"dedup_key": ["rid"], "dedup_window": "10 parsecs"}, "dedup_window"),
    ({"dedup_key": ["rid"], "dedup_window": "-1s"}, "dedup_window"),
    ({"dedup_key": ["rid"], "dedup_window": -1}, "dedup_window"),
    ({"dedup_key": ["rid"], "dedup_window": float("nan")}, "dedup_window"),
    ({"dedup_key": ["rid"], "dedup_window": True}, "dedup_window"),
    ({"dedup_key": ["rid"], "dedup_window": "300000d"}, "dedup_window"),
    ({"dedup_window": "10m"}, "dedup_window"),
])
def test_bad_settings_name_their_field(tmp_path, options, field):
    with pytest.raises(tidal.ConfigError) as info:
        tidal.open(tmp_path / "s", **options)
    assert info.value.field == field
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(("window", "ns"), [("10m", 600 * S), ("1.5s", 1_500_000_000),
                                            ("250ms", 250_000_000), ("0s", 0), (30, 30 * S),
                                            ("2h", 7200 * S), ("1ns", 1),
                                            (timedelta(minutes=1, microseconds=5),
                                             60 * S + 5000)])
def test_windows(window, ns):
    assert StoreConfig(dedup_key=("rid",), dedup_window=window).dedup_window_ns == ns


def test_settings_from_the_environment():
    config = StoreConfig.build(environ={"TIDAL_DEDUP_KEY": "host.name, event.id",
                                        "TIDAL_DEDUP_WINDOW": "5m"})
    assert config.dedup_key == ("host.name", "event.id") and config.dedup_window_ns == 300 * S
    assert StoreConfig(dedup_key="rid", dedup_window=1).dedup_key == ("rid",)


def test_a_zero_window_skips_only_events_at_the_same_time(open_store):
    store = open_store(dedup_key=["rid"], dedup_window=0)
    r = store.append(events([(0, "a"), (0, "a"), (1, "a")]))
    assert (r.count, r.duplicates) == (2, 1)


def test_a_read_only_open_ignores_the_key(tmp_path):
    with tidal.open(tmp_path / "s", dedup_key=["rid"], dedup_window="1m") as store:
        store.append(events([(0, "a")]))
    with tidal.open(tmp_path / "s", read_only=True, dedup_key=["rid"],
                    dedup_window="1m") as reader:
        assert reader.stats()["dedup"] is None and stored(reader) == [0]
