"""Child process of the positioned kill -9 test: a consumer that resumes from the store.

Run as ``python _positioned_child.py STORE_DIR``. It waits for a line on stdin,
opens the store, resumes from the highest committed position (sending the
last three batches again, as a consumer whose acknowledgements were lost
would) and appends batch after batch, batch ``k`` to source ``p<k % 4>`` at
position ``k``. After each ``append`` returns it prints ``k duplicate first_seq``.
"""

from __future__ import annotations

import sys

import pyarrow as pa

T0 = 1_767_225_600_000_000_000
SOURCES = 4
RESEND = 3
CONFIG: dict[str, object] = {"memtable_bytes": 16 << 10, "compact_min_rows": 300}


def size(k: int) -> int:
    """Events in batch ``k`` (1 to 40, deterministic)."""
    return (k * 7919) % 40 + 1


def make_batch(k: int) -> pa.Table:
    n = size(k)
    return pa.table({
        "timestamp": pa.array([T0 + k * 1000 + i for i in range(n)], pa.timestamp("ns", "UTC")),
        "entity": [f"e{(k + i) % 5}" for i in range(n)],
        "k": [k] * n,
    })


def main(argv: list[str]) -> int:
    import tidal

    if not sys.stdin.readline():
        return 1
    store = tidal.open(argv[1], **CONFIG)
    k = max(max(store.positions().values(), default=-1) + 1 - RESEND, 0)
    sys.stdout.write(f"ready {k}\n")
    sys.stdout.flush()
    while True:
        r = store.append(make_batch(k), source=f"p{k % SOURCES}", position=k)
        sys.stdout.write(f"{k} {int(r.duplicate)} {r.first_seq}\n")
        sys.stdout.flush()
        k += 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
