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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from tidal.store.manifest import Manifest
from tidal.store.memtable import Memtable


class Committed(Protocol):
    """An append read back from the WAL (see :class:`~tidal.store.recovery.Replayed`)."""

    @property
    def table(self) -> pa.Table: ...
    @property
    def written_ns(self) -> int: ...
    @property
    def source(self) -> str | None: ...
    @property
    def position(self) -> int | None: ...


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
        self.positions: dict[str, int] = dict(manifest.positions)  # every committed position

    def new_memtable(self) -> Memtable:
        return Memtable(self.entity_field, self.ts_field)

    def add(self, tables: list[pa.Table], last_seq: int, written_ns: int,
            positions: Mapping[str, int] | None = None) -> None:
        """Make committed tables (and source positions) visible. Lock held."""
        for table in tables:
            if table.num_rows:
                self.active.add(table, written_ns)
        for source, position in (positions or {}).items():
            self._commit_position(source, position)
        self.max_seq = last_seq
        self.version += 1

    def replay(self, appends: Iterable[Committed]) -> None:
        """Add appends read back from the WAL, in order. Lock held (or not yet shared)."""
        for append in appends:
            if append.table.num_rows:
                self.active.add(append.table, append.written_ns)
            if append.source is not None and append.position is not None:
                self._commit_position(append.source, append.position)
        self.version += 1

    def _commit_position(self, source: str, position: int) -> None:
        self.active.note_position(source, position)
        if position > self.positions.get(source, -1):
            self.positions[source] = position

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
