"""The dedup index: the keys of recent events, so that a repeated event is skipped.

With ``dedup_key`` (dotted field paths) and ``dedup_window``, an appended event
is a *duplicate* when its key equals that of an event already stored, or of
one kept earlier in the same append, whose timestamp lies within the window
of its own (``|Δt| <= window``, event time). Duplicates are not stored and
get no ``_seq``; each append's receipt counts them, and so does
:meth:`DedupIndex.stats`. Appending events one by one or all at once skips
the same ones: an event is compared with those kept, never with those skipped.

Keys:

* An event with a null or absent key field, or one holding an object or an
  array, has no key: it is never a duplicate.
* Key values compare as text, the way the store shows a column widened to
  text: ``5``, ``5.0`` and ``"5"`` are one key, ``true`` is ``"true"``.
  Binary values compare as their bytes.

State: for each event kept (with a key), its key's bytes, a 64-bit FNV-1a hash
of them and its timestamp, in flat arrays with a hash table over them
(:mod:`tidal.store._kernels_hash`, one pass per append, no per-event Python).
Candidates found by hash are confirmed byte for byte, so a hash collision never
makes a duplicate. Only events within the window of the newest event time
stored count (the *horizon*, ``newest - window``): an event that arrives
later than that is still compared with the events kept from the horizon on,
and the entries behind the horizon are dropped from memory as time moves
(whenever the entries held have doubled since the last drop), so the state
stays within about twice the events of one window.

The writer runs the index inside the group commit leader's turn, before
``_seq`` and the WAL: :meth:`DedupIndex.keep` stages what it keeps (later
appends of the group see it), :meth:`DedupIndex.commit` makes it final once
the WAL write succeeded, :meth:`DedupIndex.rollback` forgets it if the write
failed. On opening a store, :meth:`DedupIndex.load` rebuilds the state from the
stored events within the window of the newest stored timestamp (a scan of the
key fields and timestamp from the horizon on), so a batch retried after a
restart or a crash is still recognised.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.model.paths import get_path, type_at
from tidal.store._kernels_hash import encode_rows, fnv1a, keep_first, link

__all__ = ["DedupIndex", "Recent"]

_I64_MIN = -(2**63)
MIN_ENTRIES = 1024
COMPACT_MIN_ENTRIES = 65_536
"""Entries behind the horizon are dropped once the index holds this many, and
twice as many as it kept after the last drop."""


class Recent(Protocol):
    """What :meth:`DedupIndex.load` reads (a :class:`~tidal.store.readers.Snapshot`)."""

    @property
    def segments(self) -> Sequence[Any]: ...  # SegmentMeta: rows, max_ts
    @property
    def memtable_parts(self) -> tuple[pa.Table, ...]: ...
    @property
    def schema(self) -> pa.Schema: ...
    def scan(self, columns: Sequence[str] | None = None, where: pc.Expression | None = None,
             *, start: object = None, order: Any = "seq") -> pa.RecordBatchReader: ...


@dataclass(frozen=True)
class Mark:
    """The index at one moment, to roll back to (good until the next commit)."""

    entries: int
    newest_ns: int | None


@dataclass(frozen=True)
class _Rows:
    """One table's rows: a time, whether it has one, whether it has a key (and a time),
    the key's hash and its bytes."""

    times: np.ndarray
    timed: np.ndarray
    valid: np.ndarray
    hashes: np.ndarray
    offsets: np.ndarray
    data: np.ndarray


def _text(column: pa.ChunkedArray | None) -> pa.Array | None:
    """A key column as text (binary as bytes); None when it cannot hold a key."""
    if column is None:
        return None
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    kind = array.type.value_type if pa.types.is_dictionary(array.type) else array.type
    if pa.types.is_nested(kind) or pa.types.is_null(kind):
        return None
    try:
        if pa.types.is_floating(array.type):
            array = pc.add(array, 0.0)  # -0.0 is 0.0
        binary = (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
                  or pa.types.is_fixed_size_binary(kind))
        return array.cast(pa.binary() if binary else pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _buffers(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The int64 offsets (``len + 1``) and bytes of a string or binary array."""
    _, offsets_buf, data_buf = text.buffers()
    n = len(text)
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[text.offset:text.offset + n + 1]
    if data_buf is None:
        return np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    lo, hi = int(offsets[0]), int(offsets[-1])  # (a slice's buffers are its parent's)
    return offsets.astype(np.int64) - lo, np.frombuffer(data_buf, dtype=np.uint8)[lo:hi]


def _grown(array: np.ndarray, size: int, used: int) -> np.ndarray:
    """``array`` in ``size`` elements, the first ``used`` kept (the rest undefined)."""
    grown = np.empty(size, dtype=array.dtype)
    grown[:used] = array[:used]
    return grown


def _valid(array: pa.Array) -> np.ndarray:
    if not array.null_count:
        return np.ones(len(array), dtype=np.bool_)
    return np.asarray(array.is_valid(), dtype=np.bool_)


class DedupIndex:
    """Keys and times of the recent events of one store; see the module docstring.

    Calls that change it come from one thread at a time (the group commit leader,
    or the engine while it opens); :meth:`stats` may come from any thread.
    """

    def __init__(self, key: Sequence[str], window_ns: int, ts_field: str) -> None:
        self.key = tuple(key)
        self.window_ns = window_ns
        self.ts_field = ts_field
        self.duplicates = 0  # skipped by committed appends
        self._lock = threading.Lock()  # (against stats() only)
        self._newest: int | None = None  # newest event time stored, staged ones included
        self._entries = 0
        self._used = 0  # table slots in use
        self._hash = np.zeros(MIN_ENTRIES, dtype=np.int64)
        self._time = np.zeros(MIN_ENTRIES, dtype=np.int64)
        self._next = np.zeros(MIN_ENTRIES, dtype=np.int64)
        self._offsets = np.zeros(MIN_ENTRIES + 1, dtype=np.int64)
        self._bytes = np.zeros(MIN_ENTRIES * 16, dtype=np.uint8)
        self._slots, _ = link(self._hash, self._next, 0, 2 * MIN_ENTRIES)
        self._kept_at_drop = 0
        self._committed = self.mark()

    # -- appending ----------------------------------------------------------------
    def keep(self, table: pa.Table) -> tuple[pa.Table, int]:
        """``table`` without its duplicates, and how many those were; stages the
        events kept (see :meth:`commit` and :meth:`rollback`)."""
        if table.num_rows == 0:
            return table, 0
        rows = self._rows(table)
        keep = self._add(rows, check=True)
        duplicates = len(keep) - int(np.count_nonzero(keep))
        return (table.filter(pa.array(keep)) if duplicates else table), duplicates

    def mark(self) -> Mark:
        """Where the index is now (for :meth:`rollback`)."""
        return Mark(self._entries, self._newest)

    def rollback(self, mark: Mark | None = None) -> None:
        """Forget the events staged since ``mark`` (None: since the last commit)."""
        mark = mark or self._committed
        with self._lock:
            self._newest = mark.newest_ns
            if self._entries != mark.entries:
                self._entries = mark.entries
                self._relink(len(self._slots))

    def commit(self, duplicates: int = 0) -> None:
        """The staged events are stored (and ``duplicates`` more were skipped)."""
        with self._lock:
            self.duplicates += duplicates
            if self._entries >= max(COMPACT_MIN_ENTRIES, 2 * self._kept_at_drop):
                self._drop_expired()
        self._committed = self.mark()

    # -- opening ------------------------------------------------------------------
    def load(self, snapshot: Recent) -> None:
        """Track the stored events within the window of the newest stored timestamp."""
        newest = [m.max_ts for m in snapshot.segments if m.rows]
        for part in snapshot.memtable_parts:
            ts = get_path(part, self.ts_field)
            if part.num_rows and ts is not None and (top := pc.max(ts).value) is not None:
                newest.append(top)
        if not newest:
            return
        self._newest = max(newest if self._newest is None else [self._newest, *newest])
        schema = snapshot.schema
        if all(type_at(schema, path) is not None for path in self.key):
            columns = list(dict.fromkeys([self.ts_field, *self.key]))
            reader = snapshot.scan(columns, start=self._horizon(), order=None)
            for batch in reader:
                if batch.num_rows:
                    self._add(self._rows(pa.Table.from_batches([batch])), check=False)
        self.commit()

    # -- inside -------------------------------------------------------------------
    def _horizon(self) -> int:
        """The oldest event time that counts: ``window`` before the newest."""
        if self._newest is None or self._newest < _I64_MIN + self.window_ns:
            return _I64_MIN
        return self._newest - self.window_ns

    def _rows(self, table: pa.Table) -> _Rows:
        n = table.num_rows
        ts = get_path(table, self.ts_field)
        if ts is None:
            times, timed = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.bool_)
        else:
            stamps = ts.combine_chunks().cast(pa.int64())
            timed = _valid(stamps)
            times = np.asarray(stamps.fill_null(0) if stamps.null_count else stamps,
                               dtype=np.int64)
        valid = timed.copy()
        parts = []
        for path in self.key:
            text = _text(get_path(table, path))
            if text is None:
                valid[:] = False
                break
            valid &= _valid(text)
            parts.append(_buffers(text))
        if not valid.any():
            return _Rows(times, timed, valid, np.zeros(n, dtype=np.int64),
                         np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.uint8))
        bases = np.cumsum([0] + [len(data) for _, data in parts[:-1]])
        offsets = np.stack([offs + base for (offs, _), base in zip(parts, bases, strict=True)])
        data = parts[0][1] if len(parts) == 1 else np.concatenate([d for _, d in parts])
        row_offsets, row_bytes = encode_rows(offsets, data, valid)
        return _Rows(times, timed, valid, fnv1a(row_offsets, row_bytes), row_offsets,
                     row_bytes)

    def _add(self, rows: _Rows, *, check: bool) -> np.ndarray:
        """Run :func:`keep_first` over ``rows``; returns which to keep. The newest time
        moves with every row kept, with a key or without."""
        with self._lock:
            self._reserve(len(rows.hashes), len(rows.data))
            keep, self._entries, self._used = keep_first(
                rows.hashes, rows.times, rows.valid, rows.offsets, rows.data,
                self._slots, self._hash, self._time, self._next,
                self._offsets, self._bytes, self._entries, self._used, self._horizon(),
                self.window_ns, check)
            times = rows.times[keep & rows.timed]
            if len(times):
                top = int(times.max())
                self._newest = top if self._newest is None else max(self._newest, top)
        return keep

    def _reserve(self, rows: int, nbytes: int) -> None:
        """Room for ``rows`` more entries of ``nbytes`` bytes, and a table that stays at
        most half full."""
        n = self._entries
        if n + rows > len(self._hash):
            size = max(2 * len(self._hash), n + rows)
            self._hash, self._time, self._next = (_grown(self._hash, size, n),
                                                  _grown(self._time, size, n),
                                                  _grown(self._next, size, n))
            self._offsets = _grown(self._offsets, size + 1, n + 1)
        held = int(self._offsets[n])
        if held + nbytes > len(self._bytes):
            self._bytes = _grown(self._bytes, max(2 * len(self._bytes), held + nbytes), held)
        if 2 * (self._used + rows) > len(self._slots):
            size = len(self._slots)
            while 2 * (self._used + rows) > size:
                size *= 2
            self._relink(size)

    def _relink(self, size: int) -> None:
        self._slots, self._used = link(self._hash, self._next, self._entries, size)

    def _drop_expired(self) -> None:
        """Keep only the entries from the horizon on (lock held, nothing staged)."""
        n = self._entries
        live = self._time[:n] >= self._horizon()
        kept = int(np.count_nonzero(live))
        self._kept_at_drop = kept
        if kept == n:
            return
        at = np.flatnonzero(live)
        starts = self._offsets[at]
        sizes = self._offsets[at + 1] - starts
        offsets = np.zeros(max(MIN_ENTRIES, 2 * kept) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:kept + 1])
        total = int(offsets[kept])
        data = np.zeros(max(MIN_ENTRIES * 16, 2 * total), dtype=np.uint8)
        data[:total] = self._bytes[np.repeat(starts - offsets[:kept], sizes)
                                   + np.arange(total, dtype=np.int64)]
        capacity = len(offsets) - 1
        for name in ("_hash", "_time"):
            packed = np.zeros(capacity, dtype=np.int64)
            packed[:kept] = getattr(self, name)[at]
            setattr(self, name, packed)
        self._next = np.zeros(capacity, dtype=np.int64)
        self._offsets, self._bytes, self._entries = offsets, data, kept
        size = 2 * MIN_ENTRIES
        while size < 4 * kept:
            size *= 2
        self._relink(size)

    # -- reporting ----------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """The key, the window, events skipped so far and events tracked now."""
        with self._lock:
            tracked = int(np.count_nonzero(self._time[:self._entries] >= self._horizon()))
        return {"key": list(self.key), "window_ns": self.window_ns,
                "duplicates": self.duplicates, "tracked": tracked}

    def __len__(self) -> int:
        """Entries held (those behind the horizon until they are dropped)."""
        return self._entries

    def __repr__(self) -> str:
        return (f"<DedupIndex key={list(self.key)} window_ns={self.window_ns} "
                f"entries={self._entries} duplicates={self.duplicates}>")
