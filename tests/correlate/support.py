"""What the correlation tests share: events written as short specs, a snapshot
whose scans give one event per batch, and a snapshot of a few rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa

import tidal
from tidal.store.readers import Snapshot

T0 = 1_767_225_600_000_000_000
"""2026-01-01T00:00:00Z in ns."""


def events(spec: str) -> list[dict]:
    """``"1:a:w@1 2:b/h1:h@3"``: id, user (``/host``; ``-`` for null), the ``p`` field
    and the second after :data:`T0`, one event each, all of category ``process``."""
    out = []
    for item in spec.split():
        ident, keys, rest = item.split(":")
        user, _, host = keys.partition("/")
        what, second = rest.split("@")
        out.append({"id": int(ident), "user": None if user == "-" else user,
                    "host": None if host in ("", "-") else host, "p": what,
                    "timestamp": T0 + int(second) * 10**9, "event": {"category": "process"}})
    return out


class OneRowBatches:
    """A snapshot whose scans return one event per batch (batch edges must not matter)."""

    def __init__(self, snapshot):
        self.snapshot = snapshot

    def __getattr__(self, name):  # (everything else, reading rows back by _seq too)
        return getattr(self.snapshot, name)

    def scan(self, *args, **kwargs):
        table = self.snapshot.scan(*args, **kwargs).read_all()
        return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=1))


@contextmanager
def snapshot_of(rows: list[dict]) -> Iterator[Snapshot]:
    """A snapshot of an in-memory store holding ``rows`` (closed after the block)."""
    store = tidal.open()
    try:
        store.append(rows)
        with store.snapshot() as snapshot:
            yield snapshot
    finally:
        store.close()
