"""Events for store tests: one per nanosecond from ``T0``, with an ``id`` to find them by."""

from __future__ import annotations

import pyarrow as pa

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns


def batch(first: int, n: int, *, entities: int = 5, pad: int = 0) -> pa.Table:
    """Events ``first`` .. ``first + n - 1``: ``timestamp`` T0 + id ns, ``entity``
    ``e<id % entities>``, ``id``, and a ``pad`` string of that many bytes if asked."""
    columns = {
        "timestamp": pa.array([T0 + i for i in range(first, first + n)], pa.timestamp("ns", "UTC")),
        "entity": [f"e{i % entities}" for i in range(first, first + n)],
        "id": list(range(first, first + n)),
    }
    if pad:
        columns["pad"] = ["x" * pad] * n
    return pa.table(columns)
