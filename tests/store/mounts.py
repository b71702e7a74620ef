"""Real small and read-only file systems for tests (tmpfs and bind mounts).

They need the right to mount (root in the test sandbox and in CI). Where
mounting is refused, :func:`mount_or_skip` skips the test with the reason:
the same behaviours are also covered through the fault-injecting file layer
(``faults.py``), which needs no privileges.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)


@contextmanager
def mount_or_skip(*args: str, target: Path) -> Iterator[Path]:
    """Mount with ``mount ARGS TARGET``; unmount afterwards."""
    target.mkdir(parents=True, exist_ok=True)
    done = _run("mount", *args, str(target))
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        _run("umount", "-l", str(target))


@contextmanager
def small_tmpfs(target: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` at ``target``: writes past it fail with ENOSPC."""
    with mount_or_skip("-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", target=target) as t:
        yield t


@contextmanager
def read_only_view(source: Path, target: Path) -> Iterator[Path]:
    """``source`` seen read-only at ``target`` (writes fail with EROFS)."""
    with mount_or_skip("--bind", str(source), target=target):
        done = _run("mount", "-o", "remount,ro,bind", str(target))
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {done.stderr.strip()}")
        yield target
