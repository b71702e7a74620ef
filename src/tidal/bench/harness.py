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
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tidal.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Context", "Figure", "median_of", "run", "seconds"]


@dataclass(frozen=True)
class Figure:
    """One measured number, with its baseline.

    Attributes:
        name: the benchmark (case) name.
        workload: the data it ran on (``services``, ``entities``, ...).
        events: how many events the figure is about.
        metric: what was measured (``throughput``, ``p50_memtable``, ...).
        value: Tidal's median.
        unit: unit of ``value`` and ``baseline_value``.
        baseline: what Tidal is compared with, or None.
        baseline_value: the baseline's median, or None.
        higher_is_better: orients ``ratio``.
        runs: how many runs the medians are over.
    """

    name: str
    workload: str
    events: int
    metric: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    higher_is_better: bool = True
    runs: int = 1

    @property
    def ratio(self) -> float | None:
        """Above 1 when Tidal did better than the baseline; None without one."""
        if self.baseline_value is None or self.baseline is None:
            return None
        num, den = ((self.value, self.baseline_value) if self.higher_is_better
                    else (self.baseline_value, self.value))
        if den == 0:
            return None
        return float(num) / float(den)

    def record(self, at: str) -> dict[str, Any]:
        """The JSON record of this figure."""
        ratio = self.ratio
        return {
            "name": self.name, "workload": self.workload, "events": int(self.events),
            "metric": self.metric, "value": float(self.value), "unit": self.unit,
            "baseline": self.baseline,
            "baseline_value": None if self.baseline_value is None else float(self.baseline_value),
            "ratio": None if ratio is None else round(ratio, 4), "runs": self.runs, "at": at,
        }


@dataclass
class Context:
    """What a case gets: the size override, a scratch directory and a console.

    Attributes:
        events: ``--events`` (None: the case's default size).
        tmp: scratch directory of this case; removed afterwards.
        console: where progress notes go (None: nowhere).
        runs: runs per median.
        budget_s: soft cap on the seconds a query loop may take.
    """

    events: int | None
    tmp: Path
    console: Console | None = None
    runs: int = 3
    budget_s: float = 20.0

    def size(self, default: int) -> int:
        """``--events`` when given, else ``default``."""
        return self.events if self.events is not None else default

    def fresh_dir(self, name: str) -> Path:
        """An empty directory ``name`` under :attr:`tmp`, emptied if it existed."""
        path = self.tmp / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def note(self, message: str) -> None:
        """A progress line on the console."""
        if self.console is not None:
            self.console.print(f"[dim]  {message}[/dim]")


def seconds(fn: Callable[[], object]) -> float:
    """Wall-clock seconds that ``fn()`` takes."""
    started = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - started) / 1e9


def median_of(values: Sequence[float]) -> float:
    """The median of ``values`` as a float."""
    return float(statistics.median(values))


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
    from tidal.bench.cases import CASES

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
