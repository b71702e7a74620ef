"""Crash safety end to end: ``kill -9`` at random moments, torn WAL tails.

Invariant 1: after a crash at any moment, reopening the store recovers every
acknowledged event exactly once, ``_seq`` stays dense, and appends go on from
``max_seq() + 1``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa

import tidal

from ._crash_child import CHILD_CONFIG, T0, batch_id, make_batch

CHILD = Path(__file__).with_name("_crash_child.py")
ROUNDS = 24
SEED = 20260101


def spawn(store_dir: Path, round_no: int) -> subprocess.Popen[str]:
    """Start a child; it imports Tidal and then waits for "go" on stdin."""
    return subprocess.Popen([sys.executable, str(CHILD), str(store_dir), str(round_no)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run_round(child: subprocess.Popen[str], delay_s: float) -> tuple[int, list[tuple[int, int, str]]]:
    """Let ``child`` open the store, kill it ``delay_s`` later; return (ready max_seq, receipts)."""
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    ready = child.stdout.readline()
    assert ready.startswith("ready "), (ready, child.stderr.read())
    time.sleep(delay_s)
    child.send_signal(signal.SIGKILL)
    out, err = child.communicate(timeout=30)
    print("ERR", time.time(), delay_s, err[-500:])
    assert child.returncode == -signal.SIGKILL, err  # it must not have died on its own
    assert out == "" or out.endswith("\n"), "a receipt line was cut"
    receipts = []
    for line in out.splitlines():
        first, last, bid = line.split()
        receipts.append((int(first), int(last), bid))
    return int(ready.split()[1]), receipts


def check_store(store: tidal.Store, acked: dict[str, tuple[int, int]],
                sent: dict[int, int]) -> None:
    """Every acknowledged event once, ``_seq`` dense, nothing that was never sent.

    ``acked`` maps batch id to its receipt; ``sent[r]`` is the number of batches
    round ``r`` may have handed to ``append`` (acknowledged ones plus one in flight).
    """
    table = store.read_from(0)
    n = table.num_rows
    seqs = table.column("_seq").to_numpy()
    assert store.max_seq() == n - 1
    assert np.array_equal(seqs, np.arange(n)), "_seq is not dense 0..max_seq in order"
    assert not acked or n > 0, "acknowledged batches lost"
    if n == 0:
        return
    ids = table.column("id").to_pylist()
    assert len(set(ids)) == n, "an event is present twice"
    batches = table.column("batch").to_pylist()
    present = Counter(batches)
    for bid, (first, last) in acked.items():
        assert bid in present, f"acknowledged batch {bid} lost"
        assert set(batches[first : last + 1]) == {bid}, f"batch {bid} not at its receipt's _seq"
    start = 0
    for bid in dict.fromkeys(batches):  # each batch is contiguous in _seq and complete
        round_no, k = (int(x[1:]) for x in bid.split("-"))
        assert k < sent.get(round_no, 0), f"batch {bid} was never sent"
        expected = make_batch(round_no, k)
        got = table.slice(start, expected.num_rows)
        start += expected.num_rows
        assert got.column("batch").to_pylist() == [bid] * expected.num_rows, bid
        for name in ("id", "entity", "pad"):
            assert got.column(name).to_pylist() == expected.column(name).to_pylist(), (bid, name)
        assert got.column("timestamp").cast(pa.int64()).equals(
            expected.column("timestamp").cast(pa.int64())), bid
    assert start == n
    counts = store.sql("SELECT count(*) AS c, count(DISTINCT id) AS d, max(_seq) AS m "
                       "FROM events").to_pylist()
    assert counts == [{"c": n, "d": n, "m": n - 1 if n else None}]
    assert_timeline_matches(store, table, "e3")


def assert_timeline_matches(store: tidal.Store, everything: pa.Table, entity: str) -> None:
    """``timeline(entity)`` holds exactly that entity's events, by (timestamp, ``_seq``)."""
    rows = [r for r in everything.select(["timestamp", "_seq", "entity", "id"]).to_pylist()
            if r["entity"] == entity]
    rows.sort(key=lambda r: (r["timestamp"], r["_seq"]))
    got = store.timeline(entity)
    assert got.column("id").to_pylist() == [r["id"] for r in rows]
    assert got.column("_seq").to_pylist() == [r["_seq"] for r in rows]


def test_kill_9_at_random_moments_loses_nothing_acknowledged(tmp_path):
    rng = random.Random(SEED)
    store_dir = tmp_path / "store"
    acked: dict[str, tuple[int, int]] = {}
    sent: dict[int, int] = {}
    expected_next = 0
    rounds_with_segments = 0
    child = spawn(store_dir, 0)
    try:
        for round_no in range(ROUNDS):
            ready_max, receipts = run_round(child, rng.uniform(0.02, 0.4))
            # Start the next child now: its imports overlap with our checks below.
            child = spawn(store_dir, round_no + 1)
            assert ready_max == expected_next - 1, "the child's recovery disagrees with ours"
            for first, last, bid in receipts:
                assert first == expected_next, f"{bid} did not continue from max_seq() + 1"
                expected_next = last + 1
                acked[bid] = (first, last)
            assert [bid for _, _, bid in receipts] == [batch_id(round_no, k)
                                                       for k in range(len(receipts))]
            sent[round_no] = len(receipts) + 1
            with tidal.open(store_dir, **CHILD_CONFIG) as store:
                check_store(store, acked, sent)
                expected_next = store.max_seq() + 1  # an unacknowledged batch may have landed
                stats = store.stats()
                assert stats["events"] == expected_next
                rounds_with_segments += stats["segments"] > 0
                print("DBG", round_no, len(receipts), stats["segments"], stats["events"], time.time())
    finally:
        child.kill()
        child.communicate(timeout=30)
    assert rounds_with_segments >= ROUNDS // 2, "the children never flushed segments"
    assert sum(last - first + 1 for first, last in acked.values()) > 1_000


# --------------------------------------------------------------------------- torn tails


def tail_events(start: int, n: int, tag: str) -> list[dict[str, object]]:
    return [{"timestamp": T0 + (start + i) * 10**9, "entity": f"e{i % 3}", "id": f"{tag}{i}"}
            for i in range(n)]


def newest_wal(store_dir: Path) -> Path:
    return max((store_dir / "wal").glob("wal-*.log"))


def ids_in(store: tidal.Store) -> list[str]:
    return store.read_from(0).column("id").to_pylist()


def test_garbage_after_last_frame_is_cut_and_reported(tmp_path):
    store_dir = tmp_path / "store"
    with tidal.open(store_dir) as store:
        for k in range(4):
            store.append(tail_events(10 * k, 10, f"a{k}-"))
        store.flush()  # the tail file starts after some segments
        for k in range(3):
            store.append(tail_events(100 + 10 * k, 10, f"b{k}-"))
        before = ids_in(store)
    wal = newest_wal(store_dir)
    size = wal.stat().st_size
    with open(wal, "ab") as fh:
        fh.write(b"TWAL" + os.urandom(37))
    with tidal.open(store_dir) as store:
        assert store.recovery is not None and "torn WAL tail" in store.recovery
        assert store.stats()["torn_tail_bytes"] == 41
        assert ids_in(store) == before
        assert wal.stat().st_size == size
        r = store.append(tail_events(500, 2, "c-"))
        assert r.first_seq == len(before)
    with tidal.open(store_dir) as store:
        assert store.recovery is None and store.stats()["torn_tail_bytes"] == 0
        assert ids_in(store) == before + ["c-0", "c-1"]
        assert store.read_from(0).column("_seq").to_pylist() == list(range(len(before) + 2))


def test_truncated_last_frame_loses_only_that_append(tmp_path):
    store_dir = tmp_path / "store"
    with tidal.open(store_dir) as store:
        store.append(tail_events(0, 10, "a-"))
        store.flush()
        store.append(tail_events(10, 5, "b-"))
        store.append(tail_events(20, 7, "c-"))  # the frame we tear
        before = ids_in(store)
    wal = newest_wal(store_dir)
    data = wal.read_bytes()
    wal.write_bytes(data[:-5])
    with tidal.open(store_dir) as store:
        assert store.recovery is not None
        torn = store.stats()["torn_tail_bytes"]
        assert 0 < torn < len(data)
        assert ids_in(store) == before[:15]
        assert store.max_seq() == 14
        assert_timeline_matches(store, store.read_from(0), "e0")
        assert store.timeline("e0").num_rows == 4 + 2
        r = store.append(tail_events(40, 3, "d-"))
        assert (r.first_seq, r.last_seq) == (15, 17)
        store.flush()
        store.compact()
    with tidal.open(store_dir) as store:
        assert store.recovery is None
        assert ids_in(store) == before[:15] + ["d-0", "d-1", "d-2"]
        assert store.sql("SELECT count(DISTINCT _seq) AS n FROM events").to_pylist() == [{"n": 18}]


def test_tear_inside_the_header_of_the_only_frame(tmp_path):
    store_dir = tmp_path / "store"
    with tidal.open(store_dir) as store:
        store.append(tail_events(0, 3, "a-"))
    wal = newest_wal(store_dir)
    wal.write_bytes(wal.read_bytes()[:7])
    with tidal.open(store_dir) as store:
        assert store.recovery is not None and "short frame header" in store.recovery
        assert store.stats()["torn_tail_bytes"] == 7
        assert store.max_seq() == -1 and store.read_from(0).num_rows == 0
        assert store.append(tail_events(0, 2, "b-")).first_seq == 0
    with tidal.open(store_dir) as store:
        assert ids_in(store) == ["b-0", "b-1"]
