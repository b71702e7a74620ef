"""Child process of the crash test: append batches until killed.

Run as ``python _crash_child.py STORE_DIR ROUND``. The child imports Tidal,
then waits for one line on stdin (so the parent can overlap this start-up with
its own checks), opens the store, prints ``ready <max_seq>`` and appends batch
after batch. After each ``append`` returns, and only then, it prints the
receipt ``<first_seq> <last_seq> <batch_id>`` and flushes stdout in one write.
The parent kills it with SIGKILL at a random moment.

:func:`make_batch` is shared with the parent, which rebuilds every batch it
finds in the store to check its contents.
"""

from __future__ import annotations

import random
import sys

import pyarrow as pa

# Small enough that background flushes and automatic compactions happen often.
CHILD_CONFIG: dict[str, object] = {"memtable_bytes": 24 << 10, "compact_min_rows": 400}
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns
ENTITIES = 7


def batch_id(round_no: int, k: int) -> str:
    """The id shared by every event of batch ``k`` of round ``round_no``."""
    return f"r{round_no}-b{k}"


def make_batch(round_no: int, k: int) -> pa.Table:
    """Batch ``k`` of round ``round_no``: 1 to 120 events, deterministic, out of order in time."""
    rng = random.Random(round_no * 1_000_003 + k)
    n = rng.randint(1, 120)
    bid = batch_id(round_no, k)
    ts = [T0 + rng.randrange(0, 3_600) * 10**9 for _ in range(n)]  # ties and disorder
    return pa.table({
        "timestamp": pa.array(ts, pa.timestamp("ns", "UTC")),
        "entity": [f"e{rng.randrange(ENTITIES)}" for _ in range(n)],
        "id": [f"{bid}-{j}" for j in range(n)],
        "batch": [bid] * n,
        "pad": ["p" * rng.randrange(0, 64) for _ in range(n)],
    })


def main(argv: list[str]) -> int:
    store_dir, round_no = argv[1], int(argv[2])
    import tidal  # here, so that importing `make_batch` stays light for the parent

    tidal.open  # noqa: B018 - load the store modules before the parent says go
    if not sys.stdin.readline():
        return 1
    store = tidal.open(store_dir, **CHILD_CONFIG)
    sys.stdout.write(f"ready {store.max_seq()}\n")
    sys.stdout.flush()
    k = 0
    while True:
        receipt = store.append(make_batch(round_no, k))
        # Acknowledged: only now may the parent count on this batch.
        sys.stdout.write(f"{receipt.first_seq} {receipt.last_seq} {batch_id(round_no, k)}\n")
        sys.stdout.flush()
        k += 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
