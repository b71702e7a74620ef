"""``tidal logql``, the console script run as logcli would be: log lines newest first
(or oldest with ``--forward``), raw lines, a metric's points, the window options,
a table in a real terminal, and errors that name the place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tidal
from test_cli import tidal_cli
from test_cli_plots import ANSI, in_terminal

LINES = [f"level={'error' if i % 4 == 0 else 'info'} path=/p{i} took={i}ms" for i in range(40)]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """40 logfmt lines of app api, one a second from 2026-01-01T00:00:00Z."""
    path = tmp_path_factory.mktemp("logql") / "s"
    with tidal.open(path) as s:
        s.append([{"timestamp": f"2026-01-01T00:00:{i:02d}Z", "app": "api", "message": line}
                  for i, line in enumerate(LINES)])
    return path


def json_rows(*args: str | Path) -> list[dict]:
    done = tidal_cli("logql", *args)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_log_lines_newest_first_with_labels(store):
    rows = json_rows('{app="api"} |= "level=error"', "--store", store, "--limit", "3",
                     "--format", "json")
    assert [r["line"] for r in rows] == [LINES[36], LINES[32], LINES[28]]
    assert rows[0]["labels"] == '{app="api"}'
    assert rows[0]["time"] == "2026-01-01T00:00:36.000000000Z"


def test_forward_raw_and_a_parsed_filter(store):
    done = tidal_cli("logql", '{app="api"} | logfmt | took >= 30ms', "--store", store,
                     "--forward", "--limit", "2", "--format", "raw")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [LINES[30], LINES[31]]


def test_a_metric_over_the_whole_store_and_a_window(store):
    rows = json_rows('sum by (level) (count_over_time({app="api"} | logfmt [10s]))', "--store",
                     store,
                     "--step", "10s", "--format", "json")
    by_level: dict[str, list[float]] = {}
    for r in rows:
        by_level.setdefault(r["labels"], []).append(r["value"])
    # the whole store: steps 00:00, 00:10, 00:20, 00:30 (windows (t-10s, t])
    assert by_level['{level="error"}'] == [1.0, 2.0, 3.0, 2.0]
    assert by_level['{level="info"}'] == [8.0, 7.0, 8.0]  # (none at 00:00)
    rows = json_rows('sum(count_over_time({app="api"}[5s]))', "--store", store, "--since",
                     "10s", "--end", "2026-01-01T00:00:20Z", "--step", "5s", "--format", "json")
    assert [(r["time"][14:19], r["value"]) for r in rows] == [
        ("00:10", 5.0), ("00:15", 5.0), ("00:20", 5.0)]


def test_a_table_in_a_terminal(store):
    out = ANSI.sub("", in_terminal("logql", '{app="api"}', "--store", store, "--limit", "2",
                                   columns=140))
    assert "time" in out and "labels" in out and "line" in out
    assert LINES[39] in out and LINES[38] in out and LINES[37] not in out


@pytest.mark.parametrize("args, words", [
    (['{app="api"', "--limit", "3"], "line 1, column 11"),
    (['sum(count_over_time({app="api"} | json [1m]))'], "pipeline error"),
    (['{app="api"}', "--since", "5x"], "--since"),
    (['rate({app="api"}[1m])', "--step", "soon"], "--step"),
])
def test_errors_name_the_place(store, args, words):
    done = tidal_cli("logql", args[0], "--store", store, *args[1:])
    assert done.returncode == 1
    assert done.stderr.startswith("tidal: error:")
    assert words in done.stderr
    assert "Traceback" not in done.stderr
