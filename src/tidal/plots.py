"""Pictures for the terminal: events on a time axis, and a histogram of events over time.

Both bin timestamps with numpy (one pass over the column, whatever the number of
events) and draw with rich, so colours show in a terminal and plain characters
in a pipe. Used by ``tidal timeline --plot`` and ``tidal stats``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa
    from rich.console import RenderableType

__all__ = ["BARS", "PALETTE", "counts_over_time", "histogram", "timeline_plot"]

BARS = " ▁▂▃▄▅▆▇█"
"""A count's height, from none to the largest, in eighths of a cell."""
PALETTE = ("cyan", "magenta", "yellow", "green", "blue", "red", "bright_cyan",
           "bright_magenta", "bright_yellow", "bright_green")
"""Colours of the values of the field a timeline is coloured by (then ``white``)."""
OTHER = "white"


def counts_over_time(ts_ns: np.ndarray, bins: int) -> tuple[np.ndarray, int, int]:
    """Events per bin over ``[min, max]`` of ``ts_ns``: the counts, the first and the
    last timestamp (counts are empty for no events)."""
    if not len(ts_ns):
        return np.zeros(0, np.int64), 0, 0
    low, high = int(ts_ns.min()), int(ts_ns.max())
    width = max(1, -(-(high - low + 1) // bins))
    counts = np.bincount((ts_ns - low) // width, minlength=bins)[:bins]
    return counts.astype(np.int64), low, high


def histogram(ts_ns: np.ndarray, width: int = 60, title: str = "events over time"
              ) -> RenderableType:
    """One line of bars, a bar a bin of time, under a title with the busiest bin's count,
    and the first and last time beneath."""
    from rich.text import Text

    from tidal.render import instant

    counts, low, high = counts_over_time(ts_ns, width)
    if not counts.size:
        return Text(f"{title}: no events")
    peak = int(counts.max())
    levels = np.ceil(counts * (len(BARS) - 1) / peak).astype(int) if peak else counts
    bars = "".join(BARS[level] for level in levels)
    start, end = instant(low)[:19] + "Z", instant(high)[:19] + "Z"
    gap = max(1, len(bars) - len(start) - len(end))
    out = Text(f"{title} ({len(ts_ns):,} events; the tallest bar: {peak:,})\n", style="bold")
    out.append(bars + "\n", style="cyan")
    out.append(start + " " * gap + end)
    return out


def timeline_plot(table: pa.Table, ts_field: str, color_by: str | None, width: int = 72,
                  title: str = "timeline") -> RenderableType:
    """``table``'s events as marks on one time axis, each cell coloured by the rarest
    value of ``color_by`` among its events (the one error among a hundred infos
    shows), with a legend of the values, the most common first."""
    import pyarrow.compute as pc
    from rich.text import Text

    from tidal.render import instant

    if table.num_rows == 0:
        return Text(f"{title}: no events")
    ts = pc.cast(table.column(ts_field), "int64").to_numpy()
    counts, low, high = counts_over_time(ts, width)
    cells = np.minimum((ts - low) // max(1, -(-(high - low + 1) // width)), width - 1)
    values, codes = _codes(table, color_by)
    colours = [PALETTE[i] if i < len(PALETTE) else OTHER for i in range(len(values))]
    out = Text(f"{title}: {table.num_rows:,} events", style="bold")
    if color_by is not None:
        out.append(f", coloured by {color_by}")
    out.append("\n")
    for cell in range(width):
        here = codes[cells == cell]
        if not here.size:
            out.append("·", style="dim")
            continue
        out.append("●" if counts[cell] > 1 else "•", style=colours[int(here.max())])
    out.append("\n" + instant(low)[:19] + "Z")
    end = instant(high)[:19] + "Z"
    out.append(" " * max(1, width - 2 * len(end)) + end + "\n")
    for value, colour in zip(values, colours, strict=True):
        out.append("● ", style=colour)
        out.append(f"{value}  ")
    return out


def _codes(table: pa.Table, field: str | None) -> tuple[list[str], np.ndarray]:
    """The distinct values of ``field`` (as text, the most frequent first) and each
    row's index among them; one value ``"event"`` without a field."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from tidal.model.paths import get_path

    column = get_path(table, field) if field is not None else None
    if column is None:
        return ["event"], np.zeros(table.num_rows, np.int64)
    text = pc.fill_null(pc.cast(column, pa.string()), "(none)")
    counted = pc.value_counts(text).to_pylist()
    values = [c["values"] for c in sorted(counted, key=lambda c: -c["counts"])]
    codes = pc.index_in(text, pa.array(values, pa.string())).to_numpy(zero_copy_only=False)
    return values, np.asarray(codes, np.int64)
