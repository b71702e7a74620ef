"""Durability against power cuts, not only ``kill -9`` (which keeps the page cache).

The store runs on a :class:`~tests.store.powercut.Recorder`, which logs every
primitive effect on its files. For each point of that log (and each way a power
cut may leave the disk there, see :mod:`tests.store.powercut`) the state is
written out and opened with the real file system. Invariant 1: every event
acknowledged before the cut is there exactly once, with the ``_seq`` its
receipt gave; nothing appears twice or from nowhere; ``_seq`` stays unique; the
store takes a new append. A state may fail to open with ``CorruptionError``
only while nothing was acknowledged yet.

``test_model_*`` check the recorder itself; ``test_powercut_*`` run the store
through it (they need the store's writes routed through ``tidal.store.fs``).
"""

from __future__ import annotations

import importlib
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import pyarrow as pa
import pytest

import tidal
from tidal.store import fs as fs_module
from tidal.store.fs import FileSystem

from .powercut import CrashState, Op, Recorder, RecordError, crashes, states

if TYPE_CHECKING:
    from tidal.api import Store

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns
PROBE = -1  # id of the event appended to every reopened crash state
MAX_STATES = 200  # distinct crash states checked per scenario (each one is an open)


def by_label(source: Recorder | list[Op], upto: int) -> dict[str, dict[str, bytes]]:
    """The files of each state a power cut after ``upto`` ops may leave, by variant."""
    return {s.label: dict(s.files) for s in states(source, upto)}


def strict(source: Recorder | list[Op], upto: int) -> dict[str, bytes]:
    return by_label(source, upto)["strict"]


def kinds(recorder: Recorder) -> list[str]:
    return [op.kind for op in recorder.ops]


# --------------------------------------------------------------------------- the model


def test_model_write_atomic_is_durable_only_after_its_directory_fsync(tmp_path):
    rec = Recorder(tmp_path)
    rec.write_atomic(tmp_path / "a", b"new")
    assert kinds(rec) == ["create", "append", "fsync", "rename", "fsync_dir"]
    assert str(rec.ops[3]) == "rename a.tmp -> a"
    for k in range(5):
        assert strict(rec, k) == {}, k  # the temp file's entry was never made durable
    assert strict(rec, 5) == {"a": b"new"}
    # the directory written back without the file's data: entries show, data does not
    assert by_label(rec, 1)["dirs"] == {"a.tmp": b""}
    assert by_label(rec, 2)["dirs"] == {"a.tmp": b""}
    assert by_label(rec, 3)["dirs"] == {"a.tmp": b"new"}
    assert by_label(rec, 4)["dirs"] == {"a": b"new"}


def test_model_unsynced_rename_leaves_the_old_file_under_its_name(tmp_path):
    rec = Recorder(tmp_path)
    rec.write_atomic(tmp_path / "a", b"old")
    rec.write_atomic(tmp_path / "a", b"new")
    assert strict(rec, 9) == {"a": b"old"}  # renamed, directory not yet fsynced
    assert by_label(rec, 9)["dirs"] == {"a": b"new"}
    assert strict(rec, 10) == {"a": b"new"}


def test_model_stale_temp_file_is_truncated_not_recreated(tmp_path):
    rec = Recorder(tmp_path)
    log = rec.open_log(tmp_path / "a.tmp")  # as a crash may leave one
    log.write([b"stale"])
    log.sync()
    log.close()
    rec.write_atomic(tmp_path / "a", b"x")
    assert kinds(rec)[4:] == ["truncate", "append", "fsync", "rename", "fsync_dir"]
    assert strict(rec, 4) == {"a.tmp": b"stale"}
    assert strict(rec, 7) == {"a.tmp": b"x"}  # same inode, now fsynced; rename not durable
    assert strict(rec, len(rec.ops)) == {"a": b"x"}


def test_model_write_files_atomic_renames_all_then_syncs_each_directory(tmp_path):
    rec = Recorder(tmp_path)
    rec.make_dirs(tmp_path / "d")
    rec.write_files_atomic([(tmp_path / "d" / "x", b"1"), (tmp_path / "y", b"2")])
    assert kinds(rec)[2:] == ["create", "append", "fsync", "create", "append", "fsync",
                              "rename", "rename", "fsync_dir", "fsync_dir"]
    assert [str(op) for op in rec.ops[-2:]] == ["fsync_dir d", "fsync_dir ."]
    assert strict(rec, len(rec.ops) - 1) == {"d/x": b"1"}
    assert strict(rec, len(rec.ops)) == {"d/x": b"1", "y": b"2"}


def test_model_log_data_survives_as_of_its_last_fsync(tmp_path):
    rec = Recorder(tmp_path)
    log = rec.open_log(tmp_path / "wal.log")
    assert kinds(rec) == ["create", "fsync_dir"]
    assert strict(rec, 2) == {"wal.log": b""}  # durable entry, nothing durable in it
    log.write([b"frame-1|"])
    assert strict(rec, 3) == {"wal.log": b""}
    assert by_label(rec, 3)["torn"] == {"wal.log": b"fram"}
    log.sync()
    log.write([b"frame-2|", memoryview(b"tail")])
    assert log.size == 20
    assert strict(rec, 5) == {"wal.log": b"frame-1|"}
    assert by_label(rec, 5)["torn"] == {"wal.log": b"frame-1|frame-"}
    log.sync()
    log.close()
    assert strict(rec, 6) == {"wal.log": b"frame-1|frame-2|tail"}
    assert len(states(rec, 6)) == 1  # nothing pending: every variant is the strict state


def test_model_overwrite_is_durable_after_its_fsync_and_may_reach_the_disk_before(tmp_path):
    rec = Recorder(tmp_path)
    log = rec.open_log(tmp_path / "wal.log")
    log.write([b"...."])
    log.sync()
    log.write([b"body"])  # the header placeholder is durable, the body not yet
    log.write_at(0, b"HEAD")
    assert str(rec.ops[-1]) == "overwrite wal.log 4 B at 0"
    assert strict(rec, len(rec.ops)) == {"wal.log": b"...."}
    assert by_label(rec, len(rec.ops))["torn"] == {"wal.log": b"HEADbo"}
    log.sync()
    assert strict(rec, len(rec.ops)) == {"wal.log": b"HEADbody"}
    with pytest.raises(ValueError, match="outside"):
        log.write_at(6, b"xyz")
    log.close()


def test_model_truncate_is_durable_after_its_fsync(tmp_path):
    rec = Recorder(tmp_path)
    log = rec.open_log(tmp_path / "wal.log")
    log.write([b"0123456789"])
    log.sync()
    log.truncate(6)
    assert log.size == 6
    rec.truncate(tmp_path / "wal.log", 2)
    log.close()
    assert kinds(rec)[4:] == ["truncate", "fsync", "truncate", "fsync"]
    assert [strict(rec, k)["wal.log"] for k in range(4, 9)] == [
        b"0123456789", b"0123456789", b"012345", b"012345", b"01"]
    assert (tmp_path / "wal.log").read_bytes() == b"01"


def test_model_unsynced_unlink_leaves_the_file(tmp_path):
    rec = Recorder(tmp_path)
    rec.write_atomic(tmp_path / "a", b"data")
    rec.remove([tmp_path / "a", tmp_path / "missing"])
    assert kinds(rec)[5:] == ["unlink", "fsync_dir"]
    assert strict(rec, 6) == {"a": b"data"}
    assert by_label(rec, 6)["dirs"] == {}
    assert strict(rec, 7) == {}


def test_model_unlinked_file_keeps_its_durable_data(tmp_path):
    rec = Recorder(tmp_path)
    log = rec.open_log(tmp_path / "a")
    log.write([b"synced"])
    log.sync()
    rec.remove([tmp_path / "a"])
    log.write([b"+late"])  # an open descriptor still writes to the unlinked inode
    log.sync()
    log.close()
    assert kinds(rec)[4:] == ["unlink", "fsync_dir", "append", "fsync"]
    assert strict(rec, 5) == {"a": b"synced"}
    assert strict(rec, len(rec.ops)) == {}


def test_model_directories_need_their_parent_fsynced(tmp_path):
    rec = Recorder(tmp_path)
    rec.make_dirs(tmp_path / "a" / "b")
    assert [str(op) for op in rec.ops] == ["mkdir a", "fsync_dir .", "mkdir a/b", "fsync_dir a"]
    log = rec.open_log(tmp_path / "a" / "b" / "f")
    log.close()
    for k, dirs in [(1, ()), (2, ("a",)), (3, ("a",)), (4, ("a", "a/b"))]:
        assert states(rec, k)[0].dirs == dirs, k
    assert strict(rec, 5) == {}  # the file's entry is not durable yet
    assert strict(rec, 6) == {"a/b/f": b""}
    rec.make_dirs(tmp_path / "a" / "b")  # exists: nothing to do
    assert len(rec.ops) == 6


def test_model_cross_directory_rename_needs_both_directories_fsynced():
    ops = [Op("mkdir", "x"), Op("mkdir", "y"), Op("fsync_dir", ""),
           Op("create", "x/f", 0), Op("append", "x/f", 0, data=b"d"), Op("fsync", "x/f", 0),
           Op("fsync_dir", "x"), Op("rename", "x/f", target="y/f")]
    assert by_label(ops, 8) == {"strict": {"x/f": b"d"}, "dirs": {"y/f": b"d"},
                                "dirs:x": {}, "dirs:y": {"x/f": b"d", "y/f": b"d"}}
    ops.append(Op("fsync_dir", "y"))
    assert strict(ops, 9) == {"x/f": b"d", "y/f": b"d"}  # one inode, two durable names
    ops.append(Op("fsync_dir", "x"))
    assert strict(ops, 10) == {"y/f": b"d"}


def test_model_crashes_replays_once_what_states_gives(tmp_path):
    rec = Recorder(tmp_path)
    log = rec.open_log(tmp_path / "w")
    log.write([b"abc"])
    rec.write_atomic(tmp_path / "m", b"m")
    log.sync()
    log.close()
    every = list(crashes(rec))
    assert [k for k, _ in every] == list(range(len(rec.ops) + 1))
    for k, found in every:
        assert [s.key for s in found] == [s.key for s in states(rec, k)]
        assert found[0].label == "strict"
        assert len({s.key for s in found}) == len(found)
    with pytest.raises(ValueError):
        states(rec, len(rec.ops) + 1)


def test_model_materialize_writes_the_tree(tmp_path):
    state = CrashState("strict", {"a/b/f": b"1", "g": b""}, ("a", "a/b", "c"))
    state.materialize(tmp_path / "out")
    found = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*"))
    assert found == ["a", "a/b", "a/b/f", "c", "g"]
    assert (tmp_path / "out" / "a" / "b" / "f").read_bytes() == b"1"


def test_model_failed_write_atomic_leaves_nothing(tmp_path, monkeypatch):
    rec = Recorder(tmp_path)

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fs_module.os, "replace", refuse)
    with pytest.raises(OSError):
        rec.write_atomic(tmp_path / "a", b"x")
    assert kinds(rec) == ["create", "unlink"]
    assert not any(tmp_path.iterdir())
    assert [s.files for s in states(rec, 2)] == [{}]


def test_recorder_refuses_what_it_cannot_model(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    rec = Recorder(root)
    with pytest.raises(RecordError, match="outside"):
        rec.write_atomic(tmp_path / "elsewhere", b"x")
    (root / "sneaky").write_bytes(b"x")
    with pytest.raises(RecordError, match="behind"):
        rec.open_log(root / "sneaky")
    (root / "made").mkdir()
    with pytest.raises(RecordError, match="behind"):
        rec.write_atomic(root / "made" / "f", b"x")
    assert rec.ops == []
    assert rec.unrecorded() == ["directory made: created unrecorded",
                                "file sneaky: created unrecorded"]
    with pytest.raises(RecordError, match="empty"):
        Recorder(root)


def test_recorder_notices_writes_behind_its_back(tmp_path):
    rec = Recorder(tmp_path)
    rec.write_atomic(tmp_path / "a", b"x")
    (tmp_path / "LOCK").touch()  # ignored: the store's flock file
    assert rec.unrecorded() == []
    (tmp_path / "a").write_bytes(b"y")
    assert rec.unrecorded() == ["file a: written unrecorded"]


def test_recorder_wraps_every_filesystem_method():
    public = [n for n in vars(FileSystem) if not n.startswith("_")]
    assert public, "FileSystem has no methods?"
    unwrapped = [n for n in public if getattr(Recorder, n) is getattr(FileSystem, n)]
    assert unwrapped == [], "a FileSystem method the recorder does not record"


def test_recorder_is_thread_safe(tmp_path):
    rec = Recorder(tmp_path)
    rec.make_dirs(tmp_path / "logs")

    def work(n: int) -> None:
        log = rec.open_log(tmp_path / "logs" / f"{n}.log")
        for i in range(50):
            log.write([f"{n}:{i};".encode()])
            if i % 7 == 0:
                log.sync()
        log.sync()
        log.close()
        rec.write_atomic(tmp_path / f"{n}.done", b"ok")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rec.unrecorded() == []
    final = strict(rec, len(rec.ops))
    assert final == {str(p.relative_to(tmp_path)): p.read_bytes()
                     for p in tmp_path.rglob("*") if p.is_file()}
    assert len(final) == 16


# --------------------------------------------------------------------------- the store


def events(ids: Iterable[int]) -> pa.Table:
    ids = list(ids)
    return pa.table({
        "timestamp": pa.array([T0 + i * 10**9 for i in ids], pa.timestamp("ns", "UTC")),
        "entity": [f"e{i % 3}" for i in ids],
        "id": pa.array(ids, pa.int64()),
        "pad": ["p" * (i % 40) for i in ids],
    })


@dataclass
class Ack:
    """One acknowledged append: when (ops recorded by then) and what it promised."""

    op_index: int
    first_seq: int
    last_seq: int
    ids: list[int]


@dataclass
class Scenario:
    """A store on a recorder, and what it acknowledged when.

    ``store_dir`` is where the store lives below the recorder's root.
    """

    root: Path
    options: dict[str, object] = field(default_factory=dict)
    store_dir: str = ""
    acks: list[Ack] = field(default_factory=list)
    appended: list[list[int]] = field(default_factory=list)
    expired: list[tuple[int, frozenset[int]]] = field(default_factory=list)
    positioned: dict[int, tuple[str, int]] = field(default_factory=dict)  # first id -> pos

    def __post_init__(self) -> None:
        self.root.mkdir()
        self.recorder = Recorder(self.root)
        self.store: Store | None = None

    def open(self) -> Store:
        from tidal.api import Store  # here: the model tests need only tidal.store.fs
        from tidal.config import StoreConfig

        self.store = Store(self.root / self.store_dir, StoreConfig.build(self.options),
                           fs=self.recorder)
        return self.store

    def append(self, n: int, source: str | None = None) -> None:
        assert self.store is not None
        first = sum(map(len, self.appended))
        ids = list(range(first, first + n))
        self.appended.append(ids)
        position = None
        if source is not None:
            position = len(self.appended)
            self.positioned[first] = (source, position)
        receipt = self.store.append(events(ids), source=source, position=position)
        assert receipt.first_seq is not None and receipt.last_seq is not None
        self.acks.append(Ack(len(self.recorder), receipt.first_seq, receipt.last_seq, ids))

    def append_file(self, n: int, directory: Path) -> None:
        """Append ``n`` events as an NDJSON file (outside the recorder's root)."""
        assert self.store is not None
        first = sum(map(len, self.appended))
        ids = list(range(first, first + n))
        self.appended.append(ids)
        path = directory / f"input-{first}.ndjson"
        encode = msgspec.json.Encoder(enc_hook=lambda t: t.isoformat()).encode
        path.write_bytes(b"".join(encode(row) + b"\n" for row in events(ids).to_pylist()))
        receipt = self.store.append(path)
        assert receipt.first_seq is not None and receipt.last_seq is not None
        self.acks.append(Ack(len(self.recorder), receipt.first_seq, receipt.last_seq, ids))

    def observe_retention(self) -> None:
        """Note which acknowledged events retention has dropped by now."""
        assert self.store is not None
        live = set(self.store.read_from(0).column("id").to_pylist())
        dropped = frozenset(i for a in self.acks for i in a.ids if i not in live)
        assert len(dropped) == self.store.stats()["dropped_events"]
        self.expired.append((len(self.recorder), dropped))

    def expired_at(self, k: int) -> frozenset[int]:
        """Events retention may have dropped in a cut after op ``k`` (observed next after it)."""
        for index, dropped in self.expired:
            if index >= k:
                return dropped
        return self.expired[-1][1] if self.expired else frozenset()

    def close(self) -> None:
        assert self.store is not None
        self.store.close()


def inspect(sc: Scenario, store: Store, k: int, atomic: bool) -> list[str]:
    """What is wrong with ``store``, reopened after a power cut after op ``k``."""
    acked = [a for a in sc.acks if a.op_index <= k]
    table = store.read_from(0)
    ids = table.column("id").to_pylist() if table.num_rows else []
    seqs = table.column("_seq").to_pylist() if table.num_rows else []
    problems = []
    if any(b <= a for a, b in pairwise(seqs)):
        problems.append("_seq not unique and increasing")
    if twice := sorted(i for i, c in Counter(ids).items() if c > 1):
        problems.append(f"events twice: {twice[:10]}")
    if strange := sorted(set(ids) - {i for batch in sc.appended for i in batch}):
        problems.append(f"events never appended: {strange[:10]}")
    seq_of = dict(zip(ids, seqs, strict=True))
    expired = sc.expired_at(k)
    if lost := [i for a in acked for i in a.ids if i not in seq_of and i not in expired]:
        problems.append(f"{len(lost)} acknowledged events lost, ids {lost[:10]}")
    if moved := [i for a in acked for n, i in enumerate(a.ids)
                 if i in seq_of and seq_of[i] != a.first_seq + n]:
        problems.append(f"acknowledged events under another _seq: ids {moved[:10]}")
    if atomic:
        for batch in sc.appended:
            if 0 < sum(i in seq_of for i in batch) < len(batch):
                problems.append(f"append of ids {batch[0]}..{batch[-1]} stored in part")
    if sc.positioned:  # each source's position is that of its last stored append
        want: dict[str, int] = {}
        for first, (source, position) in sorted(sc.positioned.items(), key=lambda p: p[1][1]):
            if first in seq_of:
                want[source] = position
        if store.positions() != want:
            problems.append(f"positions {store.positions()} are not those stored, {want}")
    top = max([*seqs, *(a.last_seq for a in acked)], default=-1)
    receipt = store.append(events([PROBE]))
    if receipt.first_seq is None or receipt.first_seq <= top:
        problems.append(f"new append got _seq {receipt.first_seq}, not above {top}")
    elif store.read_from(receipt.first_seq).column("id").to_pylist() != [PROBE]:
        problems.append("the new append is not readable")
    return problems


def check_state(sc: Scenario, k: int, state: CrashState, dest: Path, *,
                corrupt_ok: bool, atomic: bool) -> list[str]:
    """Open ``state`` (a power cut after op ``k``) with the real file system; what is wrong."""
    acked = any(a.op_index <= k for a in sc.acks)
    state.materialize(dest)
    try:
        try:
            store = tidal.open(dest / sc.store_dir)
        except tidal.CorruptionError as exc:
            return [] if corrupt_ok and not acked else [f"cannot open: {exc!r}"]
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            return [f"cannot open: {exc!r}"]
        try:
            return inspect(sc, store, k, atomic)
        except Exception as exc:  # noqa: BLE001
            return [f"{type(exc).__name__}: {exc}"]
        finally:
            store.close()
    finally:
        shutil.rmtree(dest)


def pick(found: list[tuple[int, CrashState]]) -> list[tuple[int, CrashState]]:
    """At most ``MAX_STATES``: every strict state, then an even spread of the others."""
    if len(found) <= MAX_STATES:
        return found
    keep = [f for f in found if f[1].label == "strict"][:MAX_STATES]
    others = [f for f in found if f[1].label != "strict"]
    room = MAX_STATES - len(keep)
    keep += [others[i * len(others) // room] for i in range(room)] if room > 0 else []
    return sorted(keep, key=lambda f: f[0])


def power_cuts(sc: Scenario, *, corrupt_ok: bool = True, atomic: bool = True) -> list[str]:
    """Check every distinct state a power cut may leave; the problems found.

    A state that several cut points leave is checked once, at the latest of
    them (the most acknowledged by then).
    """
    ops = sc.recorder.ops
    latest: dict[object, tuple[int, CrashState]] = {}
    for k, found in crashes(ops):
        for state in found:
            latest[state.key] = (k, state)
    problems = []
    for n, (k, state) in enumerate(pick(sorted(latest.values(), key=lambda f: f[0]))):
        where = f"cut after op {k}/{len(ops)} ({ops[k - 1] if k else 'start'}), {state.label}"
        problems += [f"{where}: {p}" for p in check_state(
            sc, k, state, sc.root.parent / f"cut-{n}", corrupt_ok=corrupt_ok, atomic=atomic)]
    return problems


def assert_survives(sc: Scenario, **checks: bool) -> None:
    ops = sc.recorder.ops
    assert ops, "the store wrote nothing through its FileSystem"
    assert sc.recorder.unrecorded() == [], "the store wrote files behind its FileSystem"
    problems = power_cuts(sc, **checks)
    assert not problems, f"{len(problems)} bad crash states:\n" + "\n".join(problems[:15])


def test_powercut_creating_a_store(tmp_path):
    sc = Scenario(tmp_path / "root", store_dir="store")
    sc.open()
    for n in (1, 4, 2):
        sc.append(n)
    sc.close()
    assert "mkdir store" in map(str, sc.recorder.ops)  # the cut may come before the store is
    assert_survives(sc, corrupt_ok=False)  # no store, or an openable one


def test_powercut_appends(tmp_path):
    sc = Scenario(tmp_path / "root", {"durability": "group"})
    sc.open()
    for n in range(1, 13):
        sc.append(n % 5 + 1)
    sc.close()
    assert_survives(sc)


def test_powercut_flushes(tmp_path):
    sc = Scenario(tmp_path / "root", {"memtable_bytes": 2 << 10})
    store = sc.open()
    for i in range(24):
        sc.append(12)
        if i % 8 == 7:
            store.flush()
    sc.close()
    written = sum(op.kind == "rename" and op.target.endswith(".parquet") for op in sc.recorder.ops)
    assert written > 3, "no background flush happened"
    assert_survives(sc)


def test_powercut_compaction(tmp_path):
    sc = Scenario(tmp_path / "root")
    store = sc.open()
    for _ in range(5):
        sc.append(10)
        store.flush()
    assert store.compact() >= 2
    for _ in range(8):  # eight small segments: a background compaction starts
        sc.append(6)
        store.flush()
    deadline = time.monotonic() + 30
    while store.stats()["segments"] > 2:  # close() would abandon it: wait until it commits
        assert time.monotonic() < deadline, "no background compaction happened"
        time.sleep(0.01)
    sc.close()
    assert_survives(sc)


def test_powercut_retention(tmp_path):
    sc = Scenario(tmp_path / "root", {"retention_bytes": 12 << 10})
    store = sc.open()
    for _ in range(10):
        sc.append(20)
        store.flush()
        sc.observe_retention()
    sc.close()
    assert sc.expired[-1][1], "retention dropped nothing"
    assert_survives(sc, atomic=False)  # whole segments go, and an append may span two


def test_powercut_reopen_covers_recovery(tmp_path):
    sc = Scenario(tmp_path / "root")
    store = sc.open()
    for n in (3, 5, 2):
        sc.append(n)
    store.flush()
    for n in (4, 1, 6):
        sc.append(n)
    sc.close()
    # a durable torn tail (a cut mid-append, with the bytes on disk) and a stale segment
    wal = max((sc.root / "wal").glob("wal-*.log"))
    log = sc.recorder.open_log(wal)
    log.write([b"TWAL\x00\x01\x02"])
    log.sync()
    log.close()
    sc.recorder.write_atomic(sc.root / "segments" / "seg-00000099.parquet", b"orphan")
    before = len(sc.recorder)
    store = sc.open()
    assert store.recovery is not None, "the torn tail was not cut"
    recovery = [op.kind for op in sc.recorder.ops[before:]]
    assert "truncate" in recovery and "unlink" in recovery
    for n in (2, 7):
        sc.append(n)
    store.flush()
    sc.append(3)
    sc.close()
    assert_survives(sc)


class ForgetsSegmentDirSyncs(Recorder):
    """A recorder that drops the fsyncs of ``segments/``: the known bug, made on purpose."""

    dropped = 0

    def record(self, *ops: Op) -> None:
        kept = [op for op in ops if not (op.kind == "fsync_dir" and op.path == "segments")]
        self.dropped += len(ops) - len(kept)
        super().record(*kept)


def test_powercut_catches_segment_renames_never_made_durable(tmp_path):
    # Renames into segments/ that never become durable, under a durable manifest
    # that lists them and after the WAL is deleted, lose acknowledged events.
    sc = Scenario(tmp_path / "root")
    sc.recorder = ForgetsSegmentDirSyncs(sc.root)
    store = sc.open()
    for n in (3, 4):
        sc.append(n)
    store.flush()
    sc.append(2)
    sc.close()
    assert sc.recorder.dropped > 0, "the store never fsynced segments/ through its FileSystem"
    problems = power_cuts(sc)
    assert any("acknowledged events lost" in p or "segment" in p for p in problems), problems



def test_powercut_concurrent_appends_in_commit_groups(tmp_path):
    """Appends from several threads are written in groups (one frame, one fsync each):
    a cut inside a group loses only unacknowledged appends, and whole ones."""
    sc = Scenario(tmp_path / "root", {"memtable_bytes": 4 << 10})
    store = sc.open()
    lock = threading.Lock()
    start = threading.Barrier(4)

    def writer(w: int) -> None:
        start.wait()
        for k in range(6):
            ids = list(range(1000 * w + 10 * k, 1000 * w + 10 * k + (k % 3) + 2))
            with lock:
                sc.appended.append(ids)
            receipt = store.append(events(ids))
            assert receipt.first_seq is not None and receipt.last_seq is not None
            with lock:
                sc.acks.append(Ack(len(sc.recorder), receipt.first_seq, receipt.last_seq, ids))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.flush()
    assert store.stats()["commit_groups"] < 24, "no appends shared a group"
    sc.close()
    assert_survives(sc)


def test_powercut_positioned_appends(tmp_path):
    """A batch and its source position are durable together, or neither is."""
    sc = Scenario(tmp_path / "root", {"memtable_bytes": 3 << 10})
    store = sc.open()
    for i in range(18):
        sc.append(i % 4 + 1, source=f"partition-{i % 3}")
        if i % 6 == 5:
            store.flush()
    sc.close()
    assert_survives(sc)


def test_powercut_large_file_appends(tmp_path, monkeypatch):
    """A large file goes to the WAL in parts as it is decoded, its frame's header written
    over a placeholder last: a cut anywhere leaves all of it or none of it."""
    monkeypatch.setattr(importlib.import_module("tidal.ingest.decode"), "STREAM_MIN_BYTES",
                        2 << 10)
    monkeypatch.setattr(importlib.import_module("tidal.ingest.ndjson"), "STREAM_BLOCK_BYTES",
                        1 << 10)
    sc = Scenario(tmp_path / "root", {"durability": "group"})
    sc.open()
    for n in (40, 3, 25):
        sc.append_file(n, tmp_path)
    sc.close()
    assert kinds(sc.recorder).count("overwrite") == 2  # the two files past 2 KiB
    assert_survives(sc)
