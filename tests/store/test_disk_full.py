"""Full disks and read-only media, on real file systems where the sandbox lets us mount them."""

from __future__ import annotations

import errno

import pytest

import tidal
from tidal.cli import main

from .events import batch
from .mounts import read_only_view, small_tmpfs


def test_a_full_disk_refuses_appends_loses_nothing_and_recovers_without_restart(tmp_path):
    """The issue: on a full 20 MB disk 3,000 of 15,000 acknowledged events were lost."""
    with small_tmpfs(tmp_path / "disk", 4 << 20) as disk:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (2 << 20))
        store = tidal.open(disk / "s")
        acked: list[int] = []
        failures = 0
        for i in range(400):
            try:
                r = store.append(batch(i * 50, 50, pad=200))
                acked += range(i * 50, i * 50 + 50)
                assert r.count == 50
            except tidal.StorageError as exc:
                failures += 1
                assert "No space left" in str(exc) or "space" in str(exc)
        assert failures > 0 and acked
        filler.unlink()  # space freed: the same store takes appends again
        store.append(batch(1_000_000, 10, pad=200))
        acked += range(1_000_000, 1_000_010)
        store.close()
        with tidal.open(disk / "s") as again:
            got = again.read_from(0).column("id").to_pylist()
        assert sorted(got) == sorted(acked)  # every acknowledged event, exactly once


def test_a_store_on_read_only_media_opens_read_only(tmp_path):
    source = tmp_path / "s"
    with tidal.open(source) as store:
        store.append(batch(0, 20))
        store.flush()
        store.append(batch(20, 5))
    with read_only_view(source, tmp_path / "ro") as ro:
        with pytest.raises(tidal.StorageError, match="read_only=True") as info:
            tidal.open(ro)
        assert isinstance(info.value.__cause__, OSError)
        assert info.value.__cause__.errno == errno.EROFS
        with tidal.open(ro, read_only=True) as store:
            assert store.read_from(0).column("id").to_pylist() == list(range(25))
        assert main(["stats", "--store", str(ro)]) == 0
        assert main(["check", "--store", str(ro)]) == 0
