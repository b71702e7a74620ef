"""A real ``tidal serve`` app on loopback: uvicorn in a thread, on a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

import tidal
from tidal.server import ServerConfig, create_app


@dataclass
class Served:
    """A running server: its base URL, store and config."""

    url: str
    store: tidal.Store
    config: ServerConfig


@contextmanager
def serving(store: tidal.Store, config: ServerConfig | None = None) -> Iterator[Served]:
    """Serve ``store`` on 127.0.0.1 (a free port) until the block ends."""
    config = config or ServerConfig()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(store, config), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield Served(url, store, config)
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture
def served(tmp_path) -> Iterator[Served]:
    """A server over a fresh store, with no tokens (open, loopback)."""
    with tidal.open(tmp_path / "store") as store, serving(store) as running:
        yield running
