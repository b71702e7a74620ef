"""Power cuts, simulated: record what the store does to its files, replay what may survive.

:class:`Recorder` is a :class:`~tidal.store.fs.FileSystem` that does every
operation for real (so a store runs normally on it) and logs each primitive
effect as an :class:`Op`: create a file (a new inode), append to it, fsync
it, truncate it, rename, unlink, mkdir, fsync a directory. :func:`states`
replays the first ``k`` ops and returns what a power cut at that moment may
leave on disk, as :class:`CrashState` trees that a test writes out
(:meth:`CrashState.materialize`) and opens with the real file system.

The model is Linux/ext4 with nothing promised beyond POSIX (*strict*):

* A file is an inode: a directory entry names it, a rename carries it and its
  data to the new name. Its data survives as of its last fsync; a file never
  fsynced comes back empty.
* A create, rename, unlink or mkdir survives only once its directory is
  fsynced; until then the directory's entries as of its last fsync stand (an
  unsynced rename leaves the file under its old name, an unsynced unlink leaves
  it in place, an unsynced create leaves no entry). A directory whose own entry
  did not survive is gone, with everything in it.

A power cut may also leave states that look worse, and a store must survive
them too:

* ``torn``: entries as in *strict*, and each file keeps the first half of its
  unsynced appended tail (so a frame is cut in the middle) and every unsynced
  overwrite (so a frame's header can be there before its payload is);
* ``dirs``: every directory written back as it was at the cut, file data only
  as far as fsynced: a renamed temp file never fsynced appears, empty, under
  its final name;
* ``dirs:<d>``: only directory ``d`` written back (when several are pending).

Only the directory the recorder is given is modelled: it must be empty, and
counts as durable. A path outside it, or a file or directory that the store
made or removed behind the recorder's back, raises :class:`RecordError`.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar, cast

from tidal.store.fs import TMP_SUFFIX, FileSystem, LogFile

Kind = Literal["create", "append", "overwrite", "truncate", "fsync", "rename", "unlink", "mkdir",
               "fsync_dir"]
Data = Literal["strict", "torn", "live"]
DIR = -1
"""What a directory listing maps a subdirectory to (files map to their inode)."""
IGNORED = frozenset({"LOCK"})
"""Files :meth:`Recorder.unrecorded` overlooks: the store's empty ``flock`` file."""


class RecordError(Exception):
    """An operation the recorder cannot model: outside the root, or behind its back."""


@dataclass(frozen=True)
class Op:
    """One primitive effect on the disk.

    Attributes:
        kind: what happened.
        path: the file or directory, relative to the root (``""`` is the root).
        inode: the file's inode (create, append, overwrite, truncate, fsync).
        data: the bytes appended (append) or written over others (overwrite).
        size: the new size (truncate); where the bytes go (overwrite).
        target: the new name (rename).
    """

    kind: Kind
    path: str
    inode: int = -1
    data: bytes = b""
    size: int = 0
    target: str = ""

    def __str__(self) -> str:
        detail = {"append": f" +{len(self.data)} B", "truncate": f" to {self.size} B",
                  "overwrite": f" {len(self.data)} B at {self.size}",
                  "rename": f" -> {self.target}"}.get(self.kind, "")
        return f"{self.kind} {self.path or '.'}{detail}"


@dataclass(frozen=True)
class CrashState:
    """What a power cut may leave: files (path to content) and directories.

    Attributes:
        label: which model variant (``strict``, ``torn``, ``dirs``, ``dirs:<d>``).
        files: every file's content, by path relative to the root.
        dirs: every directory below the root, parents first.
    """

    label: str
    files: Mapping[str, bytes]
    dirs: tuple[str, ...]

    @property
    def key(self) -> tuple[object, ...]:
        """Equal for states with the same tree and contents."""
        return self.dirs, tuple(sorted((p, len(d), hash(d)) for p, d in self.files.items()))

    def materialize(self, dest: Path) -> None:
        """Write this state out as the new directory ``dest``."""
        dest.mkdir(parents=True)
        for directory in self.dirs:
            (dest / directory).mkdir()
        for path, data in self.files.items():
            (dest / path).write_bytes(data)


def _split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent, name


def _join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


class _Inode:
    """A file's bytes now, and as of its last fsync."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.durable = b""

    def content(self, mode: Data) -> bytes:
        done = len(self.durable)
        if mode == "live":
            return bytes(self.data)
        if mode == "torn" and len(self.data) >= done:
            # bytes written over since the fsync reached the disk; half the appended tail did
            return bytes(self.data[:done]) + bytes(
                self.data[done : done + (len(self.data) - done) // 2])
        return self.durable


class _Model:
    """Directories (live and durable listings) and inodes, changed one :class:`Op` at a time."""

    def __init__(self) -> None:
        self.live: dict[str, dict[str, int]] = {"": {}}
        self.durable: dict[str, dict[str, int]] = {"": {}}
        self.inodes: dict[int, _Inode] = {}

    def entry(self, path: str) -> int | None:
        parent, name = _split(path)
        return self.live.get(parent, {}).get(name)

    def apply(self, op: Op) -> None:
        parent, name = _split(op.path)
        match op.kind:
            case "mkdir" | "create" if self.entry(op.path) is not None:
                raise RecordError(f"{op}: {op.path} exists")
            case "mkdir":
                self.live[parent][name] = DIR
                self.live[op.path], self.durable[op.path] = {}, {}
            case "create":
                self.live[parent][name] = op.inode
                self.inodes[op.inode] = _Inode()
            case "append":
                self.inodes[op.inode].data += op.data
            case "overwrite":
                self.inodes[op.inode].data[op.size : op.size + len(op.data)] = op.data
            case "truncate":
                data = self.inodes[op.inode].data
                del data[op.size :]
                data.extend(bytes(op.size - len(data)))
            case "fsync":
                self.inodes[op.inode].durable = bytes(self.inodes[op.inode].data)
            case "rename":
                to_parent, to_name = _split(op.target)
                self.live[to_parent][to_name] = self.live[parent].pop(name)
            case "unlink":
                del self.live[parent][name]
            case "fsync_dir":
                self.durable[op.path] = dict(self.live[op.path])

    def view(self, label: str, data: Data = "strict", written: Iterable[str] = ()) -> CrashState:
        """The tree with ``written`` directories as they are now, the others as last fsynced."""
        now = set(written)
        files: dict[str, bytes] = {}
        dirs: list[str] = []
        todo = [""]
        while todo:
            directory = todo.pop()
            listing = (self.live if directory in now else self.durable)[directory]
            for name, entry in listing.items():
                path = _join(directory, name)
                if entry == DIR:
                    dirs.append(path)
                    todo.append(path)
                else:
                    files[path] = self.inodes[entry].content(data)
        return CrashState(label, files, tuple(sorted(dirs)))

    def crash_states(self) -> list[CrashState]:
        pending = [d for d in self.live if self.live[d] != self.durable[d]]
        found = [self.view("strict"), self.view("torn", "torn"), self.view("dirs", written=pending)]
        if len(pending) > 1:
            found += [self.view(f"dirs:{d or '.'}", written=[d]) for d in pending]
        unique: dict[object, CrashState] = {}
        for state in found:
            unique.setdefault(state.key, state)
        return list(unique.values())


def _ops(source: Recorder | Sequence[Op]) -> Sequence[Op]:
    return source.ops if isinstance(source, Recorder) else source


def states(source: Recorder | Sequence[Op], upto: int) -> list[CrashState]:
    """The distinct states a power cut right after the first ``upto`` ops may leave.

    ``strict`` comes first; the variants follow where they differ from it.
    """
    ops = _ops(source)
    if not 0 <= upto <= len(ops):
        raise ValueError(f"upto must be within 0..{len(ops)}, not {upto}")
    model = _Model()
    for op in ops[:upto]:
        model.apply(op)
    return model.crash_states()


def crashes(source: Recorder | Sequence[Op]) -> Iterator[tuple[int, list[CrashState]]]:
    """``(k, states(source, k))`` for every ``k`` from 0 to the number of ops, in one replay."""
    model = _Model()
    yield 0, model.crash_states()
    for k, op in enumerate(_ops(source), 1):
        model.apply(op)
        yield k, model.crash_states()


F = TypeVar("F", bound=Callable[..., Any])


def _door(method: F) -> F:
    """Run a :class:`FileSystem` method of the recorder under its lock, recorded once.

    A call nested in another (the base ``write_atomic`` calling ``sync_dir``)
    does its real work unrecorded: the outer call records every effect.
    """

    @functools.wraps(method)
    def door(self: Recorder, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._inside:
                return getattr(FileSystem, method.__name__)(self, *args, **kwargs)
            self._inside = True
            try:
                return method(self, *args, **kwargs)
            finally:
                self._inside = False

    return cast(F, door)


class _Pending(NamedTuple):
    """One file of a ``write_files_atomic`` call, as the recorder will log it."""

    path: Path
    tmp: str
    before: int | None  # inode number of ``path`` before the call
    writes: tuple[Op, Op, Op]  # create (or truncate) the temp file, append, fsync
    rename: Op


def _inode_number(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


class Recorder(FileSystem):
    """A file system that works on the real disk and logs what a power cut could undo.

    Thread-safe: each operation runs and is logged under one lock, so the log
    is the order in which the disk saw them. A failed call is logged by what
    it visibly left (a created, renamed or removed file); a failed fsync is not.

    Args:
        root: an empty directory; the store lives in it (or below it).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))
        if not self.root.is_dir() or any(self.root.iterdir()):
            raise RecordError(f"the root must be an empty directory: {self.root}")
        self._lock = threading.RLock()
        self._inside = False
        self._ops: list[Op] = []
        self._model = _Model()
        self._inodes = itertools.count()

    @property
    def ops(self) -> list[Op]:
        """Every op so far, in order."""
        with self._lock:
            return list(self._ops)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)

    def record(self, *ops: Op) -> None:
        """Log ``ops`` (the one way into the log; a test may filter here). Lock held."""
        for op in ops:
            self._model.apply(op)
            self._ops.append(op)

    def unrecorded(self) -> list[str]:
        """How the disk under the root differs from what was recorded (``[]``: not at all)."""
        with self._lock:
            seen = self._model.view("live", "live", written=self._model.live)
            found: dict[str, Path] = {}
            dirs: set[str] = set()
            for top, subdirs, names in os.walk(self.root):
                here = "" if Path(top) == self.root else os.path.relpath(top, self.root)
                dirs.update(_join(here, d) for d in subdirs)
                found.update((_join(here, n), Path(top, n)) for n in names if n not in IGNORED)
            problems = [f"directory {d}: {'created' if d in dirs else 'removed'} unrecorded"
                        for d in sorted(dirs ^ set(seen.dirs))]
            for path in sorted(found.keys() | seen.files.keys()):
                if path not in seen.files:
                    problems.append(f"file {path}: created unrecorded")
                elif path not in found:
                    problems.append(f"file {path}: removed unrecorded")
                elif found[path].read_bytes() != seen.files[path]:
                    problems.append(f"file {path}: written unrecorded")
            return problems

    # -- where the store's paths meet the model ---------------------------------
    def _rel(self, path: Path | str) -> str:
        rel = os.path.relpath(os.path.abspath(path), self.root)
        if rel == os.curdir:
            return ""
        if rel == os.pardir or rel.startswith(os.pardir + os.sep):
            raise RecordError(f"{path} is outside the recorded root {self.root}")
        return rel

    def _known(self, rel: str) -> int | None:
        """The model's entry for ``rel``, which must agree with the disk."""
        entry = self._model.entry(rel)
        parent = _split(rel)[0]
        if parent not in self._model.live and os.path.lexists(self.root / parent):
            raise RecordError(f"directory {parent} was made behind the recorder's back")
        if os.path.lexists(self.root / rel) != (entry is not None):
            raise RecordError(f"{rel} was {'made' if entry is None else 'removed'} "
                              "behind the recorder's back")
        return entry

    # -- the FileSystem ---------------------------------------------------------
    @_door
    def make_dirs(self, path: Path) -> None:
        missing, probe = [], self._rel(path)
        while probe not in self._model.live:
            self._known(probe)
            missing.append(probe)
            probe = _split(probe)[0]
        done = False
        try:
            super().make_dirs(path)
            done = True
        finally:
            for directory in reversed(missing):
                if os.path.isdir(self.root / directory):
                    self.record(Op("mkdir", directory))
                    if done:
                        self.record(Op("fsync_dir", _split(directory)[0]))

    @_door
    def write_atomic(self, path: Path, data: Any) -> None:
        self._write_files([(path, data)])

    @_door
    def write_files_atomic(self, files: Sequence[tuple[Path, Any]]) -> None:
        self._write_files(files)

    def _write_files(self, files: Sequence[tuple[Path, Any]]) -> None:
        """Temp file, append, fsync each; rename each; fsync their directories."""
        plan = []
        for path, data in files:
            rel = self._rel(path)
            tmp = rel + TMP_SUFFIX
            self._known(rel)
            old = self._known(tmp)
            inode = next(self._inodes) if old is None else old
            first = Op("create", tmp, inode) if old is None else Op("truncate", tmp, inode)
            writes = (first, Op("append", tmp, inode, data=bytes(memoryview(data))),
                      Op("fsync", tmp, inode))
            plan.append(_Pending(path, tmp, _inode_number(path), writes,
                                 Op("rename", tmp, target=rel)))
        try:
            super().write_files_atomic(files)
        except BaseException:
            moved = [f for f in plan if _inode_number(f.path) != f.before]
            gone = [f for f in plan
                    if f not in moved and not os.path.lexists(self.root / f.tmp)]
            # a rename means every file was written; else how far each got is unknown
            self.record(*(op for f in moved + gone for op in (f.writes if moved else f.writes[:1])),
                        *(f.rename for f in moved), *(Op("unlink", f.tmp) for f in gone))
            raise
        parents = dict.fromkeys(_split(f.rename.target)[0] for f in plan)
        self.record(*(op for f in plan for op in f.writes), *(f.rename for f in plan),
                    *(Op("fsync_dir", d) for d in parents))

    @_door
    def open_log(self, path: Path) -> LogFile:
        rel = self._rel(path)
        inode = self._known(rel)
        if inode is not None and os.path.getsize(path) != len(self._model.inodes[inode].data):
            raise RecordError(f"{rel} was written behind the recorder's back")
        try:
            log = super().open_log(path)
        except BaseException:
            if inode is None and os.path.lexists(path):
                self.record(Op("create", rel, next(self._inodes)))
            raise
        if inode is None:
            inode = next(self._inodes)
            self.record(Op("create", rel, inode))
        if log.size == 0:
            self.record(Op("fsync_dir", _split(rel)[0]))
        return _RecordedLog(self, log, rel, inode)

    @_door
    def truncate(self, path: Path, size: int) -> None:
        rel = self._rel(path)
        inode = self._known(rel)
        try:
            super().truncate(path, size)
        except BaseException:
            if inode is not None and os.path.getsize(path) == size:
                self.record(Op("truncate", rel, inode, size=size))  # cut, maybe not synced
            raise
        assert inode is not None
        self.record(Op("truncate", rel, inode, size=size), Op("fsync", rel, inode))

    @_door
    def remove(self, paths: Iterable[Path]) -> None:
        paths = list(paths)
        present = dict.fromkeys(r for r in map(self._rel, paths) if self._known(r) is not None)
        done = False
        try:
            super().remove(paths)
            done = True
        finally:
            gone = [r for r in present if not os.path.lexists(self.root / r)]
            self.record(*(Op("unlink", r) for r in gone))
            if done:
                parents = dict.fromkeys(_split(r)[0] for r in gone)
                self.record(*(Op("fsync_dir", d) for d in parents))

    @_door
    def sync_dir(self, path: Path) -> None:
        rel = self._rel(path)
        if rel not in self._model.live:
            raise RecordError(f"directory {rel} was made behind the recorder's back")
        super().sync_dir(path)
        self.record(Op("fsync_dir", rel))


class _RecordedLog(LogFile):
    """The real :class:`LogFile` of :meth:`Recorder.open_log`, its effects recorded."""

    def __init__(self, recorder: Recorder, log: LogFile, rel: str, inode: int) -> None:
        super().__init__(log.path, -1, log.size)
        self._recorder, self._log, self._rel, self._inode = recorder, log, rel, inode

    def write(self, buffers: Sequence[Any]) -> None:
        data = b"".join(memoryview(b).cast("B") for b in buffers)
        with self._recorder._lock:
            start = self._log.size
            try:
                self._log.write(buffers)
            finally:
                self.size = self._log.size
                if self.size > start:
                    self._recorder.record(Op("append", self._rel, self._inode,
                                             data=data[: self.size - start]))

    def write_at(self, offset: int, data: bytes) -> None:
        with self._recorder._lock:
            self._log.write_at(offset, data)  # all or an OSError (the model keeps no part)
            self._recorder.record(Op("overwrite", self._rel, self._inode, data=bytes(data),
                                     size=offset))

    def sync(self) -> None:
        with self._recorder._lock:
            self._log.sync()
            self._recorder.record(Op("fsync", self._rel, self._inode))

    def truncate(self, size: int) -> None:
        with self._recorder._lock:
            self._log.truncate(size)
            self.size = size
            self._recorder.record(Op("truncate", self._rel, self._inode, size=size),
                                  Op("fsync", self._rel, self._inode))

    def close(self) -> None:
        self._log.close()
