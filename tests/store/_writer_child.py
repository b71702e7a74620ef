"""A writer in another process, driven line by line over stdin.

Run as ``python _writer_child.py STORE_DIR``. Commands: ``append FIRST N``
(events with ids FIRST..FIRST+N-1), ``flush``, ``compact``, ``quit``. Each
answer is one line, ``ok <max_seq>``, printed after the command returned.
"""

from __future__ import annotations

import sys

import pyarrow as pa

import tidal

T0 = 1_767_225_600_000_000_000


def batch(first: int, n: int) -> pa.Table:
    return pa.table({
        "timestamp": pa.array([T0 + i for i in range(first, first + n)], pa.timestamp("ns", "UTC")),
        "entity": [f"e{i % 5}" for i in range(first, first + n)],
        "id": list(range(first, first + n)),
    })


def main() -> None:
    with tidal.open(sys.argv[1], compact_min_rows=10_000) as store:
        print(f"ok {store.max_seq()}", flush=True)
        for line in sys.stdin:
            words = line.split()
            if words[0] == "append":
                store.append(batch(int(words[1]), int(words[2])))
            elif words[0] == "flush":
                store.flush()
            elif words[0] == "compact":
                store.compact()
            elif words[0] == "quit":
                break
            print(f"ok {store.max_seq()}", flush=True)


if __name__ == "__main__":
    main()
