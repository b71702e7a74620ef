"""Tidal: a fast, embeddable event store and correlation engine.

>>> import tidal
>>> store = tidal.open()          # in memory; tidal.open("dir") is durable
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidal.errors import (
    BackpressureError,
    ClosedError,
    ConfigError,
    CorruptionError,
    DecodeError,
    IngestError,
    Problem,
    QueryError,
    ReadOnlyError,
    SchemaError,
    SourceError,
    StorageError,
    TidalError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from tidal.api import Receipt, Store, open
    from tidal.correlate.followed import FollowedBy
    from tidal.store.feed import Follower
    from tidal.store.readers import Snapshot

__all__ = [
    "BackpressureError",
    "ClosedError",
    "ConfigError",
    "CorruptionError",
    "DecodeError",
    "FollowedBy",
    "Follower",
    "IngestError",
    "Problem",
    "QueryError",
    "ReadOnlyError",
    "Receipt",
    "SchemaError",
    "Snapshot",
    "SourceError",
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
    if name == "FollowedBy":
        from tidal.correlate.followed import FollowedBy

        return FollowedBy
    if name == "Follower":
        from tidal.store.feed import Follower

        return Follower
    if name == "Snapshot":
        from tidal.store.readers import Snapshot

        return Snapshot
    raise AttributeError(f"module 'tidal' has no attribute {name!r}")
