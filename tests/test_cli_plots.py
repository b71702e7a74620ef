"""``tidal timeline --plot`` and the histogram of ``tidal stats``, run in a real
terminal (a pseudo-terminal, so rich draws colours) and in a pipe; the binning."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import tidal
from tidal.plots import counts_over_time

BIN = Path(__import__("sys").executable).parent / "tidal"
TIDAL = [str(BIN)] if BIN.exists() else [__import__("sys").executable, "-m", "tidal.cli"]

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def in_terminal(*args: str | Path, columns: int = 100) -> str:
    """Run ``tidal ARGS`` with its stdout a pseudo-terminal; what it wrote, as sent."""
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns)}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([*TIDAL, *map(str, args)], stdout=follower, stderr=subprocess.PIPE,
                            env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # (EIO once the child has closed its end)
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return b"".join(chunks).decode()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plots") / "s"
    with tidal.open(path) as s:
        s.append([{"timestamp": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z", "entity": "pod-a",
                   "level": "error" if i == 50 else "info"} for i in range(100)]
                 + [{"timestamp": "2026-01-01T00:00:00Z", "entity": "pod-b", "level": "info"}])
    return path


def test_a_timeline_plot_is_coloured_in_a_terminal(store):
    out = in_terminal("timeline", "pod-a", "--store", store, "--plot")
    assert "\x1b[" in out  # colours
    plain = ANSI.sub("", out).replace("\r", "")
    lines = plain.splitlines()
    assert lines[0] == "timeline of pod-a: 100 events, coloured by level"
    assert lines[2].startswith("2026-01-01T00:00:00Z") and lines[2].endswith("00:01:39Z")
    assert "● info" in lines[3] and "● error" in lines[3]
    marks = [m for m in lines[1] if m in "●•·"]
    assert len(marks) == 72 and "·" not in marks  # a mark in every cell: 100 events, 72 cells
    colours = {m[:-1] for m in re.findall(r"\x1b\[[0-9;]*m[●•]", out)}
    assert len(colours) == 2  # the one error has a colour of its own


def test_a_plot_in_a_pipe_has_no_colour_and_a_chosen_field(store):
    proc = subprocess.run([*TIDAL, "timeline", "pod-b", "--store", str(store), "--plot",
                           "--color-by", "entity"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout
    assert proc.stdout.splitlines()[0] == "timeline of pod-b: 1 events, coloured by entity"


def test_stats_end_with_a_histogram_of_events_over_time(store):
    out = ANSI.sub("", in_terminal("stats", "--store", store)).replace("\r", "")
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("events over time"))
    assert "(101 events; the tallest bar: " in lines[at]
    bars = lines[at + 1]
    assert set(bars) <= set(" ▁▂▃▄▅▆▇█") and len(bars) == 72
    assert lines[at + 2].startswith("2026-01-01T00:00:00Z")


def test_counts_fall_in_equal_bins():
    ts = np.array([0, 1, 2, 3, 9, 10], np.int64)
    counts, low, high = counts_over_time(ts, 4)
    assert (low, high) == (0, 10)
    assert counts.tolist() == [3, 1, 0, 2]  # bins of 3 ns: [0,3) [3,6) [6,9) [9,12)
    assert counts.sum() == len(ts)
    assert counts_over_time(np.zeros(0, np.int64), 4)[0].size == 0
