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
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import tidal

from ._crash_child import CHILD_CONFIG, ENTITIES, T0, make_batch

CHILD = Path(__file__).with_name("_crash_child.py")
ROUNDS = 24
SEED = 20260101
# What the random delay before the kill counts from: the "go" (so the kill may hit
# the child's own recovery), its "ready" line, or its first acknowledged append.
ANCHORS = ("go", "ready", "ack")
COLUMNS = ["timestamp", "entity", "id", "batch", "pad"]

Receipt = tuple[int, int, str]


def spawn(store_dir: Path, round_no: int) -> subprocess.Popen[str]:
    """Start a child; it imports Tidal and then waits for "go" on stdin."""
    return subprocess.Popen([sys.executable, str(CHILD), str(store_dir), str(round_no)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kill(child: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGKILL ``child``; return the rest of its stdout and its stderr.

    Reads through the pipes' own buffers (``communicate`` would read the file
    descriptors directly and miss lines that ``readline`` already buffered).
    """
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    child.send_signal(signal.SIGKILL)
    out, err = child.stdout.read(), child.stderr.read()
    child.wait(timeout=60)
    for pipe in (child.stdin, child.stdout, child.stderr):
        pipe.close()
    return out, err


def run_round(child: subprocess.Popen[str], delay_s: float,
              anchor: str) -> tuple[int | None, list[Receipt]]:
    """Let ``child`` go, SIGKILL it ``delay_s`` after ``anchor``.

    Returns the ``max_seq`` it reported after opening the store (None if it was
    killed before) and its receipts.
    """
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    head = ""
    if anchor in ("ready", "ack"):
        head += child.stdout.readline()
    if anchor == "ack":
        head += child.stdout.readline()
    time.sleep(delay_s)
    out, err = kill(child)
    assert child.returncode == -signal.SIGKILL, err  # it must not have died on its own
    text = head + out
    assert text == "" or text.endswith("\n"), "a line was cut"
    lines = text.splitlines()
    ready = None
    if lines:
        word, value = lines.pop(0).split()
        assert word == "ready"
        ready = int(value)
    receipts = []
    for line in lines:
        first, last, bid = line.split()
        receipts.append((int(first), int(last), bid))
    return ready, receipts


def assert_timeline_matches(store: tidal.Store, everything: pa.Table, entity: str) -> None:
    """``timeline(entity)`` holds exactly that entity's events, by (timestamp, ``_seq``)."""
    mine = everything.filter(pc.equal(everything.column("entity"), entity))
    ts = mine.column("timestamp").cast(pa.int64()).to_numpy()
    order = np.lexsort((mine.column("_seq").to_numpy(), ts))
    got = store.timeline(entity)
    assert got.column("_seq").to_pylist() == mine.column("_seq").take(order).to_pylist()
    assert got.column("id").to_pylist() == mine.column("id").take(order).to_pylist()


def check_round(store: tidal.Store, known: pa.Table, round_no: int,
                receipts: list[Receipt]) -> pa.Table:
    """Check the reopened store after round ``round_no``; return the events now known.

    ``known`` holds the events stored by earlier rounds, in ``_seq`` order. The
    store must hold exactly those, then this round's acknowledged batches, and
    at most one more batch: the one in flight when the child died.
    """
    table = store.read_from(0)
    n = table.num_rows
    assert store.max_seq() == n - 1
    assert np.array_equal(table.column("_seq").to_numpy(), np.arange(n)), \
        "_seq is not dense 0..max_seq in order"
    assert n >= known.num_rows, "events of earlier rounds were lost"
    if known.num_rows:
        assert table.slice(0, known.num_rows).select(COLUMNS).equals(known.select(COLUMNS)), \
            "events of earlier rounds changed"
    sent = [make_batch(round_no, k) for k in range(len(receipts) + 1)]
    offset = known.num_rows
    for (first, last, bid), batch in zip(receipts, sent, strict=False):
        assert bid == batch.column("batch")[0].as_py()
        assert (first, last) == (offset, offset + batch.num_rows - 1), \
            f"{bid}: receipt does not continue from max_seq() + 1"
        offset += batch.num_rows
    new_rows = n - known.num_rows
    acked_rows = offset - known.num_rows
    landed = len(receipts) + (new_rows > acked_rows)  # the unacknowledged one may be there
    want = pa.concat_tables([known.select(COLUMNS)] + [b.select(COLUMNS) for b in sent[:landed]])
    assert n == want.num_rows, "acknowledged events lost, or a batch stored in part"
    if n == 0:  # killed before the first append landed
        return want
    assert table.select(COLUMNS).equals(want), "events that were never sent, or changed"
    counts = store.sql("SELECT count(*) AS c, count(DISTINCT id) AS d, max(_seq) AS m "
                       "FROM events").to_pylist()
    assert counts == [{"c": n, "d": n, "m": n - 1 if n else None}]
    assert store.stats()["events"] == n
    assert_timeline_matches(store, table, f"e{round_no % ENTITIES}")
    return want


def test_kill_9_at_random_moments_loses_nothing_acknowledged(tmp_path):
    rng = random.Random(SEED)
    store_dir = tmp_path / "store"
    known = pa.table({c: pa.array([], make_batch(0, 0).schema.field(c).type) for c in COLUMNS})
    segments_seen = acked_rounds = 0
    children = [spawn(store_dir, 0)]
    try:
        for round_no in range(ROUNDS):
            children.append(spawn(store_dir, round_no + 1))  # imports while this round runs
            ready, receipts = run_round(children[-2], rng.uniform(0.02, 0.4),
                                        ANCHORS[round_no % len(ANCHORS)])
            if ready is not None:
                assert ready == known.num_rows - 1, "the child recovered another max_seq"
            acked_rounds += bool(receipts)
            with tidal.open(store_dir, **CHILD_CONFIG) as store:
                known = check_round(store, known, round_no, receipts)
                segments_seen += store.stats()["segments"] > 0
    finally:
        for child in children:
            if child.returncode is None:
                kill(child)
    assert acked_rounds >= ROUNDS // len(ANCHORS)  # every "ack" round has one at least
    assert segments_seen > 0, "the children never flushed a segment"


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
