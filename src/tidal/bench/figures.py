"""What a benchmark case returns (:class:`Figure`) and gets (:class:`Context`).

A case measures Tidal and a baseline in the same run; each figure holds both
medians, and :attr:`Figure.ratio` is oriented so that above 1 means Tidal did
better.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Context", "Figure", "median_of", "seconds"]


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
            "ratio": None if ratio is None else float(f"{ratio:.6g}"), "runs": self.runs, "at": at,
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
