"""The benchmark harness behind ``tidal bench [NAME...] [--events N] [--json PATH]``.

A benchmark (a *case*, see :mod:`tidal.bench.cases`) measures Tidal and a
baseline in the same run and returns :class:`Figure` objects. Each becomes a
record::

    {"name", "workload", "events", "metric", "value", "unit",
     "baseline", "baseline_value", "ratio", "runs", "at"}

``value`` and ``baseline_value`` are medians over ``runs`` runs. ``ratio`` is
oriented so that **a ratio above 1 means Tidal did better**: Tidal / baseline
for rates, baseline / Tidal for times and sizes; it is None where a figure has
no baseline. ``at`` is when the whole ``run`` started (RFC 3339, UTC).
Scratch data lives in a temporary directory under the system temp dir and is
removed after each case.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tidal.bench import (  # noqa: F401 - they register
    cases,
    concurrency,
    consume,
    corql,
    ecosystem,
    eql,
    positions,
    reads,
    server,
)
from tidal.bench.figures import Context, Figure, median_of, seconds
from tidal.bench.registry import CASES
from tidal.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Context", "Figure", "median_of", "run", "seconds", "table"]


def run(names: Sequence[str] | None, events: int | None,
        json_path: str | os.PathLike[str] | None, console: Console | None = None,
        *, runs: int = 3) -> list[dict[str, Any]]:
    """Run the benchmarks ``names`` (all when empty), print a table, return the records.

    Args:
        names: case names (see :data:`tidal.bench.cases.CASES`); None or empty: all.
        events: events per workload, overriding every case's default size.
        json_path: append one JSON line per record here (created if missing).
        console: a ``rich`` console for progress and the result table.
        runs: runs per median.

    Raises:
        ConfigError: an unknown name, or ``events`` / ``runs`` below 1.
    """
    chosen = list(names) if names else list(CASES)
    unknown = [n for n in chosen if n not in CASES]
    if unknown:
        raise ConfigError(f"unknown benchmark {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(CASES)}", field="names")
    if events is not None and events < 1:
        raise ConfigError("events must be positive", field="events")
    if runs < 1:
        raise ConfigError("runs must be positive", field="runs")
    at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tidal-bench-") as scratch:
        for name in chosen:
            case = CASES[name]
            ctx = Context(events, Path(scratch) / name, console, runs=runs)
            ctx.tmp.mkdir()
            if console is not None:
                console.print(f"[bold]{name}[/bold]: {case.about}")
            started = time.perf_counter()
            try:
                figures = case.fn(ctx)
            finally:
                shutil.rmtree(ctx.tmp, ignore_errors=True)
            batch = [f.record(at) for f in figures]
            records.extend(batch)
            if json_path is not None:
                _append_json(json_path, batch)
            ctx.note(f"done in {time.perf_counter() - started:.1f} s")
    if console is not None:
        console.print(table(records))
    return records


def _append_json(path: str | os.PathLike[str], records: list[dict[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "events/s" or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.3g}" if abs(value) < 10 else f"{value:,.1f}"


def table(records: Sequence[dict[str, Any]]) -> Any:
    """The records as a ``rich`` table (ratio > 1: Tidal better)."""
    from rich.table import Table

    out = Table(title="tidal bench", caption="ratio > 1 means Tidal did better than the baseline")
    for column, justify in (("benchmark", "left"), ("workload", "left"), ("events", "right"),
                            ("metric", "left"), ("tidal", "right"), ("unit", "left"),
                            ("baseline", "left"), ("baseline value", "right"),
                            ("ratio", "right")):
        out.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in records:
        ratio = r["ratio"]
        shown = "-" if ratio is None else f"{ratio:.2f}x"
        if ratio is not None:
            shown = f"[green]{shown}[/green]" if ratio >= 1 else f"[red]{shown}[/red]"
        out.add_row(r["name"], r["workload"], f"{r['events']:,}", r["metric"],
                    _fmt(r["value"], r["unit"]), r["unit"], r["baseline"] or "-",
                    _fmt(r["baseline_value"], r["unit"]), shown)
    return out
