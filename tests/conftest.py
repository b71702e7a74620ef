"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tidal


@pytest.fixture(params=["memory", "disk"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """Where a contract test's store lives: None (in memory) or a directory."""
    return None if request.param == "memory" else str(tmp_path / "store")


@pytest.fixture
def open_store(backend: str | None, tmp_path: Path) -> Iterator[object]:
    """A factory opening stores on the current backend; closes them afterwards."""
    stores: list[tidal.Store] = []

    def make(**config: object) -> tidal.Store:
        config.setdefault("dead_letter_path", str(tmp_path / "dead.ndjson"))
        store = tidal.open(backend, **config)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()
