"""Tidal: a fast, embeddable event store and correlation engine.

>>> import tidal
>>> store = tidal.open()          # in memory; tidal.open("dir") is durable
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidal.errors import (
    ClosedError,
    ConfigError,
    CorruptionError,
    DecodeError,
    IngestError,
    Problem,
    QueryError,
    SchemaError,
    StorageError,
    TidalError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from tidal.api import Receipt, Store, open

__all__ = [
    "ClosedError",
    "ConfigError",
    "CorruptionError",
    "DecodeError",
    "IngestError",
    "Problem",
    "QueryError",
    "Receipt",
    "SchemaError",
    "StorageError",
    "Store",
    "TidalError",
    "__version__",
    "open",
]


def __getattr__(name: str) -> Any:
    # The store pulls in pyarrow and DuckDB; load it on first use so that
    # `tidal --version` and `import tidal.errors` stay fast.
    if name in ("open", "Store", "Receipt"):
        from tidal import api

        return getattr(api, name)
    raise AttributeError(f"module 'tidal' has no attribute {name!r}")
