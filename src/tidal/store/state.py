"""What readers see: the manifest, the memtables and the highest visible ``_seq``.

One lock guards it, held only for short, allocation-light steps. The writer
adds committed tables (:meth:`StoreState.add`) and seals the active memtable;
background work commits manifests and unseals flushed memtables; readers copy
a consistent view. ``changed`` is notified whenever memory is freed or the
manifest changes, which is what waiting writers (backpressure) and
:meth:`flush` wait for.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pyarrow as pa

from tidal.store.manifest import Manifest
from tidal.store.memtable import Memtable


@dataclass(frozen=True)
class Sealed:
    """A memtable waiting to be flushed, holding the events up to ``upto_seq``."""

    memtable: Memtable
    upto_seq: int


class StoreState:
    """The shared, lock-guarded state of one store."""

    def __init__(self, manifest: Manifest, entity_field: str, ts_field: str) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.manifest = manifest
        self.entity_field = entity_field
        self.ts_field = ts_field
        self.active = self.new_memtable()
        self.sealed: tuple[Sealed, ...] = ()
        self.max_seq = manifest.flushed_seq
        self.version = 0  # bumped by every change readers can see

    def new_memtable(self) -> Memtable:
        return Memtable(self.entity_field, self.ts_field)

    def add(self, tables: list[pa.Table], last_seq: int, written_ns: int) -> None:
        """Make committed tables visible. Lock held."""
        for table in tables:
            self.active.add(table, written_ns)
        self.max_seq = last_seq
        self.version += 1

    def seal(self) -> Sealed | None:
        """Queue the active memtable for flushing; None when it is empty. Lock held."""
        if self.active.view.rows == 0:
            return None
        sealed = Sealed(self.active, self.max_seq)
        self.sealed += (sealed,)
        self.active = self.new_memtable()
        self.version += 1
        return sealed

    def commit(self, manifest: Manifest, unseal: Sealed | None = None) -> None:
        """Adopt a committed manifest (and drop the memtable it flushed). Lock held."""
        self.manifest = manifest
        if unseal is not None:
            self.sealed = tuple(s for s in self.sealed if s is not unseal)
        self.version += 1
        self.changed.notify_all()

    def memory_bytes(self) -> int:
        """Bytes held by the active and sealed memtables (exact under the lock; a fair
        estimate without it)."""
        return self.active.view.nbytes + sum(s.memtable.view.nbytes for s in self.sealed)
