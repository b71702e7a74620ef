"""Showing tables and stats to people: rich tables, JSON lines, RFC 3339 times.

Used by the command line and the demo. Heavy modules are imported inside the
functions, so importing this module costs nothing at start-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import pyarrow as pa
    from rich.table import Table

__all__ = ["TABLE_ROWS", "printable", "rich_table", "stats_table", "write_json_lines"]

TABLE_ROWS = 1000
"""At most this many rows are drawn in a rich table."""


def printable(table: pa.Table, *, nested_as_json: bool = False) -> pa.Table:
    """``table`` with timestamps as RFC 3339 strings (and nested values as JSON text)."""
    import msgspec
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, field in enumerate(table.schema):
        column = table.column(i)
        if pa.types.is_timestamp(field.type):
            text = pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ")
        elif nested_as_json and pa.types.is_nested(field.type):
            encode = msgspec.json.Encoder(enc_hook=str).encode
            text = pa.array([None if v is None else encode(v).decode()
                             for v in column.to_pylist()], pa.string())
        else:
            continue
        table = table.set_column(i, field.name, text)
    return table


def instant(ns: int) -> str:
    """Nanoseconds since the epoch as RFC 3339 UTC text, to the nanosecond."""
    import datetime as dt

    seconds, fraction = divmod(ns, 10**9)
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{fraction:09d}Z"


def write_json_lines(table: pa.Table, out: BinaryIO) -> None:
    """Write ``table`` as one JSON object per line, timestamps in RFC 3339."""
    import msgspec

    encode = msgspec.json.Encoder(enc_hook=str).encode
    for batch in printable(table).to_batches(max_chunksize=8192):
        rows = batch.to_pylist()
        if rows:
            out.write(b"\n".join(encode(row) for row in rows) + b"\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict | list):
        import msgspec

        return msgspec.json.encode(value, enc_hook=str).decode()
    return str(value)


def rich_table(table: pa.Table, title: str | None = None, max_rows: int = TABLE_ROWS) -> Table:
    """A rich table of the first ``max_rows`` rows of ``table``."""
    import pyarrow as pa
    from rich.table import Table

    shown = printable(table.slice(0, max_rows))
    out = Table(title=title, title_justify="left", header_style="bold")
    for field in shown.schema:
        numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
        out.add_column(field.name, justify="right" if numeric else "left", overflow="fold")
    columns = [column.to_pylist() for column in shown.columns]
    for row in zip(*columns, strict=True):
        out.add_row(*(_cell(v) for v in row))
    return out


def _flatten(stats: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in stats.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _human_bytes(n: float) -> str:
    unit = 0
    while abs(n) >= 1024 and unit < 4:
        n, unit = n / 1024, unit + 1
    return f"{n:.1f} {('B', 'KiB', 'MiB', 'GiB', 'TiB')[unit]}"


def stats_table(stats: dict[str, Any], title: str | None = None) -> Table:
    """A two-column rich table of a (possibly nested) stats dict."""
    from rich.table import Table

    out = Table(title=title, title_justify="left", header_style="bold")
    out.add_column("stat")
    out.add_column("value", justify="right")
    for key, value in _flatten(stats):
        if isinstance(value, bool) or not isinstance(value, int | float):
            text = _cell(value)
        elif isinstance(value, int):
            text = f"{value:,}"
            if key.endswith("bytes") and value >= 1024:
                text += f" ({_human_bytes(value)})"
        else:
            text = f"{value:,.3f}"
        out.add_row(key, text)
    return out
