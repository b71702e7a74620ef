"""Following a writer in another process: the state of a ``read_only`` store.

A read-only store takes no lock and changes no file. Before each read it
checks whether the writer committed something (a new manifest, new WAL
frames): a few ``stat`` calls when nothing changed. New frames are added to
its memtable and published to its followers; a new manifest replaces the
segment list and drops the memtable events it covers. A segment deleted by
the writer's compaction between reading the manifest and reading the segment
makes the read retry after a refresh (:meth:`Engine.retrying`).

A reader may see a frame the writer has written but not yet fsynced; if that
write then fails and is cut off the file, the reader notices the file shrank
and reads the WAL again from the start.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from tidal.errors import CorruptionError, StorageError
from tidal.store import layout
from tidal.store import manifest as manifest_io
from tidal.store.feed import CommitFeed
from tidal.store.manifest import Manifest
from tidal.store.recovery import LogReset, LogTail, Replayed
from tidal.store.run import SEQ
from tidal.store.state import StoreState

__all__ = ["WriterWatch"]

RETRIES = 3


class WriterWatch:
    """Keeps ``state`` up to date with what a writer elsewhere commits."""

    def __init__(self, directory: Path, state: StoreState, feed: CommitFeed) -> None:
        self.directory = directory
        self.state = state
        self.feed = feed
        self._lock = threading.Lock()
        self._tail = LogTail(directory / layout.WAL)
        self._stamp: tuple[int, int, int] | None = None
        self._seen: tuple[object, ...] | None = None  # the probe before the last full look

    def refresh(self) -> None:
        """Adopt the writer's newest manifest and WAL frames.

        Three ``stat`` calls when nothing changed (the manifest, the last WAL
        file, the file a rotation would create); a full look otherwise. The
        probe is taken before the full look, so a change made during it is
        seen next time.
        """
        with self._lock:
            probe = self._probe()
            if probe is not None and probe == self._seen:
                return
            self._refresh()
            self._seen = probe

    def _probe(self) -> tuple[object, ...] | None:
        tail = self._tail.probe()
        if tail is None:
            return None
        try:
            return _stamp(self.directory / manifest_io.NAME), *tail
        except CorruptionError:
            return None  # (the full look reports it)

    def _refresh(self) -> None:
        fresh = False
        for attempt in range(RETRIES + 1):
            try:
                stamp = _stamp(self.directory / manifest_io.NAME)
                changed = attempt > 0 or fresh or stamp != self._stamp
                manifest = manifest_io.load(self.directory) if changed else (
                    self.state.manifest)
                frames = self._tail.read(manifest, final=False)
            except LogReset:
                self._tail, fresh = LogTail(self.directory / layout.WAL), True
                continue
            except CorruptionError:
                if attempt == RETRIES:
                    raise
                continue  # the writer flushed and dropped WAL files meanwhile: reload
            except OSError as exc:
                raise StorageError(f"cannot read the store: {exc}",
                                   path=str(self.directory)) from exc
            self._adopt(manifest, stamp, frames, changed=changed, fresh=fresh)
            return

    def _adopt(self, manifest: Manifest, stamp: tuple[int, int, int] | None,
               frames: list[Replayed], *, changed: bool, fresh: bool) -> None:
        state = self.state
        with state.lock:
            if changed:
                kept = state.new_memtable()
                if not fresh:  # keep what the new manifest does not cover
                    for part in state.active.view.parts:
                        seqs = np.asarray(part.column(SEQ))
                        cut = int(np.searchsorted(seqs, manifest.flushed_seq, side="right"))
                        if cut < part.num_rows:
                            kept.add(part.slice(cut), state.active.oldest_ns or 0)
                state.active = kept
                state.commit(manifest)
                self._stamp = stamp
            if fresh:
                state.positions = dict(manifest.positions)
            elif changed:
                for source, position in manifest.positions.items():
                    if position > state.positions.get(source, -1):
                        state.positions[source] = position
            state.replay(frames)
            committed_ns = time.perf_counter_ns()
            for frame in frames:
                if frame.table.num_rows:
                    self.feed.publish(frame.table, committed_ns, frame.source, frame.position)
            tail_max = (self._tail.next_seq or 0) - 1
            state.max_seq = max(manifest.flushed_seq, tail_max,
                                state.max_seq if not fresh else -1)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise CorruptionError("MANIFEST.json is missing", path=str(path)) from exc
    return (st.st_ino, st.st_mtime_ns, st.st_size)

