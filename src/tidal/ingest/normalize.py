"""Normalize decoded events: event time to UTC nanoseconds, reserved columns cleared.

The configured timestamp field is converted in place (same path) to
``timestamp[ns, UTC]``. Events without one get the ingest time, or are refused
when ``missing_timestamp="reject"``. Unparseable timestamps are problems that
name the line and the field. Any incoming ``_seq`` column is dropped: the store
assigns ``_seq``.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.config import StoreConfig
from tidal.errors import Problem
from tidal.ingest.ndjson import MAX_RAW_BYTES
from tidal.model.paths import get_path, set_path
from tidal.model.time import TIMESTAMP_TYPE, to_timestamp_array

RESERVED = ("_seq",)


@dataclass(frozen=True)
class Normalized:
    """A normalized table and what was wrong with some of its rows.

    ``keep`` is a bool mask of rows without problems, or None when all are good.
    """

    table: pa.Table
    problems: list[Problem]
    keep: np.ndarray | None


def _line_of(lines: np.ndarray | None, row: int) -> int:
    return int(lines[row]) if lines is not None else row + 1


def _raw_row(table: pa.Table, row: int) -> str:
    """The record as JSON text, for the problem report and the dead-letter file."""
    record = table.slice(row, 1).to_pylist()[0]
    return msgspec.json.encode(record, enc_hook=str).decode()[:MAX_RAW_BYTES]


def normalize(table: pa.Table, *, config: StoreConfig, now_ns: int,
              lines: np.ndarray | None = None) -> Normalized:
    """Normalize ``table`` under ``config``; ``lines`` maps rows to input lines."""
    drop = [name for name in RESERVED if name in table.column_names]
    if drop:
        table = table.drop_columns(drop)
    n = table.num_rows
    field = config.timestamp_field
    raw = get_path(table, field)
    if raw is not None and raw.type == TIMESTAMP_TYPE and raw.null_count == 0:
        return Normalized(table, [], None)  # already normalized (Arrow input): nothing to do
    if raw is None:
        ts = pa.nulls(n, TIMESTAMP_TYPE)
        bad = np.zeros(n, dtype=bool)
    else:
        ts, bad = to_timestamp_array(raw, config.timestamp_unit)
    missing = np.asarray(ts.is_null(), dtype=bool) & ~bad if n else np.zeros(0, dtype=bool)
    problems = [
        Problem(_line_of(lines, int(row)), f"cannot parse timestamp {raw[int(row)].as_py()!r}",
                field=field, raw=_raw_row(table, int(row)))
        for row in np.flatnonzero(bad)
    ] if raw is not None else []
    refused = bad
    if missing.any():
        if config.missing_timestamp == "reject":
            problems += [Problem(_line_of(lines, int(row)), "missing timestamp", field=field,
                                 raw=_raw_row(table, int(row)))
                         for row in np.flatnonzero(missing)]
            refused = bad | missing
        else:
            now = pa.scalar(now_ns, TIMESTAMP_TYPE)
            ts = pc.if_else(pa.array(missing), now, ts)
    problems.sort(key=lambda p: p.line)
    table = set_path(table, field, ts)
    return Normalized(table, problems, ~refused if refused.any() else None)
