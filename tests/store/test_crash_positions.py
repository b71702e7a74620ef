"""kill -9 of a consumer appending with positions: every batch once, positions exact.

Each round starts a child that resumes from the store's positions (re-sending
the last few batches, which must come back as duplicates), kills it with
SIGKILL at a random moment, reopens the store and checks it.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import tidal

from ._positioned_child import CONFIG, SOURCES, size

CHILD = Path(__file__).with_name("_positioned_child.py")
ROUNDS = 50
SEED = 20261203


def spawn(store_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(CHILD), str(store_dir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_round(child: subprocess.Popen[str], delay_s: float) -> list[tuple[int, bool]]:
    """Let ``child`` go, SIGKILL it ``delay_s`` after its first new batch is acknowledged
    (so every round gets somewhere, however loaded the machine); its acknowledged
    ``(k, duplicate)``."""
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    seen = []
    while line := child.stdout.readline():
        seen.append(line)
        fields = line.split()
        if len(fields) == 3 and fields[1] == "0":
            break
    time.sleep(delay_s)
    child.send_signal(signal.SIGKILL)
    out, err = "".join(seen) + child.stdout.read(), child.stderr.read()
    child.wait(timeout=60)
    for pipe in (child.stdin, child.stdout, child.stderr):
        pipe.close()
    assert child.returncode == -signal.SIGKILL, err
    lines = out.splitlines()
    if lines and not out.endswith("\n"):
        lines.pop()  # cut mid-line by the kill
    acked = []
    for line in lines[1:]:  # after "ready"
        k, duplicate, _ = line.split()
        acked.append((int(k), duplicate == "1"))
    return acked


def check(store: tidal.Store, acked_ever: set[int]) -> int:
    """Every stored batch is whole and once, acknowledged ones are there, positions exact."""
    table = store.read_from(0)
    seqs = table.column("_seq").to_pylist()
    assert seqs == list(range(len(seqs))), "_seq is not dense"
    counts = Counter(table.column("k").to_pylist() if table.num_rows else [])
    stored = sorted(counts)
    assert stored == list(range(len(stored))), "a batch is missing in the middle"
    for k, n in counts.items():
        assert n == size(k), f"batch {k} stored {n // size(k)} times or in part"
    assert acked_ever <= set(stored), "an acknowledged batch was lost"
    last: dict[str, int] = {}
    for k in stored:
        last[f"p{k % SOURCES}"] = k
    assert store.positions() == last, "positions are not the last stored ones"
    return len(stored)


def test_kill_9_of_a_positioned_consumer(tmp_path):
    rng = random.Random(SEED)
    store_dir = tmp_path / "store"
    acked_ever: set[int] = set()
    duplicates = stored = 0
    children = [spawn(store_dir)]
    try:
        for _ in range(ROUNDS):
            children.append(spawn(store_dir))  # imports while this round runs
            acked = run_round(children[-2], rng.uniform(0.05, 0.5))
            duplicates += sum(d for _, d in acked)
            acked_ever |= {k for k, duplicate in acked if not duplicate}
            with tidal.open(store_dir, **CONFIG) as store:
                stored = check(store, acked_ever)
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                child.wait()
                for pipe in (child.stdin, child.stdout, child.stderr):
                    if pipe is not None:
                        pipe.close()
    assert stored >= ROUNDS  # the children got somewhere (a new batch each round)
    assert duplicates > 0, "no re-sent batch came back as a duplicate"
