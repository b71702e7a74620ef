"""The data model: event time, dotted field paths, schema evolution and storable types.

Everything here works on Arrow arrays and tables and imports nothing from the
rest of Tidal except :mod:`tidal.errors`.
"""

from __future__ import annotations

from tidal.model.paths import get_path, has_path, set_path, type_at
from tidal.model.schema import concat_tables, conform, unify, widen
from tidal.model.storable import restored, storable
from tidal.model.time import (
    TIMESTAMP_TYPE,
    now_ns,
    parse_instant,
    to_ns,
    to_timestamp_array,
)

__all__ = [
    "TIMESTAMP_TYPE",
    "concat_tables",
    "conform",
    "get_path",
    "has_path",
    "now_ns",
    "parse_instant",
    "restored",
    "set_path",
    "storable",
    "to_ns",
    "to_timestamp_array",
    "type_at",
    "unify",
    "widen",
]
