"""The public surface: what ``import tidal`` exports, and nothing more."""

from __future__ import annotations

import subprocess
import sys

import tidal

EXPORTED = {
    "BackpressureError", "ClosedError", "ConfigError", "CorruptionError", "DecodeError",
    "FollowedBy", "Follower", "IngestError", "Problem", "QueryError", "ReadOnlyError",
    "Receipt", "Snapshot", "SchemaError", "SourceError", "StorageError", "Store", "TidalError",
    "__version__", "open",
}


def test_all_lists_exactly_the_public_names():
    assert set(tidal.__all__) == EXPORTED
    for name in tidal.__all__:
        assert getattr(tidal, name) is not None


def test_every_error_derives_from_tidal_error():
    for name in tidal.__all__:
        value = getattr(tidal, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, tidal.TidalError)


def test_importing_tidal_does_not_load_the_engine():
    code = "import sys, tidal; print('pyarrow' in sys.modules, 'duckdb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]
