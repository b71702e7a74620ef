"""Decode any input into one Arrow table, with every bad line reported.

:func:`decode` takes Arrow tables and batches, DataFrames, lists of dicts,
NDJSON bytes or text, and paths (NDJSON, JSON arrays, CSV, Parquet, Arrow IPC,
optionally gzip or zstd compressed). It returns a :class:`Decoded`: the good
rows, a :class:`~tidal.errors.Problem` for every bad line, and the input line of
every row. :func:`write_dead_letter` keeps bad lines beside their reasons.
"""

from __future__ import annotations

from tidal.ingest.deadletter import write_dead_letter
from tidal.ingest.decode import Decoded, decode, decode_path, decode_records
from tidal.ingest.formats import FORMATS, decode_buffer, detect_format
from tidal.ingest.ndjson import MAX_RAW_BYTES, decode_ndjson

__all__ = [
    "FORMATS",
    "MAX_RAW_BYTES",
    "Decoded",
    "decode",
    "decode_buffer",
    "decode_ndjson",
    "decode_path",
    "decode_records",
    "detect_format",
    "write_dead_letter",
]
