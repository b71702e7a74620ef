"""Settings fixed when a store is created (``STORE.json``).

The timestamp and entity fields decide how segments are sorted and indexed,
so a store remembers them (and the field EQL reads the event category from):
opening it again without them uses the stored values, and opening it with
different ones is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from tidal.config import StoreConfig
from tidal.errors import ConfigError, CorruptionError
from tidal.store.fs import FileSystem

NAME = "STORE.json"
FIXED = ("timestamp_field", "timestamp_unit", "entity_field", "category_field")


def load(directory: Path) -> dict[str, Any]:
    """The stored settings of the store at ``directory`` ({} for a new store)."""
    path = directory / NAME
    if not path.exists():
        return {}
    try:
        raw = msgspec.json.decode(path.read_bytes())
    except msgspec.DecodeError as exc:
        raise CorruptionError(f"store settings unreadable: {exc}", path=str(path)) from exc
    return {k: v for k, v in raw.items() if k in FIXED}


def merge(stored: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` options completed with ``stored`` ones; conflicts raise :class:`ConfigError`."""
    merged = dict(given)
    for key, value in stored.items():
        if key in given and given[key] != value:
            raise ConfigError(f"this store was created with {key}={value!r}; "
                              f"it cannot be opened with {key}={given[key]!r}", field=key)
        merged[key] = value
    return merged


def save(fs: FileSystem, directory: Path, config: StoreConfig) -> None:
    """Record the fixed settings of a new store (atomic, durable)."""
    fs.write_atomic(directory / NAME,
                    msgspec.json.encode({k: getattr(config, k) for k in FIXED}))
